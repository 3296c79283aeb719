"""The Responses API: `POST /v1/responses` (stream and not), `GET|DELETE /v1/responses/{id}`,
`GET /v1/responses/{id}/input_items`.

Same answers as chat (simulator.generate). Responses are stored as JSON files under the state dir
(every worker sees them), with the conversation that led to them, so `previous_response_id`
chains: the new request sees the earlier inputs and outputs (its `usage.input_tokens` grows, a
tool result answers the earlier call). Streams use OpenAI's event names, each SSE event with an
`event:` line and a `sequence_number`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from simulator import generate as gen
from simulator.errors import error
from simulator.generate import BadRequest, approx_tokens
from simulator.http import Request, Response, StreamWriter

_json = msgspec.json.Encoder()
_PREFIX = os.urandom(4).hex()
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def _ok(data: Any, status: int = 200) -> Response:
    return Response(status, _json.encode(data))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _listed(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    """An input item as `GET /v1/responses/{id}/input_items` lists it: messages with their
    content as `input_text` parts and a status, as OpenAI does."""
    out = {**item, "id": item_id}
    if out.get("type") == "message":
        content = out.get("content")
        if isinstance(content, str):
            out["content"] = [{"type": "input_text", "text": content}]
        out.setdefault("status", "completed")
    return out


def _items(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'input' must be a string or a non-empty array of input items.", "input")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadRequest(f"Invalid value for 'input[{i}]': expected an object.", f"input[{i}]")
        kind = item.get("type", "message")
        if kind == "message" and not isinstance(item.get("role"), str):
            raise BadRequest(f"Missing required parameter: 'input[{i}].role'.", f"input[{i}].role",
                             "missing_required_parameter")
        if kind == "function_call_output" and not isinstance(item.get("call_id"), str):
            raise BadRequest(f"Missing required parameter: 'input[{i}].call_id'.", f"input[{i}].call_id",
                             "missing_required_parameter")
        out.append({**item, "type": kind})
    return out


class ResponsesHandler:
    def __init__(self, root: Path, *, seed: int, chunk_words: int) -> None:
        self.dir = root / "responses"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.chunk_words = max(1, chunk_words)
        self._n = 0

    # ------------------------------------------------------------------ storage
    def _path(self, rid: str) -> Path | None:
        if not rid.startswith("resp_") or not rid[5:].isalnum():
            return None
        return self.dir / f"{rid}.json"

    def _load(self, rid: str) -> dict[str, Any] | None:
        path = self._path(rid)
        if path is None or not path.exists():
            return None
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def _save(self, record: dict[str, Any]) -> None:
        path = self._path(record["response"]["id"])
        assert path is not None
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_json.encode(record))
        tmp.replace(path)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_sim{_PREFIX}{self._n:012x}"

    # ------------------------------------------------------------------ routing
    def route(self, req: Request, path: str, writer: StreamWriter) -> Response | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 1:
            if req.method != "POST":
                return error(405, f"Method {req.method} not allowed for {req.path}", code="method_not_allowed")
            try:
                return self.create(req, writer)
            except BadRequest as err:
                return error(err.status, str(err), param=err.param, code=err.code)
        rid = parts[1]
        rec = self._load(rid)
        if rec is None:
            return error(404, f"Response with id '{rid}' not found.", param="response_id")
        if len(parts) == 2 and req.method == "GET":
            return _ok(rec["response"])
        if len(parts) == 2 and req.method == "DELETE":
            stored = self._path(rid)
            assert stored is not None
            stored.unlink(missing_ok=True)
            return _ok({"id": rid, "object": "response", "deleted": True})
        if len(parts) == 3 and parts[2] == "input_items" and req.method == "GET":
            data = [_listed(it, it.get("id") or self._id("msg")) for it in reversed(rec["input"])]
            return _ok({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                        "last_id": data[-1]["id"] if data else None, "has_more": False})
        return error(404, f"Invalid URL ({req.method} {req.path})", code="unknown_url")

    # ------------------------------------------------------------------ create
    def create(self, req: Request, writer: StreamWriter) -> Response | None:
        data = gen.json_object(req.body)
        mdl = data.get("model")
        if not isinstance(mdl, str) or not mdl:
            raise BadRequest("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        items = _items(data.get("input"))
        context: list[dict[str, Any]] = []
        prev_id = data.get("previous_response_id")
        if prev_id is not None:
            prev = self._load(str(prev_id)) if isinstance(prev_id, str) else None
            if prev is None:
                raise BadRequest(f"Previous response with id '{prev_id}' not found.", "previous_response_id",
                                 "previous_response_not_found")
            context = [*prev["context"], *prev["input"], *prev["response"]["output"]]
        conversation = [*context, *items]
        instructions = data.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise BadRequest("Invalid type for 'instructions': expected a string.", "instructions")
        ask, input_tokens = self._ask(mdl, data, conversation, instructions or "")
        choice = gen.answer(ask, self.seed)
        response = self._response(data, mdl, choice, input_tokens, prev_id, instructions)
        if data.get("store") is not False:
            self._save({"response": response, "input": items, "context": context})
        if data.get("stream") is True:
            events = self._events(response)
            writer.start(200, "text/event-stream", (("cache-control", "no-cache"),))
            writer._conn.write(b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n")
            return None
        return _ok(response)

    def _ask(self, mdl: str, data: dict[str, Any], conversation: list[dict[str, Any]],
             instructions: str) -> tuple[gen.Ask, int]:
        system = [instructions] if instructions else []
        user = ""
        tool_output: str | None = None
        tool_name: str | None = None
        names: dict[str, str] = {}
        tokens = 3
        for item in conversation:
            kind = item.get("type")
            tool_output = None
            if kind == "message":
                text = _text(item.get("content"))
                tokens += 3 + approx_tokens(text)
                if item.get("role") in ("system", "developer"):
                    system.append(text)
                elif item.get("role") == "user":
                    user = text
            elif kind == "function_call":
                names[str(item.get("call_id"))] = str(item.get("name"))
                tokens += approx_tokens(str(item.get("arguments") or ""))
            elif kind == "function_call_output":
                out = item.get("output")
                tool_output = out if isinstance(out, str) else json.dumps(out)
                tool_name = names.get(str(item.get("call_id")))
                tokens += approx_tokens(tool_output)
        tools = gen.parse_tools(data.get("tools"), chat=False)
        text_cfg = data.get("text")
        fmt = text_cfg.get("format") if isinstance(text_cfg, dict) else None
        schema, json_object = gen.parse_schema_format(fmt, "text.format")
        include = data.get("include") or []
        want_lp = isinstance(include, list) and LOGPROBS_INCLUDE in include
        top = gen.parse_top_logprobs(True if want_lp else None, data.get("top_logprobs") if want_lp else None)
        limit = data.get("max_output_tokens")
        return gen.Ask(model=mdl, system="\n".join(system), user=user, tool_output=tool_output, tool_name=tool_name,
                       tools=tools, tool_choice=gen.parse_tool_choice(data.get("tool_choice"), tools, chat=False),
                       json_schema=schema, json_object=json_object, limit=limit if isinstance(limit, int) else None,
                       top_logprobs=top), tokens

    def _response(self, data: dict[str, Any], mdl: str, ch: gen.Choice, input_tokens: int, prev_id: Any,
                  instructions: str | None) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        for tc in ch.tool_calls:
            output.append({"type": "function_call", "id": "fc_" + tc.id[5:], "call_id": tc.id, "name": tc.name,
                           "arguments": tc.arguments, "status": "completed"})
        if ch.content is not None:
            output.append({"type": "message", "id": self._id("msg"), "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": ch.content, "annotations": [],
                                        "logprobs": list(ch.logprobs or ())}]})
        out_tokens = gen.output_tokens((ch,))
        incomplete = ch.finish_reason == "length"
        raw_text = data.get("text")
        text_cfg: dict[str, Any] = raw_text if isinstance(raw_text, dict) else {}
        now = int(time.time())
        return {
            "id": self._id("resp"), "object": "response", "created_at": now, "status":
                "incomplete" if incomplete else "completed", "completed_at": None if incomplete else now,
            "background": False, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": instructions, "max_output_tokens": data.get("max_output_tokens"),
            "max_tool_calls": None, "model": mdl, "output": output, "parallel_tool_calls": True,
            "previous_response_id": prev_id, "prompt_cache_key": data.get("prompt_cache_key"),
            "reasoning": {"effort": None, "summary": None}, "safety_identifier": data.get("safety_identifier"),
            "service_tier": "default", "store": data.get("store") is not False, "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium", **text_cfg},
            "tool_choice": data.get("tool_choice", "auto"), "tools": data.get("tools") or [],
            "top_logprobs": data.get("top_logprobs", 0), "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": input_tokens,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input_tokens + out_tokens},
            "user": data.get("user"), "metadata": data.get("metadata") or {},
        }

    def _events(self, response: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []

        def ev(kind: str, **fields: Any) -> None:
            body = {"type": kind, "sequence_number": len(out), **fields}
            out.append(b"event: " + kind.encode() + b"\ndata: " + _json.encode(body) + b"\n\n")

        start = {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None,
                 "incomplete_details": None}
        ev("response.created", response=start)
        ev("response.in_progress", response=start)
        for i, item in enumerate(response["output"]):
            if item["type"] == "function_call":
                ev("response.output_item.added", output_index=i,
                   item={**item, "arguments": "", "status": "in_progress"})
                args = item["arguments"]
                step = max(1, len(args) // 3 + 1)
                for a in range(0, len(args), step):
                    ev("response.function_call_arguments.delta", item_id=item["id"], output_index=i,
                       delta=args[a:a + step])
                ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, name=item["name"],
                   arguments=args)
                ev("response.output_item.done", output_index=i, item=item)
                continue
            part = item["content"][0]
            ev("response.output_item.added", output_index=i, item={**item, "status": "in_progress", "content": []})
            ev("response.content_part.added", item_id=item["id"], output_index=i, content_index=0,
               part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            for piece, lps in self._pieces(part):
                ev("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0, delta=piece,
                   logprobs=lps)
            ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=part["text"],
               logprobs=part["logprobs"])
            ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0, part=part)
            ev("response.output_item.done", output_index=i, item=item)
        ev("response.incomplete" if response["status"] == "incomplete" else "response.completed", response=response)
        return out

    def _pieces(self, part: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
        lps = part["logprobs"]
        k = self.chunk_words
        if lps:
            return [("".join(t["token"] for t in lps[i:i + k]), lps[i:i + k]) for i in range(0, len(lps), k)]
        words = part["text"].split(" ")
        return [(" ".join(words[i:i + k]) + (" " if i + k < len(words) else ""), [])
                for i in range(0, len(words), k)]

