"""``autocrop doctor``: what is installed, which op backend and device are used, which model is loaded.

Prints a table (or ``--json``) and exits 1 when something needed to crop photos is broken: torch
missing, the model missing/damaged, or an invalid ``AUTOCROP_OPS``. Everything else is informational.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from autocrop.commands.exit_codes import EXIT_PROBLEM
from autocrop.errors import AutocropError

PROBLEM_MARK = "\0"  # prefix of a row value shown in red


def _distribution_version(name: str) -> str | None:
    """Installed version of distribution ``name`` without importing it, or None."""
    from importlib import metadata  # here, not at module level: ~30 ms that `autocrop crop` never needs

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _torch_section(report: dict[str, Any], problems: list[str]) -> Any:
    """Fill torch, op backend and device entries; returns the torch module or None."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - a broken torch install is exactly what doctor reports
        report["torch"] = None
        report["ops"] = {"backend": None, "detail": "torch is not importable"}
        report["device"] = {"cpu_count": os.cpu_count()}
        problems.append(f"torch is not importable ({err})")
        return None
    report["torch"] = torch.__version__
    from autocrop import ops

    available, detail = ops.compiled_status()
    try:
        active = ops.backend()
    except AutocropError as err:
        active = None
        problems.append(str(err))
    report["ops"] = {
        "backend": active,
        "compiled_available": available,
        "detail": detail,
        "env": os.environ.get(ops.OPS_ENV),
    }
    cuda = torch.cuda.is_available()
    report["device"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_build": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "default": "cuda" if cuda else "cpu",
    }
    return torch


def _model_section(model: Path | None, problems: list[str]) -> dict[str, Any]:
    """Load the model (``None``: the packaged default) and describe it, or say why it cannot be used."""
    from autocrop.model import weights as weight_files

    path = model.expanduser() if model is not None else weight_files.PACKAGED_WEIGHTS
    entry: dict[str, Any] = {"path": str(path), "default": model is None}
    if not path.is_file():
        entry["status"] = "missing"
        if model is None:
            message = f"the default model is missing: {path} (reinstall autocrop-views or pass --model)"
        else:
            message = f"{path}: model file not found"
        entry["message"] = message
        problems.append(message)
        return entry
    entry["size_bytes"] = path.stat().st_size
    entry["sha256"] = weight_files.sha256_of(path)
    try:
        from autocrop.model import load_scorer

        scorer = load_scorer(path)
    except AutocropError as err:
        entry["status"] = "error"
        entry["message"] = str(err)
        problems.append(str(err))
        return entry
    card = scorer.card or {}
    entry["status"] = "ok"
    entry["card"] = {
        "name": card.get("name"),
        "version": card.get("version") or card.get("autocrop_version"),
        "created": card.get("created"),
        "datasets": card.get("datasets"),
        "training_images": len(card.get("training_images") or []),
        "card_sha256_matches": card.get("sha256") == entry["sha256"] if card.get("sha256") else None,
    }
    entry["input_short_side"] = scorer.input_short_side
    entry["runtime"] = getattr(scorer, "runtime", "torch")
    entry["runtime_note"] = getattr(scorer, "runtime_note", None)
    entry["graph"] = str(getattr(scorer, "graph_source", None) or "") or None
    return entry


def _config_section(problems: list[str]) -> dict[str, Any]:
    """The user config: its path, whether it exists, the model/device it sets (a broken file is a problem)."""
    from autocrop.commands.config_file import config_path, load_config

    path = config_path()
    entry: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    try:
        config = load_config()
    except AutocropError as err:
        entry["message"] = str(err)
        problems.append(str(err))
        return entry
    for key in ("model", "device"):
        entry[key] = config.values[key]
        entry[f"{key}_source"] = config.sources[key]
    return entry


def _device_problem(device: str | None) -> str | None:
    """Why the configured ``device`` cannot be used on this machine, or None."""
    from autocrop.model.resolve import resolve_device

    try:
        resolve_device(device or "cpu")
    except AutocropError as err:
        return f"configured {err}"
    return None


def _data_section() -> dict[str, Any]:
    from autocrop.data.locate import DATA_ENV, find_data_root

    root = find_data_root()
    return {
        "root": str(root) if root is not None else None,
        "from_env": bool(os.environ.get(DATA_ENV)),
        "present": {name: root is not None and (root / name).is_dir() for name in ("GAICD", "FCDB", "FLMS", "weights")},
    }


