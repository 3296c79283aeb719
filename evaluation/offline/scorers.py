"""Per-example scorers. Each maps (example, model output) to named metric values.

A value of None means "not applicable to this example" (e.g. JSON field accuracy when
the reference is not JSON) and is left out of that metric's n; it never counts as a pass.
Built-ins are listed in BUILTINS; a custom scorer is an import path `module:function`
taking `(example: EvalExample, output: str)` and returning a bool (binary metric named
after the function), a number (continuous), None, or a mapping of metric name -> value.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from evaluation.offline.dataset import EvalExample

Kind = Literal["binary", "continuous"]
Scores = dict[str, float | None]
DEFAULT_FIELDS = ("intent_type", "budget_tier")
DEFAULT_SCORERS = ("exact_match", "json_valid", "field_accuracy", "key_facts", "length_ratio", "similarity", "latency")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    higher_is_better: bool | None  # None: informative only, never a "regression"


class ScorerError(ValueError):
    pass


class Scorer(Protocol):
    name: str

    def metrics(self) -> tuple[MetricSpec, ...]: ...

    def prepare(self, examples: Sequence[EvalExample]) -> None: ...

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]: ...


class _PerExample:
    """Base for scorers that look at one example at a time."""

    name = ""
    specs: tuple[MetricSpec, ...] = ()

    def metrics(self) -> tuple[MetricSpec, ...]:
        return self.specs

    def prepare(self, examples: Sequence[EvalExample]) -> None:
        return None

    def score(self, ex: EvalExample, output: str) -> Scores:
        raise NotImplementedError

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]:
        return [self.score(ex, out) for ex, out in items]


def parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _norm(text: str) -> str:
    return " ".join(text.split())


class ExactMatch(_PerExample):
    """Whitespace-normalised string equality; JSON answers compare as parsed values
    (so key order and spacing do not matter)."""

    name = "exact_match"
    specs = (MetricSpec("exact_match", "binary", True),)

    def score(self, ex: EvalExample, output: str) -> Scores:
        ok_r, ref = parse_json(ex.reference)
        ok_o, out = parse_json(output)
        if ok_r and ok_o and isinstance(ref, (dict, list)):
            return {"exact_match": float(ref == out)}
        return {"exact_match": float(_norm(output) == _norm(ex.reference))}


class JsonValid(_PerExample):
    """The output is strict JSON of the reference's type (object/array). Only for examples
    whose reference is JSON: free-text tasks are not penalised for prose."""

    name = "json_valid"
    specs = (MetricSpec("json_valid", "binary", True),)

    def score(self, ex: EvalExample, output: str) -> Scores:
        ok_r, ref = parse_json(ex.reference)
        if not ok_r or not isinstance(ref, (dict, list)):
            return {"json_valid": None}
        ok_o, out = parse_json(output.strip())
        return {"json_valid": float(ok_o and type(out) is type(ref))}


class FieldAccuracy(_PerExample):
    """Per-field equality of JSON outputs (seed 001: intent_type, budget_tier) and
    `all_fields_correct`. Invalid output JSON gets every applicable field wrong."""

    name = "field_accuracy"

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS) -> None:
        if not fields:
            raise ScorerError("field_accuracy needs at least one field")
        self.fields = tuple(fields)
        self.specs = (*(MetricSpec(f"field.{f}", "binary", True) for f in self.fields),
                      MetricSpec("all_fields_correct", "binary", True))

    def score(self, ex: EvalExample, output: str) -> Scores:
        ok_r, ref = parse_json(ex.reference)
        res: Scores = {s.name: None for s in self.specs}
        if not ok_r or not isinstance(ref, dict):
            return res
        ok_o, out = parse_json(output.strip())
        out = out if ok_o and isinstance(out, dict) else {}
        applicable = [f for f in self.fields if f in ref]
        for f in applicable:
            res[f"field.{f}"] = float(f in out and out[f] == ref[f])
        if applicable:
            res["all_fields_correct"] = float(all(res[f"field.{f}"] == 1.0 for f in applicable))
        return res


_NUMBER = re.compile(r"[$€£]?\d[\d,]*(?:\.\d+)?\s?(?:%|[BMK]\b|bn\b|billion\b|million\b)?", re.IGNORECASE)


def reference_numbers(text: str) -> tuple[str, ...]:
    """Numbers (with currency / unit) in a reference, used as key facts when none are given."""
    seen: dict[str, None] = {}
    for m in _NUMBER.finditer(text):
        seen.setdefault(m.group(0).strip().rstrip(",").lower(), None)
    return tuple(seen)


def _fact_norm(text: str) -> str:
    return _norm(text.lower().replace(",", ""))


class KeyFacts(_PerExample):
    """Share of the example's `key_facts` (else the reference's numbers) found in the output,
    case-insensitively (seed 003). No facts -> not applicable."""

    name = "key_facts"
    specs = (MetricSpec("key_facts", "continuous", True),)

    def score(self, ex: EvalExample, output: str) -> Scores:
        facts = ex.key_facts if ex.key_facts is not None else reference_numbers(ex.reference)
        if not facts:
            return {"key_facts": None}
        text = _fact_norm(output)
        return {"key_facts": sum(_fact_norm(f) in text for f in facts) / len(facts)}


class LengthRatio(_PerExample):
    """len(output) / len(reference) in characters, and `length_ok` when it is within 0.5-2
    (seed 003's sanity band; bounds inclusive)."""

    name = "length_ratio"
    specs = (MetricSpec("length_ratio", "continuous", None), MetricSpec("length_ok", "binary", True))

    def __init__(self, low: float = 0.5, high: float = 2.0) -> None:
        self.low, self.high = low, high

    def score(self, ex: EvalExample, output: str) -> Scores:
        ref = ex.reference.strip()
        if not ref:
            return {"length_ratio": None, "length_ok": None}
        r = len(output.strip()) / len(ref)
        return {"length_ratio": r, "length_ok": float(self.low <= r <= self.high)}


class TfidfSimilarity:
    """Cosine similarity of TF-IDF vectors (word 1-2 grams). The vectoriser is fitted on the
    dataset's references only, so base and candidate runs on one set share one space."""

    name = "similarity"

    def __init__(self) -> None:
        self._vec: Any = None

    def metrics(self) -> tuple[MetricSpec, ...]:
        return (MetricSpec("similarity", "continuous", True),)

    def prepare(self, examples: Sequence[EvalExample]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        refs = [e.reference for e in examples]
        self._vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        try:
            self._vec.fit(refs)
        except ValueError:  # every reference empty / no tokens
            self._vec = None

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]:
        if not items:
            return []
        if self._vec is None:
            self.prepare([ex for ex, _ in items])
        if self._vec is None:
            return [{"similarity": None} for _ in items]
        # rows are L2-normalised by the vectoriser, so the row-wise dot product is the cosine;
        # an output with no known words is the zero vector: similarity 0
        refs = self._vec.transform([ex.reference for ex, _ in items])
        outs = self._vec.transform([out for _, out in items])
        sims = np.asarray(refs.multiply(outs).sum(axis=1)).ravel()
        return [{"similarity": min(1.0, max(0.0, float(s)))} for s in sims]


class EmbeddingSimilarity:
    """Cosine similarity of embeddings from an OpenAI-compatible /embeddings endpoint."""

    name = "similarity"

    def __init__(self, client: Any, model: str, batch_size: int = 128) -> None:
        self.client, self.model, self.batch_size = client, model, batch_size

    def metrics(self) -> tuple[MetricSpec, ...]:
        return (MetricSpec("similarity", "continuous", True),)

    def prepare(self, examples: Sequence[EvalExample]) -> None:
        return None

    def _embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            # the API rejects empty strings; a single space embeds as "nothing"
            chunk = [t if t.strip() else " " for t in texts[i: i + self.batch_size]]
            resp = self.client.embeddings.create(model=self.model, input=chunk)
            out += [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
        return out

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]:
        if not items:
            return []
        vecs = self._embed([ex.reference for ex, _ in items] + [out for _, out in items])
        n = len(items)
        return [{"similarity": _cosine(vecs[i], vecs[n + i])} for i in range(n)]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


JUDGE_PROMPT = (
    "You are grading an AI assistant's answer against a reference answer.\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nAssistant answer:\n{answer}\n\n"
    "Rate the assistant answer from 1 (wrong or useless) to 10 (as good as the reference or better) for "
    "correctness and completeness. Reply with only the number."
)
_SCORE = re.compile(r"\b(10|[1-9])(?:\s*/\s*10)?\b")


def parse_judge_score(text: str) -> float | None:
    m = _SCORE.search(text or "")
    return float(m.group(1)) if m else None


class LlmJudge:
    """A model grades each answer 1-10 through the gateway's judge route. An unparseable
    or failed grade is None (missing), never a default score."""

    name = "llm_judge"

    def __init__(self, client: Any, route: str, concurrency: int = 4, headers: Mapping[str, str] | None = None) -> None:
        self.client, self.route, self.concurrency = client, route, max(1, concurrency)
        self.headers = dict(headers or {})
        self.failures: list[str] = []

    def metrics(self) -> tuple[MetricSpec, ...]:
        return (MetricSpec("judge_score", "continuous", True),)

    def prepare(self, examples: Sequence[EvalExample]) -> None:
        return None

    def _one(self, item: tuple[EvalExample, str]) -> Scores:
        ex, out = item
        prompt = JUDGE_PROMPT.format(question=ex.last_user, reference=ex.reference, answer=out)
        try:
            resp = self.client.chat.completions.create(
                model=self.route, messages=[{"role": "user", "content": prompt}], temperature=0,
                extra_headers=self.headers or None)
            text = resp.choices[0].message.content or ""
        except Exception as e:  # noqa: BLE001 - any failure of the judge is recorded, not fatal
            self.failures.append(f"{ex.id}: {type(e).__name__}: {e}")
            return {"judge_score": None}
        score = parse_judge_score(text)
        if score is None:
            self.failures.append(f"{ex.id}: unparseable judge reply {text[:80]!r}")
        return {"judge_score": score}

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, items))


