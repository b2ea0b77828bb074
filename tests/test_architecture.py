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
    """A fresh install must provide every module the package imports (typer 0.29 vendors click).

    A module of an optional extra (``timm`` of ``.[timm]``) may be imported only inside a
    function, so that the package imports without it (``--model timm:NAME`` then says how to
    install it).
    """
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    module_of = {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL"}

    def modules(requirements: list[str]) -> set[str]:
        names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in requirements}
        return {module_of.get(n, n) for n in names}

    provided = modules(project["dependencies"])
    optional = modules(project["optional-dependencies"]["timm"])

    def imported_by(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name.split(".")[0] for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return {node.module.split(".")[0]}
        return set()

    imported: set[str] = set()
    top_level: set[str] = set()
    for path in (root / "dismax_cli").rglob("*.py"):
        tree = ast.parse(path.read_text())
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        in_functions = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = imported_by(node)
            imported |= names
            if id(node) not in in_functions:
                top_level |= names
    third_party = imported - set(sys.stdlib_module_names) - {"dismax_cli", "__future__"}
    assert third_party <= provided | optional, sorted(third_party - provided - optional)
    assert not (top_level & (optional - provided)), sorted(top_level & optional)
