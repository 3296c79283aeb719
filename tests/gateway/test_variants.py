"""Arms as variants: config errors, the body rewrite, ids, and a real gateway in front of a
recording upstream (chat) and the simulator (embeddings)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from gateway.config import ConfigError, parse_yaml, validate
from gateway.variants import CompiledVariant, apply, check_resources, compile_variant, variant_id
from tests.gateway.fewshot_helpers import write_export
from tests.support import http
from tests.support.gateway_helpers import event_for, start_upstream
from tests.support.procs import free_port, start_gateway, start_simulator

BASE = {"upstreams": {"u": {"base_url": "http://127.0.0.1:1/v1"}}}


def _cfg(variant: Any, **extra: Any) -> dict[str, Any]:
    arm = {"name": "v", "model": "m", "weight": 1.0, "variant": variant}
    return {"routes": {"support": {"experiment": "e", "arms": [arm]}}, **BASE, **extra}


@pytest.mark.parametrize(("variant", "field", "message"), [
    ({"params": {"temprature": 0.2}}, "routes.support.arms[0].variant.params", "unknown field `temprature`"),
    ({"sytem_prompt": "x"}, "routes.support.arms[0].variant", "unknown field `sytem_prompt`"),
    ({"fewshot": {"dataset": "ds_1", "kk": 3}}, "routes.support.arms[0].variant.fewshot", "unknown field `kk`"),
    ({"params": {"temperature": 3}}, "routes.support.arms[0].variant.params.temperature", "within [0, 2]"),
    ({"params": {"top_p": -0.1}}, "routes.support.arms[0].variant.params.top_p", "within [0, 1]"),
    ({"params": {"max_tokens": 0}}, "routes.support.arms[0].variant.params.max_tokens", ">= 1"),
    ({"params": {"max_tokens": 5, "max_completion_tokens": 5}}, "routes.support.arms[0].variant.params.max_tokens",
     "not both"),
    ({"params": {"reasoning_effort": "max"}}, "routes.support.arms[0].variant.params.reasoning_effort",
     "must be one of"),
    ({"params": {"response_format": {"type": "xml"}}}, "routes.support.arms[0].variant.params.response_format.type",
     "must be one of"),
    ({"params": {"response_format": {"type": "json_schema"}}},
     "routes.support.arms[0].variant.params.response_format.json_schema", "required"),
    ({"system_prompt": "  "}, "routes.support.arms[0].variant.system_prompt", "must not be empty"),
    ({"system_mode": "append", "system_prompt": "x"}, "routes.support.arms[0].variant.system_mode",
     "Invalid enum value 'append'"),
    ({"examples": [{"user": "q", "assistant": ""}]}, "routes.support.arms[0].variant.examples[0].assistant",
     "must not be empty"),
    ({"fewshot": {"dataset": "ds_1", "k": 0}}, "routes.support.arms[0].variant.fewshot.k", "within [1, 32]"),
    ({"fewshot": {"dataset": "../etc"}}, "routes.support.arms[0].variant.fewshot.dataset", "must be a dataset id"),
    ({"fewshot": {"dataset": "ds_1", "embedding_upstream": "nope"}},
     "routes.support.arms[0].variant.fewshot.embedding_upstream", "unknown upstream 'nope'"),
])
def test_bad_overrides_name_the_exact_field(variant: Any, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(variant))
    assert err.value.field == field
    assert message in err.value.message


def test_variant_id_is_stable_and_changes_with_any_override() -> None:
    a = validate(_cfg({"system_prompt": "be kind", "params": {"temperature": 0.2}})).routes["support"].arms[0]
    same = validate(_cfg({"params": {"temperature": 0.2}, "system_prompt": "be kind"})).routes["support"].arms[0]
    assert variant_id(a.model, a.variant) == variant_id(same.model, same.variant)
    assert variant_id(a.model, a.variant).startswith("var-") and len(variant_id(a.model, a.variant)) == 20
    other = validate(_cfg({"system_prompt": "be kind", "params": {"temperature": 0.3}})).routes["support"].arms[0]
    assert variant_id(other.model, other.variant) != variant_id(a.model, a.variant)
    assert variant_id("m", a.variant) != variant_id("m2", a.variant)
    # a plain arm and an empty variant are the same thing
    assert variant_id("m", None) == variant_id("m", validate(_cfg({})).routes["support"].arms[0].variant)
    assert variant_id("m", None) == "var-" + __import__("hashlib").sha256(
        b'{"model":"m","variant":null}').hexdigest()[:16]


def _doc(body: dict[str, Any]) -> dict[str, msgspec.Raw]:
    return msgspec.json.decode(json.dumps(body).encode(), type=dict[str, msgspec.Raw])


def _compiled(variant: Any) -> CompiledVariant:
    cfg = validate(_cfg(variant))
    return compile_variant(cfg, "support", 0, cfg.routes["support"].arms[0], Path("."), lambda n: None)  # type: ignore[arg-type,return-value]


MSGS = [{"role": "system", "content": "client system"}, {"role": "user", "content": "hello"}]


def test_apply_replaces_or_prepends_the_system_prompt_sets_params_and_inserts_examples() -> None:
    v = _compiled({"system_prompt": "curated", "params": {"temperature": 0.1, "max_tokens": 64,
                                                          "response_format": {"type": "json_object"}},
                   "examples": [{"user": "q1", "assistant": "a1"}]})
    doc = _doc({"model": "r", "messages": MSGS, "temperature": 1.5, "max_completion_tokens": 999, "user": "u1"})
    out = apply(doc, v, MSGS)
    body = json.loads(msgspec.json.encode(out))
    assert body["messages"] == [{"role": "system", "content": "curated"}, {"role": "user", "content": "q1"},
                                {"role": "assistant", "content": "a1"}, {"role": "user", "content": "hello"}]
    assert body["temperature"] == 0.1 and body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert body["response_format"] == {"type": "json_object"} and body["user"] == "u1"
    assert "temperature" in doc and msgspec.json.decode(doc["temperature"]) == 1.5  # the input is not modified
    pre = _compiled({"system_prompt": "curated", "system_mode": "prepend"})
    body = json.loads(msgspec.json.encode(apply(doc, pre, MSGS)))
    assert [m["content"] for m in body["messages"]] == ["curated", "client system", "hello"]
    # no client system message: the variant's goes first
    body = json.loads(msgspec.json.encode(apply(doc, v, [{"role": "user", "content": "hi"}])))
    assert body["messages"][0] == {"role": "system", "content": "curated"}
    # params only: messages keep their bytes
    p = _compiled({"params": {"seed": 7}})
    assert apply(doc, p, MSGS)["messages"] is doc["messages"]


def test_check_resources_missing_and_foreign_datasets(tmp_path: Path) -> None:
    raw = _cfg({"fewshot": {"dataset": "ds_support1", "k": 2}})
    cfg = validate(raw)
    with pytest.raises(ConfigError) as err:
        check_resources(cfg, tmp_path)
    assert err.value.field == "routes.support.arms[0].variant.fewshot.dataset"
    assert "no few-shot export at" in err.value.message and "build-fewshot" in err.value.message
    write_export(tmp_path, tenant="beta")
    key = {"sha256": "a" * 64, "tenant": "acme", "routes": ["support"]}
    admin = {"sha256": "b" * 64, "tenant": "ops", "admin": True}
    cfg = validate({**raw, "auth": {"keys": [key, admin]}})
    with pytest.raises(ConfigError) as err:
        check_resources(cfg, tmp_path)
    assert "belongs to tenant 'beta', but route 'support' serves tenant(s) acme" in err.value.message
    write_export(tmp_path, tenant="acme")
    check_resources(cfg, tmp_path)  # the route's tenant's dataset; admin keys do not count
    # open dev mode is tenant `default`
    with pytest.raises(ConfigError, match="serves tenant\\(s\\) default"):
        check_resources(validate(raw), tmp_path)


# -- a real gateway ---------------------------------------------------------------------------

def _gateway_config(path: Path, up: str, sim: str, dead: int) -> Path:
    path.write_text(f"""
