"""Plots (dismax_cli.plots): valid PNGs of the stated size, deterministic, redrawn from the npz.

Conventions checked against METHOD.md §3-§5: ID positive, 15 equal-width bins, softmax(z / T).
"""

from __future__ import annotations

import hashlib
import io
import re
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from dismax_cli import plots
from dismax_cli.core.uncertainty import aurc
from dismax_cli.errors import DismaxError

OOD_SETS = ("svhn", "imagefolder:/data/my set")


def _method(rng: np.random.Generator, targets: np.ndarray, shift: float, score: str):
    n, c = targets.size, 10
    logits = rng.normal(size=(n, c)) * 2.0
    logits[np.arange(n), targets] += shift
    return plots.MethodSamples(
        logits=logits.astype(np.float32),
        temperature=1.0 + shift / 4,
        score=score,
        id_scores=rng.normal(shift / 2, 1.0, n),
        ood_scores={OOD_SETS[0]: rng.normal(0.0, 1.0, 150), OOD_SETS[1]: rng.normal(-1, 2, 90)},
    )


@pytest.fixture(scope="module")
def per_sample() -> plots.PerSample:
    rng = np.random.default_rng(7)
    targets = rng.integers(0, 10, 240)
    return plots.PerSample(
        targets=targets,
        methods={
            "softmax": _method(rng, targets, 2.0, "msp"),
            "dismax": _method(rng, targets, 4.0, "mmles"),
        },
    )


def _ihdr_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, with its CRC checked (independent of the module)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length = int.from_bytes(data[8:12], "big")
    assert data[12:16] == b"IHDR" and length == 13
    chunk = data[12 : 16 + length]
    assert zlib.crc32(chunk) == int.from_bytes(data[16 + length : 20 + length], "big")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _assert_png(data: bytes, width: int, height: int) -> None:
    assert _ihdr_size(data) == (width, height)
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.size == (width, height)
        assert np.unique(np.asarray(image.convert("L"))).size > 10  # something is drawn


def _every_kind(per_sample: plots.PerSample, **size: int) -> dict[str, bytes]:
    m = per_sample.methods["softmax"]
    d = per_sample.methods["dismax"]
    targets = per_sample.targets
    curves = {"softmax": (m.id_scores, m.ood_scores["svhn"]), "dismax": (d.id_scores, d.id_scores)}
    return {
        "reliability": plots.reliability_diagram(
            plots.softmax(m.logits), targets,
            probs_after=plots.softmax(m.logits, m.temperature), **size,
        ),
        "reliability_before_only": plots.reliability_diagram(
            plots.softmax(m.logits), targets, **size
        ),
        "histogram": plots.score_histograms(m.id_scores, m.ood_scores["svhn"], **size),
        "roc": plots.roc_curves(curves, ood_label="svhn", **size),
        "pr": plots.pr_curves(curves, ood_label="svhn", **size),
        "risk_coverage": plots.risk_coverage_curves(
            {"softmax": (plots.softmax(m.logits), targets)}, **size
        ),
    }


@pytest.fixture(scope="module")
def default_kinds(per_sample) -> dict[str, bytes]:
    """Every plot kind at the default size, drawn once for the tests that only read it."""
    return _every_kind(per_sample)


@pytest.fixture(scope="module")
def drawn(per_sample, tmp_path_factory) -> list[Path]:
    """``draw_all`` of the module's data, written once (the tests below only read the files)."""
    return plots.draw_all(per_sample, tmp_path_factory.mktemp("drawn") / "plots")


@pytest.mark.parametrize(
    ("size", "expected"),
    [({}, (800, 600)), ({"width_px": 640, "height_px": 480, "dpi": 80}, (640, 480))],
)
def test_each_plot_kind_is_a_png_of_the_stated_size(per_sample, default_kinds, size, expected):
    for name, data in (_every_kind(per_sample, **size) if size else default_kinds).items():
        assert data, name
        _assert_png(data, *expected)


def test_plots_are_byte_identical_and_ignore_global_style(per_sample, default_kinds):
    first = default_kinds
    saved = matplotlib.rcParams.copy()
    try:
        matplotlib.rcParams["lines.linewidth"] = 9.0
        matplotlib.rcParams["axes.facecolor"] = "black"
        matplotlib.rcParams["font.size"] = 30.0
        second = _every_kind(per_sample)
    finally:
        matplotlib.rcParams.update(saved)
    assert first == second


def test_plots_depend_on_their_data(per_sample):
    m = per_sample.methods["softmax"]
    before = plots.softmax(m.logits)
    after = plots.softmax(m.logits, 3.0)
    a = plots.reliability_diagram(before, per_sample.targets, probs_after=after)
    b = plots.reliability_diagram(before, per_sample.targets, probs_after=before)
    assert a != b
    h = plots.score_histograms(m.id_scores, m.ood_scores["svhn"])
    assert h != plots.score_histograms(m.ood_scores["svhn"], m.id_scores)


