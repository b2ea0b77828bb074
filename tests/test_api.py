"""The public library API of issue 11: ``from dismax_cli import ...`` and its lazy imports."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dismax_cli

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "dismax_cli" / "engine"


def test_the_api_lists_every_head_loss_score_metric_and_engine_function() -> None:
    from dismax_cli.core import metrics
    from dismax_cli.core.scores import SCORES

    required = {
        "SoftMaxHead", "IsoMaxPlusHead", "DisMaxHead",
        "SoftMaxLoss", "IsoMaxPlusLoss", "DisMaxLoss",
        "fractional_probability_mix", "fit_temperature", "replace_head", "DismaxError",
        "train_one_epoch", "predict_logits", "predict_features_logits", "fit",
    }  # fmt: skip
    required |= set(SCORES)  # every registered score
    required |= {n for n in metrics.__all__ if n.islower()}  # every metric function
    assert required <= set(dismax_cli.__all__), sorted(required - set(dismax_cli.__all__))
    assert len(dismax_cli.__all__) == len(set(dismax_cli.__all__))


@pytest.mark.parametrize("name", [n for n in dismax_cli.__all__ if n != "__version__"])
def test_every_public_name_is_the_object_its_module_defines(name: str) -> None:
    value = getattr(dismax_cli, name)
    module = importlib.import_module(getattr(value, "__module__", "dismax_cli"))
    assert getattr(module, name) is value
    namespace: dict[str, object] = {}
    exec(f"from dismax_cli import {name}", namespace)  # noqa: S102
    assert namespace[name] is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'DismaxHead'"):
        dismax_cli.DismaxHead  # noqa: B018


def test_importing_the_package_or_the_cli_does_not_import_torch() -> None:
    code = (
        "import json, sys\n"
        "import dismax_cli, dismax_cli.cli.app\n"
        "before = 'torch' in sys.modules\n"
        "from dismax_cli import DisMaxHead\n"
        "print(json.dumps([before, 'torch' in sys.modules, DisMaxHead.__name__]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "DisMaxHead"]


def test_the_package_is_typed() -> None:
    assert (ROOT / "dismax_cli" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()


def test_a_torchvision_model_trains_and_predicts_through_the_engine() -> None:
    """replace_head + train_one_epoch on a plain list of batches + features and logits."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = dismax_cli.replace_head(torchvision.models.resnet18(num_classes=4), "dismax")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1])) for _ in range(3)]
    before = model.fc.prototypes.detach().clone()
    stats = dismax_cli.train_one_epoch(
        model, dismax_cli.DisMaxLoss(), batches, optimizer, mix=dismax_cli.fpr_mix(4)
    )
    assert stats.batches == 3 and stats.images == 18 and stats.loss > 0
    assert not torch.equal(before, model.fc.prototypes)
    model.train()
    features, logits = dismax_cli.predict_features_logits(model, [b[0] for b in batches])
    assert features.shape == (18, 512) and logits.shape == (18, 4)
    assert model.training  # the mode is restored
    assert torch.allclose(logits, model.eval().fc(features), atol=1e-5)
    assert torch.allclose(logits, dismax_cli.predict_logits(model, batches), atol=1e-6)


# --------------------------------------------------------------------------- the engine's shape


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (f"{path.name}:{node.name}", node.end_lineno - node.lineno + 1)  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_engine_function_is_over_60_lines_and_fit_s_module_is_under_300() -> None:
    long = [(n, k) for p in ENGINE.glob("*.py") for n, k in _functions(p) if k > 60]
    assert long == []
    assert len((ENGINE / "run.py").read_text().splitlines()) < 300
    assert not (ROOT / "dismax_cli" / "training.py").exists()


def test_engine_modules_import_no_circle() -> None:
    """Import each engine module first in a fresh interpreter: a circle would fail one."""
    names = sorted(p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__")
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module('dismax_cli.engine.{n}')\n"
        "for k in [k for k in sys.modules if k.startswith('dismax_cli.engine')]:\n"
        "    del sys.modules[k]\n"
        for n in names
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
