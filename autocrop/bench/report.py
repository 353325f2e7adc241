"""Showing and saving a bench report: rich tables for people (stderr), JSON text, an atomically written file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from autocrop.bench.baselines import BASELINES
from autocrop.bench.runner import REFERENCE, UNREFINED
from autocrop.errors import OutputError

GAICD_COLUMNS = (
    ("acc1_5", "Acc1/5"),
    ("acc5_mean", "Acc5"),
    ("acc1_10", "Acc1/10"),
    ("acc10_mean", "Acc10"),
    ("srcc", "SRCC"),
    ("pcc", "PCC"),
)
BOX_COLUMNS = (("iou", "IoU ↑"), ("disp", "Disp ↓"))
BASELINE_LABELS = {"random": "random", "largest": "largest", "centre": "centre 0.8"}


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("srcc", "pcc", "iou", "disp"):
        return f"{value:.3f}"
    return f"{value:.1f}"


def _fmt_delta(key: str, delta: float) -> str:
    return f"{delta:+.3f}" if key in ("srcc", "pcc", "iou", "disp") else f"{delta:+.1f}"


def render(report: dict, console: Any) -> None:
    """Print ``report`` as tables (quality with margins, all Acc_K/N for GAICD, speed) on a rich ``console``."""
    from rich.table import Table

    dataset = report["dataset"]
    columns = GAICD_COLUMNS if dataset == "gaicd" else BOX_COLUMNS
    images = report["images"]
    arch = report["model"].get("arch", "grid")
    title = (
        f"{dataset.upper()} {report['split']} · {images['measured']} images · candidates: {report['candidates']}"
        f" · model: {arch} ({report['model'].get('runtime') or 'torch'})"
    )
    console.print(f"[bold]{title}[/]")
    quality = Table()
    quality.add_column("method")
    for _, label in columns:
        quality.add_column(label, justify="right")
    results, margins = report["results"], report["margins"]
    quality.add_row("model", *(_fmt(k, results["model"][k]) for k, _ in columns), style="bold")
    if UNREFINED in results:
        label = "model, unrefined grid view" if arch == "grid" else "model, most valid prediction"
        quality.add_row(label, *(_fmt(k, results[UNREFINED][k]) for k, _ in columns))
    if REFERENCE in results:
        label = f"reference: {(report.get('reference') or {}).get('arch', 'grid')} model"
        quality.add_row(label, *(_fmt(k, results[REFERENCE][k]) for k, _ in columns), style="italic")
    for name in BASELINES:
        if name in results:
            quality.add_row(BASELINE_LABELS[name], *(_fmt(k, results[name][k]) for k, _ in columns))
    console.print(quality)
    for who in ("model", REFERENCE):
        diversity = (report.get("diversity") or {}).get(who) or {}
        if diversity.get("images"):
            console.print(f"diversity of the {who}'s top-3 (free ratio, as crop --top 3): mean pairwise IoU "
                          f"{diversity['mean_pairwise_iou']:.3f}, max {diversity['max_pairwise_iou']:.3f} "
                          f"({diversity['pairs_over']} pairs over {diversity['limit']}, {diversity['images']} images)")

    versus = Table(title="model's margin over each baseline: difference (ratio)", title_justify="left")
    versus.add_column("metric")
    shown = [name for name in BASELINES if name in margins]
    for name in shown:
        versus.add_column(f"vs {BASELINE_LABELS[name]}", justify="right")
    for key, label in columns:
        cells = []
        for name in shown:
            m = margins[name][key]
            ratio = f" (×{m['ratio']:.2f})" if m["ratio"] is not None else ""
            cells.append(f"[{'green' if m['better'] else 'red'}]{_fmt_delta(key, m['delta'])}{ratio}[/]")
        versus.add_row(label, *cells)
    console.print(versus)

    if dataset == "gaicd":
        acc = Table(title="Acc_K/N of the model (percent)", title_justify="left")
        acc.add_column("N")
        for k in (1, 2, 3, 4):
            acc.add_column(f"K={k}", justify="right")
        acc.add_column("mean", justify="right")
        model = results["model"]
        for n in (5, 10):
            acc.add_row(str(n), *(f"{model[f'acc{k}_{n}']:.1f}" for k in (1, 2, 3, 4)), f"{model[f'acc{n}_mean']:.1f}")
        console.print(acc)

    speed, machine = report["speed"], report["machine"]
    timing = Table(title="speed: decode + one forward pass per image", title_justify="left")
    for label in ("load s", "ms/img median", "ms/img p90", "img/s", "peak MiB", "threads"):
        timing.add_column(label, justify="right")
    timing.add_row(
        f"{speed['model_load_s']:.2f}",
        _num(speed["ms_per_image"]["median"]),
        _num(speed["ms_per_image"]["p90"]),
        _num(speed["images_per_s"]),
        _num(speed["peak_rss_mib"]),
        f"{machine['torch_threads']}/{machine['cpus_available']}",
    )
    console.print(timing)
    score_median = _num(speed["score_ms"]["median"])
    console.print(
        f"[dim]torch import {speed['torch_import_s']:.2f} s · scoring alone {score_median} ms median · "
        f"{speed['candidates_per_image']:.0f} candidates/img · {machine['platform']} · torch {machine['torch']} · "
        f"model {report['model']['path']}[/]"
    )
    for line in notes(report):
        console.print(line)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def notes(report: dict) -> list[str]:
    """Lines about skipped, excluded and flagged images (empty when there is nothing to say)."""
    images = report["images"]
    lines = []
    if images["excluded_training"]:
        lines.append(
            f"[yellow]excluded {images['excluded_training']} image(s) listed as training images in the model card "
            "(--include-train to measure them, flagged)[/]"
        )
    if images["included_training"]:
        lines.append(
            f"[bold red]warning: {images['included_training']} measured image(s) are training images of this model "
            "(--include-train): these figures are not a held-out measurement[/]"
        )
    if images["missing"]:
        lines.append(f"[yellow]skipped {images['missing']} annotated image(s) whose file is missing[/]")
    if images["unreadable"]:
        lines.append(f"[yellow]skipped {images['unreadable']} image(s) that could not be decoded[/]")
    return lines


def report_json(report: dict) -> str:
    """The report as JSON text (one trailing newline), as ``--json`` prints it and ``--report`` saves it."""
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


def check_report_path(destination: str | Path) -> Path:
    """Validate the report file before a run -> its path; one-line :class:`OutputError` naming it.

    A folder, a missing folder or a folder this process may not write into are refused.
    """
    path = Path(destination).expanduser()
    if path.is_dir():
        raise OutputError(path, "report must be a file, not a folder")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(path, f"folder {parent} does not exist", errno.ENOENT)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(path, f"folder {parent} is not writable", errno.EACCES)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(path, "report file is not writable", errno.EACCES)
    return path


def write_report(report: dict, destination: str | Path) -> Path:
    """Write ``report`` as JSON to the file ``destination`` atomically (replacing it) -> the path written."""
    from autocrop.io.fs import atomic_write_bytes

    path = check_report_path(destination)
    atomic_write_bytes(path, report_json(report).encode("utf-8"))
    return path
