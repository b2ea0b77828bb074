"""Input faults of specs, gates and the Run API (session 6, developer spec6, items 1-7).

The project's rule (README "Design notes"): bad input gets one line naming the value and the
fix; a bad option value or spec exits 2 before torch loads; a number a person types is read in
ASCII digits only (``int()`` and ``float()`` also take ``'٣'``, ``'３'`` and ``'1_0'``); an
empty item of a list is a typo, never skipped in silence.
"""

from __future__ import annotations

import json
import os
import shutil
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import (
    ImportProbe,
    invoke_in,
    offline_env,
    refused_before_torch,
    run_dismax,
)

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import DismaxError


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------------- items 1 and 6


@pytest.mark.parametrize(
    ("option", "spec", "says"),
    [
        # an item twice: a typo, not digits[0]
        ("--dataset", "digits[0,0]", "names '0' twice: write 'digits[0]'"),
        ("--test-dataset", "digits[0, 1,0]", "names '0' twice: write 'digits[0,1]'"),
        # an empty item: a typo, not digits[0,1]
        ("--dataset", "digits[0,,1]", "has an empty item (a comma with nothing on one side): "
         "write 'digits[0,1]'"),
        ("--dataset", "digits[1,]", "write 'digits[1]'"),
        ("--dataset", "digits[,2]", "write 'digits[2]'"),
        ("--test-dataset", "digits[0, ,1]", "write 'digits[0,1]'"),
        ("--dataset", "npz:x.npz[0,,1]", "write 'npz:x.npz[0,1]'"),
        # digits other than ASCII: int() reads them, the grammar does not
        ("--dataset", "digits[٣]", "class index or range '٣' in 'digits[٣]' is not written in "
         "ASCII digits: write '3'"),
        ("--dataset", "digits[0-٣]", "write '0-3'"),
        ("--dataset", "digits[３]", "write '3'"),  # full-width
        ("--dataset", "cifar100[٣]", "write '3'"),
        # the torchvision sets: checked against their class counts before any download
        ("--dataset", "cifar10[10-12]", "class range '10-12' in 'cifar10[10-12]' is outside "
         "0-9; the set has 10 classes"),
        ("--dataset", "svhn[0-10]", "outside 0-9; the set has 10 classes"),
        ("--dataset", "cifar100[100]", "class index '100' in 'cifar100[100]' is outside 0-99"),
        ("--dataset", "textures[47]", "outside 0-46; the set has 47 classes"),
        ("--dataset", "mnist[3-1]", "reversed"),
    ],
)  # fmt: skip
def test_bad_class_subsets_exit_2_before_torch(
    import_probe: ImportProbe, tmp_path: Path, option: str, spec: str, says: str
) -> None:
    args = ["train", option, spec, "--epochs", "1", "--out", "zz"]
    assert says in refused_before_torch(import_probe, tmp_path, args)
    assert not (tmp_path / "zz").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["score", "r", "--ood", "cifar10[10-12]"], "--ood"),
        (["benchmark", "--ood", "far=svhn[0-10]", "-q"], "outside 0-9"),
        (["benchmark", "--ood", "digits[6,,9]", "-q"], "write 'digits[6,9]'"),
    ],
)
def test_bad_ood_subsets_exit_2_before_torch(
    import_probe: ImportProbe, tmp_path: Path, args: list[str], says: str
) -> None:
    assert says in refused_before_torch(import_probe, tmp_path, args)


@pytest.mark.parametrize(
    "spec", ["digits[0, 2]", "cifar10[0-9]", "cifar10[cat,dog]", "svhn[9]", "cifar100[99]",
             "textures[0-46]", "npz:x.npz[٣]", "npz:x.npz[cat]"],
)  # fmt: skip
def test_good_subsets_still_parse(spec: str) -> None:
    from dismax_cli.data.registry import check_spec

    check_spec(spec)  # a name is the data's to judge (a file's class may be named '٣')


def test_a_class_named_in_other_digits_is_found_by_name() -> None:
    from dismax_cli.data.subsets import parse_selection

    assert parse_selection("٣", ("a", "٣"), "npz:f.npz[٣]") == [1]
    with pytest.raises(InvalidValueError, match="write '3'"):
        parse_selection("٣", ("a", "b", "c", "d"), "npz:f.npz[٣]")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("3,,5", "has an empty item (a comma with nothing on one side): write 3,5"),
        ("3,", "write 3"),
        ("٣", "is not a list of strictly increasing epochs"),
        ("1_0", "is not a list of strictly increasing epochs"),
        ("３,5", "is not a list of strictly increasing epochs"),
    ],
)
def test_bad_decay_epochs_exit_2_before_torch(
    import_probe: ImportProbe, tmp_path: Path, value: str, says: str
) -> None:
    args = ["train", "--epochs", "6", "--decay-epochs", value, "--out", "zz"]
    assert says in refused_before_torch(import_probe, tmp_path, args, one_line=False)


