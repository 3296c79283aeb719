"""A JSON value that matches a JSON Schema (the subset structured outputs and tool parameters use).

Used for `response_format: {type: json_schema}` answers and for tool-call arguments. Deterministic:
every choice is a hash of (key, path). Strings are taken from `text` (the model's answer) for
answer-like fields, from the user's words for the others, so values look related to the request.

Handled: type (incl. lists of types), properties / required / additionalProperties, items, minItems,
maxItems, enum, const, anyOf / oneOf / allOf (first branch), $ref to #/$defs or #/definitions,
minimum / maximum (and exclusive), minLength / maxLength, format date / date-time / email / uri / uuid.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

_ANSWER_FIELDS = ("answer", "text", "response", "reply", "content", "message", "summary", "output", "result")
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)


def _draw(key: str, path: str) -> float:
    h = hashlib.blake2b(f"{key}\x1f{path}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h) / 2**64


class _Gen:
    def __init__(self, root: dict[str, Any], key: str, text: str, user: str) -> None:
        self.root = root
        self.key = key
        self.text = text
        self.words = _WORD.findall(user) or ["example"]
        self.capitalised = [w for w in self.words if w[:1].isupper()][1:] or self.words  # skip a sentence start
        self.used_text = False

    def _ref(self, ref: str) -> dict[str, Any]:
        node: Any = self.root
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def value(self, schema: Any, path: str, name: str = "", depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > 12:
            return None if depth > 12 else self.string({}, path, name)
        if "$ref" in schema:
            return self.value(self._ref(str(schema["$ref"])), path, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            opts = schema["enum"]
            return opts[int(_draw(self.key, path) * len(opts))]
        for combo in ("anyOf", "oneOf"):
            if isinstance(schema.get(combo), list) and schema[combo]:
                branches = [b for b in schema[combo] if not (isinstance(b, dict) and b.get("type") == "null")]
                return self.value((branches or schema[combo])[0], path, name, depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                if isinstance(part, dict):
                    merged.update(part)
            return self.value(merged, path, name, depth + 1)
        typ = schema.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if typ == "object":
            raw_props = schema.get("properties")
            props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
            return {k: self.value(v, f"{path}.{k}", k, depth + 1) for k, v in props.items()}
        if typ == "array":
            lo = int(schema.get("minItems", 1))
            hi = int(schema.get("maxItems", max(lo, 3)))
            n = max(lo, min(hi, lo + int(_draw(self.key, path + "#n") * 2)))
            return [self.value(schema.get("items", {}), f"{path}[{i}]", name, depth + 1) for i in range(n)]
        if typ == "integer":
            return int(self.number(schema, path, integer=True))
        if typ == "number":
            return self.number(schema, path, integer=False)
        if typ == "boolean":
            return _draw(self.key, path) < 0.5
        if typ == "null":
            return None
        return self.string(schema, path, name)

    def number(self, schema: dict[str, Any], path: str, *, integer: bool) -> float:
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", (lo if isinstance(lo, (int, float)) else 0) + 100))
        lo = float(lo) if isinstance(lo, (int, float)) else 0.0
        hi = float(hi) if isinstance(hi, (int, float)) else lo + 100
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            lo += 1 if integer else 1e-6
        if "exclusiveMaximum" in schema and "maximum" not in schema:
            hi -= 1 if integer else 1e-6
        u = _draw(self.key, path)
        if integer:
            a, b = math.ceil(lo), math.floor(hi)
            return float(a + int(u * (b - a + 1))) if b >= a else float(a)
        return round(lo + u * (hi - lo), 2)

    def string(self, schema: dict[str, Any], path: str, name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            out = "2026-01-15"
        elif fmt == "date-time":
            out = "2026-01-15T12:00:00Z"
        elif fmt == "email":
            out = "user@example.com"
        elif fmt in ("uri", "url"):
            out = "https://example.com/"
        elif fmt == "uuid":
            out = "00000000-0000-4000-8000-000000000000"
        elif name.lower() in _ANSWER_FIELDS and not self.used_text and self.text:
            self.used_text = True
            out = self.text
        elif name.lower() in ("location", "city", "place", "country", "name", "product", "company"):
            out = self.capitalised[int(_draw(self.key, path) * len(self.capitalised))]
        elif name.lower() in ("query", "question", "search", "q", "prompt"):
            out = " ".join(self.words)
        else:
            out = self.words[int(_draw(self.key, path) * len(self.words))]
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        if len(out) < lo:
            out = out + "x" * (lo - len(out))
        if isinstance(hi, int) and len(out) > hi:
            out = out[:hi]
        return out


def generate(schema: dict[str, Any], *, key: str, text: str = "", user: str = "") -> Any:
    """A value valid for `schema`; `text` fills the first answer-like string field, `user` the others."""
    gen = _Gen(schema, key, text, user)
    value = gen.value(schema, "$")
    if isinstance(value, dict) and not gen.used_text and text and isinstance(schema.get("properties"), dict):
        # no answer-like field: the answer goes into the first free-text string property
        for k, v in schema["properties"].items():
            if isinstance(v, dict) and v.get("type") == "string" and not ({"enum", "const", "format"} & set(v)) \
                    and "maxLength" not in v:
                value[k] = text
                break
    return value
