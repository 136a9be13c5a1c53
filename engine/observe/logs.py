"""Structured logging: named events with bound context, secrets filtered by a processor.

Events are key-value pairs (``chunk.answered endpoint=unenroll chunk=12 items=100``);
``configure_logging(json=True)`` renders JSON lines. :func:`redact_secrets` runs on every
event (values under secret-sounding keys, Secret objects, known values in any string, also
inside lists and dicts), and the rendered line is scrubbed once more (an exception's
traceback, a JSON-escaped form), so a token cannot reach a log line even if someone passes
it by mistake.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from unenroll.observe.secrets import MASK, Secret, scrub

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api_?key|account_?api|user_?api)", re.I)


def redact_secrets(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Blank values under secret-sounding keys, Secret objects, and known secret values."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value is not None:
            event[key] = MASK
        else:
            event[key] = _redacted(value)
    return event


def _redacted(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {k: MASK if isinstance(k, str) and _SECRET_KEYS.search(k) and v is not None else _redacted(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(v) for v in value]
    return value


class _ScrubbedRenderer:
    """The renderer's line, scrubbed: whatever a processor added after redaction (a traceback)."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        return scrub(str(self._renderer(logger, method, event)))


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners and CLIs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _processors(renderer: Any) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        _ScrubbedRenderer(renderer),
    ]


def configure_logging(*, json: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process: console or JSON lines, on ``stream``.
    For applications (the command line calls it); the library never does."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=_processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """Our logger, bound to ``context``. It follows the process's structlog configuration
    if the application made one (:func:`configure_logging`, or its own); otherwise warnings
    and errors go to stderr with secrets redacted and nothing else is written. Either way
    the library configures nothing for the process: the choice at the time of the call
    holds for the logger returned."""
    if structlog.is_configured():
        return structlog.get_logger("unenroll").bind(**context)
    quiet = structlog.wrap_logger(
        structlog.PrintLogger(_CurrentStderr()),  # type: ignore[arg-type]
        processors=_processors(structlog.dev.ConsoleRenderer(colors=False)),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    return quiet.bind(**context)
