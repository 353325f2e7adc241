"""``autocrop bench``: quality and speed of the model on a public benchmark, beside simple baselines.

options -> :class:`~autocrop.bench.runner.BenchOptions` -> :func:`~autocrop.bench.runner.run_bench` (through a
:class:`~autocrop.cropper.Cropper`) -> tables on stderr; with ``--json`` the report on stdout, with ``--report``
the report in a file. ``--model``, ``--device`` and the dataset folders (``--gaicd-dir`` ...) are also filled
from the config file and ``AUTOCROP_<KEY>`` by the CLI (click's default_map, keyed by parameter name).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autocrop.commands import exit_codes
from autocrop.commands.options import RuntimeOption
from autocrop.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from autocrop.bench.runner import BenchOptions

STDOUT = "-"
EPILOG = (
    "Example: autocrop bench --dataset fcdb --report fcdb.json   "
    f"Exit codes: {exit_codes.EXIT_OK} ok, {exit_codes.EXIT_USAGE} usage or fatal error (bad option, missing "
    f"data or model, unwritable report), {exit_codes.EXIT_INTERRUPTED} interrupted."
)


def _dir_option(name: str) -> typer.models.OptionInfo:
    return typer.Option(f"--{name}-dir", metavar="DIR", envvar=f"AUTOCROP_{name.upper()}_DIR", show_default=False,
                        show_envvar=False,
                        help=f"{name.upper()} folder when --data-dir is not given "
                             f"[default: $AUTOCROP_DATA_DIR/{name.upper()}].")


def bench_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", metavar="NAME", show_default=False,
                                         help="Benchmark: gaicd, fcdb or flms.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", metavar="DIR", show_default=False,
                                                     help="The dataset's folder [default: --gaicd-dir, --fcdb-dir or "
                                                          "--flms-dir, else $AUTOCROP_DATA_DIR/NAME].")] = None,
    gaicd_dir: Annotated[Path | None, _dir_option("gaicd")] = None,
    fcdb_dir: Annotated[Path | None, _dir_option("fcdb")] = None,
    flms_dir: Annotated[Path | None, _dir_option("flms")] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", metavar="MODEL", show_default=False,
                                                  help="grid or set (the packaged models), or a model file (NAME.safetensors) [default: grid].")] = None,
    device: Annotated[str | None, typer.Option("--device", metavar="DEVICE", show_default=False,
                                                  help="auto, cpu, cuda, cuda:N or mps [default: cpu].")] = None,
    runtime: RuntimeOption = None,
    split: Annotated[str, typer.Option("--split", metavar="SPLIT",
                                       help="Dataset split (GAICD, FCDB: test or train; FLMS: test).")] = "test",
    candidates: Annotated[str | None, typer.Option("--candidates", metavar="SET", show_default=False,
                                                      help="FCDB/FLMS candidates: grid (the model's own) or anchors "
                                                           "(1745 predefined) [default: grid].")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", metavar="N", show_default=False,
                                                 help="Measure only the first N images (by name).")] = None,
    reference: Annotated[str | None, typer.Option("--reference", metavar="MODEL", show_default=False,
                                                   help="Also measure this model on the same photos, as a reference "
                                                        "row: grid (the packaged model), set, or a file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full report as JSON on stdout "
                                                          "(the tables still go to stderr).")] = False,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE", show_default=False,
                                                   help="Also save the full report as JSON in FILE (replaced).")] = None,
    include_train: Annotated[bool, typer.Option("--include-train", help="Also measure images the model was trained "
                                                                        "on (flagged in the report).")] = False,
    seed: Annotated[int, typer.Option("--seed", metavar="SEED", help="Seed of the random baseline.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", envvar="AUTOCROP_THREADS",
                                                   show_default=False, show_envvar=False,
                                                   help="torch threads, recorded in the report "
                                                        "[default: torch's own].")] = None,
) -> None:
    """Measure quality (and speed) on GAICD, FCDB or FLMS, beside random, largest and centre-crop baselines."""
    from autocrop.bench.report import check_report_path, render, report_json, write_report
    from autocrop.bench.runner import BenchOptions, check_options
    from autocrop.commands.output import console

    options = BenchOptions(
        dataset=dataset.strip().lower(),
        data_dir=data_dir,
        model=model,
        split=split.strip().lower(),
        candidates=candidates.strip().lower() if candidates else None,
        limit=limit,
        include_train=include_train,
        seed=seed,
        threads=threads,
        device=device,
        runtime=runtime,
        gaicd_dir=gaicd_dir,
        fcdb_dir=fcdb_dir,
        flms_dir=flms_dir,
        reference=reference,
    )
    check_options(options)
    if report is not None:
        if str(report) == STDOUT:
            raise UsageError("--report -: the report goes to stdout with --json; --report names a file")
        check_report_path(report)
    human = console(stderr=True)
    result = _run(options, human)
    render(result, human)
    if report is not None:
        written = write_report(result, report)
        human.print(f"report written to {written}")
    if json_out:
        sys.stdout.write(report_json(result))
        sys.stdout.flush()


def _run(options: BenchOptions, human: Console) -> dict[str, Any]:
    """``run_bench(options)`` with a progress bar on the ``human`` console (transient: gone when done)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from autocrop.bench.runner import run_bench

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=human, transient=True) as bar:
        task = bar.add_task(f"bench {options.dataset}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run_bench(options, progress=progress)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` verb to the CLI."""
    app.command("bench", epilog=EPILOG)(bench_command)