routes:
  support:
    experiment: support-variants
    arms:
      - {{name: control, model: base-model, weight: 0.0}}
      - name: fewshot
        model: gpt-6-luna
        weight: 1.0
        variant:
          system_prompt: "You are Acme's support agent. Answer in one sentence."
          params: {{temperature: 0.1, max_tokens: 60, reasoning_effort: low,
                    response_format: {{type: json_object}}}}
          examples: [{{user: "hi", assistant: "Hello! How can I help?"}}]
          fewshot: {{dataset: ds_support1, k: 2, embedding_upstream: sim}}
  embdown:
    experiment: embdown-exp
    arms:
      - name: fewshot
        model: gpt-6-luna
        weight: 1.0
        variant:
          fewshot: {{dataset: ds_support1, k: 2, embedding_upstream: dead, timeout_ms: 500}}
upstreams:
  rec: {{base_url: "{up}/v1", timeout_s: 10}}
  sim: {{base_url: "{sim}/v1", timeout_s: 10}}
  dead: {{base_url: "http://127.0.0.1:{dead}/v1", timeout_s: 10, connect_timeout_s: 0.5}}
default_upstream: rec
""")
    return path


def _last(up: str) -> dict[str, Any]:
    doc = http.get(f"{up}/_last").json()
    return json.loads(base64.b64decode(doc["body"]))


@pytest.mark.integration
def test_a_real_gateway_sends_the_variant_to_the_upstream_and_logs_its_id(tmp_path: Path) -> None:
    up_proc, up = start_upstream(tmp_path)
    sim_proc, sim = start_simulator(tmp_path)
    gw = None
    try:
        state = tmp_path / "state"
        write_export(state)
        cfg_path = _gateway_config(tmp_path / "router.yaml", up, sim, free_port())
        arms = {a.name: a for a in parse_yaml(cfg_path.read_text()).routes["support"].arms}
        gw, base = start_gateway(tmp_path, cfg_path, state)
        client_msgs = [{"role": "system", "content": "client prompt"},
                       {"role": "user", "content": "my order 123 arrived broken, I want a refund"}]
        r = http.post(f"{base}/v1/chat/completions", json={
            "model": "support", "user": "u-1", "messages": client_msgs, "temperature": 1.2,
            "max_completion_tokens": 500})
        assert r.status_code == 200, r.text
        assert r.headers["x-abgate-arm"] == "fewshot" and r.headers["x-abgate-model"] == "gpt-6-luna"
        sent = _last(up)
        assert sent["model"] == "gpt-6-luna"
        assert sent["temperature"] == 0.1 and sent["max_tokens"] == 60 and "max_completion_tokens" not in sent
        assert sent["reasoning_effort"] == "low" and sent["response_format"] == {"type": "json_object"}
        assert sent["user"] == "u-1"
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
        assert sent["messages"][0]["content"] == "You are Acme's support agent. Answer in one sentence."
        assert sent["messages"][1:3] == [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "Hello! How can I help?"}]
        # the two retrieved examples are the refund ones, nearest first; the client's question last
        assert sent["messages"][3]["content"] == "I want a refund for order 123, it arrived broken"
        assert sent["messages"][5]["content"] == "how do I get my money back for a damaged order"
        assert sent["messages"][-1] == client_msgs[-1]
        ev = event_for(state, r.headers["x-abgate-interaction-id"])
        assert ev["variant"] == variant_id("gpt-6-luna", arms["fewshot"].variant)
        assert ev["fewshot"]["status"] == "ok" and ev["fewshot"]["ids"] == ["ex_refund", "ex_refund2"]
        assert ev["fewshot"]["dataset"] == "ds_support1" and ev["fewshot"]["error"] is None
        assert ev["messages"] == client_msgs  # the log keeps what the client sent

        # streaming goes through the same rewrite
        with httpx.stream("POST", f"{base}/v1/chat/completions", json={
                "model": "support", "user": "u-2", "stream": True, "messages": client_msgs}) as s:
            assert s.status_code == 200
            s.read()
            iid = s.headers["x-abgate-interaction-id"]
        sent = _last(up)
        assert sent["stream"] is True and sent["temperature"] == 0.1 and len(sent["messages"]) == 8
        assert event_for(state, iid)["variant"] == ev["variant"]

        # an eval pin on the plain control arm: no overrides, the plain variant id, traffic eval
        r = http.post(f"{base}/v1/chat/completions", headers={"x-abgate-arm": "control"}, json={
            "model": "support", "user": "u-1", "messages": client_msgs, "temperature": 1.2})
        assert r.status_code == 200 and r.headers["x-abgate-arm"] == "control"
        sent = _last(up)
        assert sent["messages"] == client_msgs and sent["temperature"] == 1.2 and sent["model"] == "base-model"
        pinned = event_for(state, r.headers["x-abgate-interaction-id"])
        assert pinned["variant"] == variant_id("base-model", None) and pinned["traffic"] == "eval"
        assert pinned["fewshot"] is None

        # the embedding upstream is down: answered anyway, without examples, and the event says so
        r = http.post(f"{base}/v1/chat/completions", json={
            "model": "embdown", "user": "u-3", "messages": client_msgs})
        assert r.status_code == 200, r.text
        assert _last(up)["messages"] == client_msgs
        down = event_for(state, r.headers["x-abgate-interaction-id"])
        assert down["status"] == "ok" and down["fewshot"]["status"] == "skipped" and down["fewshot"]["ids"] == []
        assert "cannot reach embedding upstream 'dead'" in down["fewshot"]["error"]
    finally:
        if gw is not None:
            gw.stop()
        sim_proc.stop()
        up_proc.stop()


@pytest.mark.integration
def test_the_gateway_refuses_a_config_whose_fewshot_dataset_is_missing(tmp_path: Path) -> None:
    up_proc, up = start_upstream(tmp_path)
    try:
        state = tmp_path / "state"
        cfg_path = _gateway_config(tmp_path / "router.yaml", up, up, free_port())
        with pytest.raises(RuntimeError) as err:
            start_gateway(tmp_path, cfg_path, state)
        assert "routes.support.arms[1].variant.fewshot.dataset" in str(err.value)
        assert "no few-shot export" in str(err.value)
    finally:
        up_proc.stop()
