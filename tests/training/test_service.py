"""Archive (written by ArchiveWriter, as the gateway does) -> dataset build/validate/export -> add-arm; admin API."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from litestar import Litestar
from litestar.testing import TestClient
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway.archive import ArchiveWriter, glob_pattern
from gateway.config import parse_yaml
from gateway.config_store import FileConfigStore
from gateway.errors import ApiError
from gateway.events import Feedback, Interaction, decode
from training.admin_api import handlers
from training.registry import Registry

SYS = "You are Order Support."
CONFIG = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
models:
  gpt-4o-mini-2024-07-18: {upstream: sim, input_per_mtok: 0.15, output_per_mtok: 0.60}
"""


def _write_archive(state: Path, n: int = 40) -> None:
    w = ArchiveWriter(state, writer="test")
    evs = []
    for i in range(n):
        iid = f"iid-{i}"
        evs.append(Interaction(
            event_id=f"e{i}", ts=f"2025-03-0{1 + i % 5}T10:00:{i % 60:02d}.000Z", tenant="acme", route="support",
            experiment="support-ft-2", arm="control", phase=1, config_version=1, interaction_id=iid, unit=f"u{i}",
            traffic="live", model="gpt-4o-mini-2024-07-18", stream=False, status="ok", http_status=200,
            latency_ms=10.0, messages=[{"role": "system", "content": SYS},
                                       {"role": "user", "content": f"Where is my order number {1000 + i * 7}?"}],
            response=f"Your order {1000 + i * 7} ships on day {i % 9} via carrier {i * 3}."))
        if i % 4 == 0:  # thumbs up, later changed to thumbs down: the latest wins -> excluded
            evs.append(Feedback(event_id=f"f{i}a", ts="2025-03-06T00:00:00.000Z", tenant="acme", interaction_id=iid,
                                metric="thumbs", value=1))
            evs.append(Feedback(event_id=f"f{i}b", ts="2025-03-07T00:00:00.000Z", tenant="acme", interaction_id=iid,
                                metric="thumbs", value=-1))
        elif i % 4 == 1:
            evs.append(Feedback(event_id=f"f{i}", ts="2025-03-06T00:00:00.000Z", tenant="acme", interaction_id=iid,
                                metric="edited_response", value=f"Order {1000 + i * 7} arrives on day {i % 9}."))
        else:
            evs.append(Feedback(event_id=f"f{i}", ts="2025-03-06T00:00:00.000Z", tenant="acme", interaction_id=iid,
                                metric="thumbs", value=1))
    w.write(evs)


def test_archive_to_dataset_to_arm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _write_archive(state)
    with open(next(Path(state / "events").rglob("*.jsonl")), "a") as f:
        f.write("{corrupt line\n")
    runner = CliRunner()
    out = tmp_path / "ds"
    r = runner.invoke(app, ["dataset", "build", "--state-dir", str(state), "--name", "weekly", "--out", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["candidates"] == 40 and rep["examples"] == 30  # 10 ended with thumbs down
    assert rep["signals"] == {"edited": 10, "thumbs_up": 20}
    assert rep["skipped_input"] and "unreadable" in rep["skipped_input"][0]["reason"]
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert sum(rep["splits"].values()) == 30 and len(train) == rep["splits"]["train"]
    edited = [e for e in train if e["messages"][-1]["content"].startswith("Order ")]
    assert edited, "edited responses must become the gold answers"
    # a second build skips interactions already used
    r2 = runner.invoke(app, ["dataset", "build", "--state-dir", str(state), "--json"])
    assert r2.exit_code == 1 and json.loads(r2.stdout)["filtered_out"]["used in an earlier dataset"] == 30

    v = runner.invoke(app, ["dataset", "validate", str(out / "train.jsonl"), "--state-dir", str(state)])
    assert v.exit_code == 0, v.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text((out / "train.jsonl").read_text() + '{"messages": [{"role": "user", "content": "q"}]}\n')
    v2 = runner.invoke(app, ["dataset", "validate", str(bad), "--state-dir", str(state)])
    assert v2.exit_code == 1 and f"line {len(train) + 1}: [example_missing_assistant_message]" in v2.output

    s = runner.invoke(app, ["dataset", "stats", str(out / "train.jsonl"), "--json"])
    stats = json.loads(s.stdout)
    assert stats["examples"] == len(train) and stats["billed_tokens"] == stats["tokens"]["total"] * stats["epochs"]

    FileConfigStore(state).put(parse_yaml(CONFIG), expected_version=None, author="t", reason="init")
    a = runner.invoke(app, ["models", "add-arm", "support", "ft:gpt-4o-mini-2024-07-18:acme:sup:xyz",
                            "--state-dir", str(state)])
    assert a.exit_code == 0, a.output
    cur = FileConfigStore(state).current()
    arms = cur.config.routes["support"].arms
    assert cur.version == 2 and arms[-1].model.endswith(":xyz") and arms[-1].weight == 0.0
    assert cur.config.routes["support"].phase == 2
    assert "ft:gpt-4o-mini-2024-07-18:acme:sup:xyz" in cur.config.models
    lines = [line for p in Path(state).glob("events/**/*.jsonl") for line in p.read_text().splitlines()]
    changes = [decode(line) for line in lines if '"kind":"config"' in line]
    assert any(c.action == "add_arm" and c.config_version == 2 for c in changes)
    again = runner.invoke(app, ["models", "add-arm", "support", "ft:gpt-4o-mini-2024-07-18:acme:sup:xyz",
                                "--state-dir", str(state)])
    assert again.exit_code == 1
    assert glob_pattern(state)


def _api(state: Path) -> Litestar:
    def err(_req, exc: ApiError):
        from litestar import Response

        return Response(content=exc.body(), status_code=exc.status, media_type="application/json")

    a = Litestar(route_handlers=handlers, exception_handlers={ApiError: err})
    a.state.runtime = SimpleNamespace(state_dir=state, config=None, sink=None)
    return a


def test_admin_api_export_and_datasets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ABGATE_ADMIN_TOKEN", raising=False)
    state = tmp_path / "state"
    ex = lambda i, q: {"source_id": f"s{i}", "content_sha": f"h{i}", "quality10": q, "split": "train",  # noqa: E731
                       "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    with Registry(state) as reg:
        ds = reg.create_dataset(tenant="acme", name="d", source="t", examples=[ex(1, 8), ex(2, 5), ex(3, None)])
    with TestClient(_api(state)) as client:
        r = client.get("/admin/export/jsonl", params={"min_quality": "6", "validated_only": "false"})
        assert r.status_code == 200 and [json.loads(x)["messages"][0]["content"] for x in r.text.splitlines()] == ["q1"]
        # by default only validated examples (what fine-tune/create trains): none here
        assert client.get("/admin/export/jsonl", params={"min_quality": "6"}).text == ""
        assert client.get("/admin/export/jsonl", params={"min_quality": "abc"}).json()["error"]["param"] == \
            "min_quality"
        d = client.get(f"/admin/datasets/{ds}").json()
        assert d["example_count"] == 3 and d["splits"] == {"train": 3}
        assert client.get("/admin/datasets/nope").status_code == 404
        assert client.get("/admin/fine-tune/models").json() == {"data": []}
        assert client.get("/admin/fine-tune/ftjob-x/status").status_code == 404
        monkeypatch.setenv("ABGATE_ADMIN_TOKEN", "s3cret")
        assert client.get("/admin/datasets").status_code == 401
        ok = client.get("/admin/datasets", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == ds
