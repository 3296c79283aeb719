"""gateway.fewshot: the export file, the cosine index and per-request retrieval over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from gateway import fewshot
from gateway.config import Upstream
from gateway.upstream import UpstreamClient
from gateway.upstream.breaker import Breaker
from gateway.upstream.transport import AiohttpTransport
from simulator.embeddings import embed
from tests.gateway.fewshot_helpers import write_export
from tests.support.procs import free_port


def test_load_index_normalises_and_finds_nearest_by_cosine(tmp_path: Path) -> None:
    index = fewshot.load_index(write_export(tmp_path))
    assert index.dataset == "ds_support1" and index.tenant == "default" and len(index.shots) == 5
    assert np.allclose(np.linalg.norm(index.matrix, axis=1), 1.0, atol=1e-5)
    q = np.asarray(embed("my order arrived broken, I want a refund"), dtype=np.float32)
    hits = index.nearest(q, 2)
    assert [index.shots[i].id for i, _ in hits][0] == "ex_refund"
    assert hits[0][1] >= hits[1][1]
    # k larger than the index: every example, still ordered
    every = index.nearest(q, 50)
    assert len(every) == 5 and [s for _, s in every] == sorted((s for _, s in every), reverse=True)
    # min_similarity drops weak neighbours
    assert all(s >= 0.3 for _, s in index.nearest(q, 5, min_similarity=0.3))
    assert len(index.nearest(q, 5, min_similarity=0.3)) < 5


def test_load_index_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = write_export(tmp_path)
    a = fewshot.load_index(path)
    assert fewshot.load_index(path) is a
    write_export(tmp_path, pairs=(("only", "one example", "answer"),))
    b = fewshot.load_index(path)
    assert b is not a and [s.id for s in b.shots] == ["only"]


def test_load_index_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(fewshot.FewShotError, match="no few-shot export at .*abgate variants build-fewshot"):
        fewshot.load_index(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(fewshot.FewShotError, match="is invalid"):
        fewshot.load_index(bad)
    path = write_export(tmp_path)
    doc = json.loads(path.read_text())
    doc["format"] = "other/9"
    path.write_text(json.dumps(doc))
    with pytest.raises(fewshot.FewShotError, match="has format 'other/9'"):
        fewshot.load_index(path)
    doc["format"] = fewshot.FORMAT
    doc["examples"][1]["embedding"] = fewshot.encode_vector([1.0, 2.0])
    path.write_text(json.dumps(doc))
    with pytest.raises(fewshot.FewShotError, match=r"examples\[1\].embedding has 2 dimensions, expected 256"):
        fewshot.load_index(path)


def test_user_text_is_the_last_user_message() -> None:
    assert fewshot.user_text([{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                              {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]) == "c"
    parts = [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url"}, {"type": "text",
                                                                                                   "text": "y"}]}]
    assert fewshot.user_text(parts) == "x y"
    assert fewshot.user_text([{"role": "system", "content": "s"}]) is None


def _client(base: str) -> UpstreamClient:
    """A real upstream client (aiohttp transport) for the embedding server."""
    spec = Upstream(base_url=base)
    return UpstreamClient("emb", spec, Breaker(5, 10.0), AiohttpTransport(spec))


async def _embedding_server(fail: dict[str, int]) -> tuple[web.AppRunner, str, list[dict[str, object]]]:
    seen: list[dict[str, object]] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if fail["status"]:
            return web.json_response({"error": {"message": "down"}}, status=fail["status"])
        vec = fewshot.encode_vector(embed(body["input"]))
        return web.json_response({"data": [{"index": 0, "embedding": vec}]})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1", seen


def test_retriever_embeds_through_the_upstream_caches_and_skips_a_failing_one(tmp_path: Path) -> None:
    index = fewshot.load_index(write_export(tmp_path))

    async def scenario() -> None:
        fail = {"status": 0}
        runner, base, seen = await _embedding_server(fail)
        client = _client(base)
        try:
            r = fewshot.Retriever(index, client, k=2, timeout_ms=2000)
            shots, note, waited = await r.retrieve("refund for my broken order please")
            assert note.status == "ok" and note.ids[0] == "ex_refund" and len(shots) == 2
            assert seen[-1] == {"model": "text-embedding-3-small", "encoding_format": "base64",
                                "input": "refund for my broken order please"}
            assert waited > 0
            # same text again: served from the cache, no upstream call
            _, note2, waited2 = await r.retrieve("refund for my broken order please")
            assert note2.ids == note.ids and len(seen) == 1 and waited2 == 0.0
            # the upstream fails: answered without examples, the note says why
            fail["status"] = 503
            for i in range(fewshot.FAILURES_TO_OPEN):
                shots, note, _ = await r.retrieve(f"another question {i}")
                assert shots == () and note.status == "skipped" and "answered 503" in (note.error or "")
            calls = len(seen)
            shots, note, _ = await r.retrieve("a question while the circuit is open")
            assert shots == () and "is failing" in (note.error or "") and len(seen) == calls
            # no user text: nothing to retrieve for
            _, note, _ = await r.retrieve(None)
            assert note.status == "skipped" and "no user text" in (note.error or "")
        finally:
            await client.close()
        await runner.cleanup()

    asyncio.run(scenario())


def test_retriever_reports_a_dimension_mismatch(tmp_path: Path) -> None:
    pairs = (("a", "short", "x"),)
    export = fewshot.FewShotExport(format=fewshot.FORMAT, dataset="ds_small", tenant="default", embedding_model="m",
                                   dim=3, created_at="t", examples=tuple(
                                       fewshot.ExportedExample(id=i, user=u, assistant=a,
                                                               embedding=fewshot.encode_vector([1.0, 0.0, 0.0]))
                                       for i, u, a in pairs))
    path = tmp_path / "small.json"
    fewshot.write_export(path, export)
    index = fewshot.load_index(path)

    async def scenario() -> None:
        runner, base, _ = await _embedding_server({"status": 0})
        client = _client(base)
        try:
            _, note, _ = await fewshot.Retriever(index, client, k=1, timeout_ms=2000).retrieve("q")
            assert note.status == "skipped" and "256 dimensions, the index 3" in (note.error or "")
        finally:
            await client.close()
        await runner.cleanup()

    asyncio.run(scenario())
