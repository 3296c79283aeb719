"""The simulator as a real process: chat (SDK + raw HTTP), fault headers, embeddings, files, fine-tuning."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import http
from tests.support.procs import poll_until, start_simulator

pytestmark = pytest.mark.integration
MODEL = "gpt-4o-mini-2024-07-18"
MSGS = [{"role": "system", "content": "You are Order Support."}, {"role": "user", "content": "Where is my order 424242?"}]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("sim")
    proc, base = start_simulator(tmp, "--ft-seconds", "1", "--state-dir", str(tmp / "state"))
    try:
        yield base
    finally:
        proc.stop()


@pytest.fixture
def client(sim: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim}/v1", api_key="sk-anything", max_retries=0) as c:
        yield c


def test_sdk_chat_non_stream(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=MSGS)  # type: ignore[arg-type]
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant" and "424242" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_sdk_chat_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=MSGS)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model=MODEL, messages=MSGS, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == full.usage.total_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(sim: str) -> None:
    with httpx.stream("POST", f"{sim}/v1/chat/completions", json={"model": MODEL, "messages": MSGS, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in p and p["choices"] for p in parsed)


def test_paced_stream_delivers_the_same_text(sim: str) -> None:
    body = {"model": MODEL, "messages": MSGS, "stream": True}

    def text(headers: dict[str, str]) -> list[str]:
        with httpx.stream("POST", f"{sim}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            return [json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    for line in r.iter_lines() if line.startswith("data: {")]

    paced = text({"x-sim-ttft-ms": "10", "x-sim-delay-ms": "40"})
    assert paced == text({}) and len(paced) > 3


def test_ft_model_answers_better_than_base(client: openai.OpenAI) -> None:
    from simulator import tasks

    wins = 0
    for i in range(40):
        q = f"I want a refund for order {700000 + i}."
        task = tasks.detect(tasks.SUPPORT_SYSTEM_PROMPT, q)
        msgs = [{"role": "system", "content": tasks.SUPPORT_SYSTEM_PROMPT}, {"role": "user", "content": q}]
        base = client.chat.completions.create(model=MODEL, messages=msgs).choices[0].message.content  # type: ignore[arg-type]
        ft = client.chat.completions.create(model=f"ft:{MODEL}:acme:s:1", messages=msgs).choices[0].message.content  # type: ignore[arg-type]
        wins += tasks.score(task, ft or "").quality - tasks.score(task, base or "").quality > 0
    assert wins >= 10


def test_forced_status_delay_and_errors(sim: str) -> None:
    r = http.post(f"{sim}/v1/chat/completions", json={"model": MODEL, "messages": MSGS}, headers={"x-sim-status": "503"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
    r = http.post(f"{sim}/v1/chat/completions", json={}, headers={"x-sim-status": "429"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "rate_limit_exceeded"
    r = http.post(f"{sim}/v1/chat/completions", json={"model": MODEL, "messages": MSGS}, headers={"x-sim-delay-ms": "50"})
    assert r.status_code == 200
    r = http.post(f"{sim}/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400 and "parse" in r.json()["error"]["message"]
    r = http.post(f"{sim}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = http.get(f"{sim}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_echo_returns_the_raw_body_bytes(sim: str) -> None:
    raw = b'{"model":"x","messages":[{"role":"user","content":"h\\u00e9 \xc3\xa9"}],  "extra": [1, 2.50]}'
    r = http.post(f"{sim}/v1/chat/completions", content=raw, headers={"x-sim-echo": "1"})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"].encode() == raw


def test_disconnect_mid_stream(sim: str) -> None:
    got: list[str] = []
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", f"{sim}/v1/chat/completions", headers={"x-sim-disconnect-after-chunks": "2"},
                          json={"model": MODEL, "messages": MSGS, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(line)
    assert len(got) == 2


def test_keep_alive_and_pipelined_requests(sim: str) -> None:
    host, port = sim.removeprefix("http://").split(":")
    body = json.dumps({"model": MODEL, "messages": MSGS}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           f"content-length: {len(body)}\r\n\r\n").encode() + body
    slow = req.replace(b"host: x\r\n", b"host: x\r\nx-sim-delay-ms: 30\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(slow + req + req)  # the delayed first answer must still come first
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            data += s.recv(65536)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    ids = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["id"] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert ids == sorted(ids)  # answered in request order


def test_sdk_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="text-embedding-3-small",
                                 input=["where is my order", "where is my order?", "quarterly revenue of NVDA"])
    vecs = [d.embedding for d in r.data]
    assert len(vecs[0]) == 256 and r.usage.prompt_tokens > 0
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vecs[0], vecs[1]) > 0.9 > dot(vecs[0], vecs[2])
    floats = http.post(f"{client.base_url}embeddings", json={"model": "m", "input": "where is my order"}).json()
    assert floats["data"][0]["embedding"] == pytest.approx(vecs[0], abs=1e-6)


def _jsonl(n: int) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": f"q {i}"},
                                            {"role": "assistant", "content": f"a {i}"}]}) + "\n" for i in range(n)).encode()


def _wait(client: openai.OpenAI, job_id: str) -> tuple[openai.types.fine_tuning.FineTuningJob, set[str]]:
    """Poll to a terminal state; also return every status observed on the way."""
    seen: set[str] = set()
    jobs = []

    def terminal() -> bool:
        jobs.append(client.fine_tuning.jobs.retrieve(job_id))
        seen.add(jobs[-1].status)
        return jobs[-1].status in ("succeeded", "failed", "cancelled")

    poll_until(terminal, f"job {job_id} to finish", timeout=20)
    return jobs[-1], seen


def test_files_and_fine_tuning_job_to_success(client: openai.OpenAI) -> None:
    content = _jsonl(20)
    f = client.files.create(file=("train.jsonl", io.BytesIO(content)), purpose="fine-tune")
    assert f.bytes == len(content) and f.purpose == "fine-tune" and f.filename == "train.jsonl"
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).read() == content
    v = client.files.create(file=("val.jsonl", io.BytesIO(_jsonl(5))), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL, training_file=f.id, validation_file=v.id, suffix="support", seed=7, metadata={"team": "cx"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 1,
                                                                           "learning_rate_multiplier": 2}}})
    assert job.status == "validating_files" and job.user_provided_suffix == "support"
    done, seen = _wait(client, job.id)
    assert done.status == "succeeded" and done.error is None
    # polls see the states in between only when they land in them: on a busy machine they may not
    assert "succeeded" in seen and seen <= {"validating_files", "queued", "running", "succeeded"}
    assert done.fine_tuned_model == f"ft:{MODEL}:abgate-sim:support:{job.id[6:14]}"
    assert done.hyperparameters.n_epochs == 3 and done.hyperparameters.batch_size == 1
    assert done.trained_tokens and done.trained_tokens > 0 and done.metadata == {"team": "cx"}
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert any(m.startswith("Step 60/60: training loss=") for m in messages)
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    after = client.fine_tuning.jobs.list_events(job.id, limit=3, after=page.data[-1].id)
    assert after.data[0].id == events[3].id
    assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=50)]
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    r = client.chat.completions.create(model=done.fine_tuned_model, messages=MSGS)  # type: ignore[arg-type]
    assert r.model == done.fine_tuned_model
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)  # already finished


def test_fine_tuning_job_fails_on_a_bad_file(client: openai.OpenAI) -> None:
    bad = b'{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n' + _jsonl(3)
    f = client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="fine-tune")
    done, _ = _wait(client, client.fine_tuning.jobs.create(model=MODEL, training_file=f.id).id)
    assert done.status == "failed" and done.fine_tuned_model is None
    assert done.error is not None and done.error.code == "invalid_training_file"
    assert "Line 1" in done.error.message and "Line 2: invalid JSON" in done.error.message
    assert "at least 10 examples" in done.error.message


def test_fine_tuning_request_errors_and_cancel(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.BadRequestError, match="training_file"):
        client.fine_tuning.jobs.create(model=MODEL, training_file="file-doesnotexist")
    f = client.files.create(file=("t.jsonl", io.BytesIO(_jsonl(12))), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="not available for fine-tuning"):
        client.fine_tuning.jobs.create(model="davinci-9000", training_file=f.id)
    with pytest.raises(openai.BadRequestError, match="n_epochs"):
        client.fine_tuning.jobs.create(model=MODEL, training_file=f.id,
                                       method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}})
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=f.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(1.2)  # past --ft-seconds: a cancelled job stays cancelled
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"


def test_error_rate_rate_limit_and_workers(tmp_path: Path) -> None:
    proc, base = start_simulator(tmp_path, "--error-rate", "1", "--error-status", "502")
    try:
        r = http.post(f"{base}/v1/chat/completions", json={"model": MODEL, "messages": MSGS})
        assert r.status_code == 502 and r.json()["error"]["type"] == "server_error"
        assert http.post(f"{base}/v1/chat/completions", json={"model": MODEL, "messages": MSGS},
                          headers={"x-sim-status": "200"}).status_code == 200
    finally:
        proc.stop()
    proc, base = start_simulator(tmp_path, "--rate-limit", "2")
    try:
        codes = [http.post(f"{base}/v1/chat/completions", json={"model": MODEL, "messages": MSGS}).status_code
                 for _ in range(10)]
        assert 429 in codes and 200 in codes
    finally:
        proc.stop()
    proc, base = start_simulator(tmp_path, "--workers", "2")
    try:
        with httpx.Client() as c:
            assert all(c.post(f"{base}/v1/chat/completions", json={"model": MODEL, "messages": MSGS}).status_code == 200
                       for _ in range(20))
    finally:
        assert proc.stop() == 0
