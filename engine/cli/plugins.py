"""The vendors this installation offers: every ``unenroll.vendors`` entry point.

Only the command line (and the benchmarks) look vendors up; the engine knows none. A
vendor package, this project's own ``unenroll.adapters.*`` or a separate distribution,
declares ``[project.entry-points."unenroll.vendors"] NAME = "package.module:plugin"``.
Plugins load lazily, when first asked for, so ``unenroll --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points

from unenroll.contract.plugin import ENTRY_POINT_GROUP, VendorPlugin


class PluginError(Exception):
    """A vendor plugin that cannot be loaded; the message names it."""


@cache
def vendors() -> Mapping[str, VendorPlugin]:
    """Every installed vendor plugin by name, sorted by name."""
    found: dict[str, VendorPlugin] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            plugin = point.load()
        except Exception as exc:  # a broken third-party plugin must not take the others down
            raise PluginError(f"the vendor plugin {point.name!r} ({point.value}) cannot be loaded: {exc}") from None
        if not isinstance(plugin, VendorPlugin) or plugin.name != point.name:
            raise PluginError(f"the entry point {point.name!r} ({point.value}) is not a VendorPlugin named "
                              f"{point.name!r}")
        found.setdefault(plugin.name, plugin)
    return found


def vendor_names() -> list[str]:
    return list(vendors())


def demo_vendor() -> str:
    """The vendor ``unenroll demo`` runs by default: the one that says so, else the first with a mock."""
    with_mock = [v for v in vendors().values() if v.mock is not None]
    for plugin in with_mock:
        if plugin.demo:
            return plugin.name
    if not with_mock:
        raise PluginError("no installed vendor plugin has a mock to run a demo against")
    return with_mock[0].name


def all_destructive_flags() -> dict[str, str]:
    flags: dict[str, str] = {}
    for vendor in vendors().values():
        for name, help_text in vendor.destructive_flags.items():
            flags[name] = f"({vendor.title}) {help_text}"
    return flags


def describe_columns() -> list[tuple[str, str]]:
    """(vendor operation, its columns) for help texts."""
    return [(f"{vendor.name} {op.name}", ", ".join(op.shape.column_names))
            for vendor in vendors().values() for op in vendor.operations.values()]