def test_pyplot_is_not_imported_and_backend_is_untouched(per_sample, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, matplotlib\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "from dismax_cli import plots\n"
        "plots.score_histograms(np.arange(5.0), np.arange(4.0))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend changed'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_risk_coverage_points_hand_computed_and_mean_is_aurc():
    # Confidences 0.9, 0.8, 0.7, 0.6 (all predicted class 0) with correctness 1, 0, 1, 0.
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    probs = np.stack([conf, 1 - conf], axis=1)
    targets = np.array([0, 1, 0, 1])
    coverage, risk = plots.risk_coverage_points(probs, targets)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 1 / 2, 1 / 3, 2 / 4])
    assert float(np.mean(risk)) == pytest.approx(aurc(probs, targets))


def test_softmax_with_temperature_matches_float64_reference():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 10.0]])
    t = 2.5
    e = np.exp(logits / t)
    np.testing.assert_allclose(plots.softmax(logits, t), e / e.sum(1, keepdims=True), rtol=1e-12)


def test_draw_all_writes_every_kind_for_every_method_and_set(per_sample, drawn):
    paths = drawn
    names = [p.name for p in paths]
    methods, sets = len(per_sample.methods), len(OOD_SETS)
    assert len(names) == len(set(names)) == methods + methods * sets + 2 * sets + 1
    assert sorted(p.name for p in paths[0].parent.iterdir()) == sorted(names)
    for kind, count in (("reliability-", methods), ("hist-", methods * sets),
                        ("roc-", sets), ("pr-", sets), ("risk-coverage", 1)):
        assert sum(n.startswith(kind) for n in names) == count, kind
    assert all("/" not in n and " " not in n and ":" not in n for n in names)
    for path in paths:
        _assert_png(path.read_bytes(), 800, 600)


def test_plots_are_redrawn_byte_identically_from_the_saved_npz(per_sample, drawn, tmp_path):
    first = drawn
    digest = plots.save_per_sample(tmp_path / "per_sample.npz", per_sample)
    loaded = plots.load_per_sample(tmp_path / "per_sample.npz", sha256=digest)
    second = plots.draw_all(loaded, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_per_sample_round_trip_keeps_every_array_and_name(per_sample, tmp_path):
    path = tmp_path / "s.npz"
    plots.save_per_sample(path, per_sample)
    loaded = plots.load_per_sample(path)
    np.testing.assert_array_equal(loaded.targets, per_sample.targets)
    assert list(loaded.methods) == list(per_sample.methods)
    for name, m in per_sample.methods.items():
        got = loaded.methods[name]
        assert got.score == m.score and got.temperature == m.temperature
        np.testing.assert_array_equal(got.logits, m.logits)
        assert got.logits.dtype == m.logits.dtype
        np.testing.assert_array_equal(got.id_scores, m.id_scores)
        assert list(got.ood_scores) == list(OOD_SETS)
        for ood in OOD_SETS:
            np.testing.assert_array_equal(got.ood_scores[ood], m.ood_scores[ood])
    with np.load(path, allow_pickle=False) as npz:  # a plain npz, readable without pickle
        np.testing.assert_array_equal(npz["targets"], per_sample.targets)


def test_save_returns_the_files_sha256_and_a_changed_file_is_detected(per_sample, tmp_path):
    path = tmp_path / "s.npz"
    digest = plots.save_per_sample(path, per_sample)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # The hash names the content: equal data, equal hash; one changed score, another hash.
    assert plots.save_per_sample(tmp_path / "again.npz", per_sample) == digest
    m = per_sample.methods["softmax"]
    scores = m.id_scores.copy()
    scores[0] += 1e-9
    changed = plots.PerSample(
        targets=per_sample.targets,
        methods={**per_sample.methods, "softmax": plots.MethodSamples(
            logits=m.logits, temperature=m.temperature, score=m.score, id_scores=scores,
            ood_scores=m.ood_scores,
        )},
    )
    other = plots.save_per_sample(tmp_path / "changed.npz", changed)
    assert other != digest
    with pytest.raises(DismaxError, match="sha256"):
        plots.load_per_sample(tmp_path / "changed.npz", sha256=digest)
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DismaxError, match="changed since"):
        plots.load_per_sample(path, sha256=digest)


