"""The self-contained HTML report (dismax_cli.html_report), also rendered in headless Chromium.

The report is the committed CIFAR-10 benchmark (benchmarks/results/cifar10-cpu.json) read with
``from_json``; the tables must show the numbers exactly as the rich tables of render.py do.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from dismax_cli import plots, render
from dismax_cli.errors import DismaxError
from dismax_cli.html_report import render_html
from dismax_cli.reports import OOD_METRICS, RequirementResult, from_json

#: The CIFAR-10 report committed before intervals and --scores all (one seed, four methods).
REPORT_JSON = Path(__file__).resolve().parents[1] / "tests" / "data" / "cifar10-cpu-v1.json"
HOSTILE = '<script>alert("x")</script> & <img src=http://evil.example/x.png>'
NOTE_URL = "https://example.org/why?a=1&b=2"


@pytest.fixture(scope="module")
def report():
    base = from_json(REPORT_JSON.read_text())
    return dataclasses.replace(
        base,
        notes=(*base.notes, f"see {NOTE_URL} for details", HOSTILE),
        requirements=(
            RequirementResult("dismax:tin_resize:AUROC>=0.7", True, 0.72905),
            RequirementResult(f"softmax:mnist:AUROC>=0.99 {HOSTILE}", False, 0.7354),
        ),
        config={**base.config, "runs_dir": HOSTILE},
    )


@pytest.fixture(scope="module")
def plot_bytes() -> dict[str, bytes]:
    """Two of the plots ``plot_files`` names for one method and one OOD set (only these two
    are drawn: the page tests read how plots are embedded, not which)."""
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 10, 200)
    logits = rng.normal(size=(200, 10)) * 2
    logits[np.arange(200), targets] += 3
    id_scores, ood_scores = rng.normal(1, 1, 200), rng.normal(0, 1, 100)
    return {
        "reliability-softmax.png": plots.reliability_diagram(
            plots.softmax(logits), targets, probs_after=plots.softmax(logits, 1.5),
            title="softmax: reliability (T = 1.5)",
        ),
        "hist-softmax-svhn.png": plots.score_histograms(
            id_scores, ood_scores, score="msp", ood_label="svhn", title="softmax: msp"
        ),
    }


class _Tables(HTMLParser):
    """Collect every table as rows of cell texts, every tag's attributes, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    parser.close()
    return parser


def _rich_rows(table) -> list[list[str]]:
    """The cell texts of a rich Table, row by row, as the terminal shows them."""
    # The terminal stacks a seed spread under the mean ("95.12\n±0.30") to fit 80 columns;
    # the page shows it on one line ("95.12 ± 0.30").
    columns = [
        [getattr(c, "plain", c).replace("\n±", " ± ") for c in col._cells] for col in table.columns
    ]
    header = [getattr(col.header, "plain", col.header) for col in table.columns]
    return [header] + [list(row) for row in zip(*columns, strict=True)]


def _expected_tables(report) -> dict[str, list[list[str]]]:
    expected = {"id-table": _rich_rows(render.id_table(report))}
    if report.kind == "benchmark":
        expected["cost-table"] = _rich_rows(render.cost_table(report))
    for i, ood in enumerate(report.ood_sets):
        expected[f"ood-table-{i}"] = _rich_rows(render.ood_table(report, ood))
    return expected


def _check_every_table_value(parsed: _Tables, report) -> None:
    for table_id, rows in _expected_tables(report).items():
        assert parsed.tables[table_id] == rows, table_id
    # And independently of render.py: every OOD metric of every method, in % with 2 decimals,
    # in the row of that method.
    for i, ood in enumerate(report.ood_sets):
        rows = parsed.tables[f"ood-table-{i}"][1:]
        for row, method in zip(rows, report.methods, strict=True):
            result = method.result(ood)
            assert row[1] == result.score
            for cell, key in zip(row[2:], OOD_METRICS, strict=True):
                assert cell == f"{100 * result.metrics[key].mean:.2f}", (ood, key)
    id_rows = parsed.tables["id-table"][1:]
    for row, method in zip(id_rows, report.methods, strict=True):
        assert row[1] == f"{100 * method.id_after['ACC'].mean:.2f}"
        assert row[4] == f"{method.id_after['NLL'].mean:.4f}"
        assert row[6] == f"{method.temperature.mean:.4f}"


