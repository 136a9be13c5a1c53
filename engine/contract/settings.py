"""What building a vendor's adapter is given: the run's settings and credentials, as values
(the command line reads them from files and the environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from unenroll.job.settings import JobSettings
from unenroll.observe.secrets import Secret

DEFAULT_CONFIRM_ABOVE = 1000
DEFAULT_CHANGE_THRESHOLD = 50.0  # percent of a target's enrolments one job may remove


class ConfigError(Exception):
    """Settings or credentials that cannot be used; the message says which and where."""


@dataclass(frozen=True, slots=True)
class Connection:
    base_url: str | None = None
    accounts_url: str | None = None
    timeout: float | None = None
    allow_insecure_http: bool = False
    time_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything a run needs that is not the input, the credentials or a flag."""

    vendor: str
    connection: Connection = field(default_factory=Connection)
    limits: Mapping[str, float] = field(default_factory=dict)  # overrides of the vendor's limits
    job: JobSettings = field(default_factory=JobSettings)
    confirm_above: int = DEFAULT_CONFIRM_ABOVE  # the change guard asks above this many items
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> where its value came from
    # the tenant's calls a day across all its APIs, when known (the vendor's plan says; never guessed)
    daily_calls: int | None = None
    # the most a job may remove of what one target holds, in percent, where the backup's read
    # counts it (``planning/threshold.py``); --yes does not switch it off, raising it does
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD


@dataclass(frozen=True, slots=True)
class Credentials:
    """Credential values by their variable name, each a :class:`Secret`."""

    values: Mapping[str, Secret] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def get(self, name: str) -> Secret | None:
        return self.values.get(name)

    def __repr__(self) -> str:
        return f"Credentials(names={sorted(self.values)})"
