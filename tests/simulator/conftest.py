"""One simulator process per test module, and an openai client for it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.procs import start_simulator


@pytest.fixture(scope="module")
def sim_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("sim")
    proc, base = start_simulator(tmp, "--state-dir", str(tmp / "state"))
    try:
        yield base
    finally:
        proc.stop()


@pytest.fixture
def client(sim_base: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim_base}/v1", api_key="sk-test", max_retries=0) as c:
        yield c
