"""A mock's command line: ``python -m unenroll.adapters.<vendor>.mock [options]``.

The kit gives every mock ``--host``, ``--port``, ``--time-scale``, ``--seed``, the wire flags
and the HTTPS flags; the vendor adds its own options and builds its mock from them
(:func:`run_main`). Invariant: a bad flag or value ends in a usage error (exit 2, no traceback).
"""

from __future__ import annotations

import argparse
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from unenroll.mockkit.base import MockBase
from unenroll.mockkit.server import MAX_LINE_SIZE
from unenroll.mockkit.tls import LoopbackTLS, server_tls
from unenroll.mockkit.wire import HOSTILE_WIRE, WireOptions


def add_wire_arguments(parser: argparse.ArgumentParser) -> None:
    """The wire and HTTPS flags every mock's ``main`` takes (read back by :func:`wire_from_arguments`)."""
    group = parser.add_argument_group("the wire (seconds are scaled by --time-scale)")
    group.add_argument("--fragments", type=int, default=1, help="write each answer in this many pieces")
    group.add_argument("--fragment-bytes", type=int, default=None, help="and no piece longer than this")
    group.add_argument("--fragment-pause", type=float, default=0.0, help="seconds between two pieces")
    group.add_argument("--chunked", action="store_true", help="Transfer-Encoding: chunked")
    group.add_argument("--gzip", action="store_true", help="Content-Encoding: gzip")
    group.add_argument("--stall-after", type=int, default=None, help="bytes of a body before it stalls")
    group.add_argument("--stall-seconds", type=float, default=0.0, help="how long an answer stalls")
    group.add_argument("--stall-share", type=float, default=1.0, help="share of answers that stall")
    group.add_argument("--fragmented", action="store_true",
                       help="gzip, chunked, several pieces with pauses (the tests' hostile wire)")
    tls = parser.add_argument_group("HTTPS")
    tls.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    tls.add_argument("--tls-key", help="and this private key (PEM)")
    tls.add_argument("--tls-self-signed", metavar="CA_FILE",
                     help="serve HTTPS with a throwaway test certificate (needs trustme); its authority's "
                          "certificate is written to CA_FILE for the client to trust (e.g. SSL_CERT_FILE)")


def wire_from_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[WireOptions, ssl.SSLContext | None]:
    """The wire options and the server's TLS context the flags ask for; a bad flag ends in ``parser.error``."""
    try:
        wire = HOSTILE_WIRE if args.fragmented else WireOptions(
            fragments=args.fragments, fragment_bytes=args.fragment_bytes, fragment_pause=args.fragment_pause,
            chunked=args.chunked, gzip=args.gzip, stall_after=args.stall_after, stall_seconds=args.stall_seconds,
            stall_share=args.stall_share)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        parser.error("--tls-self-signed or --tls-cert with --tls-key, not both")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        if args.tls_cert:
            return wire, server_tls(args.tls_cert, args.tls_key)
        if args.tls_self_signed:
            tls = LoopbackTLS.generate()
            with open(args.tls_self_signed, "wb") as ca_file:
                ca_file.write(tls.ca_pem)
            return wire, tls.server
    except (OSError, ssl.SSLError, RuntimeError) as exc:
        parser.error(f"cannot serve HTTPS: {exc}")
    return wire, None


@dataclass(frozen=True, slots=True)
class MainArguments:
    """What the kit read from the command line, and the vendor's own options in ``options``."""

    time_scale: float
    seed: int
    wire: WireOptions
    options: argparse.Namespace


@dataclass(frozen=True, slots=True)
class MockMain:
    """A parsed command line: the mock to serve and where."""

    mock: MockBase
    host: str
    port: int
    ssl_context: ssl.SSLContext | None


def parse_main(
    argv: list[str] | None, *, description: str, default_port: int,
    add_options: Callable[[argparse.ArgumentParser], None], build: Callable[[MainArguments], MockBase],
) -> MockMain:
    """The kit's options and the vendor's (``add_options``), read from ``argv``; ``build`` makes the mock."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    add_options(parser)
    add_wire_arguments(parser)
    args = parser.parse_args(argv)
    wire, ssl_context = wire_from_arguments(parser, args)
    if not math.isfinite(args.time_scale) or args.time_scale <= 0:
        parser.error("--time-scale must be a positive number")
    try:
        mock = build(MainArguments(args.time_scale, args.seed, wire, args))
    except ValueError as exc:
        parser.error(str(exc))
    return MockMain(mock, args.host, args.port, ssl_context)


def run_main(
    argv: list[str] | None, *, description: str, default_port: int,
    add_options: Callable[[argparse.ArgumentParser], None], build: Callable[[MainArguments], MockBase],
) -> None:
    """Read the command line (:func:`parse_main`) and serve the mock until stopped."""
    parsed = parse_main(argv, description=description, default_port=default_port, add_options=add_options,
                        build=build)
    web.run_app(parsed.mock.app, host=parsed.host, port=parsed.port, ssl_context=parsed.ssl_context,
                handler_args={"max_line_size": MAX_LINE_SIZE})
