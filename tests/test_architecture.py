"""Import direction rules of ARCHITECTURE.md."""

from __future__ import annotations

import json
import subprocess
import sys


def test_core_imports_neither_typer_rich_nor_yaml() -> None:
    code = (
        "import json, sys\n"
        "import dismax_cli.core\n"
        "import dismax_cli.core.heads, dismax_cli.core.losses, dismax_cli.core.mixing\n"
        "import dismax_cli.core.methods\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(dismax_cli.core.__path__):\n"
        "    importlib.import_module('dismax_cli.core.' + m.name)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in "
        "('typer', 'rich', 'yaml', 'click'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """A fresh install must provide every module the package imports (typer 0.29 vendors click)."""
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in declared}
    module_of = {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL"}
    provided = {module_of.get(n, n) for n in names}
    imported: set[str] = set()
    for path in (root / "dismax_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"dismax_cli", "__future__"}
    assert third_party <= provided, sorted(third_party - provided)
