"""`abgate secrets rotate`: a new interaction-id signing key; older ids keep verifying."""

from __future__ import annotations

from typing import Annotated

import typer

from abgate.cli.common import StateDir, console, fail, state_dir
from gateway.state import rotate_id_key

app = typer.Typer(help="Deployment secrets kept in the state dir (interaction-id signing keys).",
                  no_args_is_help=True)


@app.command()
def rotate(
    keep: Annotated[int, typer.Option(help="Signing keys to keep, newest first: ids signed with a dropped key "
                                           "stop verifying, so keep >= 2 for a grace period.")] = 2,
    state: StateDir = None,
) -> None:
    """Add a new signing key in front; gateways pick it up on restart (ids signed before still verify)."""
    if keep < 1:
        raise fail("--keep must be >= 1", 2)
    kid = rotate_id_key(state_dir(state), keep=keep)
    console.print(f"new signing key {kid}; keeping the newest {keep} key(s). Restart the gateways to sign with it.")