@pytest.mark.parametrize(
    ("value", "expected"), [("3, 5", (3, 5)), ("3 5", (3, 5)), ("30,60", (30, 60)), ("7", (7,))]
)
def test_good_decay_epochs_still_parse(value: str, expected: tuple[int, ...]) -> None:
    from dismax_cli.cli.parsers import parse_decay_epochs

    assert parse_decay_epochs(value) == expected


@pytest.mark.parametrize(
    ("args", "env", "yaml", "says"),
    [
        (["train", "--epochs", "٣"], {}, None, "'٣' is not an integer"),
        (["train", "--lr", "٠.١"], {}, None, "'٠.١' is not a positive number"),
        (["train", "--dataset", "uniform:٣"], {}, None, "must be a positive integer"),
        (["benchmark", "--require", "dismax:AUROC:uniform>=٠.5"], {}, None, "not a number"),
        (["benchmark", "--shard", "١/2"], {}, None, "is not I/N"),
        (["train", "--device", "cuda:٣"], {}, None, "device 'cuda:٣' is invalid"),
        (["train"], {"DISMAX_WORKERS": "٣"}, None, "DISMAX_WORKERS='٣' is invalid"),
        (["train"], {"DISMAX_NET_TIMEOUT": "1_0"}, None, "DISMAX_NET_TIMEOUT='1_0' is invalid"),
        (["train", "--config", "c.yaml"], {}, "epochs: ٣\n", "'٣' is not an integer"),
        (["train", "--config", "c.yaml"], {}, "dataset: 'digits[0,,1]'\n", "empty item"),
    ],
)  # fmt: skip
def test_every_typed_number_is_ascii_only(
    import_probe: ImportProbe, tmp_path: Path, args: list[str], env: dict[str, str],
    yaml: str | None, says: str,
) -> None:  # fmt: skip
    """The rest of the class (options, environment, config files) reads ASCII digits only."""
    if yaml is not None:
        (tmp_path / "c.yaml").write_text(yaml, encoding="utf-8")
    full = [*args, "--out", "zz"] if args[0] == "train" else [*args, "-q"]
    assert says in refused_before_torch(import_probe, tmp_path, full, env, one_line=False)
    assert not (tmp_path / "zz").exists()


# ----------------------------------------------------------------------------- item 2


def test_a_byte_that_is_not_utf8_is_named_as_such_in_a_real_process(tmp_path: Path) -> None:
    """The shell passes ``$'npz:\\xff.npz'`` as raw bytes; Python decodes the 0xff byte to the
    surrogate U+DCFF, which is no control character and must not be shown as ``\\udcff``."""
    spec = os.fsdecode(b"npz:\xff.npz")
    result = run_dismax("train", "--dataset", spec, "--out", "zz", cwd=tmp_path,
                        env={**os.environ, **offline_env(tmp_path)})  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert "dataset spec 'npz:\\xff.npz' holds a byte that is not UTF-8 (\\xff" in line
    assert "retype it in UTF-8" in line
    assert "control character" not in line and "udcff" not in line
    assert not (tmp_path / "zz").exists()


def test_quoted_values_show_raw_bytes_as_bytes() -> None:
    from dismax_cli.errors import quote_path, quote_value, undecodable_bytes

    assert quote_path(os.fsdecode(b"a\xfe\n")) == "'a\\xfe\\n'"
    assert quote_value(os.fsdecode(b"lab\xffel")) == "'lab\\xffel'"
    assert undecodable_bytes(os.fsdecode(b"x\xff\xfey\xff")) == "\\xff \\xfe"
    assert undecodable_bytes("plain ٣") is None


def test_a_control_character_is_still_called_one() -> None:
    from dismax_cli.data.registry import check_spec

    with pytest.raises(InvalidValueError, match="holds a control character"):
        check_spec("digits\x1b[0-2]")


# ----------------------------------------------------------------------------- item 3


