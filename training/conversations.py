"""Interactions -> chat fine-tuning conversations: Responses API items and tool calls.

OpenAI's chat fine-tuning format (what `dataset export` writes):
    {"messages": [..., {"role": "assistant", "content": null,
                        "tool_calls": [{"id": "call_1", "type": "function",
                                        "function": {"name": "get_order", "arguments": "{\\"id\\": 7}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "..."}, ...],
     "tools": [{"type": "function", "function": {"name": "get_order", "description": "...", "parameters": {...}}}]}

Responses API shapes read here (https://platform.openai.com/docs/api-reference/responses):
  * `instructions`: a string -> the system message;
  * `input`: a string (one user message) or items: messages `{"role", "content"}` (content a
    string or parts `input_text` / `output_text` / `input_image`; role `developer` is a system
    message), `{"type": "function_call", "call_id", "name", "arguments"}` and
    `{"type": "function_call_output", "call_id", "output"}`;
  * `output`: items, `{"type": "message", "role": "assistant", "content": [{"type": "output_text",
    "text"}]}` and `{"type": "function_call", "call_id", "name", "arguments"}`; other item types
    (reasoning, built-in tool calls) carry nothing a chat model can be trained on and are skipped;
  * `tools`: `{"type": "function", "name", "description", "parameters", "strict"}` (flat), chat
    tools `{"type": "function", "function": {...}}` pass through; built-in tools are dropped.
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def _text(content: Any) -> Any:
    """Responses content parts -> chat content: text parts joined, images as chat image parts."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts, images = [], []
    for p in content:
        if not isinstance(p, dict):
            continue
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text") and isinstance(p.get("text"), str):
            texts.append(p["text"])
        elif kind in ("input_image", "image_url"):
            url = p.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str):
                images.append({"type": "image_url", "image_url": {"url": url}})
    if images:
        return [{"type": "text", "text": t} for t in texts] + images
    return "".join(texts)


def tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A Responses `function_call` item -> a chat `tool_calls` entry."""
    args = item.get("arguments")
    return {"id": str(item.get("call_id") or item.get("id") or ""), "type": "function",
            "function": {"name": str(item.get("name") or ""),
                         "arguments": args if isinstance(args, str) else json.dumps(args or {})}}


def input_messages(input_: Any, instructions: Any = None) -> list[Message]:
    """The conversation a Responses request sent, as chat messages."""
    out: list[Message] = []
    if isinstance(instructions, str) and instructions:
        out.append({"role": "system", "content": instructions})
    if isinstance(input_, str):
        return [*out, {"role": "user", "content": input_}]
    for item in input_ if isinstance(input_, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" or ("role" in item and kind not in ("function_call", "function_call_output")):
            role = item.get("role", "user")
            out.append({"role": "system" if role == "developer" else role, "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = tool_call(item)
            if out and out[-1].get("role") == "assistant" and out[-1].get("tool_calls") and not out[-1].get("content"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                        "content": output if isinstance(output, str) else json.dumps(output)})
    return out


def output_message(output: Any) -> Message | None:
    """The answer of a Responses call (its output items) as one chat assistant message."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message" and item.get("role", "assistant") == "assistant":
            t = _text(item.get("content"))
            if isinstance(t, str) and t:
                texts.append(t)
        elif item.get("type") == "function_call":
            calls.append(tool_call(item))
    if not texts and not calls:
        return None
    msg: Message = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def chat_tools(tools: Any) -> list[dict[str, Any]] | None:
    """Function tools in chat format (Responses' flat ones converted); None when there are none."""
    out = []
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            continue
        if isinstance(t.get("function"), dict):
            out.append({"type": "function", "function": dict(t["function"])})
        elif t.get("name"):
            fn = {k: t[k] for k in ("name", "description", "parameters") if t.get(k) is not None}
            out.append({"type": "function", "function": fn})
    return out or None


def assistant_message(response: str | None, tool_calls: Any) -> Message:
    """A chat answer: its text and, when the model called tools, the calls in chat format."""
    msg: Message = {"role": "assistant", "content": response if response else None}
    calls = [c for c in tool_calls if isinstance(c, dict)] if isinstance(tool_calls, list) else []
    if calls:
        msg["tool_calls"] = [tool_call(c) if c.get("type") == "function_call" else c for c in calls]
    if msg["content"] is None and not calls:
        msg["content"] = ""
    return msg
