"""Structured-output values are valid against their JSON Schema (checked by the jsonschema library)."""

from __future__ import annotations

import jsonschema
import pytest

from simulator.schema import generate

SCHEMAS = [
    {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1,
     "maximum": 5}}, "required": ["answer", "score"], "additionalProperties": False},
    {"type": "object", "properties": {"intent": {"enum": ["buy", "sell", "hold"]}, "confidence":
     {"type": "number", "minimum": 0, "maximum": 1}, "tags": {"type": "array", "items": {"type": "string"},
     "minItems": 2, "maxItems": 4}, "urgent": {"type": "boolean"}, "note": {"type": ["string", "null"]}},
     "required": ["intent", "confidence", "tags", "urgent", "note"], "additionalProperties": False},
    {"$defs": {"step": {"type": "object", "properties": {"explanation": {"type": "string"}, "output":
     {"type": "string"}}, "required": ["explanation", "output"], "additionalProperties": False}},
     "type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
     "final_answer": {"type": "string"}}, "required": ["steps", "final_answer"], "additionalProperties": False},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}, "email":
     {"type": "string", "format": "email"}, "code": {"type": "string", "minLength": 5, "maxLength": 5},
     "n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, "kind": {"const": "x"},
     "choice": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
     "required": ["when", "email", "code", "n", "kind", "choice"]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("key", ["a", "b", "c"])
def test_generated_values_validate(schema: dict, key: str) -> None:
    value = generate(schema, key=key, text="The answer.", user="Compare Acme and Globex for me")
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


def test_answer_field_gets_the_text_and_names_come_from_the_user() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "summary": {"type": "string"}}}
    value = generate(schema, key="k", text="Sunny all week.", user="What is the weather in Paris?")
    assert value == {"city": "Paris", "summary": "Sunny all week."}
    assert generate(schema, key="k", text="x", user="y") == generate(schema, key="k", text="x", user="y")
