"""``autocrop config path|show|set|unset``: inspect and edit the user's default settings.

Data (the path, ``show``'s table or ``--json``) goes to stdout; messages ("top set in ...") to stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

config_app = typer.Typer(
    name="config",
    help="Show or change default settings (a TOML file; precedence: command line > AUTOCROP_<KEY> > file > built-in).",
    epilog="Examples:\n  autocrop config set ratio 16:9\n  autocrop config show --json\n  autocrop config unset ratio",
    no_args_is_help=True,
    add_completion=False,
)


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

    if key == "device" and parse_value(key, value).startswith(("cuda", "mps")):
        from autocrop.model.resolve import resolve_device

        resolve_device(value)  # usable here? (torch is imported for these two only)
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
