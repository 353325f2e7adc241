"""``autocrop config path|show|set|unset``: inspect and edit the user's default settings.

Data (the path, ``show``'s table or ``--json``) goes to stdout; messages ("top set in ...") to stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

from autocrop.errors import UsageError

config_app = typer.Typer(
    name="config",
    help="Show or change default settings (a TOML file; precedence: command line > AUTOCROP_<KEY> > file > built-in).",
    epilog="Examples:\n  autocrop config set ratio 16:9\n  autocrop config show --json\n  autocrop config unset ratio",
    no_args_is_help=True,
    add_completion=False,
)


def device_problem(device: str) -> str | None:
    """Why torch cannot use ``device`` here ("cuda" on a CPU-only build), or None when it can.

    ``device`` has passed :func:`autocrop.settings.check_device`; torch is imported only for cuda and mps.
    """
    if not device.startswith(("cuda", "mps")):
        return None
    import torch

    if device == "mps":
        if torch.backends.mps.is_available():
            return None
        return f"device {device!r}: not available (torch {torch.__version__} finds no Apple GPU); use cpu or auto"
    if not torch.cuda.is_available():
        why = "was built without CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
        return f"device {device!r}: not available (torch {torch.__version__} {why}); use cpu or auto"
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        return f"device {device!r}: not available (torch sees {count} CUDA GPU(s): cuda:0..cuda:{count - 1})"
    return None


@config_app.command("path")
def path_command() -> None:
    """Print the config file's path (it need not exist yet)."""
    from autocrop.commands.config_file import config_path

    typer.echo(str(config_path()))


@config_app.command("show")
def show_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the settings as JSON.")] = False,
) -> None:
    """Print every setting, its effective value and where it comes from (default, file or env)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from autocrop.commands.config_file import KEYS, load_config

    settings = load_config()
    if json_out:
        data = {k: {"value": settings.values[k], "source": settings.sources[k]} for k in KEYS}
        typer.echo(json.dumps({"path": str(settings.path), "settings": data}, indent=2))
        return
    table = Table(title=f"{settings.path}{'' if settings.path.exists() else ' (not created yet)'}",
                  title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("key")
    table.add_column("value")
    table.add_column("source")
    table.add_column("meaning")
    for key, spec in KEYS.items():
        value = settings.values[key]
        table.add_row(key, repr(value) if isinstance(value, str) else str(value), settings.sources[key], spec.help)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # piped: long paths and meanings stay on one line
    console.print(table)


@config_app.command("set")
def set_command(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting name (see 'autocrop config show').", show_default=False)],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="New value; \"\" resets a text setting to its built-in default.",
                                         show_default=False)],
) -> None:
    """Store KEY = VALUE in the config file (checked first; a device must be usable here)."""
    from autocrop.commands.config_file import parse_value, set_value

    if key == "device":
        problem = device_problem(parse_value(key, value))
        if problem:
            raise UsageError(problem)
    path = set_value(key, value)
    done = "set in" if value.strip() else "back to its built-in default; removed from"
    typer.echo(f"{key} {done} {path}", err=True)


@config_app.command("unset")
def unset_command(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting name.", show_default=False)],
) -> None:
    """Remove KEY from the config file (back to its built-in default)."""
    from autocrop.commands.config_file import set_value

    path = set_value(key, None)
    typer.echo(f"{key} removed from {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``autocrop config ...`` to the app."""
    app.add_typer(config_app, name="config")
