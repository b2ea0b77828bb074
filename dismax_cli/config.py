"""YAML config files for ``dismax train`` and ``dismax benchmark`` (keys mirror the CLI options).

Unknown keys are errors; options given on the command line override the file. Files are read
with the YAML 1.2 core schema (``5e-4`` is a number, ``on``/``no`` are strings, only
``true``/``false`` are booleans), and relative paths inside a file are relative to the file's
folder. This module imports neither torch nor the rest of the library, so the CLI can check
option values before it loads them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dismax_cli.config_types import InvalidValueError, check_types
from dismax_cli.errors import DismaxError, kind_of, quote_path, read_failure
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import file_problem

#: Devices every command accepts (plus ``cuda:N`` for the N-th CUDA GPU).
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
_CUDA_INDEX = re.compile(r"^cuda:(.*)$")

#: Config keys that hold a dataset spec (``npz:PATH`` and ``imagefolder:PATH`` are paths).
SPEC_KEYS = ("dataset", "test_dataset", "ood")
#: Config keys that are folders.
PATH_KEYS = ("data_dir", "runs_dir")
_FILE_SPEC = re.compile(
    r"^(?P<label>[A-Za-z_][\w.\-]*=)?(?P<prefix>npz:|imagefolder:)(?P<rest>.+)$", re.IGNORECASE
)
_SELECTION = re.compile(r"^(?P<path>.*?)(?P<sel>\[[^\[\]]*\])?$")


#: Largest accepted value of count options (a sane bound: beyond it a run is a typo).
UPPER_BOUNDS: dict[str, int] = {
    "epochs": 100_000,
    "batch_size": 1_000_000,
    "seeds": 1_000,
    "ensemble_size": 100,
}


def check_upper_bound(key: str, value: object) -> None:
    """Refuse an integer ``value`` of ``key`` above :data:`UPPER_BOUNDS` (other types pass).

    Raises:
        InvalidValueError: naming the bound.
    """
    bound = UPPER_BOUNDS.get(key)
    if bound is not None and isinstance(value, int) and not isinstance(value, bool):
        if value > bound:
            raise InvalidValueError(key, f"{key}={value} is too large: use at most {bound:,}")


def check_device_name(name: object, *, key: str = "device") -> str:
    """Return ``name`` if it names a device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Only the spelling is checked here (no torch import); whether this machine has the device is
    checked when it is used.

    Raises:
        InvalidValueError: for any other value (``gpu``, ``cuda:x``, ``cuda:-1``).
    """
    if isinstance(name, str):
        if name in DEVICE_NAMES:
            return name
        match = _CUDA_INDEX.match(name)
        if match and match.group(1).isdigit() and match.group(1).isascii():
            return f"cuda:{int(match.group(1))}"
    raise InvalidValueError(
        key,
        f"device {q(name)} is invalid: choose one of {', '.join(DEVICE_NAMES)} or cuda:N "
        "(N = 0, 1, ...)",
    )


def load_yaml(text: str) -> Any:
    """Parse YAML text with the YAML 1.2 core schema (:func:`dismax_cli.yaml12.load_yaml`).

    ``yaml`` is imported here, on first use, not when this module is.

    Raises:
        yaml.YAMLError: for invalid syntax (:class:`~dismax_cli.yaml12.DuplicateKeyError` for a
            key given twice).
    """
    from dismax_cli.yaml12 import load_yaml as load

    return load(text)


# ----------------------------------------------------------------------------- paths


def _resolve_path_text(text: str, base: Path) -> str:
    path = Path(text).expanduser()
    if path.is_absolute():
        return text
    return os.path.normpath(base / path)


def resolve_spec_paths(spec: str, base: Path) -> str:
    """Make the path of an ``npz:``/``imagefolder:`` spec absolute, relative to ``base``.

    Keeps a ``NAME=`` label and a ``[SEL]`` class subset; named sets are returned unchanged.
    """
    match = _FILE_SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        return spec
    parts = _SELECTION.match(match.group("rest"))
    assert parts is not None  # the pattern matches every string
    path = parts.group("path").strip()
    if not path:
        return spec
    return (
        f"{match.group('label') or ''}{match.group('prefix')}"
        f"{_resolve_path_text(path, base)}{parts.group('sel') or ''}"
    )


def resolve_config_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Return ``values`` with relative paths made relative to ``base`` (the config's folder).

    Paths are the ``npz:``/``imagefolder:`` specs in ``dataset``, ``test_dataset`` and ``ood``
    (``NAME=SPEC`` entries too) and the folders ``data_dir`` and ``runs_dir``. Values of the
    wrong type are left alone for the type check to report.
    """
    out = dict(values)
    for key in SPEC_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = resolve_spec_paths(value, base)
        elif isinstance(value, list):
            out[key] = [resolve_spec_paths(v, base) if isinstance(v, str) else v for v in value]
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = _resolve_path_text(value.strip(), base)
    return out


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of option names (dashes or underscores) to values.

    The file is read with the YAML 1.2 core schema (:func:`load_yaml`); relative paths in it are
    made relative to the file's folder (:func:`resolve_config_paths`), so a config works from
    any current folder.

    Raises:
        InvalidValueError: for a key given twice (naming it and the line).
        InvalidValueError: (exit 2) for a document that is not a mapping (a number, text).
        InvalidValueError: (exit 2) for valid YAML a config cannot hold (a list as a key, two
            documents, a ``!!python`` tag: :class:`~dismax_cli.yaml12.UnsupportedYamlError`).
        DismaxError: for a missing file or invalid YAML.
    """
    if str(path).strip() == "":
        raise InvalidValueError("config", "--config is empty: name a YAML file, e.g. train.yaml")
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DismaxError(f"config file {quote_path(path)} {problem}: check the --config path")
    import yaml

    from dismax_cli.yaml12 import DuplicateKeyError, UnsupportedYamlError

    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise InvalidValueError(
            str(exc.key),
            f"config file {quote_path(path)} gives key {q(exc.key)} twice (again at line "
            f"{exc.line}): keep one",
        ) from None
    except UnsupportedYamlError as exc:
        where = f" (line {exc.line})" if exc.line is not None else ""
        raise InvalidValueError(
            "config", f"config file {quote_path(path)} {exc.reason}{where}: {exc.fix}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DismaxError(
            f"config file {quote_path(path)} is not valid YAML{where}: fix its syntax"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(
            f"config file {quote_path(path)} {read_failure(exc)}: pass a YAML file of "
            "'option: value' lines"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidValueError(
            "config",
            f"config file {quote_path(path)} must hold a mapping of option: value (one "
            f"'key: value' per line), not {kind_of(data)} ({q(data)})",
        )
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for k, v in data.items():
        # A key YAML reads as null/true/a number is named as the file spells it, not 'None'.
        typed = k if isinstance(k, str) else q(k)
        key = typed.replace("-", "_") if isinstance(k, str) else typed
        if key in values:  # ``batch-size`` and ``batch_size``: one key, given twice
            raise InvalidValueError(
                key,
                f"config file {quote_path(path)} gives key {q(key)} twice (as {q(spelled[key])} "
                f"and {q(typed)}): keep one",
            )
        values[key], spelled[key] = v, typed
    return resolve_config_paths(values, path.resolve().parent)


def merge_options(file_values: dict[str, Any], cli_values: dict[str, Any]) -> dict[str, Any]:
    """File values overridden by every CLI option that was given (not None)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in cli_values.items() if v is not None})
    return merged


