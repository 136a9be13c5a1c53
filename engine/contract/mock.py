"""The mock kit, as a vendor's mock imports it: the base a mock is built on (clock, seeded
draws, fault gate, tokens, statuses, stats route, serving), its command line, serving
(HTTP or HTTPS on loopback), the wire (answers in pieces, chunked, gzip, stalls), seeded
faults and latency, and threshold counters."""

from unenroll.mockkit.base import STATS_PATH, MockBase
from unenroll.mockkit.clock import ScaledClock
from unenroll.mockkit.faults import FaultLog, Faults, Latency, answer_fault
from unenroll.mockkit.hidden import HiddenLimit, parse_hidden_limit
from unenroll.mockkit.main import (
    MainArguments,
    MockMain,
    add_wire_arguments,
    parse_main,
    run_main,
    wire_from_arguments,
)
from unenroll.mockkit.server import MockServer, serve
from unenroll.mockkit.threshold import ThresholdCounter, WindowKind
from unenroll.mockkit.tls import LoopbackTLS, server_tls
from unenroll.mockkit.tokens import TokenStore
from unenroll.mockkit.wire import HOSTILE_WIRE, WireOptions, WireResponse, mock_app, wire_middleware

__all__ = [
    "HOSTILE_WIRE",
    "STATS_PATH",
    "FaultLog",
    "Faults",
    "HiddenLimit",
    "Latency",
    "LoopbackTLS",
    "MainArguments",
    "MockBase",
    "MockMain",
    "MockServer",
    "ScaledClock",
    "ThresholdCounter",
    "TokenStore",
    "WindowKind",
    "WireOptions",
    "WireResponse",
    "add_wire_arguments",
    "answer_fault",
    "mock_app",
    "parse_hidden_limit",
    "parse_main",
    "run_main",
    "serve",
    "server_tls",
    "wire_from_arguments",
    "wire_middleware",
]
