"""A vendor plugin: what the command line, the mock command, the demo and the benchmarks
learn about a vendor, declared by the vendor's own folder.

A vendor package exposes one :class:`VendorPlugin` under the ``unenroll.vendors`` entry
point group (``[project.entry-points."unenroll.vendors"]`` in its ``pyproject.toml``), so a
vendor can also ship as a separate package; ``unenroll.cli.plugins`` discovers them. The
engine itself never imports a vendor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from unenroll.contract.declarations import Adapter
from unenroll.contract.settings import ConfigError, Credentials, RunSettings
from unenroll.inputs.shapes import RowShape
from unenroll.model import Item
from unenroll.observe.secrets import Secret
from unenroll.wire.http import require_private_channel

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from unenroll.mockkit.wire import WireOptions

T = TypeVar("T")
ENTRY_POINT_GROUP = "unenroll.vendors"
# stands in for a credential a dry run was not given: it sends nothing, so none is needed
PLACEHOLDER = "unset-credential-for-a-dry-run"


@dataclass(frozen=True, slots=True)
class InputOperation:
    """An operation as the command line offers it: its name, what it does, its rows."""

    name: str
    help: str
    shape: RowShape


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What building an adapter takes. ``dry_run``: missing credentials are replaced by
    placeholders (nothing will be sent)."""

    settings: RunSettings
    credentials: Credentials
    session: aiohttp.ClientSession
    destructive: frozenset[str] = frozenset()
    dry_run: bool = False

    def credential(self, name: str) -> Secret | None:
        return self.credentials.get(name)

    def timeout(self, default: float) -> float:
        """The transport's timeout: the settings' if given, else the vendor's ``default``."""
        timeout = self.settings.connection.timeout
        return timeout if timeout is not None else default


@dataclass(frozen=True, slots=True)
class MockOption:
    """One seeded-state option of a vendor's mock (``unenroll mock serve VENDOR --NAME``)."""

    name: str
    kind: type
    default: Any
    help: str


@dataclass(frozen=True, slots=True)
class MockRequest:
    """How to seed and serve a mock: the options every mock has, and the vendor's own."""

    time_scale: float = 1.0
    seed: int = 0
    fault_rate: float = 0.0  # share of calls answered with a server error, a dropped connection or a bad body
    latency: float = 0.0  # seconds per call before time scale
    wire: WireOptions | None = None  # how answers travel (pieces, chunked, gzip); None: in one piece
    options: Mapping[str, Any] = field(default_factory=dict)  # the vendor's MockOptions by name
    environ: Mapping[str, str] = field(default_factory=dict)  # credentials the mock accepts, if set

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def credential(self, name: str, default: str) -> str:
        """The credential the mock accepts: the environment's, else the mock's well-known one."""
        value = self.environ.get(name, "").strip()
        return value or default


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A seeded mock: its app, the settings a run needs to use it (``NAME=value`` lines, the
    mock's own well-known credentials only), and the items a demo job sends to it."""

    app: web.Application
    env: list[str]
    demo_items: Callable[[], Iterator[Item]] | None = None


@dataclass(frozen=True, slots=True)
class MockPlugin:
    options: tuple[MockOption, ...]
    build: Callable[[MockRequest], Sandbox]
    hint: str = ""  # how the mock's state looks, for `mock serve --help`
    demo_options: Mapping[str, Any] = field(default_factory=dict)  # `unenroll demo`'s size, where not the default


@dataclass(frozen=True, slots=True)
class VendorPlugin:
    """Everything the application needs to offer one vendor."""

    name: str
    title: str
    operations: Mapping[str, InputOperation]
    credential_names: tuple[str, ...]
    credential_help: str  # which combinations are accepted
    default_base_url: str | None
    limit_keys: Callable[[], dict[str, type]]  # the vendor's limits that a settings file may override
    build: Callable[[BuildRequest], Adapter]
    destructive_flags: Mapping[str, str] = field(default_factory=dict)  # flag -> what it does
    mock: MockPlugin | None = None
    demo: bool = False  # `unenroll demo` runs against this vendor's mock unless told another

    @property
    def env_prefix(self) -> str:
        return f"UNENROLL_{self.name.upper()}_"


# -- plumbing every vendor's build shares ----------------------------------------------------


def check_url(name: str, url: str, *, allow_insecure_http: bool) -> str:
    """:func:`~unenroll.wire.http.require_private_channel`, refusing with a :class:`ConfigError`."""
    try:
        return require_private_channel(name, url, allow_insecure_http=allow_insecure_http)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def limit_keys_of(limits_type: Any) -> dict[str, type]:
    """The int and float fields of a vendor's limits dataclass, by name: what a settings
    file's ``[<vendor>.limits]`` table may override."""
    keys: dict[str, type] = {}
    for f in dataclasses.fields(limits_type):
        kind = str(f.type)
        if kind.startswith("int"):
            keys[f.name] = int
        elif kind.startswith("float"):
            keys[f.name] = float
    return keys


def limits_from(limits_type: Callable[..., T], overrides: Mapping[str, float]) -> T:
    """The vendor's limits dataclass with a settings file's overrides applied (names checked
    earlier against :func:`limit_keys_of`)."""
    return limits_type(**dict(overrides))


def missing_credentials(title: str, help_text: str) -> ConfigError:
    return ConfigError(f"no credentials for {title}: set {help_text} in the environment or in a "
                       "--credentials-file")
