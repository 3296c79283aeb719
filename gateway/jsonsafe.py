"""Bounded nesting depth for JSON (and YAML) request bodies.

A 2 KB body of nested brackets makes recursive decoders (msgspec, json, PyYAML) raise
RecursionError or stall the event loop. `check_depth(body)` refuses anything nested
deeper than `MAX_DEPTH` with a 400 (OpenAI error shape) before any decoder runs.

Cost: a body with fewer than `MAX_DEPTH` brackets (nearly every real request) is two
`bytes.count` calls. Otherwise string literals are cut out and the brackets kept (C-speed
regex and translate), complete subtrees up to `MAX_DEPTH` deep are removed in at most
`MAX_DEPTH` `bytes.replace` rounds, and only what is left is scanned bracket by bracket.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

from gateway.errors import ApiError

MAX_DEPTH = 64
CODE = "nesting_too_deep"

# A string literal; the closing quote is optional so an unterminated string is consumed to
# the end in one linear pass (requiring it made each later quote retry the rest: quadratic).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_PARENS = bytes.maketrans(b"[]{}", b"()()")
_STEP = [0] * 256
_STEP[ord("(")] = 1
_STEP[ord(")")] = -1
_any = msgspec.json.Decoder()


def too_deep(max_depth: int = MAX_DEPTH) -> ApiError:
    return ApiError(400, f"request body is nested deeper than {max_depth} levels", CODE)


def depth_exceeds(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True when a JSON text opens more than `max_depth` arrays/objects at once."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data)).translate(_PARENS)
    if b"(" * (max_depth + 1) in brackets:  # the usual bomb: a run of opening brackets
        return True
    for _ in range(max_depth):
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
        if not brackets:
            return False
    if not brackets:
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets))) > max_depth


def check_depth(data: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ApiError(400, code `nesting_too_deep`) for a body nested deeper than `max_depth`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if depth_exceeds(raw, max_depth):
        raise too_deep(max_depth)


def decode(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Depth-checked `msgspec.json.decode`; msgspec's DecodeError passes through for the
    caller's own message, RecursionError (a deeper decoder limit) becomes the same 400."""
    check_depth(data, max_depth)
    try:
        return _any.decode(data)
    except RecursionError:
        raise too_deep(max_depth) from None


def yaml_depth_exceeds(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """True when a YAML text nests collections deeper than `max_depth`. Walks the parser's
    events (no composing, no recursion) and stops at the first level too deep."""
    import yaml

    depth = 0
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    return True
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as err:
        if "nesting depth" in str(err):  # libyaml's own (much higher) limit
            return True
        raise
    return False
