"""The `abgate` entry point: registers every command group."""

from __future__ import annotations

import typer

from abgate.cli import config_cmd

app = typer.Typer(
    name="abgate",
    help="A/B routing and online evaluation gateway for LLM applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
