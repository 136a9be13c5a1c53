"""Bearer tokens as an OAuth server issues them: each one accepted until it expires.

Invariant: a token is accepted at ``now`` exactly when this store issued it and ``now`` is
at most its issue time plus ``lifetime``; a token it never issued, or an ``Authorization``
header without the store's scheme, is never accepted.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator


class TokenStore:
    """Tokens issued by a mock's token endpoint, with their expiry (on the mock's clock).

    ``scheme`` is the word before the token in the ``Authorization`` header (``Bearer``,
    a vendor's own word); a token is ``prefix`` and ``nbytes`` random bytes in hex.
    ``lifetime`` is in the clock's seconds (already scaled).
    """

    def __init__(self, scheme: str, lifetime: float, *, prefix: str = "", nbytes: int = 20) -> None:
        self.scheme, self.lifetime, self.prefix, self.nbytes = scheme, lifetime, prefix, nbytes
        self._expiry: dict[str, float] = {}
        self.issued = 0

    def issue(self, now: float) -> str:
        token = self.prefix + secrets.token_hex(self.nbytes)
        self._expiry[token] = now + self.lifetime
        self.issued += 1
        return token

    def valid(self, token: str, now: float) -> bool:
        return self._expiry.get(token, -math.inf) >= now

    def accepts(self, authorization: str, now: float) -> bool:
        """Whether an ``Authorization`` header value carries a live token of this store."""
        scheme = self.scheme + " "
        return authorization.startswith(scheme) and self.valid(authorization.removeprefix(scheme), now)

    def __iter__(self) -> Iterator[str]:
        return iter(self._expiry)

    def __len__(self) -> int:
        return len(self._expiry)
