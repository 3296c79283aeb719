"""Training candidates: from the event archive (DuckDB over the JSONL) or from JSONL/CSV files.

A candidate is one conversation with everything known about it: the request messages, the
answer, and the latest feedback per metric (DESIGN: per (interaction_id, metric) the latest
event wins). Unreadable input lines are never dropped silently: they come back as `Skipped`.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.archive import glob_pattern
from training import conversations as conv

_COLUMNS = {
    "event_id": "VARCHAR", "kind": "VARCHAR", "ts": "VARCHAR", "tenant": "VARCHAR", "route": "VARCHAR",
    "arm": "VARCHAR", "model": "VARCHAR", "interaction_id": "VARCHAR", "traffic": "VARCHAR", "status": "VARCHAR",
    "messages": "JSON", "response": "VARCHAR", "metric": "VARCHAR", "value": "JSON", "extra": "JSON",
    "source": "VARCHAR", "endpoint": "VARCHAR", "tool_calls": "JSON", "input": "JSON", "instructions": "JSON",
    "output": "JSON", "tools": "JSON",
}


@dataclass
class Candidate:
    source_id: str
    tenant: str
    messages: list[dict[str, Any]]  # the conversation up to (excluding) the answer
    response: str
    feedback: dict[str, Any] = field(default_factory=dict)  # metric -> latest value
    feedback_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> {ts, source, extra}
    ts: str | None = None
    route: str | None = None
    arm: str | None = None
    model: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # file metadata (category, quality, confidence, ...)
    # the whole assistant message when it is more than text (tool calls); `response` keeps its text
    answer: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None  # chat-format function tools the request offered


@dataclass(frozen=True)
class Skipped:
    where: str  # "file:line"
    reason: str


@dataclass(frozen=True)
class ArchiveFilter:
    since: str | None = None  # YYYY-MM-DD inclusive
    until: str | None = None  # YYYY-MM-DD inclusive
    route: str | None = None
    tenant: str | None = None
    arm: str | None = None
    model: str | None = None
    include_eval: bool = False


def from_archive(state_dir: Path, flt: ArchiveFilter = ArchiveFilter()) -> tuple[list[Candidate], list[Skipped]]:
    if not glob.glob(glob_pattern(state_dir), recursive=True):
        return [], []
    import duckdb  # here, not at import: the gateway's admin routes import this module

    from evaluation import archive_sql

    con = duckdb.connect(":memory:")
    try:
        # The one archive reader (JSONL parsed once, compacted Parquet days in place), with the columns used here.
        bad = archive_sql.load_events(con, "ev", state_dir, columns=_COLUMNS)
        skipped = [Skipped(path, f"{n} unreadable archive line(s)") for path, n in sorted(bad.items())]
        where, args = ["kind = 'interaction'", "status = 'ok'",
                       "((response IS NOT NULL AND response <> '') OR tool_calls IS NOT NULL OR output IS NOT NULL)"], []
        if not flt.include_eval:
            where.append("coalesce(traffic, 'live') = 'live'")
        for col, val in (("route", flt.route), ("tenant", flt.tenant), ("arm", flt.arm), ("model", flt.model)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if flt.since:
            where.append("ts >= ?")
            args.append(flt.since)
        if flt.until:
            where.append("ts < ?")
            args.append(flt.until + "T99")  # inclusive of the whole day (RFC 3339 sorts as text)
        rows = con.execute(
            "SELECT interaction_id, tenant, ts, route, arm, model, messages, response, endpoint, tool_calls, input,"
            " instructions, output, tools FROM ev WHERE "
            + " AND ".join(where) + " ORDER BY ts, interaction_id", args).fetchall()
        fb = con.execute(archive_sql.latest_feedback_sql("ev", ("value", "ts", "source", "extra"))).fetchall()
    finally:
        con.close()
    feedback: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {}
    for iid, metric, value, ts, source, extra in fb:
        feedback.setdefault(iid, {})[metric] = (
            json.loads(value) if value is not None else None,
            {"ts": ts, "source": source, "extra": json.loads(extra) if extra else None},
        )
    out: list[Candidate] = []
    seen: set[str] = set()
    for iid, tenant, ts, route, arm, model, messages, response, endpoint, calls, inp, instr, output, tools in rows:
        if iid is None or iid in seen:  # a replayed duplicate line is one interaction
            continue
        seen.add(iid)
        answer: dict[str, Any] | None = None
        if endpoint == "responses":
            msgs: Any = conv.input_messages(_j(inp), _j(instr))
            answer = conv.output_message(_j(output))
            if answer is None and response:
                answer = {"role": "assistant", "content": response}
            if answer is None or not msgs:
                skipped.append(Skipped(iid, "Responses interaction without input or output items (capture off?)"))
                continue
        else:
            msgs = json.loads(messages) if messages else []
            if not isinstance(msgs, list):
                skipped.append(Skipped(iid, "interaction messages are not a list (capture off?)"))
                continue
            if _j(calls):
                answer = conv.assistant_message(response, _j(calls))
        f = feedback.get(iid, {})
        out.append(Candidate(
            source_id=iid, tenant=tenant or "default", messages=msgs,
            response=response or (answer or {}).get("content") or "", ts=ts, route=route, arm=arm, model=model,
            feedback={k: v[0] for k, v in f.items()}, feedback_meta={k: v[1] for k, v in f.items()},
            answer=answer if answer and answer.get("tool_calls") else None, tools=conv.chat_tools(_j(tools))))
    return out, skipped


def _j(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


_USER_KEYS = ("user_message", "user", "input", "prompt", "question")
_ANSWER_KEYS = ("assistant_response", "assistant", "output", "response", "answer", "completion")
_GOLD_KEYS = ("gold", "edited_response", "user_edited_response", "gold_answer")


def _candidate_from_row(row: dict[str, Any], where: str, default_tenant: str) -> Candidate:
    fields = {k: v for k, v in row.items() if k not in ("messages", "tools")}
    answer_msg: dict[str, Any] | None = None
    tenant = str(row.get("tenant_id") or row.get("tenant") or default_tenant)
    source_id = str(row.get("source_id") or row.get("interaction_id") or row.get("id") or where)
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise ValueError("`messages` must be a list of objects")
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
        if last is None:
            raise ValueError("no assistant message")
        answer = msgs[last].get("content")
        if msgs[last].get("tool_calls"):
            answer_msg = conv.assistant_message(answer if isinstance(answer, str) else None, msgs[last]["tool_calls"])
            answer = answer if isinstance(answer, str) else ""
        elif not isinstance(answer, str):
            raise ValueError("the last assistant message has no text content")
        prefix = msgs[:last]
    else:
        user = next((row[k] for k in _USER_KEYS if row.get(k)), None)
        answer = next((row[k] for k in _ANSWER_KEYS if row.get(k)), None)
        if not isinstance(user, str) or not isinstance(answer, str):
            raise ValueError(f"needs `messages`, or a user text ({'/'.join(_USER_KEYS)}) and an answer "
                             f"({'/'.join(_ANSWER_KEYS)})")
        prefix = []
        system = row.get("system_prompt") or row.get("system")
        if system:
            prefix.append({"role": "system", "content": str(system)})
        prefix.append({"role": "user", "content": user})
    fb: dict[str, Any] = {}
    gold = next((row[k] for k in _GOLD_KEYS if row.get(k)), None)
    if gold:
        fb["edited_response"] = str(gold)
    for key in ("thumbs", "followup", "approved"):
        if row.get(key) not in (None, ""):
            fb[key] = _coerce(row[key])
    review = row.get("review") or row.get("rubric")
    if isinstance(review, dict):
        fb["review"] = review
    return Candidate(source_id=source_id, tenant=tenant, messages=prefix, response=answer, feedback=fb,
                     ts=row.get("created_at") or row.get("ts"), fields=fields, answer=answer_msg,
                     tools=conv.chat_tools(row.get("tools")))


def _coerce(v: Any) -> Any:
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "yes", "1", "+1"):
            return True if low != "+1" else 1
        if low in ("false", "no", "0"):
            return False
        if low == "-1":
            return -1
        try:
            return float(low)
        except ValueError:
            return v
    return v


def from_file(path: Path, default_tenant: str = "default") -> tuple[list[Candidate], list[Skipped]]:
    out: list[Candidate] = []
    skipped: list[Skipped] = []
    if path.suffix.lower() == ".csv":
        return _from_csv(path, default_tenant)
    with open(path, "rb") as f:
        for no, raw in enumerate(f, start=1):
            where = f"{path}:{no}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                skipped.append(Skipped(where, f"not UTF-8 ({err.reason} at column {err.start + 1})"))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                skipped.append(Skipped(where, f"invalid JSON: {err.msg}"))
                continue
            if not isinstance(row, dict):
                skipped.append(Skipped(where, "not a JSON object"))
                continue
            try:
                out.append(_candidate_from_row(row, where, default_tenant))
            except ValueError as err:
                skipped.append(Skipped(where, str(err)))
    return out, skipped


def _from_csv(path: Path, default_tenant: str) -> tuple[list[Candidate], list[Skipped]]:
    """CSV with a header row; `line` is where the row ends (quoted cells may span lines)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often write a BOM
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 ({err.reason}); save the CSV as UTF-8") from None
    out: list[Candidate] = []
    skipped: list[Skipped] = []
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA_CELLS)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            skipped.append(Skipped(f"{path}:{reader.line_num}", f"unreadable CSV row: {err}"))
            continue
        where = f"{path}:{reader.line_num}"
        if _EXTRA_CELLS in row:
            skipped.append(Skipped(where, f"{len(reader.fieldnames or []) + len(row[_EXTRA_CELLS])} cells but the "
                                          f"header has {len(reader.fieldnames or [])} (unquoted comma?)"))
            continue
        clean = {k: (_maybe_json(v) if isinstance(v, str) else v) for k, v in row.items()
                 if k and v not in (None, "")}
        try:
            out.append(_candidate_from_row(clean, where, default_tenant))
        except ValueError as err:
            skipped.append(Skipped(where, str(err)))
    return out, skipped


_EXTRA_CELLS = "\x00extra"


def _maybe_json(v: str) -> Any:
    s = v.strip()
    if s.startswith(("{", "[")):
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return v
    return v
