"""schemathesis against a real gateway (simulator upstream, API keys, admin token), driven by
the document the gateway serves (= docs/openapi.json): bounded examples per operation,
0 server errors and 0 conformance failures (status codes, content types, headers,
response schemas). Plus: every path answers an unsupported method with 405 and `Allow`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import http
from tests.support.procs import Proc, start_gateway, start_simulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "conformance-admin-token"
KEY = "sk-conformance-client"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("conformance")
    sim, base = start_simulator(tmp, "--seed", "5")
    cfg = tmp / "router.yaml"
    cfg.write_text(f"""
routes:
  support:
    experiment: conformance-exp
    arms:
      - {{name: control, model: gpt-4o-mini-2024-07-18, weight: 0.5}}
      - {{name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 0.5}}
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
default_upstream: sim
auth:
  admin_token_env: CONFORMANCE_ADMIN
  keys:
    - {{sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: acme}}
""")
    proc: Proc | None = None
    try:
        proc, gbase = start_gateway(tmp, cfg, tmp / "state", env={"CONFORMANCE_ADMIN": ADMIN})
        yield {"base": gbase, "proc": proc}
    finally:
        if proc is not None:
            proc.stop()
        sim.stop()


def test_served_document_is_the_published_one(gateway: dict[str, Any]) -> None:
    served = http.get(f"{gateway['base']}/schema/openapi.json", timeout=10).json()
    published = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == published


def test_document_describes_the_api() -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    paths = doc["paths"]
    for path, method in [("/v1/feedback", "post"), ("/admin/promote", "post"), ("/admin/config/rollback", "post"),
                         ("/admin/config", "put"), ("/v1/chat/completions", "post")]:
        assert "requestBody" in paths[path][method], (path, method)
    assert paths["/admin/promote"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConfigVersion"}
    assert "201" not in paths["/admin/config/rollback"]["post"]["responses"]
    assert paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ModelList")
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "adminToken", "metricsToken"}
    assert all("405" in op["responses"] and "allow" in op["responses"]["405"]["headers"]
               for item in paths.values() for op in item.values())


def test_api_conforms_to_its_document(gateway: dict[str, Any]) -> None:
    """Every operation, bounded examples each (schemathesis' pytest loader does not run on
    pytest 9, so the operations are driven here with hypothesis directly)."""
    # imported here, not at collection: every xdist worker collects this module, one runs it
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]
    base = gateway["base"]
    api = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in api.get_all_operations():
        op = result.ok()
        token = ADMIN if op.path.startswith("/admin") else KEY

        @given(case=op.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                  database=None)
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base, headers={"authorization": f"Bearer {token}"}, checks=checks,  # noqa: B023
                                   timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
        ran += 1
    assert ran >= 17
    assert not failures, "\n\n".join(failures)
    assert gateway["proc"].alive()


def test_unsupported_methods_answer_405_with_allow(gateway: dict[str, Any]) -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    with httpx.Client(base_url=gateway["base"], timeout=10) as c:
        for path, item in doc["paths"].items():
            documented = {m.upper() for m in item}
            url = path.replace("{dataset_id}", "d1").replace("{job_id}", "j1")
            method = "DELETE" if "DELETE" not in documented else "PATCH"
            r = c.request(method, url, headers={"authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 405, (method, path, r.status_code, r.text[:200])
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            assert documented <= allowed, (path, allowed)
            assert r.json()["error"]["code"] == "method_not_allowed"
