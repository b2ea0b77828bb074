"""The README's "Use it on your own model" block runs as written and learns (issue 11)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use it on your own model"


def readme_example() -> str:
    """The first ```python block of the README's "Use it on your own model" section."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, "the README lost its 'Use it on your own model' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has no python code block"
    return match.group(1)


def test_the_readme_library_example_trains_a_torchvision_resnet_that_learns() -> None:
    pytest.importorskip("torchvision", reason="the README example uses torchvision's ResNet-18")
    pytest.importorskip("sklearn", reason="the README example uses scikit-learn's digits")
    code = readme_example()
    for name in ("replace_head", "fpr_mix", "DataLoader", "train_one_epoch", "fit_temperature"):
        assert name in code, name
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    accuracy = namespace["test_accuracy"]
    temperature = namespace["temperature"]
    # 297 test digits, 10 classes: chance is 10 %; a model that learned is far above it.
    assert isinstance(accuracy, float) and accuracy >= 0.60, accuracy
    assert isinstance(temperature, float) and math.isfinite(temperature) and temperature > 0
    assert temperature != 1.0  # fitted, not the default
    logits = namespace["test_logits"]
    assert tuple(logits.shape) == (297, 10)  # type: ignore[attr-defined]
