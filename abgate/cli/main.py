"""The `abgate` entry point: registers every command without importing it.

Each command module is imported only when that command runs (or its own `--help` is shown), so
`abgate --help` and `abgate config validate` do not pay for duckdb, numpy, the openai SDK or
Litestar. The top-level help lists the commands from the short help kept here;
tests/abgate/test_cli_main.py checks it equals each command's own help text, and that `--help`
imports none of the heavy libraries.

Adding a command: append a `Lazy(...)` entry to `COMMANDS` (name, module, attribute, kind, help).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True, slots=True)
class Lazy:
    name: str
    module: str
    attr: str
    kind: Literal["command", "group"]
    help: str
    context_settings: dict[str, Any] = field(default_factory=dict)


_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

COMMANDS: tuple[Lazy, ...] = (
    Lazy("serve", "abgate.cli.serve", "serve", "command",
         'Serve the OpenAI-compatible gateway. FILE seeds an empty store; later it is applied only\nwhen its content changed since it was last applied, keeping the traffic state (weights,\ncoverage, phase) that promote, rollback and rollout manage. Edits are picked up live.'),
    Lazy("analyze", "abgate.cli.analyze_cmd", "analyze", "command",
         "Per-arm units, metric means, lifts with 95% CIs, SRM and days elapsed for one phase."),
    Lazy("gate", "abgate.cli.gate_cmd", "gate_command", "command",
         "Decide GO (exit 0) / NO-GO (exit 3) / HOLD (exit 4) and write a decision record."),
    Lazy("plan", "abgate.cli.plan_cmd", "plan", "command",
         'Sample size and duration for a baseline, MDE, traffic, arms and looks.'),
    Lazy("promote", "abgate.cli.rollout_cmd", "promote", "command",
         "Set ARM's weight (default 100%); the other arms share the rest proportionally."),
    Lazy("rollback", "abgate.cli.rollout_cmd", "rollback", "command",
         "All of ROUTE's traffic back to control (arms[0]), or to a prior config version."),
    Lazy("rollout", "abgate.cli.rollout_cmd", "rollout_command", "command",
         "Ramp ARM through STEPS, checking the guardrails after each INTERVAL; roll back on harm.\n"
         "State is kept in <state>/rollouts/ROUTE.json, so running it again resumes."),
    Lazy("archive", "abgate.cli.archive_cmd", "archive", "command",
         "Consume the Redis stream `abgate:events` into the JSONL archive (fsync, then ack)."),
    Lazy("demo", "abgate.cli.demo_cmd", "demo", "command",
         "Run the whole loop: traffic, dataset, fine-tune, eval, gate, promote, automatic rollback."),
    Lazy("simulator", "abgate.cli.simulator_cmd", "simulator", "command",
         "Run the OpenAI-compatible simulator (chat, streaming, files, fine-tuning, embeddings). `--help` for flags.",
         _PASS),
    Lazy("traffic", "abgate.cli.simulator_cmd", "traffic", "command",
         "Send simulated-user chat traffic and feedback through a gateway. `--help` for flags.", _PASS),
    Lazy("config", "abgate.cli.config_cmd", "app", "group",
         "Show, validate, change and roll back the versioned router config."),
    Lazy("dataset", "abgate.cli.dataset_cmd", "app", "group",
         "Build, review, validate, inspect and export fine-tuning datasets."),
    Lazy("finetune", "abgate.cli.finetune_cmd", "app", "group",
         "Launch and track fine-tuning jobs; runs are recorded in the registry."),
    Lazy("models", "abgate.cli.models_cmd", "app", "group",
         "Model versions from fine-tuning, and adding them to routes."),
    Lazy("events", "abgate.cli.archive_cmd", "events_app", "group", "Inspect the event archive."),
    Lazy("secrets", "abgate.cli.secrets_cmd", "app", "group",
         "Deployment secrets kept in the state dir (interaction-id signing keys)."),
    Lazy("eval", "abgate.cli.eval_cmd", "app", "group",
         "Offline evaluation: run a held-out set, compare runs, offline gate."),
    Lazy("variants", "abgate.cli.variants_cmd", "app", "group",
         "Arms as variants: few-shot variants from curated datasets, variant ids."),
)


def load(spec: Lazy) -> Any:
    """Import the command's module and build its click command (typer's vendored click)."""
    obj = getattr(importlib.import_module(spec.module), spec.attr)
    cmd: Any
    if spec.kind == "group":
        cmd = typer.main.get_group(obj)
    else:
        single = typer.Typer()
        single.command(spec.name, context_settings=spec.context_settings or None)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = spec.name
    return cmd


class _Commands(MutableMapping[str, Any]):
    """The group's `commands`: names known up front, each command built on first access."""

    def __init__(self, specs: tuple[Lazy, ...]) -> None:
        self._specs = {s.name: s for s in specs}
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        cmd = self._loaded.get(name)
        if cmd is None:
            cmd = self._loaded[name] = load(self._specs[name])
        return cmd

    def __setitem__(self, name: str, cmd: Any) -> None:
        self._loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        self._specs.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._specs
        yield from (n for n in self._loaded if n not in self._specs)

    def __len__(self) -> int:
        return len(set(self._specs) | set(self._loaded))

    def stub(self, name: str) -> Any | None:
        """A help-only stand-in (name, help, context settings) for listing without importing."""
        if name in self._loaded:
            return self._loaded[name]
        spec = self._specs.get(name)
        if spec is None:
            return None
        return TyperCommand(name=name, help=spec.help, callback=None)


class LazyGroup(TyperGroup):
    """The root group: listing commands (help, completion of names) imports nothing."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(COMMANDS)
        self._listing = 0

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: typer's own version iterates items()

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if self._listing and isinstance(commands, _Commands):
            return commands.stub(cmd_name)
        return commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing += 1
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing -= 1


app = typer.Typer(
    name="abgate",
    cls=LazyGroup,
    help="A/B routing and online evaluation gateway for LLM applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """A/B routing and online evaluation gateway for LLM applications."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
