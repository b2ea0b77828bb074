"""Configs composed and validated by type (issue 12 item 3): ``config.check_types`` reads the
dataclasses' type hints, ``BenchmarkConfig`` holds a ``TrainConfig``, the engine loads no YAML."""

from __future__ import annotations

import subprocess
import sys


def test_the_training_engine_does_not_import_yaml() -> None:
    code = (
        "import sys\n"
        "import dismax_cli.engine\n"
        "from dismax_cli.engine import TrainConfig, fit, load_run, load_bundle, calibrate_bundle\n"
        "import dismax_cli.engine.run, dismax_cli.engine.deploy\n"
        "TrainConfig.from_dict({'epochs': 2, 'lr': 1}).validate()\n"
        "print('yaml' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr


def test_config_files_still_read_yaml_1_2() -> None:
    from dismax_cli.config import load_yaml

    assert load_yaml("lr: 5e-4\nfpr: on\nseeds: 0x10") == {"lr": 5e-4, "fpr": "on", "seeds": 16}
