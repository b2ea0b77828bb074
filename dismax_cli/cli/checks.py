"""Checks a command makes before any work: output paths, dataset specs, a checkpoint file, a
config file's values and gates, options that ``--shard`` excludes.

Each answers before torch loads, with one line naming the value and the fix:
:class:`~dismax_cli.config.InvalidValueError` or ``typer.BadParameter`` for a bad value (exit
2), :class:`~dismax_cli.errors.DismaxError` for a path that cannot be used (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.errors import quote_value as q

#: Dataset spec kinds whose text after ``kind:`` is a local file or folder the command reads.
_FILE_KINDS = ("npz:", "imagefolder:")


def spec_files(specs: Sequence[Any] | Any) -> tuple[Path, ...]:
    """The local files named by dataset specs (``npz:PATH``, ``imagefolder:PATH``, with or
    without a ``LABEL=`` in front): what an output must never overwrite. (A config file's
    relative paths are already resolved by :func:`~dismax_cli.config.read_yaml_config`.)"""
    from dismax_cli.data.registry import split_entry

    entries = specs if isinstance(specs, list | tuple) else [specs]
    found: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            continue
        spec = split_entry(entry)[1]
        found.extend(Path(spec[len(k) :]) for k in _FILE_KINDS if spec.startswith(k))
    return tuple(found)


def _check_specs(key: str, *, labelled: bool) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        from dismax_cli.data.registry import check_spec

        for entry in value if isinstance(value, list | tuple) else [value]:
            check_spec(entry, key=key, labelled=labelled)

    return check


def spec_checks() -> dict[str, Callable[[Any], None]]:
    """``build_config`` checks of the dataset keys: a malformed spec or label exits 2."""
    return {
        "dataset": _check_specs("dataset", labelled=False),
        "test_dataset": _check_specs("test_dataset", labelled=False),
        "ood": _check_specs("ood", labelled=True),
    }


def check_option_specs(option: str, values: Sequence[str], *, labelled: bool) -> None:
    """Check specs given to ``option`` (``--ood``) before any work; exit 2 naming it."""
    key = option.lstrip("-").replace("-", "_")
    try:
        _check_specs(key, labelled=labelled)(list(values))
    except InvalidValueError as exc:
        raise InvalidValueError(key, f"invalid value for {option}: {exc}") from None


def check_checkpoint_file(checkpoint: Path) -> None:
    """Refuse early (before torch loads) a CHECKPOINT that names no checkpoint file.

    A run folder or ``.pt`` file that does not exist, a run folder without ``checkpoint.pt``, a
    folder given as the ``.pt`` itself, a FIFO or device: each answers at once with the
    loader's wording (``checkpoint 'X' does not exist: ...``) or what the path really is.

    Raises:
        DismaxError: (exit 1) naming the path and the fix.
    """
    from dismax_cli.fileio import CHECKPOINT_NAME, checkpoint_path, file_problem

    given = Path(checkpoint)
    path = checkpoint_path(checkpoint)
    problem = file_problem(path)
    if problem is None:
        return
    if given.is_dir() and problem == "does not exist":
        if given.suffix == ".pt":  # fr/checkpoint.pt is a folder: do not name .../checkpoint.pt
            raise DismaxError(
                f"checkpoint {quote_path(given)} is a folder, not a checkpoint file: pass a run "
                f"folder that holds {CHECKPOINT_NAME}, or the {CHECKPOINT_NAME} file itself"
            )
        raise DismaxError(
            f"run folder {quote_path(given)} holds no {CHECKPOINT_NAME}: pass a run folder "
            f"that `dismax train --out` wrote, or its {CHECKPOINT_NAME}"
        )
    if problem == "does not exist":
        raise DismaxError(
            f"checkpoint {quote_path(path)} does not exist: pass a run folder or its "
            f"{CHECKPOINT_NAME}"
        )
    raise DismaxError(f"checkpoint {quote_path(path)} {problem} (a run's checkpoint.pt)")


def check_shard_alone(
    shard: Any, *, out: Any, require: Any, plots: Any = None, html: Any = None
) -> None:
    """Refuse ``--out``, ``--require``, ``--plots``, ``--html`` beside ``--shard`` (no report).

    Raises:
        typer.BadParameter: (exit 2) naming the option and the fix.
    """
    given = (("--out", out), ("--require", require), ("--plots", plots), ("--html", html))
    for flag, value in given:
        if shard is not None and value:
            raise typer.BadParameter(
                f"a --shard job writes no report, so {flag} has nothing to act on: give "
                f"{flag} to the final dismax benchmark run without --shard",
                param_hint=f"'{flag}'",
            )


def precheck_file_values(file_values: dict[str, Any], config: Any, parsers: dict[str, Any]) -> None:
    """Check a config file's values with the options' own parsers, before torch loads.

    A value that the option would refuse on the command line is refused from the file too, at
    once (exit 2, naming the key and the file); the full check by type hints follows later.
    ``parsers`` maps keys to parsers or to typer options that carry one (``parser=...``).

    Raises:
        InvalidValueError: naming the key and the file.
    """
    for key, value in file_values.items():
        parser = parsers.get(key)
        parser = getattr(parser, "parser", parser)
        if parser is None or value is None:
            continue
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            try:
                parser(item)
            except typer.BadParameter as exc:
                raise InvalidValueError(
                    key,
                    f"invalid value for key {q(key)} in config file {quote_path(str(config))}: "
                    f"{exc.message}",
                ) from None


def precheck_gates(
    require: list[str] | None, ood: list[str] | None, *, source: str = "the command line"
) -> None:
    """Check ``--require`` syntax and ``--ood`` labels without torch (exit 2 at once).

    Method and set names are checked later against the run's final names (aliases resolved).

    Raises:
        InvalidValueError: naming the option.
    """
    from dismax_cli.gates import check_ood_labels, parse_requirements

    for key, check in (
        ("require", lambda: parse_requirements(require, methods=None, ood=None)),
        ("ood", lambda: check_ood_labels(ood)),
    ):
        if (require if key == "require" else ood) is None:
            continue
        try:
            check()
        except InvalidValueError as exc:
            where = f"--{key}" if source == "the command line" else f"key {q(key)} in {source}"
            raise InvalidValueError(key, f"invalid value for {where}: {exc}") from None