@pytest.mark.parametrize(
    "text",
    [
        "dismax/mmles:AUROC:uniform>0.99999999999999999999",  # 1.0 as a float
        "dismax:ECE:id<0.00000000000000000001",
        "dismax:NLL:id<1e-400",  # 0.0 as a float
        "dismax:AUROC:uniform<1e-30",
    ],
)
def test_a_bound_inside_the_range_is_kept_whatever_its_float(text: str) -> None:
    from dismax_cli.gates import parse_requirements

    (req,) = parse_requirements([text], methods=None, ood=None)
    assert req.exact == Decimal(text.rsplit(">", 1)[-1].rsplit("<", 1)[-1])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("dismax:AUROC:uniform>1", "can never pass: AUROC is at most 1"),
        ("dismax:AUROC:uniform>1.0000", "can never pass"),
        ("dismax:AUROC:uniform>=1.00000000000000000001", "a fraction in [0, 1]"),  # 1.0 as float
        ("dismax:AUROC:uniform<=-0.00000000000000000001", "a fraction in [0, 1]"),  # -0.0
        ("dismax:ECE:id<0.0", "can never pass: ECE is at least 0"),
        ("dismax:NLL:id<0", "NLL is at least 0"),
        ("dismax:AUROC:uniform>=1e999", "too large to compare"),
    ],
)
def test_a_bound_outside_the_range_as_written_is_refused(text: str, says: str) -> None:
    from dismax_cli.gates import parse_requirements

    with pytest.raises(InvalidValueError) as info:
        parse_requirements([text], methods=None, ood=None)
    assert says in str(info.value)


def _report(method: str, metric: str, value: float, label: str = "DisMax (FPR)") -> Any:
    """A report stand-in holding one OOD metric of one method on set 'uniform'."""
    stat = SimpleNamespace(mean=value)
    result = SimpleNamespace(
        method=method, label=label, default_score="mmles",
        result=lambda dataset, score: SimpleNamespace(metrics={metric: stat}),
        ood=[SimpleNamespace(score="mmles")],
    )  # fmt: skip
    return SimpleNamespace(
        methods=[result], ood_sets=["uniform"], ood_groups={}, method=lambda name: result,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "value", "passed"),
    [
        ("dismax:AUROC:uniform>0.99999999999999999999", 1.0, True),  # float compare: 1.0 > 1.0
        ("dismax:AUROC:uniform>0.99999999999999999999", 0.9999999999999999, False),
        ("dismax:AUROC:uniform==0.9", 0.9, True),
        ("dismax:AUROC:uniform>=0.9", 0.8999999999999999, False),
        ("dismax:AUROC:uniform>=0.5", float("nan"), False),
    ],
)
def test_a_gate_compares_the_threshold_as_written(text: str, value: float, passed: bool) -> None:
    from dismax_cli.gates import parse_requirements

    (req,) = parse_requirements([text], methods=["dismax"], ood=["uniform"])
    ok, measured = req.check(_report("dismax", "AUROC", value))
    assert ok is passed
    assert measured == value or (measured != measured and value != value)


# ----------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("gate", ["dismax_nofpr:AUROC:uniform>=0.1", "DisMax_NoFPR:ACC:id>=0.1",
                                  "dismax:AUROC:uniform>=0.1", "dismax_nofpr/msp:AUROC:uniform>=0"])
def test_under_no_fpr_both_names_of_the_dismax_row_work(gate: str) -> None:
    from dismax_cli.benchmark_config import BenchmarkConfig

    config = BenchmarkConfig(methods=("softmax", "dismax"), fpr=False, ood=("uniform",),
                             require=(gate,), scores=("msp",)).validate()  # fmt: skip
    assert config.row_label("dismax") == "DisMax (no FPR)"


@pytest.mark.parametrize(
    ("methods", "fpr", "gate", "says"),
    [
        (("dismax",), True, "dismax_nofpr:AUROC:uniform>=0.1", "use one of dismax"),
        (("dismax",), None, "dismax_nofpr:AUROC:uniform>=0.1", "use one of dismax"),
        (("dismax_nofpr",), None, "dismax:AUROC:uniform>=0.1", "use one of dismax_nofpr"),
        (("softmax",), None, "isomax_plus:AUROC:uniform>=0.1", "use one of softmax"),
    ],
)
def test_a_gate_naming_another_row_is_still_refused(
    methods: tuple[str, ...], fpr: bool | None, gate: str, says: str
) -> None:
    from dismax_cli.benchmark_config import BenchmarkConfig

    config = BenchmarkConfig(methods=methods, fpr=fpr, ood=("uniform",), require=(gate,))
    with pytest.raises(InvalidValueError) as info:
        config.validate()
    assert says in str(info.value)