def collect(model: Path | None = None) -> dict[str, Any]:
    """The doctor's report as a JSON-serialisable dict; ``problems`` lists what blocks cropping.

    The model checked is ``model`` when given, else the config's ``model`` setting, else the packaged default.
    """
    from autocrop import __version__

    problems: list[str] = []
    report: dict[str, Any] = {
        "autocrop": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "numpy": _distribution_version("numpy"),
        "pillow": _distribution_version("pillow"),
        "onnxruntime": _distribution_version("onnxruntime"),
    }
    torch = _torch_section(report, problems)
    report["config"] = _config_section(problems)
    configured = report["config"].get("model") or None
    if torch is not None:
        report["model"] = _model_section(model or (Path(configured) if configured else None), problems)
        if model is None and configured:
            report["model"]["from_config"] = True
        problem = _device_problem(report["config"].get("device"))
        if problem:
            problems.append(problem)
    else:
        report["model"] = {"status": "error", "message": "torch is not importable"}
    report["data"] = _data_section()
    report["problems"] = problems
    report["ok"] = not problems
    return report


def _rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the human-readable table; values starting with PROBLEM_MARK are problems."""
    ops_info, device, model, data = report["ops"], report["device"], report["model"], report["data"]
    rows = [
        ("autocrop", report["autocrop"]),
        ("python", report["python"]),
        ("platform", report["platform"]),
        ("torch", report["torch"] or "not importable"),
        ("numpy", report["numpy"] or "not installed"),
        ("pillow", report["pillow"] or "not installed"),
        ("onnxruntime", report["onnxruntime"] or "not installed"),
        ("op backend", f"{ops_info['backend'] or 'invalid AUTOCROP_OPS'}"
         + ("" if ops_info.get("compiled_available") else f"  ({ops_info['detail']})")),
    ]
    if ops_info.get("env"):
        rows.append(("AUTOCROP_OPS", ops_info["env"]))
    if "torch_threads" in device:
        cuda = "yes: " + ", ".join(device["cuda_devices"]) if device["cuda_available"] else "no"
        rows += [
            ("device", f"{device['default']}  (cpu cores {device['cpu_count']}, torch threads {device['torch_threads']})"),
            ("cuda", f"{cuda}  (torch built with CUDA {device['cuda_build']})" if device["cuda_build"] else cuda),
        ]
    if model.get("status") == "ok":
        card = model["card"]
        rows += [
            ("model", model["path"] + ("  (packaged default)" if model["default"] else "")
             + ("  (from config)" if model.get("from_config") else "")),
            ("model sha256", model["sha256"]),
            ("model card", f"{card['name'] or '?'}  version {card['version'] or '?'}"
             + (f"  created {card['created']}" if card["created"] else "")
             + f"  ({card['training_images']} training images)"),
            ("runtime", str(model.get("runtime")) + (f"  (graph {model['graph']})" if model.get("graph") else "")
             + (f"  {model['runtime_note']}" if model.get("runtime_note") else "")),
        ]
    else:
        rows.append(("model", PROBLEM_MARK + model.get("message", "unavailable")))
    config = report["config"]
    text = config["path"] + ("" if config["exists"] else "  (not created)")
    rows.append(("config file", (PROBLEM_MARK if config.get("message") else "") + text
                 + (f"  {config['message']}" if config.get("message") else "")))
    if config.get("device"):
        rows.append(("configured device", f"{config['device']}  (from {config['device_source']})"))
    present = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in data["present"].items())
    rows.append(("data dir", f"{data['root'] or 'none (set AUTOCROP_DATA_DIR)'}  ({present})"))
    return rows


def doctor(
    model: Annotated[Path | None, typer.Option("--model", metavar="FILE", show_default=False,
                                               help="Check this model file instead of the configured or packaged one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show versions, the op backend, the device and the model in use; exit 1 if something is broken."""
    report = collect(model)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="autocrop doctor", show_header=False, title_justify="left")
        table.add_column("check", style="bold")
        table.add_column("value", overflow="fold")
        for label, value in _rows(report):
            if value.startswith(PROBLEM_MARK):
                table.add_row(label, f"[red]{escape(value[1:])}[/red]")
            else:
                table.add_row(label, escape(value))
        console = Console()
        console.print(table)
        for problem in report["problems"]:
            console.print(f"[red]problem:[/red] {escape(problem)}")
        if report["ok"]:
            console.print("[green]ok[/green]")
    if not report["ok"]:
        raise typer.Exit(EXIT_PROBLEM)


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` verb to the CLI."""
    app.command("doctor", epilog="Example: autocrop doctor --json (the report as JSON on stdout)")(doctor)
