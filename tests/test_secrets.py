"""Secrets are blanked in every form they travel in, before any sink: the scrubber's
encodings, short secrets as whole tokens, the ledger, the log renderer, and credentials
too short to blank refused at start."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from unenroll.accounts.ledger import Ledger
from unenroll.cli.config import load_credentials
from unenroll.contract.settings import ConfigError
from unenroll.job.queue import Work
from unenroll.model import Item, Outcome
from unenroll.observe.logs import configure_logging, get_logger
from unenroll.observe.secrets import MASK, Secret, scrub

LONG = 'cs/Se+cr&et<9>"\u00e9\'x-Lq4Vz'  # every character an encoding changes
SHORT = "SEKRIT7"
SHORT_ODD = "k&/+9"  # short, and changed by every encoding


def _json(value: str) -> str:
    return json.dumps(value)[1:-1]


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "quote": lambda v: quote(v, safe=""),
    "quote keeping /": quote,
    "quote_plus": quote_plus,
    "quote, lower-case hex": lambda v: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(v, safe="")),
    "html escape": html.escape,
    "xml escape (&apos;)": lambda v: html.escape(v, quote=False).replace('"', "&quot;").replace("'", "&apos;"),
    "numeric character references": lambda v: html.escape(v, quote=False).replace('"', "&#34;").replace("'", "&#39;"),
    "json": _json,
    "json, not ascii": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "json with \\/": lambda v: _json(v).replace("/", "\\/"),
    "json, html-safe as Go": lambda v: _json(v).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),
    "json inside json": lambda v: _json(_json(v)),
    "xml of url-encoded json": lambda v: html.escape(quote(_json(v), safe="")),
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "base64 url-safe, unpadded": lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_long_secret_is_blanked_in_every_encoding(encoding: str) -> None:
    Secret(LONG)
    form = ENCODINGS[encoding](LONG)
    scrubbed = scrub(f"HTTP 500: the request said client_secret={form}; try again")
    assert form not in scrubbed
    assert scrubbed == f"HTTP 500: the request said client_secret={MASK}; try again"


@pytest.mark.parametrize("client_id", ["1000.CLIENTID", "1000.CLIENTID9", "1000.CLIENTID98"])
def test_a_long_secret_inside_a_basic_pair_is_blanked_whatever_its_offset(client_id: str) -> None:
    Secret(LONG)
    basic = base64.b64encode(f"{client_id}:{LONG}".encode()).decode()
    scrubbed = scrub(f"Authorization: Basic {basic}")
    assert MASK in scrubbed
    # what is left decodes to the id and at most two bytes of the secret at either end
    kept = scrubbed.removeprefix("Authorization: Basic ").replace(MASK, "")
    assert len(kept) <= len(base64.b64encode(f"{client_id}:".encode())) + 2 * 4


@pytest.mark.parametrize("value", [SHORT, SHORT_ODD])
@pytest.mark.parametrize("encoding", [e for e in ENCODINGS if not e.startswith("base64")])
def test_a_short_secret_is_blanked_as_a_whole_token_in_every_encoding(value: str, encoding: str) -> None:
    Secret(value)
    form = ENCODINGS[encoding](value)
    for text in (form, f"key={form}&next=1", f'{{"key": "{form}"}}', f"<UserAPI>{form}</UserAPI>", f"key%3D{form}%26",
                 f"\\u0022{form}\\u0022", f"\\n{form}"):
        scrubbed = scrub(text)
        assert form not in scrubbed, text
        assert MASK in scrubbed


def test_a_short_secret_inside_a_longer_word_is_left_alone() -> None:
    Secret("adm1n")
    Secret(SHORT)
    text = "adm1nistrators and sysadm1ns: xSEKRIT7, SEKRIT7x"
    assert scrub(text) == text
    assert scrub("user=adm1n, key SEKRIT7.") == f"user={MASK}, key {MASK}."


def test_a_secret_created_later_is_blanked_by_the_next_scrub() -> None:
    first, second = "first/Gq7+Nw2Xr9Lk", "second/Vb8+Mz3Pd6Hs"
    assert scrub(f"{first} {second}") == f"{first} {second}"  # neither known yet
    Secret(first)
    assert scrub(f"{first} {second}") == f"{MASK} {second}"
    Secret(second)
    assert scrub(f"{quote(first)} {second}") == f"{MASK} {MASK}"


@given(st.sets(st.text(alphabet="ab%&\\/", min_size=1, max_size=6), min_size=1, max_size=8),
       st.text(alphabet="ab%&\\/x", max_size=8))
def test_the_trie_pattern_matches_exactly_its_words_longest_first(words: set[str], other: str) -> None:
    from unenroll.observe.secrets import _trie_pattern

    pattern = re.compile(_trie_pattern(words))
    assert all(pattern.fullmatch(word) for word in words)
    assert bool(pattern.fullmatch(other)) == (other in words)
    naive = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))
    text = "x".join(sorted(words)) + other
    assert pattern.sub("*", text) == naive.sub("*", text)


# -- where it is applied ------------------------------------------------------------------------


def test_the_ledger_scrubs_the_code_message_and_stop_reason_before_any_sink() -> None:
    token = Secret("ledger-token-Rw5Yt1Ui8Op/+")
    seen = []
    ledger = Ledger("zoho", sinks=[seen.append])
    work = Work(0, Item("unenroll", ("c", "b"), "7"))
    ledger.open(work)
    leak = f"Authorization: Zoho-oauthtoken {token.reveal()} ({quote_plus(token.reveal())})"
    ended = ledger.end(work, Outcome.FAILED, token.reveal(), leak)
    assert seen == [ended]
    assert ended.code == MASK
    assert ended.message == f"Authorization: Zoho-oauthtoken {MASK} ({MASK})"
    ledger.report.stopped = f"403: {_json(token.reveal())}"
    report = ledger.close()
    shown = json.dumps(report.as_dict()) + report.summary()
    assert token.reveal() not in shown and _json(token.reveal()) not in shown


def test_log_lines_blank_secrets_in_nested_values_and_tracebacks() -> None:
    token = Secret("log-token-Kd3Fg7Hj1Lz/+&")
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        log = get_logger(job="j")
        log.info("chunk.answered", detail={"answer": [f"quoted {quote(token.reveal(), safe='')}"]},
                 pair=(token.reveal(), 1))
        try:
            raise RuntimeError(f"vendor said {token.reveal()}")
        except RuntimeError:
            log.exception("call.failed")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "chunk.answered" in text and "call.failed" in text
    for form in (token.reveal(), quote(token.reveal(), safe=""), _json(token.reveal())):
        assert form not in text


def test_a_credential_too_short_to_blank_is_refused_by_name_not_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_credentials(["UNENROLL_SMARTERU_ACCOUNT_API_KEY"], None, {"UNENROLL_SMARTERU_ACCOUNT_API_KEY": "Q7z"})
    assert "UNENROLL_SMARTERU_ACCOUNT_API_KEY" in str(refused.value)
    assert "Q7z" not in str(refused.value)
    credentials = tmp_path / "credentials.toml"
    credentials.write_text('UNENROLL_DOCEBO_PASSWORD = "pw"\n')
    credentials.chmod(0o600)
    with pytest.raises(ConfigError, match="UNENROLL_DOCEBO_PASSWORD"):
        load_credentials(["UNENROLL_DOCEBO_PASSWORD"], credentials, {})


def test_short_identifiers_and_seven_character_keys_are_accepted_and_blanked() -> None:
    names = ["UNENROLL_DOCEBO_USERNAME", "UNENROLL_SMARTERU_USER_API_KEY"]
    credentials = load_credentials(names, None, {names[0]: "bob", names[1]: "SEKRIT7"})
    assert set(credentials.values) == set(names)
    assert scrub("key SEKRIT7, encoded key%3DSEKRIT7") == f"key {MASK}, encoded key%3D{MASK}"