def option_name(key: str) -> str:
    """The command-line spelling of a config key: ``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def run_checks(
    checks: dict[str, Any],
    cli_values: dict[str, Any],
    file_values: dict[str, Any],
    *,
    config: str | Path | None = None,
) -> None:
    """Run each of ``checks`` (key -> callable) on the file's value and the command line's.

    A bad file value is reported even when the command line overrides it. The commands call
    this with the dataset-spec checks before torch loads, so a malformed spec is a fast usage
    error; :func:`build_config` calls it again with every check.

    Raises:
        InvalidValueError: naming the option (``--dataset``) or the key in the config file.
    """
    where = quote_path(str(config))
    for key, check in checks.items():
        for values, source in (
            (file_values, f"invalid value for key {q(key)} in config file {where}"),
            (cli_values, f"invalid value for {option_name(key)}"),
        ):
            if values.get(key) is None:
                continue
            try:
                check(values[key])
            except InvalidValueError as exc:
                raise InvalidValueError(key, f"{source}: {exc}") from None


def build_config(
    cls: Any,
    cli_values: dict[str, Any],
    file_values: dict[str, Any],
    *,
    config: str | Path | None = None,
    base_values: dict[str, Any] | None = None,
    checks: dict[str, Any] | None = None,
) -> Any:
    """Merge ``base_values`` < ``file_values`` < given CLI options, build ``cls`` and validate it.

    ``cls`` is a config dataclass with ``from_dict`` and ``validate`` (``TrainConfig``,
    ``BenchmarkConfig``). ``checks`` maps keys to callables that raise
    :class:`InvalidValueError` for a bad value; each is run on the file's value and on the
    command line's, so a bad file value is reported even when the command line overrides it.
    Checks that relate keys judge the merged settings (:func:`_check_file_values`).

    Raises:
        InvalidValueError: naming where the bad value came from: the option (``--epochs``) or
            the key in the config file.
        DismaxError: for values that are valid but cannot be used here (no CUDA, ...).
    """
    all_checks: dict[str, Any] = {
        key: (lambda v, k=key: check_upper_bound(k, v)) for key in UPPER_BOUNDS
    }
    all_checks.update(checks or {})
    run_checks(all_checks, cli_values, file_values, config=config)
    if file_values and config is not None:
        _check_file_values(cls, file_values, cli_values, config, base_values or {})
    merged = merge_options({**(base_values or {}), **file_values}, cli_values)
    try:
        return cls.from_dict(merged).validate()
    except InvalidValueError as exc:
        key = exc.key
        if cli_values.get(key) is not None:
            source = f"invalid value for {option_name(key)}"
        elif key in file_values and config is not None:
            source = f"invalid value for key {q(key)} in config file {quote_path(config)}"
        elif base_values and key in base_values:
            source = f"invalid value for {q(key)} in the run's stored settings"
        else:
            source = "invalid value"
        raise InvalidValueError(key, f"{source}: {exc}") from None


__all__ = [
    "DEVICE_NAMES",
    "UPPER_BOUNDS",
    "build_config",
    "check_upper_bound",
    "option_name",
    "InvalidValueError",
    "check_device_name",
    "check_types",
    "load_yaml",
    "merge_options",
    "read_yaml_config",
    "resolve_config_paths",
    "run_checks",
]


def _check_file_values(
    cls: Any,
    file_values: dict[str, Any],
    cli_values: dict[str, Any],
    config: str | Path,
    base_values: dict[str, Any],
) -> None:
    """Report a config file's value that the command line overrides when it is bad on its
    own (README "Design notes": a config is checked whole, the command line wins).

    A key the command line does not override is judged with the merged settings it is used
    in (:func:`build_config`'s final check names the file). An overridden value is reported
    only when it fails on its own key in every context it could meet: beside the defaults
    (and ``base_values``, a resumed run's stored settings), beside the rest of its file, and
    in the merged settings. So ``epochs: 0`` under ``--epochs 3`` is refused, but
    ``methods: [softmax]`` under ``--methods dismax softmax`` does not make a file ``require``
    about dismax wrong, nor ``--no-fpr`` a file's ``methods: [dismax, dismax_nofpr]``.

    Raises:
        InvalidValueError: naming the key and the file.
    """
    merged = merge_options({**base_values, **file_values}, cli_values)
    for key, value in file_values.items():
        if cli_values.get(key) is None:
            continue
        contexts = (
            {**base_values, key: value},
            {**base_values, **file_values},
            {**merged, key: value},
        )
        errors = [_error_on(cls, values, key) for values in contexts]
        if all(errors):
            raise InvalidValueError(
                key,
                f"invalid value for key {q(key)} in config file {quote_path(str(config))}: "
                f"{errors[1]}",
            )


def _error_on(cls: Any, values: dict[str, Any], key: str) -> InvalidValueError | None:
    """The error that validating ``values`` (machine-free) raises on ``key``, if any."""
    try:
        cls.from_dict(values).validate(machine=False)
    except InvalidValueError as exc:
        return exc if exc.key == key else None
    except DismaxError:
        return None
    return None
