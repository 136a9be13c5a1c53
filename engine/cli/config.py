"""Settings and credentials of a run, from a TOML file and the environment.

Settings (never secrets) come from, later winning:

1. the defaults (every vendor number is its documented value);
2. the settings file's top level, then its ``[<vendor>]`` table (``[<vendor>]``);
3. the environment: ``UNENROLL_<KEY>`` (``UNENROLL_BASE_URL``), then
   ``UNENROLL_<VENDOR>_<KEY>`` (``UNENROLL_<VENDOR>_BASE_URL``).

Job settings live in ``[job]``; a vendor's limits in ``[<vendor>.limits]``. Every
duration (windows, locks, retry delays, ``max_pause``) is multiplied by ``time_scale``: 1 for a real
vendor, 0.01 to rehearse against a mock quickly. Unknown keys are errors, so a typo
never silently falls back to a default.

Credentials are never settings and never flags: they come from the environment
(``UNENROLL_<VENDOR>_...``, named by each vendor) or a credentials file (TOML, the same names),
and are wrapped in :class:`~unenroll.observe.secrets.Secret` as soon as they are read, so they
print as ``***`` and the log processor blanks their values wherever they appear.
"""

from __future__ import annotations

import difflib
import math
import os
import stat
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unenroll.contract.settings import (
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_CONFIRM_ABOVE,
    ConfigError,
    Connection,
    Credentials,
    RunSettings,
)
from unenroll.job.breaker import BreakerSettings
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.observe.secrets import SHORTEST_SCRUBBED, Secret

ENV_PREFIX = "UNENROLL_"

# key -> type, for the keys that say how to reach a vendor (top level or a vendor's table)
CONNECTION_KEYS: dict[str, type] = {
    "base_url": str,
    "accounts_url": str,
    "timeout": float,
    "allow_insecure_http": bool,
    "time_scale": float,
}
TOP_LEVEL_KEYS: dict[str, type] = {**CONNECTION_KEYS, "confirm_above": int, "change_threshold": float}
RETRY_KEYS: dict[str, type] = {
    "max_attempts": int, "deadline": float, "base_delay": float, "multiplier": float, "max_delay": float,
    "jitter": float,
}
BREAKER_KEYS: dict[str, type] = {"breaker_first_items": int, "breaker_window": int, "breaker_share": float}
JOB_KEYS: dict[str, type] = {
    **RETRY_KEYS, "max_throttles": int, "max_buffered_items": int, "linger": float, "seed": int, "max_pause": float,
    **BREAKER_KEYS,
}
# limits every vendor's [<vendor>.limits] may hold, applied by the engine (not the adapter)
ENGINE_LIMIT_KEYS: dict[str, type] = {"daily_calls": int}
_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey")


# what a setting's type is called in a message to an admin (never a Python type's name)
_KIND_WORDS: dict[type, str] = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _typed(value: Any, kind: type, where: str) -> Any:
    """``value`` checked (and for env strings, parsed) as ``kind``."""
    wanted = _KIND_WORDS.get(kind, kind.__name__)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError
                value = text in ("1", "true", "yes", "on")
            elif kind is int:
                value = int(text)
            else:
                value = float(text)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not {wanted}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as the settings file spells it
        raise ConfigError(f"{where}: expected {wanted}, got {shown}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return value


def _refuse_secret(key: str, where: str) -> None:
    if any(word in key.lower() for word in _SECRET_WORDS):
        raise ConfigError(f"{where}: credentials do not belong in the settings file; put them in the environment "
                          "or in a --credentials-file")


def _take(table: Mapping[str, Any], allowed: Mapping[str, type], where: str, out: dict[str, Any],
          sources: dict[str, str], *, subtables: Sequence[str] = ()) -> None:
    for key, value in table.items():
        if key in subtables:
            continue
        _refuse_secret(key, f"{where}: {key}")
        if key not in allowed:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(allowed))})")
        out[key] = _typed(value, allowed[key], f"{where}: {key}")
        sources[key] = where


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the {what} {path} is not valid TOML: {exc}") from None


