"""The house rules a reviewer would otherwise check by hand, read from the source with ``ast``.

- Arrows point inward: the domain (every module but ``defs/``, ``cli/`` and ``definitions.py``)
  never imports dagster or ``annotation_pipeline.defs``; nothing imports ``annotation_pipeline.cli``
  but the command itself.
- ``settings.py`` is the only reader of the environment.
- ``layout.py`` is the only place a path under the data root is spelled: no other module joins
  one of the layout's folder or file names onto a path, nor extends a path a ``DataLayout`` gave.
"""

from __future__ import annotations

import ast
import inspect
from functools import cache
from pathlib import Path

import pytest

from annotation_pipeline.layout import DataLayout

PACKAGE = Path(__file__).resolve().parent.parent / "annotation_pipeline"
SHELL = ("defs", "cli")  # the thin shells around the domain
SHELL_MODULES = ("definitions.py",)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, relative imports resolved."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ((base,) if base else ()))
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def _is_shell(path: Path) -> bool:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] in SHELL or rel.as_posix() in SHELL_MODULES


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_domain_never_imports_dagster_or_the_wiring():
    offenders = [f"{_rel(p)}:{line} imports {name}" for p in _modules() if not _is_shell(p)
                 for line, name in _imports(p)
                 if _under(name, "dagster") or _under(name, "annotation_pipeline.defs")
                 or name.startswith("dagster_")]
    assert not offenders, "domain modules must stay free of Dagster:\n" + "\n".join(offenders)


def test_nothing_but_the_command_imports_the_command():
    offenders = [f"{_rel(p)}:{line} imports {name}" for p in _modules()
                 if p.relative_to(PACKAGE).parts[0] != "cli"
                 for line, name in _imports(p) if _under(name, "annotation_pipeline.cli")]
    assert not offenders, "cli/ is the outermost shell; nothing may import it:\n" + "\n".join(offenders)


def _environment_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(_tree(path)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and node.attr in {"environ", "getenv", "environb", "putenv", "unsetenv"}):
            found.append(f"{_rel(path)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{_rel(path)}:{node.lineno} from os import {a.name}" for a in node.names
                      if a.name in {"environ", "getenv", "environb", "putenv", "unsetenv"}]
    return found


def test_only_settings_reads_the_environment():
    offenders = [hit for p in _modules() if _rel(p) != "annotation_pipeline/settings.py"
                 for hit in _environment_reads(p)]
    assert not offenders, "read the environment through settings.Settings:\n" + "\n".join(offenders)


# ---------------------------------------------------------------- paths under the data root

def _layout_members() -> set[str]:
    """Names of DataLayout's paths (properties and methods), which other code may call but not extend."""
    return {name for name, member in inspect.getmembers(DataLayout)
            if not name.startswith("_") and (isinstance(member, property) or inspect.isfunction(member))
            and name not in {"relative"}}


def _layout_names() -> set[str]:
    """Every folder or file name layout.py joins onto the data root (the strings DataLayout spells)."""
    tree = _tree(PACKAGE / "layout.py")
    data_layout = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DataLayout")
    names = set()
    for node in ast.walk(data_layout):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            names |= {c.value for c in (node.left, node.right)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return names


def _extends_layout(node: ast.AST, members: set[str]) -> bool:
    """``layout.tables / ...`` or ``DataLayout(root).campaign(c) / ...``: a layout path made longer."""
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr in members and not (
        isinstance(target.value, ast.Name) and target.value.id == "self")  # a class's own attribute


def _path_spellings(path: Path, names: set[str], members: set[str]) -> list[str]:
    found = []
    for node in ast.walk(_tree(path)):
        parts: list[ast.AST] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [node.right]
            if _extends_layout(node.left, members):
                found.append(f"{_rel(path)}:{node.lineno} extends a DataLayout path: {ast.unparse(node)}")
                continue
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath":
            parts = list(node.args)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
              and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "path"):
            parts = list(node.args[1:])
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str) and part.value.split("/")[0] in names:
                found.append(f"{_rel(path)}:{node.lineno} spells {part.value!r}: {ast.unparse(node)}")
    return found


def _path_offenders() -> list[str]:
    names, members = _layout_names(), _layout_members()
    return [hit for p in _modules() if _rel(p) != "annotation_pipeline/layout.py"
            for hit in _path_spellings(p, names, members)]


def test_the_check_for_spelled_paths_sees_what_it_must():
    """The detector itself: a root name joined on, a layout path extended; a plain path passes."""
    names, members = _layout_names(), _layout_members()
    assert {"landing", "quarantine", "releases", "tables", "vendors", "restricted"} <= names
    sample = PACKAGE.parent / "annotation_pipeline_tests" / "_architecture_sample.py"
    _tree.cache_clear()
    try:
        sample.write_text("def f(root, layout, name):\n"
                          "    a = root / 'tables' / name\n"
                          "    b = layout.reference / f'{name}.parquet'\n"
                          "    c = root.joinpath('vendors', name)\n"
                          "    d = root / name / 'ontology'\n")
        hits = _path_spellings(sample, names, members)
    finally:
        sample.unlink()
        _tree.cache_clear()
    assert sorted(h.split(" ", 1)[0].rsplit(":", 1)[1] for h in hits) == ["2", "3", "4"], hits


# Offenders in modules other helpers own while issue 10 is split; each must move a path into
# layout.py (a DataLayout method) when its owner's branch is merged. Nothing here is in a module
# the command-line/contract work owns.
KNOWN_PATH_OFFENDERS = {
}


def test_paths_under_the_data_root_are_spelled_only_in_layout():
    offenders = _path_offenders()
    remaining = [o for o in offenders if o.split(":", 1)[0] not in KNOWN_PATH_OFFENDERS]
    assert not remaining, "add a DataLayout method instead of spelling a path:\n" + "\n".join(remaining)
    if offenders:
        pytest.xfail("paths still spelled in modules owned by other helpers:\n" + "\n".join(offenders))
