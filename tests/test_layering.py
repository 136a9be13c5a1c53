"""The layers, read from the source: which module may import what.

- The engine (``engine/``, installed as ``unenroll``) never imports a vendor
  (``unenroll.adapters``), not even by a name given to ``import_module``; only its command
  line (``engine/cli/``) looks vendors up, and no other engine module imports
  ``unenroll.cli`` or ``importlib.metadata``'s entry points.
- A vendor folder (``adapters/<vendor>/``, and the tests' toy vendor) imports from the
  engine only ``unenroll.contract`` and ``unenroll.contract.mock``, besides its own package.
- No engine module names a vendor that discovery finds, even in a comment.

Imports are read with :mod:`ast` (every ``import``, at any depth, under ``TYPE_CHECKING``
too), relative ones resolved against the module's own package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from unenroll.cli.plugins import vendors

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"
ADAPTERS = REPO / "adapters"
TOY = REPO / "tests" / "toy_vendor"
CONTRACT = frozenset({"unenroll.contract", "unenroll.contract.mock"})
DISCOVERY = ("unenroll.cli", "importlib.metadata.entry_points")


@dataclass(frozen=True)
class Import:
    """One imported name of one statement: ``module`` for ``import module``; for ``from
    base import name`` both ``base`` and ``base.name`` (``name`` may be a submodule)."""

    where: str  # path:line
    module: str
    name: str | None = None

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.module,) if self.name is None else (self.module, f"{self.module}.{self.name}")

    def __str__(self) -> str:
        return f"{self.where} imports {self.module}" if self.name is None else \
            f"{self.where} imports {self.name} from {self.module}"


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports_of(source: str, module: str, is_package: bool, where: str) -> Iterator[Import]:
    """Every import in ``source``, relative ones made absolute (``module`` is the module's
    dotted name; a package's ``__init__`` resolves ``.`` to itself)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            yield from (Import(line, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield from (Import(line, base, alias.name) for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield Import(line, node.args[0].value)


@dataclass(frozen=True)
class Module:
    path: Path
    name: str

    @property
    def rel(self) -> str:
        return str(self.path.relative_to(REPO))

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def imports(self) -> list[Import]:
        return list(imports_of(self.source, self.name, self.path.name == "__init__.py", self.rel))


def modules(root: Path, package: str) -> list[Module]:
    return [Module(p, module_name(p, root, package)) for p in sorted(root.rglob("*.py"))]


ENGINE_MODULES = modules(ENGINE, "unenroll")
ADAPTER_MODULES = modules(ADAPTERS, "unenroll.adapters")
# the toy vendor is held to the same rule; its register.py is the tests' installer, not the vendor
TOY_MODULES = [m for m in modules(TOY, "tests.toy_vendor") if m.path.name != "register.py"]


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def vendor_package(module: Module) -> str | None:
    """The vendor package a module of a vendor folder belongs to; ``None`` for a module of
    no vendor (``adapters/__init__.py``), which may import the contract only."""
    if module.path.is_relative_to(TOY):
        return "tests.toy_vendor"
    folder = module.path.relative_to(ADAPTERS).parts
    return f"unenroll.adapters.{folder[0]}" if len(folder) > 1 else None


def test_the_engine_never_imports_a_vendor() -> None:
    wrong = [str(i) for m in ENGINE_MODULES for i in m.imports()
             if any(under(c, "unenroll.adapters") for c in i.candidates)]
    assert not wrong, "the engine imports a vendor: " + "; ".join(wrong)


def test_only_the_command_line_discovers_vendors_or_imports_it() -> None:
    outside_cli = [m for m in ENGINE_MODULES if not under(m.name, "unenroll.cli")]
    assert outside_cli, "no engine module outside the command line was found"
    wrong = [str(i) for m in outside_cli for i in m.imports()
             if any(under(c, prefix) for c in i.candidates for prefix in DISCOVERY)]
    assert not wrong, "outside engine/cli/: " + "; ".join(wrong)


def test_vendor_folders_import_only_the_adapter_contract_from_the_engine() -> None:
    vendor_modules = ADAPTER_MODULES + TOY_MODULES
    assert len({vendor_package(m) for m in vendor_modules} - {None}) >= 2, "no vendor folder was found"
    wrong = []
    for module in vendor_modules:
        own = vendor_package(module)
        for i in module.imports():
            if not any(under(c, "unenroll") or under(c, "tests") for c in i.candidates):
                continue  # the standard library and third-party packages
            if not any(c in CONTRACT or (own is not None and under(c, own)) for c in i.candidates):
                wrong.append(str(i))
    assert not wrong, "a vendor folder reaches past unenroll.contract(.mock): " + "; ".join(wrong)


def vendor_word(name: str) -> re.Pattern[str]:
    """``name`` as a word, or as a part of an identifier (``acme_rig``, ``AcmePeople``,
    ``ACME_URL``), in any case: not inside a longer lowercase word."""
    return re.compile(rf"(?<![A-Za-z])(?i:{re.escape(name)})(?![a-z])")


def test_no_engine_module_names_a_vendor() -> None:
    names = list(vendors())
    assert names, "discovery found no vendor"
    wrong = [f"{m.rel}:{number} names {name!r}: {line.strip()[:100]}"
             for m in ENGINE_MODULES for number, line in enumerate(m.source.splitlines(), start=1)
             for name in names if vendor_word(name).search(line)]
    assert not wrong, "the engine names a vendor: " + "; ".join(wrong)


# -- the reading itself ----------------------------------------------------------------------


SAMPLE = """
from __future__ import annotations
import json, unenroll.model as model
from typing import TYPE_CHECKING
from . import adapter
from .. import other_vendor
from ..acme.adapter import thing
if TYPE_CHECKING:
    from unenroll.job.pipeline import Job
def later():
    import importlib
    return importlib.import_module("unenroll.adapters.acme")
"""


def test_imports_are_read_at_any_depth_and_resolved() -> None:
    found = {tuple(i.candidates) for i in imports_of(SAMPLE, "unenroll.adapters.toy", True, "x.py")}
    assert found >= {
        ("__future__", "__future__.annotations"), ("json",), ("unenroll.model",),
        ("unenroll.adapters.toy", "unenroll.adapters.toy.adapter"),
        ("unenroll.adapters", "unenroll.adapters.other_vendor"),
        ("unenroll.adapters.acme.adapter", "unenroll.adapters.acme.adapter.thing"),
        ("unenroll.job.pipeline", "unenroll.job.pipeline.Job"), ("importlib",), ("unenroll.adapters.acme",),
    }
    inside = {tuple(i.candidates) for i in imports_of("from .sibling import x", "unenroll.job.queue", False, "y")}
    assert inside == {("unenroll.job.sibling", "unenroll.job.sibling.x")}


@pytest.mark.parametrize(("line", "named"), [
    ("# an Acme answer", True), ("acme_rig = 1", True), ("class AcmePeople:", True), ("ACME_URL = ''", True),
    ("ids = 'acmeish'", False), ("the acmes", False), ("Xacme", False),
])
def test_a_vendor_name_is_found_as_a_word_or_an_identifier_part(line: str, named: bool) -> None:
    assert bool(vendor_word("acme").search(line)) is named