def load_settings(
    vendor: str, path: Path | None, environ: Mapping[str, str], *, vendors: Sequence[str],
    limit_keys: Mapping[str, type],
) -> RunSettings:
    """The run's settings for ``vendor`` (see the module docstring for the precedence).

    ``limit_keys`` are the vendor's limits that may be overridden (name -> int or float).
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    job: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path, "settings file")
        where = str(path)
        _take(data, TOP_LEVEL_KEYS, where, values, sources, subtables=("job", *vendors))
        if not isinstance(job_table := data.get("job", {}), dict):
            raise ConfigError(f"{where}: [job] must be a table")
        _take(job_table, JOB_KEYS, f"{where} [job]", job, sources)
        vendor_table = data.get(vendor, {})
        if not isinstance(vendor_table, dict):
            raise ConfigError(f"{where}: [{vendor}] must be a table")
        _take(vendor_table, CONNECTION_KEYS, f"{where} [{vendor}]", values, sources, subtables=("limits",))
        if not isinstance(limits_table := vendor_table.get("limits", {}), dict):
            raise ConfigError(f"{where}: [{vendor}.limits] must be a table")
        _take(limits_table, {**limit_keys, **ENGINE_LIMIT_KEYS}, f"{where} [{vendor}.limits]", limits, sources)
    for key, kind in TOP_LEVEL_KEYS.items():
        names = [f"{ENV_PREFIX}{key.upper()}"]
        if key in CONNECTION_KEYS:
            names.append(f"{ENV_PREFIX}{vendor.upper()}_{key.upper()}")
        for name in names:
            raw = environ.get(name)
            if raw is not None and raw.strip():
                values[key] = _typed(raw, kind, name)
                sources[key] = name
    for key, kind in ENGINE_LIMIT_KEYS.items():
        name = f"{ENV_PREFIX}{vendor.upper()}_{key.upper()}"
        raw = environ.get(name)
        if raw is not None and raw.strip():
            limits[key] = _typed(raw, kind, name)
            sources[key] = name
    connection = Connection(**{k: v for k, v in values.items() if k in CONNECTION_KEYS})
    if not connection.time_scale > 0:
        raise ConfigError(f"{sources.get('time_scale')}: time_scale must be above 0")
    if connection.timeout is not None and not connection.timeout > 0:
        raise ConfigError(f"{sources.get('timeout')}: timeout must be above 0")
    confirm_above = values.get("confirm_above", DEFAULT_CONFIRM_ABOVE)
    if confirm_above < 0:
        raise ConfigError(f"{sources.get('confirm_above')}: confirm_above must be 0 or more")
    change_threshold = values.get("change_threshold", DEFAULT_CHANGE_THRESHOLD)
    if not 0 < change_threshold <= 100:
        raise ConfigError(f"{sources.get('change_threshold')}: change_threshold is a percent, above 0 and at most 100")
    for key, value in limits.items():
        if value <= 0:
            raise ConfigError(f"{sources[key]}: {key} must be above 0")
    try:
        retry = RetryPolicy(**{k: v for k, v in job.items() if k in RETRY_KEYS})
        breaker = BreakerSettings(**{k.removeprefix("breaker_"): v for k, v in job.items() if k in BREAKER_KEYS})
        job_settings = JobSettings(retry=retry, breaker=breaker,
                                   **{k: v for k, v in job.items() if k not in RETRY_KEYS and k not in BREAKER_KEYS})
        job_settings = job_settings.scaled(connection.time_scale)  # retry delays and max_pause are vendor time
    except ValueError as exc:
        raise ConfigError(f"{path} [job]: {exc}") from None
    daily_calls = limits.pop("daily_calls", None)
    return RunSettings(vendor, connection, limits, job_settings, confirm_above, sources, daily_calls=daily_calls,
                       change_threshold=change_threshold)


# -- credentials ----------------------------------------------------------------------------


def load_credentials(names: Sequence[str], path: Path | None, environ: Mapping[str, str],
                     known: Sequence[str] = ()) -> Credentials:
    """The credentials named ``names``: from the file at ``path`` (TOML, the same names as
    the environment variables), then the environment, which wins. Empty values count as
    unset. A file that others may read draws a warning.

    A token, secret, password or key shorter than ``secrets.SHORTEST_SCRUBBED`` (4)
    characters is refused, naming the credential and never its value: no vendor issues one
    that short, and it could not be told apart from ordinary words when blanking secrets in
    messages (identifiers such as a username may be short). Values of 4 to 7 characters are
    blanked as whole tokens (see ``secrets``). A key of the file that is neither one of
    ``names`` nor one of ``known`` (other vendors' names: one file may serve several) is
    refused like an unknown setting, naming the closest known name, never a value."""
    values: dict[str, Secret] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    found: dict[str, tuple[str, str]] = {}  # name -> (value, where it came from)
    if path is not None:
        data = _read_toml(path, "credentials file")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"the credentials file {path} can be read by other users: chmod 600 {path}")
        allowed = [*names, *(k for k in known if k not in names)]
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(f"{path}: unknown credential {key!r} ({hint}known: {', '.join(names)})")
        for name in names:
            value = data.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {name} must be a string")
            if value.strip():
                found[name] = (value.strip(), str(path))
    for name in names:
        raw = environ.get(name)
        if raw is not None and raw.strip():
            found[name] = (raw.strip(), "environment")
    for name, (value, where) in found.items():
        if len(value) < SHORTEST_SCRUBBED and any(word in name.lower() for word in _SECRET_WORDS):
            shown = "the environment" if where == "environment" else where
            raise ConfigError(f"{name} (from {shown}) is too short to be a real credential (under "
                              f"{SHORTEST_SCRUBBED} characters): check that it was copied in full")
        values[name] = Secret(value)
        sources[name] = where
    return Credentials(values, sources, tuple(warnings))


# -- the shared quota -------------------------------------------------------------------------


def quota_choice(value: str | None, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """Where a run records its calls so every run against the same tenant sees them:
    ``("sqlite", path)`` (no value: the file in the user's state folder, shared by every
    ``unenroll`` on this machine), ``("memory", None)`` (this run only, as before), or
    ``("redis", url)`` (shared across hosts)."""
    from unenroll.limits.sqlite_quota import default_quota_path

    text = (value or "").strip()
    if not text:
        return "sqlite", str(default_quota_path(dict(environ)))
    if text.lower() == "memory":
        return "memory", None
    if text.lower().startswith(("redis://", "rediss://", "unix://")):
        return "redis", text
    if "://" in text:
        raise ConfigError(f"--quota: {text.split('://')[0]}:// is not a quota store (give memory, a file path, or "
                          "redis://HOST:PORT/DB)")
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"--quota: {path} is a folder; give a file path (e.g. {path / 'quota.db'})")
    return "sqlite", str(path)
