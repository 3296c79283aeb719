"""`abgate simulator ...` and `abgate traffic ...`: the bundled simulator and simulated users.

Thin pass-throughs to `python -m simulator` and `python -m simulator.traffic`, so their
own argparse help and flags stay the single source of truth.
"""

from __future__ import annotations

import typer

_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def simulator(ctx: typer.Context) -> None:
    """Run the OpenAI-compatible simulator (chat, streaming, files, fine-tuning, embeddings). `--help` for flags."""
    from simulator.__main__ import main

    raise typer.Exit(main(list(ctx.args)) or 0)


def traffic(ctx: typer.Context) -> None:
    """Send simulated-user chat traffic and feedback through a gateway. `--help` for flags."""
    from simulator.traffic import main

    raise typer.Exit(main(list(ctx.args)) or 0)