class CustomScorer:
    """`module:function` -> a scorer; metric kinds come from the returned types."""

    def __init__(self, path: str) -> None:
        mod_name, _, fn_name = path.partition(":")
        if not mod_name or not fn_name:
            raise ScorerError(f"custom scorer {path!r} must be `module:function`")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ScorerError(f"custom scorer {path!r}: cannot import {mod_name!r}: {e}") from None
        fn = getattr(mod, fn_name, None)
        if not callable(fn):
            raise ScorerError(f"custom scorer {path!r}: {mod_name} has no function {fn_name!r}")
        self.name, self.fn = path, fn
        self._default = fn_name
        self._kinds: dict[str, Kind] = {}

    def metrics(self) -> tuple[MetricSpec, ...]:
        return tuple(MetricSpec(n, k, True) for n, k in self._kinds.items())

    def prepare(self, examples: Sequence[EvalExample]) -> None:
        return None

    def _value(self, name: str, v: Any) -> float | None:
        if v is None:
            self._kinds.setdefault(name, "binary")
            return None
        if isinstance(v, bool):
            self._kinds.setdefault(name, "binary")
            return float(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            self._kinds[name] = "continuous"
            return float(v)
        raise ScorerError(f"custom scorer {self.name}: metric {name!r} returned {v!r}; expected bool, number or None")

    def score_all(self, items: Sequence[tuple[EvalExample, str]]) -> list[Scores]:
        out: list[Scores] = []
        for ex, text in items:
            r = self.fn(ex, text)
            if isinstance(r, Mapping):
                out.append({str(k): self._value(str(k), v) for k, v in r.items()})
            else:
                out.append({self._default: self._value(self._default, r)})
        return out


BUILTINS: dict[str, Callable[..., Any]] = {
    "exact_match": ExactMatch,
    "json_valid": JsonValid,
    "field_accuracy": FieldAccuracy,
    "key_facts": KeyFacts,
    "length_ratio": LengthRatio,
    "similarity": TfidfSimilarity,
}
# Recorded by the runner for every example, not computed from the text.
LATENCY = MetricSpec("latency_ms", "continuous", False)
ERROR = MetricSpec("error", "binary", False)
SPECIAL = ("latency", "llm_judge")


@dataclass(frozen=True, slots=True)
class ScorerOptions:
    fields: tuple[str, ...] = DEFAULT_FIELDS
    embeddings_client: Any = None
    embeddings_model: str | None = None
    judge_client: Any = None
    judge_route: str | None = None
    judge_headers: tuple[tuple[str, str], ...] = ()
    concurrency: int = 4


def build(names: Sequence[str], opts: ScorerOptions = ScorerOptions()) -> list[Scorer]:
    """Scorers for names (built-in, `llm_judge`, `latency` (always on), or `module:function`)."""
    out: list[Scorer] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip()
        if not name or name in seen or name == "latency":
            continue
        seen.add(name)
        if name == "field_accuracy":
            out.append(FieldAccuracy(opts.fields))
        elif name == "similarity" and opts.embeddings_model:
            if opts.embeddings_client is None:
                raise ScorerError("similarity with --embeddings-model needs an embeddings endpoint")
            out.append(EmbeddingSimilarity(opts.embeddings_client, opts.embeddings_model))
        elif name == "llm_judge":
            if opts.judge_client is None or not opts.judge_route:
                raise ScorerError("llm_judge needs --judge-route and a gateway (--judge-gateway or --via-gateway)")
            out.append(LlmJudge(opts.judge_client, opts.judge_route, opts.concurrency, dict(opts.judge_headers)))
        elif name in BUILTINS:
            out.append(BUILTINS[name]())
        elif ":" in name:
            out.append(CustomScorer(name))
        else:
            known = ", ".join([*BUILTINS, *SPECIAL])
            raise ScorerError(f"unknown scorer {name!r}; built-ins: {known}; or a custom `module:function`")
    return out