def test_the_report_check_reads_the_nofpr_name_as_the_dismax_row() -> None:
    from dismax_cli.gates import parse_requirements

    report = _report("dismax", "AUROC", 0.75, label="DisMax (no FPR)")
    (req,) = parse_requirements(
        ["dismax_nofpr:AUROC:uniform>=0.7"], methods=["dismax"], ood=["uniform"],
        rows={"dismax": "DisMax (no FPR)"},
    )  # fmt: skip
    assert req.method == "dismax"
    assert req.check(report) == (True, 0.75)
    with pytest.raises(InvalidValueError, match="use one of dismax"):
        parse_requirements(
            ["dismax_nofpr:AUROC:uniform>=0.7"], methods=["dismax"], ood=["uniform"],
            rows={"dismax": "DisMax (FPR)"},
        )  # fmt: skip


def test_a_no_fpr_benchmark_passes_a_dismax_nofpr_gate(tmp_path: Path) -> None:
    """End to end: the gate is judged on the report's DisMax (no FPR) row (exit 0)."""
    args = ["benchmark", "--dataset", "digits[0-2]", "--ood", "uniform:64", "--methods",
            "dismax", "--no-fpr", "--epochs", "1", "--bootstrap", "0", "--require",
            "dismax_nofpr:AUROC:uniform:64>=0.0", "dismax:AUROC:uniform:64>=0.0", "--out", "r.json",
            "-q"]  # fmt: skip
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["methods"][0]["label"] == "DisMax (no FPR)"
    values = [r["value"] for r in report["requirements"]]
    assert [r["passed"] for r in report["requirements"]] == [True, True]
    assert values[0] == values[1]  # one row, named twice


