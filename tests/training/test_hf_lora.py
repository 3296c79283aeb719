"""hf-lora on the CPU: what a finished run leaves (the adapter reloads and generates, the serving config
reaches the router config through `models add-arm`), and how a run fails.

`verify_trained` runs inside the shared provider suite (`test_providers.py`), on the job its hf-lora
launch trained: one training run serves both, since each costs a torch + TRL start.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway.config import parse_yaml
from gateway.config_store import FileConfigStore
from tests.training.fakes import write_dataset
from training.registry import Registry

ROUTER = """
routes:
  support:
    experiment: support-lora-1
    arms:
      - {name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}
upstreams:
  openai: {base_url: "http://127.0.0.1:9/v1"}
models:
  gpt-4o-mini-2024-07-18: {upstream: openai, input_per_mtok: 0.15, output_per_mtok: 0.60}
"""


def verify_trained(state: Path, run: dict[str, Any], mv: dict[str, Any], output: str, base_model: Path) -> None:
    """The issue's "done when" for a `finetune launch --provider hf-lora --suffix intents --wait` that succeeded."""
    out = " ".join(output.split())
    name = mv["model_id"]
    adapter = state.resolve() / "hf-lora" / "jobs" / run["provider_job_id"] / "adapter"
    assert name.startswith("intents-lora-")
    assert run["gpu_seconds"] > 0 and run["trained_tokens"] > 0 and run["actual_cost_usd"] == 0
    # the exact serving config: vLLM with the LoRA adapter, the dynamic load call, the router entries
    assert f"vllm serve {base_model} --enable-lora --lora-modules {name}={adapter}" in out
    assert "/v1/load_lora_adapter" in out and f"abgate models add-arm ROUTE {name}" in out
    job_dir = adapter.parent
    serving = yaml.safe_load((job_dir / "serving.yaml").read_text())
    assert serving["models"][name]["upstream"] == "vllm-lora"
    assert serving["upstreams"]["vllm-lora"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert "accelerate launch --num_processes 1 -m training.providers.hf_lora_train" in (
        job_dir / "accelerate_launch.sh").read_text()
    assert "Step 3/3" in (job_dir / "events.jsonl").read_text() and (job_dir / "train.log").is_file()

    # the adapter reloads onto the base model and generates
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), adapter)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Busco un regalo"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    torch.manual_seed(0)
    gen = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == prompt["input_ids"].shape[1] + 4

    # add-arm takes the serving config: the vLLM upstream and the adapter's model entry
    FileConfigStore(state).put(parse_yaml(ROUTER), expected_version=None, author="t", reason="init")
    a = CliRunner().invoke(app, ["models", "add-arm", "support", name, "--state-dir", str(state)])
    assert a.exit_code == 0, a.output
    cfg = FileConfigStore(state).current().config
    assert cfg.routes["support"].arms[-1].model == name and cfg.routes["support"].arms[-1].weight == 0.0
    assert cfg.upstreams["vllm-lora"].base_url == "http://127.0.0.1:8000/v1"
    assert cfg.models[name].upstream == "vllm-lora" and cfg.models[name].input_per_mtok == 0.0


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs the train extra")
def test_a_broken_base_model_fails_early_with_the_log(tmp_path: Path) -> None:
    """An architecture transformers does not know fails at the config, before TRL is even imported."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    (broken / "tokenizer.json").write_text("{}")
    r = CliRunner().invoke(app, ["finetune", "launch", str(write_dataset(tmp_path / "t.jsonl")), "--provider",
                                 "hf-lora", "--model", str(broken), "--wait", "--poll", "0.3", "--state-dir",
                                 str(tmp_path / "state")])
    assert r.exit_code == 1, r.output
    with Registry(tmp_path / "state") as reg:
        (run,) = reg.runs()
        assert reg.model_versions() == []
    assert run["status"] == "failed" and "no-such-architecture" in run["error"]
    assert run["started_at"] is None  # it never trained: no start time is made up
    job_dir = tmp_path / "state" / "hf-lora" / "jobs" / run["provider_job_id"]
    log = (job_dir / "train.log").read_text()
    assert "no-such-architecture" in log and "Traceback" in log
    assert "AutoConfig" in log and "/trl/" not in log  # the config check ran first


def test_base_model_not_found_is_refused_before_upload(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["finetune", "launch", str(write_dataset(tmp_path / "t.jsonl")), "--provider",
                                 "hf-lora", "--model", "acme/not-downloaded-model", "--state-dir",
                                 str(tmp_path / "state")])
    assert r.exit_code == 1
    assert "neither a local model directory nor in the Hugging Face cache" in " ".join(r.output.split())
    assert not (tmp_path / "state" / "hf-lora" / "files").exists()
