"""The adapter contract: everything a vendor folder imports from the engine, and nothing else.

A vendor is declarations plus pure functions (see ``declarations``): per endpoint its
documented limits (:class:`EndpointSpec`), per operation how to validate an item, build a
request and read the answer into per-item results (:class:`Operation`), per operation how
to read enrolments for a backup (:class:`EnrolmentReader`); then a client that puts those
on a :class:`Transport` with an :class:`Auth`, and a :class:`VendorPlugin` that tells the
command line how to build it. Its mock imports :mod:`unenroll.contract.mock`.
A layering test holds vendor folders to these two modules.
"""

from unenroll.contract.declarations import (
    Adapter,
    EndpointSpec,
    EnrolmentReader,
    Operation,
    ReadPage,
    Target,
    sharing_one_limiter,
)
from unenroll.contract.plugin import (
    PLACEHOLDER,
    BuildRequest,
    InputOperation,
    MockOption,
    MockPlugin,
    MockRequest,
    Sandbox,
    VendorPlugin,
    check_url,
    limit_keys_of,
    limits_from,
    missing_credentials,
)
from unenroll.contract.settings import ConfigError, Credentials, RunSettings
from unenroll.inputs.shapes import Column, RowShape
from unenroll.limits.adaptive import AdaptiveRate, AdaptiveRateLimiter
from unenroll.limits.learned import LearnedWindowLimiter, WindowEstimate
from unenroll.limits.window import CallLimiter, RollingWindowLimiter, UnlimitedLimiter
from unenroll.model import CallResult, CallVerdict, Item, ItemResult, Outcome
from unenroll.observe.secrets import Secret, scrub
from unenroll.wire.auth import Auth, AuthError, NoAuth, OAuthTokenAuth, StaticTokenAuth
from unenroll.wire.echoed_ids import exact_id
from unenroll.wire.http import (
    LOOPBACK_HOSTS,
    AiohttpTransport,
    HttpRequest,
    HttpResponse,
    HttpSession,
    SessionClient,
    Transport,
    TransportError,
    is_loopback,
    json_body,
    require_private_channel,
    retry_after_seconds,
    transport_for,
)

__all__ = [
    "LOOPBACK_HOSTS",
    "PLACEHOLDER",
    "Adapter",
    "AdaptiveRate",
    "AdaptiveRateLimiter",
    "AiohttpTransport",
    "Auth",
    "AuthError",
    "BuildRequest",
    "CallLimiter",
    "CallResult",
    "CallVerdict",
    "Column",
    "ConfigError",
    "Credentials",
    "EndpointSpec",
    "EnrolmentReader",
    "HttpRequest",
    "HttpResponse",
    "HttpSession",
    "InputOperation",
    "Item",
    "ItemResult",
    "LearnedWindowLimiter",
    "MockOption",
    "MockPlugin",
    "MockRequest",
    "NoAuth",
    "OAuthTokenAuth",
    "Operation",
    "Outcome",
    "ReadPage",
    "RollingWindowLimiter",
    "RowShape",
    "RunSettings",
    "Sandbox",
    "Secret",
    "SessionClient",
    "StaticTokenAuth",
    "Target",
    "Transport",
    "TransportError",
    "UnlimitedLimiter",
    "VendorPlugin",
    "WindowEstimate",
    "check_url",
    "exact_id",
    "is_loopback",
    "json_body",
    "limit_keys_of", "limits_from",
    "missing_credentials",
    "require_private_channel",
    "retry_after_seconds",
    "scrub",
    "sharing_one_limiter",
    "transport_for",
]
