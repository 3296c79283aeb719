"""Responses-API interactions and tool calls -> chat fine-tuning examples (build, export, validate).

The archive lines are written as the gateway records them (DESIGN "events"; the Responses and
tool-call fields: endpoint, input, instructions, output, tool_calls, tools)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from abgate.cli.main import app
from training import conversations as conv
from training.validate import validate_lines

TS = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
TOOLS_RESPONSES = [{"type": "function", "name": "get_order", "description": "Look up an order",
                    "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}}, "strict": True},
                   {"type": "web_search"}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "Look up an order",
                                                 "parameters": {"type": "object",
                                                                "properties": {"id": {"type": "integer"}}}}}]


def _interaction(iid: str, **fields) -> dict:
    return {"kind": "interaction", "event_id": "e-" + iid, "ts": TS, "tenant": "acme", "route": "support",
            "arm": "control", "model": "gpt-4o-mini", "interaction_id": iid, "traffic": "live", "status": "ok",
            "unit": None, "stream": False, "http_status": 200, "latency_ms": 3.0, **fields}


def _thumbs(iid: str) -> dict:
    return {"kind": "feedback", "event_id": "f-" + iid, "ts": TS, "tenant": "acme", "interaction_id": iid,
            "metric": "thumbs", "value": 1, "source": "user"}


def _archive(state: Path, events: list[dict]) -> None:
    part = state / "events" / f"date={TS[:10]}"
    part.mkdir(parents=True)
    (part / "t-00001.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_responses_items_become_chat_messages() -> None:
    msgs = conv.input_messages(
        [{"role": "developer", "content": "Be brief."},
         {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Where is order 7?"}]},
         {"type": "function_call", "call_id": "call_1", "name": "get_order", "arguments": "{\"id\": 7}"},
         {"type": "function_call_output", "call_id": "call_1", "output": "{\"status\": \"shipped\"}"},
         {"type": "reasoning", "summary": []}], "You are Order Support.")
    assert msgs == [
        {"role": "system", "content": "You are Order Support."}, {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is order 7?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_order", "arguments": "{\"id\": 7}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"status\": \"shipped\"}"}]
    out = conv.output_message([{"type": "reasoning"}, {"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "It shipped.", "annotations": []}]}])
    assert out == {"role": "assistant", "content": "It shipped."}
    assert conv.chat_tools(TOOLS_RESPONSES) == CHAT_TOOLS  # built-in tools dropped


def test_build_export_and_validate_responses_and_tool_call_interactions(tmp_path: Path) -> None:
    state = tmp_path / "s"
    events = [
        # a Responses call answered with text, its input a plain string
        _interaction("r1", endpoint="responses", instructions="You are Order Support.",
                     input="Where is order 7?", response="It shipped yesterday.",
                     output=[{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                              "content": [{"type": "output_text", "text": "It shipped yesterday.", "annotations": []}]}]),
        # a Responses call that called a tool
        _interaction("r2", endpoint="responses", instructions="You are Order Support.", tools=TOOLS_RESPONSES,
                     input=[{"role": "user", "content": "And order 9?"}], response=None,
                     output=[{"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_order",
                              "arguments": "{\"id\": 9}", "status": "completed"}]),
        # a chat completion whose answer is a tool call
        _interaction("c1", endpoint="chat", tools=CHAT_TOOLS, response=None, finish_reason="tool_calls",
                     messages=[{"role": "system", "content": "You are Order Support."},
                               {"role": "user", "content": "Status of order 12?"}],
                     tool_calls=[{"id": "call_12", "type": "function",
                                  "function": {"name": "get_order", "arguments": "{\"id\": 12}"}}]),
    ]
    _archive(state, events + [_thumbs(e["interaction_id"]) for e in events])
    r = CliRunner().invoke(app, ["dataset", "build", "--near-dup", "0", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["examples"] == 3 and rep["skipped_input"] == []
    ds = rep["dataset_id"]
    out = CliRunner().invoke(app, ["dataset", "export", ds, "--include-unreviewed", "--state-dir", str(state)])
    lines = out.stdout.splitlines()
    by_user = {json.loads(x)["messages"][1]["content"]: json.loads(x) for x in lines}
    assert by_user["Where is order 7?"] == {"messages": [
        {"role": "system", "content": "You are Order Support."}, {"role": "user", "content": "Where is order 7?"},
        {"role": "assistant", "content": "It shipped yesterday."}]}
    r2 = by_user["And order 9?"]
    assert r2["tools"] == CHAT_TOOLS
    assert r2["messages"][-1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "get_order", "arguments": "{\"id\": 9}"}}]}
    c1 = by_user["Status of order 12?"]
    assert c1["tools"] == CHAT_TOOLS and c1["messages"][-1]["tool_calls"][0]["id"] == "call_12"
    rep = validate_lines(lines, min_examples=1)
    assert rep.errors == [], rep.errors


def test_tool_call_examples_are_validated() -> None:
    good = {"messages": [{"role": "user", "content": "order 7?"},
                         {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                             "name": "get_order", "arguments": "{\"id\": 7}"}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
                         {"role": "assistant", "content": "It shipped."}], "tools": CHAT_TOOLS}
    bad_args = json.loads(json.dumps(good))
    bad_args["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"id": 7}
    unknown = json.loads(json.dumps(good))
    unknown["messages"][1]["tool_calls"][0]["function"]["name"] = "cancel_order"
    orphan = json.loads(json.dumps(good))
    orphan["messages"][2]["tool_call_id"] = "c2"
    bad_tools = {**good, "tools": [{"type": "function", "name": "get_order"}]}  # Responses shape, not chat
    rep = validate_lines([json.dumps(x) for x in (good, bad_args, unknown, orphan, bad_tools)], min_examples=1,
                         allow_mixed_system_prompts=True)
    got = sorted((p.line, p.code) for p in rep.errors)
    assert got == [(2, "invalid_tool_call"), (3, "unknown_tool"), (4, "orphan_tool_message"), (5, "invalid_tools")]
    assert "arguments must be a JSON string" in next(str(p) for p in rep.errors if p.line == 2)
