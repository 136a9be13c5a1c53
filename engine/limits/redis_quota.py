"""A tenant's quota kept in Redis, shared by every process on every host that points at it.

:class:`RedisQuotaStore` keeps, per :class:`~unenroll.limits.quota.QuotaKey`, the recent
calls (start, deadline, and the end once reported), the shared pause and the waiters'
tickets, and changes them only inside Lua scripts (one per step: acquire, done, pause,
usage), so each step is atomic whoever else is calling. The scripts apply the sums of
:func:`~unenroll.limits.quota.earliest_start`.

Invariant (the one of :mod:`unenroll.limits.quota`), on **the Redis server's clock**:
``TIME`` is read inside every script and the caller's clock is never used, so hosts need no
clock agreement. For each rule of ``N`` calls per ``W`` seconds, with the key's calls of all
participants ordered by start, ``start[k + N] >= end[k] + W + margin``, and consecutive
starts are at least ``min_interval`` apart. A call whose end was never reported (its
process died) counts as ended at ``start + call_timeout``: past the transport's timeout it
can no longer reach the vendor, so a crash frees its slot no later than that. Since a call
reaches the vendor between its start and its end, no window of ``W`` at the vendor holds
more than ``N`` arrivals, whoever sent them. A pause (``paused_until``) holds every participant.

Fairness: a participant told to wait takes a ticket stamped with when it first asked; a
free slot goes only to the holder of the oldest live ticket (or to anyone when no one
waits), and a grant hands the ticket back, so the next wait queues behind the others:
waiters are served roughly in order and none starves. A ticket lives until the wait it
was given plus ``ticket_grace``; a waiter that does not come back loses its place.

Calls that can no longer bound any start (``end + W + margin + min_interval`` in the
past) are pruned, oldest first; a key's data expires after a while without acquires.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from unenroll.limits.quota import TICKET_GRACE, Grant, QuotaKey, Usage, WindowRule, fact_from_json
from unenroll.limits.window import sane_pause

# Shared by the scripts. KEYS: 1 calls (zset id -> start), 2 deadline (hash id -> start + call_timeout),
# 3 ended (hash id -> reported end), 4 owner (hash id -> participant), 5 paused (string: paused_until),
# 6 tickets (zset participant -> first asked), 7 ticket expiry (hash participant -> time), 8 sequence.
_PRELUDE = """
local calls_k, deadline_k, ended_k, owner_k = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local paused_k, tickets_k, texp_k, seq_k = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
-- a call's end: the reported one, else its start plus the transport's timeout
local function effective_end(id)
  local e = redis.call('HGET', ended_k, id)
  if e then return tonumber(e), true end
  local d = redis.call('HGET', deadline_k, id)
  if d then return tonumber(d), false end
  return 0, true
end
local function paused_until()
  local p = redis.call('GET', paused_k)
  if p then return tonumber(p) end
  return 0
end
"""

_ACQUIRE = (
    _PRELUDE
    + """
