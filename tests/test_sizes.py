"""Issue 12 item 8, "sizes a reader can hold": no function over 80 lines, no module over 500.

A function's length runs from its first decorator (or ``def``) to its last line, docstring
included; a module's is its number of lines. Both tests walk every module of ``dismax_cli``
and fail naming every offender at once, so one run gives the whole list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dismax_cli"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of every function and method in ``source``."""
    out: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    out.append((name, first, child.end_lineno - first + 1))  # type: ignore[operator]
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def long_functions(root: Path, limit: int) -> list[str]:
    """``path:line name (N lines)`` for each function of ``root``'s modules over ``limit``."""
    return [
        f"{path.relative_to(root.parent)}:{line} {name} ({length} lines)"
        for path in sorted(root.rglob("*.py"))
        for name, line, length in function_lengths(path.read_text(encoding="utf-8"))
        if length > limit
    ]


def long_modules(root: Path, limit: int) -> list[str]:
    """``path (N lines)`` for each module of ``root`` over ``limit`` lines."""
    paths = sorted(root.rglob("*.py"))
    sizes = ((p, len(p.read_text(encoding="utf-8").splitlines())) for p in paths)
    return [f"{p.relative_to(root.parent)} ({n} lines)" for p, n in sizes if n > limit]


def test_the_measure_counts_decorators_and_docstrings_and_names_methods(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(76))  # 76 body lines
    source = (
        "import functools\n"
        "@functools.cache\n"  # line 2: the function starts here
        "def long():\n"
        '    """A docstring\n\n    counts."""\n'  # 3 lines
        f"{body}\n"
        "class K:\n"
        "    def short(self):\n"
        "        return 1\n"
    )
    assert function_lengths(source) == [("long", 2, 1 + 1 + 3 + 76), ("K.short", 84, 2)]
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "m.py").write_text(source)
    (package / "big.py").write_text("x = 1\n" * 501)
    (package / "ok.py").write_text("x = 1\n" * 500)
    assert long_functions(package, 80) == ["pkg/sub/m.py:2 long (81 lines)"]
    assert long_functions(package, 81) == []
    assert long_modules(package, 500) == ["pkg/big.py (501 lines)"]


@pytest.mark.parametrize(
    ("what", "find", "limit"),
    [("function", long_functions, MAX_FUNCTION_LINES), ("module", long_modules, MAX_MODULE_LINES)],
)
def test_no_function_over_80_lines_and_no_module_over_500(what, find, limit) -> None:
    offenders = find(PACKAGE, limit)
    assert offenders == [], (
        f"{len(offenders)} {what}(s) over {limit} lines; split them by concern "
        "(CONTRIBUTING.md):\n  " + "\n  ".join(offenders)
    )