def test_html_holds_every_table_value_as_the_rich_tables_show_it(report):
    _check_every_table_value(_parse(render_html(report, plots=None)), report)


def test_best_value_of_each_column_is_bold(report):
    page = render_html(report, plots=None)
    auroc = [m.result("mnist").metrics["AUROC"].mean for m in report.methods]
    best = max(auroc)
    assert f'<td class="num best">{100 * best:.2f}</td>' in page
    for value in auroc:
        if value != best:
            assert f'<td class="num">{100 * value:.2f}</td>' in page


def test_plots_are_inline_png_data_uris(report, plot_bytes):
    page = render_html(report, plots=plot_bytes)
    srcs = [a["src"] for tag, a in _parse(page).tags if tag == "img"]
    assert len(srcs) == len(plot_bytes)
    for src, data in zip(srcs, plot_bytes.values(), strict=True):
        assert src == "data:image/png;base64," + base64.b64encode(data).decode()
    with pytest.raises(DismaxError, match="not PNG"):
        render_html(report, plots={"x": b"GIF89a..."})


def test_no_web_address_other_than_links_a_person_clicks(report, plot_bytes):
    page = render_html(report, plots=plot_bytes)
    parsed = _parse(page)
    hrefs = [a.get("href") or "" for tag, a in parsed.tags if tag == "a"]
    assert "https://arxiv.org/abs/2205.05874" in hrefs
    assert html.unescape(NOTE_URL) in [html.unescape(h) for h in hrefs]  # a note's URL, clickable
    without_links = re.sub(r"<a\s[^>]*>.*?</a>", "", page, flags=re.S)
    assert "http://" not in without_links and "https://" not in without_links
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base", "svg"), tag
        for name, value in attrs.items():
            if name in ("src", "srcset", "poster", "data", "background"):
                assert (value or "").startswith("data:"), (tag, name)
            if name == "href":
                assert tag == "a", tag
            assert not name.startswith("on"), (tag, name)
    assert "@import" not in page and "url(" not in page and "@font-face" not in page


def test_user_text_is_escaped(report):
    page = render_html(report, plots=None)
    assert "<script" not in page
    assert "<img src=http" not in page
    assert html.escape(HOSTILE).replace("http://evil.example/x.png", "") in page.replace(
        '<a href="http://evil.example/x.png" rel="noreferrer">http://evil.example/x.png</a>', ""
    )
    assert HOSTILE in "".join(_parse(page).text)  # shown literally to the reader


def test_provenance_conventions_requirements_and_notes_are_shown(report):
    page = render_html(report, plots=None)
    parsed = _parse(page)
    text = "".join(parsed.text)
    datasets = parsed.tables["datasets-table"][1:]
    assert len(datasets) == len(report.datasets)
    for row, d in zip(datasets, report.datasets, strict=True):
        assert row[:4] == [d.role, d.name, d.spec, d.split]
        assert row[4] == f"{d.n:,}" and row[8] == d.pixels_sha256 and row[9] == d.source
    env = dict(parsed.tables["environment-table"][1:])
    assert env == {k: v if isinstance(v, str) else json.dumps(v)
                   for k, v in report.environment.items()}
    config = dict(parsed.tables["config-table"][1:])
    assert config["epochs"] == str(report.config["epochs"])
    assert config["data_dir"] == "null" and config["runs_dir"] == HOSTILE
    assert json.loads(config["ood"]) == report.config["ood"]
    for key, value in report.conventions.items():
        assert key in text and value in text
    assert "require dismax:tin_resize:AUROC>=0.7: pass (measured 0.7290)" in text
    assert f"require softmax:mnist:AUROC>=0.99 {HOSTILE}: FAIL (measured 0.7354)" in text
    for note in report.notes:
        assert note in text


def test_phone_width_layout(report):
    page = render_html(report, plots=None)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert re.search(r"\.scroll\{overflow-x:auto", page)
    # Every table sits in its own horizontal scroller.
    assert page.count('<div class="scroll"><table') == page.count("<table")
    assert "img{max-width:100%" in page


# --------------------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
_QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    return subprocess.run(
        [CHROMIUM, *_QUIET, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        timeout=180,
        check=True,
    )


def _page_requests(netlog: Path) -> list[str]:
    """URLs the page itself requested, from Chromium's NetLog (the top frame is a file:// URL).

    Chromium's own background traffic has another network isolation key and is left out.
    """
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start and "file://" in e["params"].get("network_isolation_key", "")
    ]


