"""`abgate demo`: the whole loop on embedded defaults and the bundled simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abgate.cli.common import fail
from abgate.demo.run import DemoFailed, run_demo


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its state (wiped first).")] = Path(".abgate-demo"),
    users: Annotated[int, typer.Option(help="Simulated users.")] = 300,
    requests: Annotated[int, typer.Option(help="Requests in the first traffic run.")] = 1200,
) -> None:
    """Run the whole loop: traffic, dataset, fine-tune, eval, gate, promote, automatic rollback."""
    try:
        run_demo(workdir, users=users, requests=requests)
    except DemoFailed as err:
        raise fail(f"demo failed: {err}") from None
