"""``autocrop bench``: quality and speed of the model on a public benchmark, beside simple baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def bench(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Benchmark: gaicd, fcdb or flms."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Dataset folder (default: $AUTOCROP_<NAME>_DIR, $AUTOCROP_DATA_DIR/<NAME>, config <name>_dir, ../shared/data/<NAME>)."
    ),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model file (.safetensors); default: the packaged model."),
    split: str = typer.Option("test", "--split", help="Dataset split (GAICD/FCDB: test or train; FLMS: test)."),
    candidates: Optional[str] = typer.Option(
        None, "--candidates", help="FCDB/FLMS candidate set: grid (the model's own, default) or anchors (1745 predefined)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Measure only the first N images (by name)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the full report as JSON to FILE ('-' = stdout)."),
    include_train: bool = typer.Option(
        False, "--include-train", help="Also measure images the model was trained on (flagged in the report)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random baseline."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="torch threads (default: $AUTOCROP_THREADS or torch's own); recorded in the report."
    ),
) -> None:
    """Measure quality (and speed) on GAICD, FCDB or FLMS, beside random / largest / centre-crop baselines."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from autocrop.bench.report import check_json_destination, render, write_json
    from autocrop.bench.runner import BenchOptions, run_bench

    options = BenchOptions(
        dataset=dataset.strip().lower(),
        data_dir=data_dir,
        model=model,
        split=split,
        candidates=candidates.strip().lower() if candidates else None,
        limit=limit,
        include_train=include_train,
        seed=seed,
        threads=threads,
    )
    if json_path:
        check_json_destination(json_path)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"bench {options.dataset}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = run_bench(options, progress=progress)
    render(report, console)
    if json_path:
        write_json(report, json_path)
        if json_path != "-":
            console.print(f"report written to {json_path}")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` verb to the CLI."""
    app.command("bench")(bench)