# ----------------------------------------------------------------------------- item 5


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A calibrated one-epoch run on three digit classes, loaded on the CPU."""
    from dismax_cli import load_run
    from dismax_cli.engine import TrainConfig, fit

    root = tmp_path_factory.mktemp("faults3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_DATA_DIR", str(root / "data"))
        mp.setenv("DISMAX_OFFLINE", "1")
        fit(TrainConfig(dataset="digits[0-2]", epochs=1, device="cpu"), root / "run")
    result = invoke_in(root, "calibrate", "run", "-q")
    assert result.exit_code == 0, result.output
    return load_run(root / "run", device="cpu")


def _calls(run: Any) -> dict[str, Any]:
    import torch

    import dismax_cli as d

    meta = torch.zeros(2, 8, 8, 1, dtype=torch.uint8, device="meta")
    return {
        "threshold tpr meta": (lambda: run.threshold(tpr=torch.tensor(0.95, device="meta")),
                               "tpr is a tensor on the 'meta' device"),
        "threshold tpr sparse": (lambda: run.threshold(tpr=torch.tensor([0.9]).to_sparse()),
                                 "tpr is a sparse_coo tensor: pass a dense one"),
        "predict meta uint8": (lambda: run.predict(meta), "images is a tensor on the 'meta'"),
        "predict meta float": (lambda: run.predict(torch.zeros(2, 1, 8, 8, device="meta")),
                               "images is a tensor on the 'meta' device"),
        "predict sparse": (lambda: run.predict(torch.zeros(2, 1, 8, 8).to_sparse()),
                           "images is a sparse_coo tensor"),
        "predict list meta": (lambda: run.predict([meta[0]]),
                              "image 0 of the list is a tensor on the 'meta' device"),
        "predict list sparse": (lambda: run.predict([torch.zeros(8, 8, 1).to_sparse()]),
                                "image 0 of the list is a sparse_coo tensor"),
        "predict complex": (lambda: run.predict(torch.zeros(2, 1, 8, 8, dtype=torch.cfloat)),
                            "dtype complex64 cannot be predicted"),
        "predict bool": (lambda: run.predict(torch.zeros(2, 8, 8, 1, dtype=torch.bool)),
                         "dtype bool cannot be predicted"),
        "score meta": (lambda: d.mmles(torch.zeros(2, 3, device="meta")),
                       "logits is a tensor on the 'meta' device"),
        "score sparse": (lambda: d.msp(torch.zeros(2, 3).to_sparse()), "logits is a sparse_coo"),
        "score complex": (lambda: d.energy(torch.zeros(2, 3, dtype=torch.cfloat)),
                          "logits holds complex numbers (dtype complex64): pass real ones"),
        "score bool": (lambda: d.msp(torch.zeros(2, 3, dtype=torch.bool)),
                       "logits holds true/false values (dtype bool)"),
        "metric meta": (lambda: d.auroc(torch.zeros(3, device="meta"), [0.1, 0.2]),
                        "id_scores is a tensor on the 'meta' device"),
        "tpr_threshold meta": (lambda: d.tpr_threshold(torch.zeros(3, device="meta")),
                               "id_scores is a tensor on the 'meta' device"),
        "calibrated_probs sparse": (lambda: d.calibrated_probs(torch.zeros(2, 3).to_sparse(), 1.0),
                                    "logits is a sparse_coo"),
        "calibrated_probs complex": (
            lambda: d.calibrated_probs(torch.zeros(2, 3, dtype=torch.cfloat), 1.0),
            "logits holds complex numbers"),
        "load_run tensor": (lambda: d.load_run(torch.zeros(3)),
                            "load_run takes the path of a run folder or its checkpoint.pt, not "
                            "a tensor"),
    }  # fmt: skip


CALLS = ["threshold tpr meta", "threshold tpr sparse", "predict meta uint8", "predict meta float",
         "predict sparse", "predict list meta", "predict list sparse", "predict complex",
         "predict bool", "score meta", "score sparse", "score complex", "score bool",
         "metric meta", "tpr_threshold meta", "calibrated_probs sparse",
         "calibrated_probs complex", "load_run tensor"]  # fmt: skip


@pytest.mark.parametrize("call", CALLS)
def test_tensors_the_api_cannot_take_give_one_clear_error(run: Any, call: str) -> None:
    fn, says = _calls(run)[call]
    with pytest.raises(DismaxError) as info:
        fn()
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_a_non_contiguous_tensor_is_fine(run: Any) -> None:
    import torch

    images = torch.randint(0, 256, (3, 8, 8, 1), dtype=torch.uint8)
    flipped = images.transpose(1, 2)
    assert not flipped.is_contiguous()
    got = run.predict(flipped)
    want = run.predict(flipped.contiguous())
    assert torch.equal(got.labels, want.labels)
    assert torch.allclose(got.logits, want.logits)


# ----------------------------------------------------------------------------- item 7


def test_an_offline_paper_config_names_every_missing_set_at_once(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[1] / "benchmarks/configs/paper-cifar10-resnet34.yaml"
    (tmp_path / "empty").mkdir()
    result = invoke_in(tmp_path, "benchmark", "--config", str(config), "--data-dir", "empty")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "the in-distribution set and 4 OOD sets cannot be used" in text
    for name, fetch in [
        ("cifar10", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python.tar.gz"),
        ("tin_resize", "Imagenet_resize.tar.gz"),
        ("lsun_resize", "LSUN_resize.tar.gz"),
        ("svhn", "test_32x32.mat"),
    ]:
        assert f"dataset '{name}' is not in" in text, name
        assert fetch in text, fetch
    assert "--ood LABEL=npz:FILE or LABEL=imagefolder:DIR" in text
    assert not (tmp_path / "runs").exists()


def test_missing_files_and_sets_are_named_together_and_present_ones_pass(tmp_path: Path) -> None:
    from dismax_cli.data.presence import missing_sets

    (tmp_path / "empty").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_OFFLINE", "1")
        found = missing_sets(
            "digits[0-5]", ["a=npz:nope.npz", "uniform", "svhn", "digits[6-9]", "b=imagefolder:x"],
            data_dir=tmp_path / "empty",
        )  # fmt: skip
        assert [role for role, _ in found] == ["ood", "ood", "ood"]
        assert "nope.npz" in found[0][1] and "'svhn'" in found[1][1]
        assert "x' (from 'imagefolder:x')" in found[2][1]
        mp.delenv("DISMAX_OFFLINE")
        online = missing_sets("cifar10", ["svhn", "npz:nope.npz"], data_dir=tmp_path / "empty")
        assert [p for _, p in online] == [found[0][1]]  # online, named sets would download


def test_a_present_set_is_not_named(tmp_path: Path) -> None:
    from dismax_cli.data.presence import missing_sets

    data = tmp_path / "data"
    (data / "odin").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "conftest.py", data / "odin" / "tin_resize.npz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_OFFLINE", "1")
        found = missing_sets("digits", ["tin_resize", "lsun_resize"], data_dir=data)
    assert len(found) == 1 and "'lsun_resize'" in found[0][1]


def test_a_failed_gate_shows_every_digit_of_its_measured_value() -> None:
    """``==0.7051`` failing on 0.70512 said "measured 0.7051", as if it held (session-6
    tester); a passed gate keeps four decimals."""
    from dismax_cli.gates import measured_text

    assert measured_text(0.70512, passed=False) == "0.70512"
    assert measured_text(0.70512, passed=True) == "0.7051"
