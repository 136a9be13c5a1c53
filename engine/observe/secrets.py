"""Secrets that cannot leak by accident.

A :class:`Secret` prints as ``***`` in ``repr``, ``str`` and f-strings; only
:meth:`Secret.reveal` gives the value, and only the code that puts it on the wire calls it.
Every Secret's value is also registered, and :func:`scrub` blanks it in any text, in every
form it can travel in: raw, URL-encoded (``quote``, ``quote_plus``, either hex case),
XML/HTML-escaped, JSON-escaped (``\\uXXXX``, ``\\/``), each of those encoded once more by
any of them (a JSON message quoting a form-encoded request), and base64 (also inside a
longer base64 text such as an ``id:secret`` Basic pair). The engine scrubs where vendor
text enters its account (``Ledger.end``, so every sink), in the log renderer, and in every
message to the admin.

Invariant (``tests/test_secrets.py``): for a registered value and each of its forms,
``scrub`` leaves no occurrence of the form, with these limits on length:

- 8 characters or more: blanked wherever they appear, even inside a longer word;
- 4 to 7 characters: blanked as whole tokens only (no letter or digit right before or
  after; a ``%XX``, ``\\uXXXX`` or ``\\n`` escape before counts as a boundary), so the
  secret ``admin`` blanks ``user=admin`` but leaves ``administrators`` alone;
- under 4 characters: not blanked in free text (too short to tell from ordinary words;
  they still print as ``***``). ``config.load_credentials`` refuses such credentials.

``scrub`` runs on every outcome: one compiled pattern (a trie of every form, so its cost
hardly grows with the number of forms), rebuilt only when a new value is registered.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
SHORTEST_SCRUBBED = 4  # shorter values are never blanked in free text
WHOLE_TOKEN_BELOW = 8  # values shorter than this are blanked as whole tokens only


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value
        _SCRUBBER.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str:  # pickling would write the value to disk
        raise TypeError("a Secret cannot be pickled")


# -- the forms a value travels in -------------------------------------------------------------


def _hex_lower(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _json_inner(text: str, *, ascii_only: bool = True) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


_JSON_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})  # as Go's encoding/json

# each turns a text into one way a vendor or a file may write it
_ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda s: quote(s, safe=""),
    quote,  # keeps "/"
    quote_plus,
    lambda s: _hex_lower(quote(s, safe="")),
    lambda s: _hex_lower(quote_plus(s)),
    lambda s: html.escape(s, quote=False),
    html.escape,  # &quot; &#x27;
    lambda s: html.escape(s, quote=False).replace('"', "&quot;").replace("'", "&apos;"),
    lambda s: html.escape(s, quote=False).replace('"', "&#34;").replace("'", "&#39;"),
    _json_inner,
    lambda s: _json_inner(s, ascii_only=False),
    lambda s: _json_inner(s).replace("/", "\\/"),
    lambda s: _json_inner(s, ascii_only=False).replace("/", "\\/"),
    lambda s: _json_inner(s).translate(_JSON_HTML_SAFE),
    lambda s: re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group()[2:].upper(), _json_inner(s)),
)


def _base64_forms(value: str) -> set[str]:
    """``value`` in base64 (standard and URL-safe). A long value also as the three cores
    its base64 has inside any longer base64 text, whatever its offset there (a Basic
    ``id:secret`` pair): each core is the whole 3-byte groups of ``value[k:]``, so at most
    two bytes of the value at either end stay in such a text."""
    data = value.encode("utf-8")
    pieces = [data]
    if len(value) >= WHOLE_TOKEN_BELOW:
        pieces += [data[k:][: len(data[k:]) // 3 * 3] for k in range(3)]
    forms: set[str] = set()
    for piece in pieces:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(piece).decode("ascii")
            forms |= {text, text.rstrip("=")}
    return {form for form in forms if len(form) >= WHOLE_TOKEN_BELOW}


def encoded_forms(value: str) -> frozenset[str]:
    """Every form of ``value`` that :func:`scrub` blanks (see the module docstring)."""
    forms = {value}
    for _ in range(2):  # an encoding, and an encoding of an encoding
        forms |= {encode(form) for form in forms for encode in _ENCODINGS}
    encoded64 = _base64_forms(value)
    forms |= encoded64 | {encode(form) for form in encoded64 for encode in _ENCODINGS}
    return frozenset(form for form in forms if form)


_Trie = dict[str, "_Trie"]  # char -> subtree; the key "" marks the end of a word


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first, written as a trie (shared prefixes once)."""
    root: _Trie = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        branches = []
        for char in sorted(k for k in node if k):
            run, child = char, node[char]
            while len(child) == 1 and "" not in child:  # a chain without a fork: one literal
                ((char, child),) = child.items()
                run += char
            branches.append(re.escape(run) + emit(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


# a letter or digit right before a short secret is a boundary after all when it ends an escape
_ESCAPE_BEFORE = re.compile(r"(?:%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\[bfnrt])\Z")


class Scrubber:
    """A set of secret values and one pattern of all their forms (see the module docstring)."""

    __slots__ = ("_lock", "_pattern", "_values")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < SHORTEST_SCRUBBED or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            self._pattern = None  # rebuilt by the next scrub

    def _compile(self) -> re.Pattern[str]:
        with self._lock:
            long_forms: set[str] = set()
            short_forms: set[str] = set()
            for value in self._values:
                (short_forms if len(value) < WHOLE_TOKEN_BELOW else long_forms).update(encoded_forms(value))
            alternatives = []
            if long_forms:
                alternatives.append(_trie_pattern(long_forms))
            if short_forms:
                alternatives.append(f"(?P<short>{_trie_pattern(short_forms)})")
            pattern = re.compile("|".join(alternatives) or "(?!)")
            self._pattern = pattern
            return pattern

    def scrub(self, text: str) -> str:
        if not self._values or not text:
            return text
        pattern = self._pattern or self._compile()
        return pattern.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    if match.lastgroup == "short" and _inside_a_word(match):
        return match.group()
    return MASK


def _inside_a_word(match: re.Match[str]) -> bool:
    """A short form with a letter or digit glued to it (``admin`` in ``administrators``)."""
    form, text, start, end = match.group(), match.string, match.start(), match.end()
    if form[0].isalnum() and start and text[start - 1].isalnum():
        if not _ESCAPE_BEFORE.search(text, max(0, start - 6), start):
            return True
    return form[-1].isalnum() and end < len(text) and text[end].isalnum()


_SCRUBBER = Scrubber()


def scrub(text: str) -> str:
    """``text`` with every form of every known secret value replaced by ``***``."""
    return _SCRUBBER.scrub(text)
