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
