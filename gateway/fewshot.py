"""Dynamic few-shot (in-context learning): the export file, its index, and per-request retrieval.

`abgate variants build-fewshot` exports a curated dataset version as one JSON file
(`<state>/fewshot/<dataset>.json`): each example's user text, the approved answer and the
embedding of the user text (float32, base64), computed through the configured upstream.
The gateway loads it into a `FewShotIndex` (a unit-normalised numpy matrix) when the config
loads; per request it embeds the last user message through the same embedding model (one
upstream call, bounded by the arm's `timeout_ms`) and takes the k nearest by cosine
similarity. Any failure there answers the request without the examples and says why on the
event; a failing embedding upstream is skipped for a few seconds rather than waited on.
Modelled on TensorZero's DICL variant (embedding model, k, curated examples).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:  # numpy is imported when an index is loaded: a gateway without few-shot arms never pays for it
    import numpy as np
    import numpy.typing as npt

from gateway.events import FewShotNote
from gateway.upstream.transport import UpstreamConnectionError, UpstreamResponse

FORMAT = "abgate-fewshot/1"
EXPORT_DIR = "fewshot"


class FewShotError(ValueError):
    """An export file that cannot be used (missing, malformed, another tenant's)."""


class ExportedExample(msgspec.Struct, frozen=True):
    id: str
    user: str
    assistant: str
    embedding: str  # base64 of little-endian float32
    category: str | None = None


class FewShotExport(msgspec.Struct, frozen=True):
    format: str
    dataset: str
    tenant: str
    embedding_model: str
    dim: int
    created_at: str
    examples: tuple[ExportedExample, ...]
    dataset_name: str | None = None


def export_path(state_dir: Path, dataset: str, path: str | None = None) -> Path:
    """Where the export of `dataset` lives: the configured path (relative to the state dir) or the default."""
    if path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else state_dir / p
    return state_dir / EXPORT_DIR / f"{dataset}.json"


def encode_vector(vec: npt.ArrayLike) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()


def write_export(path: Path, export: FewShotExport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(msgspec.json.encode(export))
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Shot:
    id: str
    user: str
    assistant: str


@dataclass(frozen=True, slots=True, eq=False)
class FewShotIndex:
    dataset: str
    tenant: str
    embedding_model: str
    sha256: str
    shots: tuple[Shot, ...]
    matrix: npt.NDArray[np.float32]  # (n, dim), rows unit-normalised

    def nearest(self, query: npt.NDArray[np.float32], k: int, min_similarity: float | None = None
                ) -> list[tuple[int, float]]:
        """(row, cosine) of the k most similar examples, most similar first."""
        import numpy as np

        n = len(self.shots)
        if n == 0:
            return []
        sims = self.matrix @ query
        k = min(k, n)
        top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        order = top[np.argsort(-sims[top], kind="stable")]
        out = [(int(i), float(sims[i])) for i in order]
        if min_similarity is not None:
            out = [(i, s) for i, s in out if s >= min_similarity]
        return out


_cache: dict[Path, tuple[tuple[int, int], FewShotIndex]] = {}
_blas_limited = False


def _single_threaded_blas() -> None:
    """One BLAS thread: a (n x d) @ (d,) search is ~0.1 ms single-threaded, while OpenBLAS's
    thread pool on a busy machine spends milliseconds waking threads for it (on the event loop)."""
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _blas_limited = True


def load_index(path: Path) -> FewShotIndex:
    """Load an export (cached by path, size and mtime: config reloads do not re-read it)."""
    _single_threaded_blas()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FewShotError(f"no few-shot export at {path}; build it with `abgate variants build-fewshot`") from None
    except OSError as err:
        raise FewShotError(f"cannot read few-shot export {path}: {err}") from None
    key = (st.st_size, st.st_mtime_ns)
    hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    import numpy as np

    data = path.read_bytes()
    try:
        exp = msgspec.json.decode(data, type=FewShotExport)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise FewShotError(f"few-shot export {path} is invalid: {err}") from None
    if exp.format != FORMAT:
        raise FewShotError(f"few-shot export {path} has format {exp.format!r}, expected {FORMAT!r}")
    rows = np.zeros((len(exp.examples), exp.dim), dtype=np.float32)
    for i, ex in enumerate(exp.examples):
        try:
            vec = np.frombuffer(base64.b64decode(ex.embedding, validate=True), dtype="<f4")
        except ValueError:
            raise FewShotError(f"few-shot export {path}: examples[{i}].embedding is not base64") from None
        if vec.shape[0] != exp.dim:
            raise FewShotError(f"few-shot export {path}: examples[{i}].embedding has {vec.shape[0]} dimensions, "
                               f"expected {exp.dim}")
        rows[i] = vec
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows /= np.where(norms == 0, 1.0, norms)
    index = FewShotIndex(
        dataset=exp.dataset, tenant=exp.tenant, embedding_model=exp.embedding_model,
        sha256=hashlib.sha256(data).hexdigest(),
        shots=tuple(Shot(ex.id, ex.user, ex.assistant) for ex in exp.examples), matrix=rows)
    _cache[path] = (key, index)
    return index


class EmbeddingClient(Protocol):
    """What retrieval needs of an upstream client (gateway.upstream.UpstreamClient has it)."""

    name: str
    urls: dict[str, str]

    async def post(self, url: str, body: bytes, stream: bool) -> UpstreamResponse: ...


class _EmbeddingData(msgspec.Struct):
    embedding: str | list[float]


class _EmbeddingResponse(msgspec.Struct):
    data: list[_EmbeddingData]


_emb_decoder = msgspec.json.Decoder(_EmbeddingResponse)
_enc = msgspec.json.Encoder()

FAILURES_TO_OPEN = 3
OPEN_FOR_S = 5.0
CACHE_SIZE = 4096


class Retriever:
    """Per-arm retrieval: embed the request's user text, take the k nearest curated examples."""

    def __init__(self, index: FewShotIndex, client: EmbeddingClient, *, k: int, timeout_ms: float,
                 min_similarity: float | None = None):
        self.index, self.client, self.k, self.min_similarity = index, client, k, min_similarity
        self.timeout_s = timeout_ms / 1000.0
        self.url = client.urls["embeddings"]
        self.model_prefix = b'{"model":' + _enc.encode(index.embedding_model) + b',"encoding_format":"base64","input":'
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._failures = 0
        self._open_until = 0.0

    def _note(self, status: str, error: str | None = None, ms: float | None = None,
              hits: list[tuple[int, float]] | None = None) -> FewShotNote:
        hits = hits or []
        return FewShotNote(status=status, dataset=self.index.dataset,  # type: ignore[arg-type]
                           ids=[self.index.shots[i].id for i, _ in hits],
                           similarity=[round(s, 4) for _, s in hits],
                           retrieval_ms=round(ms, 3) if ms is not None else None, error=error)

    async def retrieve(self, text: str | None) -> tuple[tuple[Shot, ...], FewShotNote, float]:
        """(examples, note for the event, seconds spent waiting on the embedding upstream)."""
        t0 = time.perf_counter()
        if not text:
            return (), self._note("skipped", "the request has no user text to retrieve examples for"), 0.0
        vec = self._cache.get(text)
        waited = 0.0
        if vec is None:
            if self._open_until and time.monotonic() < self._open_until:
                return (), self._note("skipped", f"embedding upstream {self.client.name!r} is failing; "
                                      "answered without examples"), 0.0
            try:
                vec = await self._embed(text)
            except _EmbedFailed as err:
                waited = time.perf_counter() - t0
                self._failures += 1
                if self._failures >= FAILURES_TO_OPEN:
                    self._open_until = time.monotonic() + OPEN_FOR_S
                return (), self._note("skipped", f"{err}; answered without examples", waited * 1000), waited
            waited = time.perf_counter() - t0
            self._failures, self._open_until = 0, 0.0
            self._cache[text] = vec
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        hits = self.index.nearest(vec, self.k, self.min_similarity)
        shots = tuple(self.index.shots[i] for i, _ in hits)
        return shots, self._note("ok", None, (time.perf_counter() - t0) * 1000, hits), waited

    async def _embed(self, text: str) -> npt.NDArray[np.float32]:
        import numpy as np

        c = self.client
        body = self.model_prefix + _enc.encode(text) + b"}"
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await c.post(self.url, body, False)
                try:
                    data = await resp.read()
                finally:
                    resp.release()
            if resp.status != 200:
                raise _EmbedFailed(f"embedding upstream {c.name!r} answered {resp.status}")
        except TimeoutError:
            raise _EmbedFailed(f"embedding upstream {c.name!r} timed out") from None
        except UpstreamConnectionError as err:
            raise _EmbedFailed(f"cannot reach embedding upstream {c.name!r}: {err}") from None
        try:
            emb = _emb_decoder.decode(data).data[0].embedding
            vec = (np.frombuffer(base64.b64decode(emb), dtype="<f4") if isinstance(emb, str)
                   else np.asarray(emb, dtype=np.float32))
        except (msgspec.DecodeError, msgspec.ValidationError, IndexError, ValueError):
            raise _EmbedFailed(f"embedding upstream {c.name!r} returned an invalid embedding") from None
        if vec.shape[0] != self.index.matrix.shape[1]:
            raise _EmbedFailed(f"embedding has {vec.shape[0]} dimensions, the index {self.index.matrix.shape[1]} "
                               f"(rebuild the export with the same embedding model)")
        norm = float(np.linalg.norm(vec))
        return (vec / norm if norm else vec).astype(np.float32, copy=False)


class _EmbedFailed(Exception):
    pass


def user_text(messages: list[Any]) -> str | None:
    """The last user message's text (string content, or its text parts joined)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                parts = [t for p in c if isinstance(p, dict) and isinstance(t := p.get("text"), str)]
                return " ".join(parts) or None
            return None
    return None
