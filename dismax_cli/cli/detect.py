"""``dismax detect RUN IMAGES...``: in-distribution or OOD, for each image, with its class.

The library (torch) loads in the command's body, so ``dismax --help`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.checks import check_checkpoint_file
from dismax_cli.cli.common import OutputFormat, say, stdout_console, user_text, write_stdout

TPR_FRACTION = opt.NumberParser(
    float, low=0, low_open=True, high=1, what="a fraction in (0, 1], e.g. 0.95"
)


Images = Annotated[
    list[Path],
    typer.Argument(
        metavar="IMAGES...",
        help="npz files (array 'x' or encoded images), image folders (searched recursively) "
        "or image files.",
        show_default=False,
    ),
]
ScoreName = Annotated[str | None, opt.score_option("Score to threshold")]
Tpr = Annotated[
    float,
    typer.Option(
        "--tpr",
        parser=TPR_FRACTION,
        metavar="FRACTION",
        help="Keep this share of the validation split as in-distribution (threshold rule of "
        "FPR@95TPR).",
    ),
]


@app.command()
def detect(
    checkpoint: opt.Checkpoint,
    images: Images,
    score_name: ScoreName = None,
    tpr: Tpr = 0.95,
    device: opt.Device = None,
    output_format: opt.Format = OutputFormat.table,
) -> None:
    """Label each image in-distribution or OOD, with its score and predicted class."""
    check_checkpoint_file(checkpoint)  # before torch loads
    from dismax_cli.engine.deploy import load_run, read_images

    run = load_run(checkpoint, device=device or "auto")
    name = score_name or run.default_score
    threshold = run.threshold(name, tpr=tpr)  # refuses an uncalibrated run before any reading
    inputs = read_images(images)  # every input is read before anything is printed
    prediction = run.predict(inputs.images)
    scores = prediction.scores[name].tolist()
    rows = [
        {
            "image": image,
            "in_distribution": bool(value >= threshold),
            "score": float(value),
            "label": int(label),
            "class": run.classes[int(label)],
            "confidence": float(confidence),
        }
        for image, value, label, confidence in zip(
            inputs.names, scores, prediction.labels.tolist(), prediction.confidence.tolist(),
            strict=True,
        )
    ]
    n_id = sum(row["in_distribution"] for row in rows)
    summary = (
        f"{len(rows):,} image{'' if len(rows) == 1 else 's'}: {n_id:,} in-distribution, "
        f"{len(rows) - n_id:,} OOD ({name} >= {threshold:.6g}, the threshold at "
        f"{tpr:.1%} validation TPR; T = {run.temperature:.4g})"
    )
    if output_format is OutputFormat.json:
        document = {
            "run": str(run.path),
            "score": name,
            "tpr": tpr,
            "threshold": threshold,
            "temperature": run.temperature,
            "n_images": len(rows),
            "n_in_distribution": n_id,
            "images": rows,
        }
        write_stdout(json.dumps(document, indent=2))
        return
    _print_table(rows, name)
    say(summary)


def _print_table(rows: list[dict], score: str) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("image", overflow="fold", ratio=1)
    table.add_column("verdict", no_wrap=True)
    table.add_column(score, justify="right", no_wrap=True)
    table.add_column("class", overflow="fold", max_width=20)
    table.add_column("conf %", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            user_text(row["image"]),
            "ID" if row["in_distribution"] else "OOD",
            f"{row['score']:.4f}",
            user_text(row["class"]),
            f"{row['confidence'] * 100:.1f}",
        )
    stdout_console().print(table)
