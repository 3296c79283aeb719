"""Decision records: `<state>/decisions/<id>.json` + `<id>.md`, and a `decision` event."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from evaluation.gate import Decision
from gateway import events as ev
from gateway.archive import append_events


def decisions_dir(state_dir: Path) -> Path:
    return state_dir / "decisions"


def to_dict(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(d)
    return out


def _g(x: float | None, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec)


def _offline_header(d: Decision) -> list[str]:
    x = d.extra
    return [
        f"- stage: offline; criteria mode: {x.get('criteria_mode', 'ci')} "
        "(ci = the whole confidence interval must clear each threshold; point = the point estimate must)",
        f"- baseline run: `{x.get('baseline_run')}` (model `{x.get('baseline_model')}`)",
        f"- candidate run: `{x.get('candidate_run')}` (model `{x.get('candidate_model')}`)",
        f"- dataset: `{x.get('dataset')}` sha256 `{x.get('dataset_sha256')}`; "
        f"{x.get('paired_examples')} paired examples (minimum {x.get('min_examples')})",
    ]


def markdown(d: Decision) -> str:
    if d.stage == "offline":
        head = _offline_header(d)
    else:
        head = [
            f"- stage: {d.stage}; experiment: `{d.experiment}`; route: `{d.route}`; phase: {d.phase}; "
            f"config version: {d.config_version}",
            f"- control: `{d.control}`; treatment: `{d.treatment}`",
            f"- data: {d.data_first_ts} .. {d.data_last_ts} ({_g(d.days, '.2f')} days; minimum {d.min_days})",
            f"- SRM p: {_g(d.srm_p)} (HOLD below {d.srm_threshold})",
            f"- inference: {d.inference or 'n/a'}" + (f" (look {d.look} at this phase)" if d.look else ""),
            f"- multiplicity: {d.multiplicity or 'n/a'}",
            f"- archive: {d.archive_files} files, {d.archive_corrupt_lines} unreadable lines",
        ]
    lines = [
        f"# Decision {d.decision_id}: **{d.verdict}**",
        "",
        *head,
        f"- criteria: `{d.criteria_path}` sha256 `{d.criteria_sha256}`",
        f"- decided by {d.decided_by or 'unknown'} at {d.decided_at}",
        "",
        "## Why",
        "",
        *[f"- {r}" for r in d.reasons],
        "",
    ]
    if d.arms:
        lines += ["## Arms", "", "| arm | model | weight | units | interactions |", "|---|---|---|---|---|"]
        lines += [f"| {a.name} | {a.model} | {_g(a.weight)} | {a.units} | {a.interactions} |" for a in d.arms]
        lines.append("")
    if d.metrics:
        lines += [
            "## Metrics",
            "",
            "| metric | role | control | treatment | units (c / t) | coverage (c / t) | lift | CI (level) | p | "
            "threshold | verdict | units needed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in d.metrics:
            level = f" ({1 - m.alpha:.4g})" if m.alpha is not None else ""
            lines.append(
                f"| {m.metric} | {m.role} ({m.direction}, {m.effect}) | {_g(m.control_value)} | "
                f"{_g(m.treatment_value)} | {m.n_control} / {m.n_treatment} | "
                f"{_g(m.coverage_control, '.1%')} / {_g(m.coverage_treatment, '.1%')} | {_g(m.estimate)} | "
                f"[{_g(m.low)}, {_g(m.high)}]{level} | {_g(m.p_value, '.3g')} | "
                f"{m.threshold:+.4g} | {m.verdict}{' — ' + m.note if m.note else ''} | {m.units_needed or ''} |"
            )
        lines.append("")
        lines += ["Metric definitions (gateway.metric_catalog):", ""]
        lines += [f"- `{m.metric}`: {m.definition}" for m in d.metrics if m.definition]
        lines.append("")
    if d.archive_corrupt_examples:
        lines += ["## Unreadable archive lines", "", *[f"- `{x}`" for x in d.archive_corrupt_examples], ""]
    if d.warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in d.warnings], ""]
    return "\n".join(lines)


def write_record(state_dir: Path, d: Decision) -> Path:
    """Write JSON + Markdown atomically and append the `decision` event; returns the JSON path."""
    out = decisions_dir(state_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = to_dict(d)
    for suffix, text in ((".json", json.dumps(body, indent=2, default=str)), (".md", markdown(d))):
        tmp = out / f".{d.decision_id}{suffix}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out / f"{d.decision_id}{suffix}")
    append_events(
        state_dir,
        [
            ev.Decision(
                event_id=ev.new_event_id(), ts=ev.now_rfc3339(), tenant="system", route=d.route,
                experiment=d.experiment, phase=d.phase, config_version=d.config_version,
                decision_id=d.decision_id, verdict=d.verdict, record=body,
            )
        ],
    )
    return out / f"{d.decision_id}.json"


def load_record(state_dir: Path, decision_id: str) -> dict[str, Any]:
    path = decisions_dir(state_dir) / f"{decision_id}.json"
    if not path.exists():
        raise FileNotFoundError(f"no decision record {decision_id} under {decisions_dir(state_dir)}")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record
