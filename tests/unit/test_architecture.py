"""The architecture's rules (docs/architecture.md), checked by the tools that enforce them.

Each check runs the tool from the test extra, as a developer would by hand. A missing
tool fails with the fix; it is never skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_vllm_serve"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is not installed; fix: pip install -e '.[test]'"
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["lint-imports", "--no-cache"],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["import-contracts", "ruff-lint", "ruff-format", "mypy"],
)
def test_the_tree_keeps_the_rules(argv):
    done = subprocess.run([tool(argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"$ {' '.join(argv)}\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


def _layout_block() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"## The layout\n\n(.*?)\n## ", text, re.S)
    assert match, "docs/architecture.md has no '## The layout' section"
    return match.group(1)


def test_the_documented_layout_names_every_module():
    block = _layout_block()
    words = set(re.findall(r"[A-Za-z_][\w]*", block))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if path.name == "__init__.py" or rel.parts[0] == "suites":
            continue
        if len(rel.parts) == 1:
            if f"{path.name}" not in block:
                missing.append(str(rel))
        elif path.stem not in words:
            missing.append(str(rel))
    for folder in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        if f"{folder.name}/" not in block:
            missing.append(f"{folder.name}/")
    assert not missing, f"docs/architecture.md's layout does not name: {', '.join(missing)}"


def test_the_readme_layout_names_the_top_level():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Layout\n\n(.*?)(\n## |\Z)", readme, re.S)
    assert match, "README.md has no '## Layout' section"
    block = match.group(1)
    names = [
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    ]
    missing = [name for name in sorted(names) if name not in block]
    assert not missing, f"README.md's layout does not name: {', '.join(missing)}"