def test_failed_save_leaves_the_old_file_and_no_temporary(per_sample, tmp_path):
    path = tmp_path / "s.npz"
    plots.save_per_sample(path, per_sample)
    before = path.read_bytes()
    bad = plots.PerSample(targets=per_sample.targets[:-1], methods=per_sample.methods)
    with pytest.raises(DismaxError, match="N = 239"):
        plots.save_per_sample(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


@pytest.mark.parametrize(
    "content", [b"", b"not a zip", b"PK\x03\x04 broken"], ids=["empty", "text", "broken-zip"]
)
def test_load_refuses_what_is_not_a_per_sample_file(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(DismaxError, match="not a dismax per-sample file"):
        plots.load_per_sample(path)


def test_load_refuses_a_plain_npz_and_a_missing_file(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(DismaxError, match="not a dismax per-sample file"):
        plots.load_per_sample(tmp_path / "plain.npz")
    for index in ('{"methods": 5}', '{"methods": [{"name": "a"}]}', "[1]", "{"):
        np.savez(tmp_path / "bad.npz", index=np.array([index]), targets=np.arange(3))
        with pytest.raises(DismaxError, match="not a dismax per-sample file"):
            plots.load_per_sample(tmp_path / "bad.npz")
    with pytest.raises(DismaxError, match="cannot read"):
        plots.load_per_sample(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "size",
    [{"width_px": 0}, {"height_px": -5}, {"dpi": 0}, {"width_px": 801}, {"width_px": 800.0}],
)
def test_bad_sizes_are_user_errors(size):
    with pytest.raises(DismaxError):
        plots.score_histograms(np.arange(3.0), np.arange(3.0), **size)


def test_bad_inputs_are_user_errors(per_sample, tmp_path):
    with pytest.raises(DismaxError, match="empty"):
        plots.score_histograms(np.array([]), np.arange(3.0))
    with pytest.raises(DismaxError, match="NaN"):
        plots.roc_curves({"a": (np.array([1.0, np.nan]), np.arange(3.0))})
    with pytest.raises(DismaxError, match="no curves"):
        plots.pr_curves({})
    (tmp_path / "file").write_text("x")
    with pytest.raises(DismaxError, match="is a file"):
        plots.draw_all(per_sample, tmp_path / "file")
    with pytest.raises(DismaxError, match="does not exist"):
        plots.save_per_sample(tmp_path / "no" / "s.npz", per_sample)


def test_png_size_reads_ihdr(per_sample):
    data = plots.score_histograms(np.arange(5.0), np.arange(4.0), width_px=300, height_px=200)
    assert plots.png_size(data) == (300, 200) == _ihdr_size(data)
    with pytest.raises(DismaxError):
        plots.png_size(b"GIF89a" + bytes(30))


def test_the_written_files_are_the_returned_bytes(per_sample, drawn):
    files = plots.plot_files(per_sample)
    paths = drawn
    assert {p.name: Path(p).read_bytes() for p in paths} == files


def _tiny(names: list[str], sets: list[str], n: int = 30) -> plots.PerSample:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 3, n)
    return plots.PerSample(
        targets=targets,
        methods={
            name: plots.MethodSamples(
                logits=rng.normal(size=(n, 3)), temperature=1.0, score="msp",
                id_scores=rng.normal(size=n),
                ood_scores={s: rng.normal(size=7) for s in sets},
            )
            for name in names
        },
    )


@pytest.mark.parametrize(
    ("names", "sets"),
    [
        (["a-b", "a"], ["c", "b-c"]),  # hist-a-b-c would be written twice
        (["SVHN", "svhn"], ["x"]),  # one file on a case-insensitive file system
        (["m"], ["a/b", "a:b", "a b", "a_b"]),
        (["m"], ["x" * 300, "x" * 299 + "y"]),  # longer than a file name may be
    ],
)
def test_every_method_and_set_gets_its_own_safe_file(names, sets, tmp_path, monkeypatch):
    # The file names are under test, not the drawing (tested above): each plot kind returns
    # one tiny PNG here instead of rendering 800 x 600 pixels, so draw_all only names and
    # writes the files.
    png = plots.score_histograms(np.arange(3.0), np.arange(3.0), width_px=8, height_px=8, dpi=8)
    for kind in ("reliability_diagram", "score_histograms", "roc_curves", "pr_curves",
                 "risk_coverage_curves"):  # fmt: skip
        monkeypatch.setattr(plots, kind, lambda *args, **kwargs: png)
    paths = plots.draw_all(_tiny(names, sets), tmp_path)
    expected = len(names) + len(names) * len(sets) + 2 * len(sets) + 1
    assert len({p.name.lower() for p in paths}) == expected
    assert len(list(tmp_path.iterdir())) == expected
    assert all(len(p.name) <= 120 and re.fullmatch(r"[a-z0-9._~-]+", p.name) for p in paths)


def test_degenerate_inputs_still_draw(tmp_path):
    one = plots.reliability_diagram(np.array([[1.0, 0.0]]), np.array([0]))
    _assert_png(one, 800, 600)
    flat = plots.score_histograms(np.ones(4), np.ones(3))  # every score equal
    _assert_png(flat, 800, 600)
    tied = plots.roc_curves({"a": (np.zeros(3), np.zeros(3))})
    _assert_png(tied, 800, 600)
    _assert_png(plots.risk_coverage_curves({"a": (np.array([[0.5, 0.5]]), np.array([1]))}),
                800, 600)
