"""Bounded nesting depth: the checker itself, and every JSON endpoint of a real gateway
(chat, feedback, admin JSON and YAML) answering a nesting bomb with 400, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway import jsonsafe
from gateway.errors import ApiError
from tests.support.procs import Proc, start_gateway

BOMB = b"[" * 2048 + b"]" * 2048  # the 2 KB bomb of the report (x2)


@pytest.mark.parametrize("doc", [
    {"a": [1, 2, {"b": [3, "]]]]{{{{[[[["]}]},
    [[[[[]]]]],
    {"messages": [{"role": "user", "content": "[" * 10_000}]},  # brackets inside strings do not count
    [[] for _ in range(10_000)],  # many shallow brackets
])
def test_ordinary_documents_pass(doc: Any) -> None:
    data = json.dumps(doc).encode()
    assert not jsonsafe.depth_exceeds(data)
    assert jsonsafe.decode(data) == doc


@pytest.mark.parametrize("data", [
    BOMB,
    b'{"a":' * 100 + b"1" + b"}" * 100,
    b'{"messages": [' + b'{"x": [' * 40 + b"1" + b"]}" * 40 + b"]}",
    b'["\\"' + b"]" * 10 + b'",' + b"[" * 70 + b"]" * 70 + b"]",  # an escaped quote does not end the string
])
def test_deep_documents_are_refused(data: bytes) -> None:
    assert jsonsafe.depth_exceeds(data)
    with pytest.raises(ApiError) as err:
        jsonsafe.decode(data)
    assert err.value.status == 400 and err.value.code == "nesting_too_deep"


def test_unterminated_strings_are_scanned_once() -> None:
    """Each escaped quote used to restart the string scan to the end: 200k of them took
    ~15 minutes (quadratic); one linear pass now."""
    data = b"[" * 70 + b'"' + b'\\"' * 200_000
    assert jsonsafe.depth_exceeds(data)
    assert not jsonsafe.depth_exceeds(b'{"a": "' + b'\\"' * 200_000 + b"[" * 100)


def test_exactly_the_limit_passes() -> None:
    ok = b"[" * jsonsafe.MAX_DEPTH + b"]" * jsonsafe.MAX_DEPTH
    assert not jsonsafe.depth_exceeds(ok)
    assert jsonsafe.depth_exceeds(b"[" + ok + b"]")


def test_yaml_depth() -> None:
    assert jsonsafe.yaml_depth_exceeds("a: " + "[" * 100 + "]" * 100)
    assert jsonsafe.yaml_depth_exceeds("".join(f"{'  ' * i}k{i}:\n" for i in range(70)) + "  " * 70 + "v: 1\n")
    assert not jsonsafe.yaml_depth_exceeds("routes:\n  a:\n    arms: [{name: x, weight: 1}]\n")


ADMIN = "admin-token-jsonsafe"
CONFIG = """
routes:
  support:
    experiment: jsonsafe-exp
    arms: [{name: control, model: m, weight: 1.0}]
upstreams:
  up: {base_url: "http://127.0.0.1:9/v1", timeout_s: 2}
default_upstream: up
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("jsonsafe")
    cfg = tmp / "router.yaml"
    cfg.write_text(CONFIG)
    proc: Proc | None = None
    try:
        proc, base = start_gateway(tmp, cfg, tmp / "state", env={"ABGATE_ADMIN_TOKEN": ADMIN})
        with httpx.Client(base_url=base, timeout=20) as c:
            yield c
    finally:
        if proc is not None:
            proc.stop()


def _is_too_deep(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == "nesting_too_deep" and err["type"] == "invalid_request_error"


@pytest.mark.integration
@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", b'{"model": "support", "messages": ' + BOMB + b"}"),
    ("/v1/chat/completions", BOMB),
    ("/v1/feedback", b'{"interaction_id": "x", "metric": "review", "value": ' + BOMB + b"}"),
    ("/admin/promote", b'{"route": "support", "weights": ' + BOMB + b"}"),
    ("/admin/config/rollback", BOMB),
])
def test_json_endpoints_answer_a_nesting_bomb_with_400(client: httpx.Client, path: str, body: bytes) -> None:
    _is_too_deep(client.post(path, content=body, headers={"content-type": "application/json",
                                                          "authorization": f"Bearer {ADMIN}"}))


@pytest.mark.integration
@pytest.mark.parametrize("ct,body", [
    ("application/yaml", b"routes: " + b"[" * 5000 + b"]" * 5000),
    ("application/json", b'{"routes": ' + BOMB + b"}"),
])
def test_config_put_answers_a_nesting_bomb_with_400(client: httpx.Client, ct: str, body: bytes) -> None:
    r = client.put("/admin/config", params={"expected_version": 1}, content=body,
                   headers={"content-type": ct, "authorization": f"Bearer {ADMIN}"})
    _is_too_deep(r)
    assert client.get("/healthz").status_code == 200
