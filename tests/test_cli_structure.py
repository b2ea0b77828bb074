"""The shape of ``dismax_cli/cli/`` (issue 12 items 4 and 8): one module per command, no
Typer/Click subclass but the root group, sizes a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer.main

from dismax_cli.cli.app import app

CLI = Path(__file__).resolve().parents[1] / "dismax_cli" / "cli"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def _modules() -> list[Path]:
    return sorted(CLI.glob("*.py"))


def test_each_command_lives_in_its_own_module() -> None:
    group = typer.main.get_command(app)
    assert set(group.commands) == {
        "train", "calibrate", "score", "benchmark", "show", "datasets", "detect",
    }  # fmt: skip
    for name, command in group.commands.items():
        assert command.callback.__module__ == f"dismax_cli.cli.{name}", name
        assert not hasattr(command, "commands"), f"{name} is a group"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_sizes_and_no_command_subclass(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES, path.name
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - first + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}:{node.name} has {length} lines"
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            command_bases = {b for b in bases if b.endswith(("Command", "Group"))}
            # Only the root group subclasses Typer's group (its public main/resolve_command).
            assert not command_bases or node.name == "DismaxGroup", (path.name, node.name)
    text = source
    for removed in ("handle_errors", "_STATE", "MultiValue", "_is_checkpoint_path"):
        assert removed not in text, (path.name, removed)
