"""The `abgate` entry point: registers every command group."""

from __future__ import annotations

import typer

from abgate.cli import analyze_cmd, config_cmd, gate_cmd, rollout_cmd
from abgate.cli import serve as serve_cmd
from abgate.cli import dataset_cmd, finetune_cmd, models_cmd
from abgate.cli import archive_cmd
from abgate.cli import demo_cmd, secrets_cmd, simulator_cmd
from abgate.cli import eval_cmd
from abgate.cli import variants_cmd

app = typer.Typer(
    name="abgate",
    help="A/B routing and online evaluation gateway for LLM applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")
app.command("serve")(serve_cmd.serve)
app.command("analyze")(analyze_cmd.analyze)
app.command("gate")(gate_cmd.gate_command)
app.command("promote")(rollout_cmd.promote)
app.command("rollback")(rollout_cmd.rollback)
app.command("rollout")(rollout_cmd.rollout_command)
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(finetune_cmd.app, name="finetune")
app.add_typer(models_cmd.app, name="models")
app.command("archive")(archive_cmd.archive)
app.add_typer(archive_cmd.events_app, name="events")
app.command("demo")(demo_cmd.demo)
app.add_typer(secrets_cmd.app, name="secrets")
app.command("simulator", context_settings=simulator_cmd._PASS)(simulator_cmd.simulator)
app.command("traffic", context_settings=simulator_cmd._PASS)(simulator_cmd.traffic)
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(variants_cmd.app, name="variants")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
