"""The kit's former single module, kept as a name for imports not yet moved to the modules
by idea (``unenroll.contract.plugin`` imports ``WireOptions`` from here)."""

from unenroll.mockkit.faults import FaultLog, Faults, Latency, answer_fault
from unenroll.mockkit.main import add_wire_arguments, wire_from_arguments
from unenroll.mockkit.server import MockServer, serve
from unenroll.mockkit.threshold import ThresholdCounter, WindowKind
from unenroll.mockkit.tls import LoopbackTLS, server_tls
from unenroll.mockkit.wire import HOSTILE_WIRE, WireOptions, WireResponse, mock_app, wire_middleware

__all__ = [
    "HOSTILE_WIRE", "FaultLog", "Faults", "Latency", "LoopbackTLS", "MockServer", "ThresholdCounter", "WindowKind",
    "WireOptions", "WireResponse", "add_wire_arguments", "answer_fault", "mock_app", "serve", "server_tls",
    "wire_from_arguments", "wire_middleware",
]