@needs_chromium
def test_headless_chromium_renders_the_report(report, plot_bytes, tmp_path):
    page_path = tmp_path / "report.html"
    page_path.write_text(render_html(report, plots=plot_bytes), encoding="utf-8")
    url = page_path.as_uri()

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=390,2000",
              "--hide-scrollbars")
    with Image.open(shot) as image:
        assert image.size == (390, 2000)
        gray = image.convert("L")
        assert ImageStat.Stat(gray).var[0] > 100.0  # text and tables, not a blank page
        # Text reaches the left part of the screen and the page is not just white at the top.
        assert np.asarray(gray)[:400].min() < 100

    netlog = tmp_path / "net.json"
    dom = _chromium(tmp_path, url, "--dump-dom", f"--log-net-log={netlog}").stdout.decode()
    requests = _page_requests(netlog)
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    parsed = _parse(dom)
    _check_every_table_value(parsed, report)
    imgs = [a for tag, a in parsed.tags if tag == "img"]
    assert len(imgs) == len(plot_bytes)
    assert all((a.get("src") or "").startswith("data:image/png;base64,") for a in imgs)
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "iframe"), tag
        assert tag == "a" or "href" not in attrs, tag

    # The request check can fail: a page with an external image and stylesheet is caught.
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.invalid/x.png">'
                   '<link rel="stylesheet" href="https://example.invalid/a.css">hello')
    bad_log = tmp_path / "bad-net.json"
    _chromium(tmp_path, bad.as_uri(), "--dump-dom", f"--log-net-log={bad_log}")
    caught = _page_requests(bad_log)
    assert "http://example.invalid/x.png" in caught and "https://example.invalid/a.css" in caught


@needs_chromium
def test_screenshot_of_a_blank_page_would_fail_the_variance_check(tmp_path):
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    shot = tmp_path / "blank.png"
    _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=390,2000")
    with Image.open(shot) as image:
        assert ImageStat.Stat(image.convert("L")).var[0] < 1.0


def test_score_report_has_no_cost_table_and_odd_config_values_render(report):
    scored = dataclasses.replace(
        report, kind="score", config={**report.config, "checkpoint": Path("/runs/a b/ckpt.pt")}
    )
    parsed = _parse(render_html(scored, plots=None))
    assert "cost-table" not in parsed.tables
    _check_every_table_value(parsed, scored)
    assert dict(parsed.tables["config-table"][1:])["checkpoint"] == '"/runs/a b/ckpt.pt"'


def test_multi_seed_values_show_mean_and_std(report):
    m = report.methods[0]
    r = m.result("mnist")
    stat = dataclasses.replace(r.metrics["AUROC"], mean=0.5, std=0.0123, values=(0.49, 0.51))
    changed = dataclasses.replace(r, metrics={**r.metrics, "AUROC": stat})
    method = dataclasses.replace(
        m, seeds=(0, 1), ood=tuple(changed if x is r else x for x in m.ood)
    )
    seeded = dataclasses.replace(report, methods=(method, *report.methods[1:]))
    parsed = _parse(render_html(seeded, plots=None))
    mnist = parsed.tables[f"ood-table-{seeded.ood_sets.index('mnist')}"]
    assert mnist[1][2] == "50.00 ± 1.23"
    assert mnist == _rich_rows(render.ood_table(seeded, "mnist"))
    assert "values: mean ± sample standard deviation over seeds" in "".join(parsed.text)


def test_a_path_that_is_not_utf8_in_the_report_does_not_stop_the_page(tmp_path: Path) -> None:
    """A runs folder named with a byte that is not UTF-8 reaches the report as a surrogate
    escape (``\\udcff``); the page writes it as that escape (it raised UnicodeEncodeError after
    all the training, and nothing was written)."""
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    data = json.loads((committed / "cifar10-cpu.json").read_text())
    data["config"]["runs_dir"] = "/tmp/r\udcff"
    report = tmp_path / "r.json"
    report.write_text(json.dumps(data), encoding="utf-8")
    shutil.copy(committed / "cifar10-cpu.samples.npz", tmp_path / "cifar10-cpu.samples.npz")
    page = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["show", str(report), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "/tmp/r\\udcff" in page.read_text(encoding="utf-8")
