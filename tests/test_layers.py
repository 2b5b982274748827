"""The import graph follows DESIGN.md: imports point down only; workflows never import each other.

Walks every module under src/cai with ``ast`` (imports inside functions count too) and fails on
an upward or sideways import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cai"

LEVEL = {
    "records": 0,
    "errors": 0,
    "data": 0,
    "constitution": 1,
    "backends": 1,
    "store": 1,
    "scoring": 1,
    "critique": 2,
    "feedback": 2,
    "redteam": 2,
    "evaluate": 2,
    "oversight": 2,
    "train": 2,
    "pipeline": 3,
    "cli": 3,
    "web": 3,
}
WORKFLOWS = {k for k, v in LEVEL.items() if v == 2}
SHELL_ORDER = {"pipeline": 0, "web": 1, "cli": 2}  # cli may use pipeline and web, not back


def _component(path: Path) -> str | None:
    rel = path.relative_to(SRC).parts
    if rel == ("__init__.py",):
        return None  # the curated API facade re-exports from every layer
    if rel == ("__main__.py",):
        return "cli"  # `python -m cai` is the command line
    return rel[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(("cai", *path.relative_to(SRC).parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
    return [(n, m) for n, m in found if m == "cai" or m.startswith("cai.")]


def violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        src = _component(path)
        if src is None:
            continue
        assert src in LEVEL, f"{path}: top-level module {src!r} has no layer in LEVEL"
        for lineno, mod in _imports(path):
            parts = mod.split(".")
            if len(parts) < 2:
                bad.append(f"{path}:{lineno}: imports the 'cai' facade; import the module")
                continue
            dst = parts[1]
            if dst == src:
                continue
            where = f"{path.relative_to(SRC.parent)}:{lineno}: {src} -> {dst}"
            if LEVEL[dst] > LEVEL[src]:
                bad.append(f"{where} (upward)")
            elif src in WORKFLOWS and dst in WORKFLOWS:
                bad.append(f"{where} (workflows never import each other)")
            elif LEVEL[src] == LEVEL[dst] == 3 and SHELL_ORDER[dst] >= SHELL_ORDER[src]:
                bad.append(f"{where} (shell order pipeline < web < cli)")
            elif LEVEL[src] == LEVEL[dst] == 0 and dst != "errors":
                bad.append(f"{where} (records layer imports only errors)")
    return bad


def test_imports_point_down() -> None:
    assert violations() == []


def test_checker_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "cai"
    for name, body in {
        "records.py": "from cai.critique import x\n",
        "critique/__init__.py": "from cai.feedback import y\n",
        "feedback/__init__.py": "def f():\n    from cai.cli import z\n",
        "cli/__init__.py": "from cai.critique import x\n",
    }.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(body)
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    found = violations()
    assert len(found) == 3
    assert any("records -> critique (upward)" in v for v in found)
    assert any("workflows never import each other" in v for v in found)
    assert any("feedback -> cli (upward)" in v for v in found)


def test_import_cai_does_not_import_torch() -> None:
    code = (
        "import sys, cai, cai.backends, cai.store, cai.constitution, cai.critique, cai.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
