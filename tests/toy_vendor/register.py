"""Registering the toy vendor as a separate distribution would be: a ``*.dist-info``
folder with an ``unenroll.vendors`` entry point, on ``sys.path`` (or ``PYTHONPATH``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unenroll.contract.plugin import ENTRY_POINT_GROUP

REPO_ROOT = Path(__file__).resolve().parents[2]  # where ``tests.toy_vendor`` is importable from


def write_dist_info(folder: Path) -> Path:
    """``folder`` holding ``toy_vendor-0.0.dist-info``: what installing the toy vendor's
    package would have written into site-packages."""
    info = folder / "toy_vendor-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy_vendor\nVersion: 0.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = tests.toy_vendor:plugin\n",
                                           encoding="utf-8")
    return folder


@contextmanager
def toy_registered(folder: Path) -> Iterator[None]:
    """The toy vendor installed (for this process) while inside; the discovery cache is
    cleared on the way in and out, so nothing else sees it afterwards."""
    from unenroll.cli.plugins import vendors

    path = str(write_dist_info(folder))
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    vendors.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(path)
        importlib.invalidate_caches()
        vendors.cache_clear()