local participant = ARGV[1]
local call_timeout = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local nrules = tonumber(ARGV[4])
local rules, widest, longest_gap, poll = {}, 0, 0, 1.0
for i = 0, nrules - 1 do
  local b = 5 + i * 4
  local r = {n = tonumber(ARGV[b]), w = tonumber(ARGV[b + 1]), margin = tonumber(ARGV[b + 2]),
             gap = tonumber(ARGV[b + 3])}
  rules[#rules + 1] = r
  widest = math.max(widest, r.w + r.margin)
  longest_gap = math.max(longest_gap, r.gap)
  poll = math.min(poll, math.min(r.w, 1.0) / 20)
end

-- prune oldest first, and stop at the first call still needed: what is left is the newest calls, in order
for _ = 1, 1000 do
  local oldest = redis.call('ZRANGE', calls_k, 0, 0)
  if #oldest == 0 then break end
  local id = oldest[1]
  local e = effective_end(id)
  if e + widest + longest_gap >= now then break end
  redis.call('ZREM', calls_k, id)
  redis.call('HDEL', deadline_k, id)
  redis.call('HDEL', ended_k, id)
  redis.call('HDEL', owner_k, id)
end

-- the earliest start the calls so far allow (strictly after the last start: a clock step back waits)
local at = math.max(now, paused_until())
local count = redis.call('ZCARD', calls_k)
local newest = redis.call('ZREVRANGE', calls_k, 0, 0, 'WITHSCORES')
if #newest > 0 then at = math.max(at, tonumber(newest[2]) + 0.000001) end
for _, r in ipairs(rules) do
  if count >= r.n then
    local id = redis.call('ZREVRANGE', calls_k, r.n - 1, r.n - 1)[1]
    local e, reported = effective_end(id)
    local release = e + r.w + r.margin + 0.000001
    if reported or release <= now then
      at = math.max(at, release)
    else
      -- in flight: its answer may come any moment, so look again soon (or at its deadline's release)
      at = math.max(at, math.min(release, now + poll))
    end
  end
  if r.gap > 0 and #newest > 0 then at = math.max(at, tonumber(newest[2]) + r.gap + 0.000001) end
end

if ARGV[5 + nrules * 4] == 'peek' then return {0, '', fmt(math.max(at - now, 0)), fmt(now)} end

-- the oldest live ticket goes first; expired ones are dropped
local first = nil
for _, holder in ipairs(redis.call('ZRANGE', tickets_k, 0, -1)) do
  local expires = tonumber(redis.call('HGET', texp_k, holder) or '0')
  if expires < now then
    redis.call('ZREM', tickets_k, holder)
    redis.call('HDEL', texp_k, holder)
  elseif first == nil then
    first = holder
  end
end

local ttl = math.ceil((widest + longest_gap + call_timeout + grace + 60) * 1000)
if at <= now and (first == nil or first == participant) then
  -- the start in the id too: a late done from before the keys expired never ends a newer call
  local id = redis.call('INCR', seq_k) .. '@' .. fmt(now)
  redis.call('ZADD', calls_k, fmt(now), id)
  redis.call('HSET', deadline_k, id, fmt(now + call_timeout))
  redis.call('HSET', owner_k, id, participant)
  redis.call('ZREM', tickets_k, participant)
  redis.call('HDEL', texp_k, participant)
  for _, k in ipairs({calls_k, deadline_k, ended_k, owner_k, tickets_k, texp_k, seq_k}) do
    redis.call('PEXPIRE', k, ttl)
  end
  return {1, id, '0', fmt(now)}
end
local wait = at - now
if wait <= 0 then wait = 0.005 end -- the slot is free, but an older waiter goes first (quota.TURN_POLL)
redis.call('ZADD', tickets_k, 'NX', fmt(now), participant)
redis.call('HSET', texp_k, participant, fmt(now + wait + grace))
redis.call('PEXPIRE', tickets_k, ttl)
redis.call('PEXPIRE', texp_k, ttl)
return {0, '', fmt(wait), fmt(now)}
"""
)

_DONE = (
    _PRELUDE
    + """
local id = ARGV[1]
local start = redis.call('ZSCORE', calls_k, id)
if not start or redis.call('HEXISTS', ended_k, id) == 1 then return 0 end -- unknown, or already ended
local e, _ = effective_end(id)
-- past its deadline the call can no longer reach the vendor: the end the invariant was checked with stays
redis.call('HSET', ended_k, id, fmt(math.max(tonumber(start), math.min(now, e))))
local ttl = redis.call('PTTL', calls_k)
if ttl > 0 then redis.call('PEXPIRE', ended_k, ttl) end
return 1
"""
)

_PAUSE = (
    _PRELUDE
    + """
local seconds = tonumber(ARGV[1])
local until_ = math.max(paused_until(), now + seconds)
redis.call('SET', paused_k, fmt(until_), 'PX', math.ceil((until_ - now + 60) * 1000))
return fmt(until_ - now)
"""
)

_USAGE = (
    _PRELUDE
    + """
local participant = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local mine, others = 0, 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', calls_k, '(' .. fmt(now - tonumber(ARGV[i])), '+inf')) do
    if redis.call('HGET', owner_k, id) == participant then mine = mine + 1 else others = others + 1 end
  end
  out[#out + 1] = mine
  out[#out + 1] = others
end
out[#out + 1] = fmt(math.max(0, paused_until() - now))
return out
"""
)

_WITHDRAW = (
    _PRELUDE
    + """
redis.call('ZREM', tickets_k, ARGV[1])
redis.call('HDEL', texp_k, ARGV[1])
return 1
"""
)

_KEY_PARTS = ("calls", "deadline", "ended", "owner", "paused", "tickets", "ticket-expiry", "sequence")


def _redacted(url: str) -> str:
    """``url`` without its user and password, for messages and ``repr``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisQuotaStore:
    """A :class:`~unenroll.limits.quota.QuotaStore` in one Redis server (``redis://HOST:PORT/DB``);
    see the module docstring for the invariant. Needs the ``redis`` extra (redis-py's asyncio
    client) and Redis 5 or later (scripts that read ``TIME`` and then write)."""

    __slots__ = ("_acquire", "_done", "_pause", "_prefix", "_redis", "_ticket_grace", "_url", "_usage", "_withdraw")

    def __init__(self, url: str, *, ticket_grace: float = TICKET_GRACE, prefix: str = "unenroll:quota") -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis quota is given as redis://HOST:PORT/DB, not {_redacted(url)!r}")
        self._url = _redacted(url)
        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._ticket_grace = ticket_grace
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._done = self._redis.register_script(_DONE)
        self._pause = self._redis.register_script(_PAUSE)
        self._usage = self._redis.register_script(_USAGE)
        self._withdraw = self._redis.register_script(_WITHDRAW)

    def __repr__(self) -> str:
        return f"RedisQuotaStore({self._url!r})"

    def _keys(self, key: QuotaKey) -> list[str]:
        # one hash tag: every key of a quota lives in one slot of a Redis Cluster
        tag = "{" + key.as_text() + "}"
        return [f"{self._prefix}:{tag}:{part}" for part in _KEY_PARTS]

    async def try_acquire(
        self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str, call_timeout: float
    ) -> Grant:
        """Start a call now if every rule, the pause and the older waiters allow it; else say how
        long to wait before asking again."""
        if not (0.0 < call_timeout < math.inf):
            raise ValueError("call_timeout must be a positive number of seconds")
        args: list[Any] = [participant, repr(call_timeout), repr(self._ticket_grace), len(rules)]
        for rule in rules:
            args += [rule.calls, repr(rule.window), repr(rule.margin), repr(rule.min_interval)]
        granted, call_id, wait, start = await self._acquire(keys=self._keys(key), args=args)
        if int(granted) == 1:
            return Grant(call_id=str(call_id), wait=0.0, start=float(start))
        return Grant(call_id=None, wait=float(wait), start=float(start))

    async def done(self, key: QuotaKey, call_id: str) -> None:
        """The call's answer (or its failure) is back: its end is the Redis server's now."""
        await self._done(keys=self._keys(key), args=[call_id])

    async def pause(self, key: QuotaKey, seconds: float) -> None:
        """No participant starts a call on ``key`` for ``seconds`` from the Redis server's now;
        never moves a pause earlier, never longer than ``LONGEST_PAUSE``."""
        seconds = sane_pause(seconds)
        if seconds > 0.0:
            await self._pause(keys=self._keys(key), args=[repr(seconds)])

    async def usage(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        """Calls started in each rule's current window, ``participant``'s and the others', and
        the pause left."""
        args: list[Any] = [participant, *(repr(rule.window) for rule in rules)]
        out = await self._usage(keys=self._keys(key), args=args)
        counts = [(int(out[2 * i]), int(out[2 * i + 1])) for i in range(len(rules))]
        return Usage(windows=tuple(counts), paused_for=float(out[-1]))

    async def peek(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        """Seconds until a start would be allowed, on the Redis clock; records nothing."""
        args: list[Any] = ["", "1", "0", len(rules)]
        for rule in rules:
            args += [rule.calls, repr(rule.window), repr(rule.margin), repr(rule.min_interval)]
        _, _, wait, _ = await self._acquire(keys=self._keys(key), args=[*args, "peek"])
        return float(wait)

    async def remember(self, key: QuotaKey, name: str, value: Mapping[str, object]) -> None:
        """Kept in the hash ``<prefix>:{key}:facts``, without expiry (a learned limit outlives runs)."""
        await self._redis.hset(self._facts_key(key), name, json.dumps(dict(value)))

    async def recall(self, key: QuotaKey, name: str) -> dict[str, object] | None:
        return fact_from_json(await self._redis.hget(self._facts_key(key), name))

    def _facts_key(self, key: QuotaKey) -> str:
        return f"{self._prefix}:{{{key.as_text()}}}:facts"

    async def withdraw(self, key: QuotaKey, participant: str) -> None:
        """``participant`` waits no more: its ticket goes now."""
        await self._withdraw(keys=self._keys(key), args=[participant])

    async def close(self) -> None:
        await self._redis.aclose()
