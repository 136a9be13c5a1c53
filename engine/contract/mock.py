"""The mock kit, as a vendor's mock imports it: serving (HTTP or HTTPS on loopback), the
wire (answers in pieces, chunked, gzip, stalls), seeded faults and latency, threshold
counters, and the contract's values a mock needs to speak of items."""

from unenroll.mockkit.kit import (
    HOSTILE_WIRE,
    FaultLog,
    Faults,
    Latency,
    LoopbackTLS,
    MockServer,
    ThresholdCounter,
    WindowKind,
    WireOptions,
    WireResponse,
    add_wire_arguments,
    answer_fault,
    mock_app,
    serve,
    server_tls,
    wire_from_arguments,
    wire_middleware,
)

__all__ = [
    "HOSTILE_WIRE", "FaultLog", "Faults", "Latency", "LoopbackTLS", "MockServer", "ThresholdCounter", "WindowKind",
    "WireOptions", "WireResponse", "add_wire_arguments", "answer_fault", "mock_app", "serve", "server_tls",
    "wire_from_arguments", "wire_middleware",
]
