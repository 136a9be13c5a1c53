"""HTTPS on loopback: a throwaway certificate authority, or a certificate from files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class LoopbackTLS:
    """A throwaway certificate authority and a certificate it issued for 127.0.0.1 and
    localhost: ``server`` serves with it, ``client`` trusts that authority (and no other)."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    ca_pem: bytes

    @classmethod
    def generate(cls) -> LoopbackTLS:
        try:
            import trustme
        except ImportError:
            raise RuntimeError("a test certificate needs the trustme package (pip install trustme)") from None
        authority = trustme.CA()
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(server)
        client = ssl.create_default_context()
        authority.configure_trust(client)
        return cls(server, client, authority.cert_pem.bytes())


def server_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context from a certificate chain and its key (PEM files)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
