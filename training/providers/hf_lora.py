"""Self-hosted open-weight fine-tuning: Hugging Face TRL (SFT) + PEFT LoRA, as a local process abgate watches.

A job is a directory `<root>/jobs/<job id>/`: `job.json` (what to train), `status.json` and
`events.jsonl` (written by the training process, `training.providers.hf_lora_train`), `train.log`
(its output: the run log), `adapter/` (the LoRA adapter), `accelerate_launch.sh` (the same run
on a multi-GPU host), and on success `serving.yaml` + `vllm_serve.sh`: the router-config
upstream/model entries and the `vllm serve ... --enable-lora --lora-modules` command (or the
dynamic `/v1/load_lora_adapter` call) that serve the adapter through vLLM's OpenAI-compatible
server, so `abgate models add-arm` adds it as an arm.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from training.providers.base import (
    TERMINAL,
    DatasetFacts,
    JobEvent,
    JobInfo,
    JobSpec,
    ProviderRefused,
    Serving,
    TrainerError,
    check_hyper,
)

TRAIN_MODULE = "training.providers.hf_lora_train"
NEEDS = ("torch", "transformers", "peft", "trl", "datasets")
_children: dict[str, subprocess.Popen[bytes]] = {}  # launched by this process: polled so they are reaped


@dataclass(frozen=True)
class HFLoraOptions:
    root: Path
    lora_r: int = 8
    lora_alpha: int = 16
    max_seq_length: int = 1024
    launcher: str = "local"  # local | accelerate
    num_processes: int = 1
    serve_base_url: str = "http://127.0.0.1:8000/v1"
    serve_upstream: str = "vllm-lora"
    gpu_hour_usd: float | None = None
    models: tuple[str, ...] = ()
    max_steps: int | None = None  # cap the steps (smoke runs)
    python: str = sys.executable


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(job_id: str, pid: int | None) -> bool:
    child = _children.get(job_id)
    if child is not None:
        return child.poll() is None
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_base(model: str) -> Path | None:
    """A local model directory, or a model id already in the Hugging Face cache (never downloaded here)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p.resolve()
    if "/" in model and not model.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached (or huggingface_hub missing): refused by the caller
            return None
    return None


class HFLoraTrainer:
    name = "hf-lora"

    def __init__(self, options: HFLoraOptions):
        self.o = options
        self.jobs = options.root / "jobs"
        self.files = options.root / "files"

    # -- before anything is uploaded -------------------------------------------------------------
    def preflight(self, model: str, facts: DatasetFacts) -> None:
        missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
        if missing:
            raise ProviderRefused(f"hf-lora needs {', '.join(missing)}: install the training extra "
                                  f"(pip install -e '.[train]')")
        if self.o.models and model not in self.o.models:
            raise ProviderRefused(f"hf-lora: {model!r} is not among the configured models ({', '.join(self.o.models)})")
        base = resolve_base(model)
        if base is None:
            raise ProviderRefused(f"hf-lora: base model {model!r} is neither a local model directory nor in the "
                                  "Hugging Face cache (abgate never downloads; fetch it first, e.g. "
                                  f"`huggingface-cli download {model}`, or pass its local path)")
        if not (base / "config.json").is_file():
            raise ProviderRefused(f"hf-lora: {base} has no config.json: not a Hugging Face model directory")
        if not any((base / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise ProviderRefused(f"hf-lora: {base} has no tokenizer files")
        check_hyper(facts, max_epochs=100, max_batch=4096, provider="hf-lora")
        if facts.longest > self.o.max_seq_length * 4:
            raise ProviderRefused(f"hf-lora: the longest example has about {facts.longest} tokens, far over "
                                  f"max_seq_length {self.o.max_seq_length} (raise training.providers.<name>."
                                  "max_seq_length or shorten the examples)")

    def training_price(self, model: str) -> float | None:
        return None  # self-hosted: cost is GPU time x gpu_hour_usd, known after the run

    def gpu_cost(self, gpu_seconds: float | None) -> float | None:
        if gpu_seconds is None:
            return None
        return round(gpu_seconds / 3600 * (self.o.gpu_hour_usd or 0.0), 6)

    # -- the lifecycle ---------------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()[:24]
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / f"file-{sha}.jsonl").write_bytes(data)
        return f"file-{sha}"

    def _file(self, file_id: str | None) -> str | None:
        if file_id is None:
            return None
        p = self.files / f"{file_id}.jsonl"
        if not p.is_file():
            raise TrainerError(f"hf-lora: no uploaded file {file_id!r} under {self.files}")
        return str(p)

    def create(self, spec: JobSpec) -> JobInfo:
        base = resolve_base(spec.model)
        if base is None:
            raise ProviderRefused(f"hf-lora: base model {spec.model!r} not found")
        job_id = "hflora-" + os.urandom(6).hex()
        job_dir = self.jobs / job_id
        job_dir.mkdir(parents=True)
        output = f"{spec.suffix or base.name}-lora-{job_id[7:13]}"
        job = {"id": job_id, "model": spec.model, "base_model": str(base), "created_at": int(time.time()),
               "training_file": spec.training_file, "validation_file": spec.validation_file,
               "training_path": self._file(spec.training_file), "validation_path": self._file(spec.validation_file),
               "n_epochs": spec.n_epochs or 1, "batch_size": spec.batch_size or 1,
               "learning_rate_multiplier": spec.learning_rate_multiplier or 1.0, "seed": spec.seed or 0,
               "lora_r": self.o.lora_r, "lora_alpha": self.o.lora_alpha, "max_seq_length": self.o.max_seq_length,
               "max_steps": self.o.max_steps, "output_name": output, "suffix": spec.suffix,
               "metadata": spec.metadata or {}, "launcher": self.o.launcher}
        (job_dir / "job.json").write_text(json.dumps(job, indent=2, sort_keys=True), encoding="utf-8")
        accel = ["accelerate", "launch", "--num_processes", str(self.o.num_processes), "-m", TRAIN_MODULE,
                 str(job_dir)]
        (job_dir / "accelerate_launch.sh").write_text(
            "#!/bin/sh\n# the same run on a multi-GPU host (copy the job directory, or share the path)\n"
            + shlex.join(accel) + "\n", encoding="utf-8")
        cmd = accel if self.o.launcher == "accelerate" else [self.o.python, "-m", TRAIN_MODULE, str(job_dir)]
        if self.o.launcher == "accelerate" and shutil.which("accelerate") is None:
            raise ProviderRefused("hf-lora: launcher 'accelerate' but no `accelerate` on PATH")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        with open(job_dir / "train.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        _children[job_id] = proc
        (job_dir / "pid").write_text(str(proc.pid), encoding="utf-8")
        with open(job_dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"created_at": job["created_at"], "level": "info",
                                "message": f"Created fine-tuning job: {shlex.join(cmd)}"}) + "\n")
        return self._info(job_dir)

    def _dir(self, job_id: str) -> Path:
        d = self.jobs / job_id
        if not job_id.startswith("hflora-") or "/" in job_id or not (d / "job.json").is_file():
            raise TrainerError(f"retrieve {job_id} failed: no hf-lora job {job_id!r} under {self.jobs}")
        return d

    def _info(self, job_dir: Path) -> JobInfo:
        job = _read(job_dir / "job.json") or {}
        st = _read(job_dir / "status.json") or {"status": "queued"}
        status = str(st.get("status", "queued"))
        cancelled = _read(job_dir / "cancelled.json")
        if cancelled is not None and status not in ("succeeded", "failed"):
            status = "cancelled"
            st = {**st, "finished_at": cancelled.get("at")}
        pid_text = (job_dir / "pid").read_text().strip() if (job_dir / "pid").is_file() else ""
        alive = _alive(job["id"], int(pid_text) if pid_text.isdigit() else None)
        error = st.get("error")
        if status not in TERMINAL and not alive:
            # the process is gone but never said it finished: that is a failure, with the log's tail
            st = _read(job_dir / "status.json") or st  # it may have just written its last state
            status = str(st.get("status", status))
            if status not in TERMINAL:
                status = "failed"
                error = "the training process exited without finishing; last lines of train.log: " + _tail(
                    job_dir / "train.log")
        step, total = st.get("step"), st.get("total_steps")
        progress = f"step {step}/{total}" + (f", loss {st['loss']}" if "loss" in st else "") if total else None
        estimated = None
        if status == "running" and st.get("started_at") and step and total:
            elapsed = time.time() - float(st["started_at"])
            estimated = int(float(st["started_at"]) + elapsed / max(1, int(step)) * int(total))
        hp = {k: job.get(k) for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "lora_r", "lora_alpha",
                                      "max_seq_length") if job.get(k) is not None}
        gpu = st.get("gpu_seconds")
        return JobInfo(
            id=str(job.get("id")), status=status, model=str(job.get("model")),
            fine_tuned_model=st.get("fine_tuned_model") if status == "succeeded" else None,
            trained_tokens=st.get("trained_tokens"), error=error, created_at=job.get("created_at"),
            started_at=st.get("started_at"), finished_at=st.get("finished_at") if status in TERMINAL else None,
            estimated_finish=estimated, training_file=job.get("training_file"),
            validation_file=job.get("validation_file"), hyperparameters=hp,
            gpu_seconds=float(gpu) if gpu is not None else None, cost_usd=self.gpu_cost(gpu), progress=progress)

    def retrieve(self, job_id: str) -> JobInfo:
        return self._info(self._dir(job_id))

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        path = self._dir(job_id) / "events.jsonl"
        out = []
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        for i, line in enumerate(lines):
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            out.append(JobEvent(id=f"{job_id}-{i:05d}", created_at=int(e.get("created_at", 0)),
                                level=str(e.get("level", "info")), message=str(e.get("message", ""))))
        return out[-limit:]

    def list(self, limit: int = 20) -> list[JobInfo]:
        dirs = [d for d in self.jobs.glob("hflora-*") if (d / "job.json").is_file()] if self.jobs.is_dir() else []
        infos = [self._info(d) for d in dirs]
        return sorted(infos, key=lambda j: (j.created_at or 0, j.id), reverse=True)[:limit]

    def cancel(self, job_id: str) -> JobInfo:
        job_dir = self._dir(job_id)
        info = self._info(job_dir)
        if info.status in TERMINAL:
            raise TrainerError(f"cancel {job_id} failed: the job has already {info.status}")
        (job_dir / "cancelled.json").write_text(json.dumps({"at": int(time.time())}), encoding="utf-8")
        pid_text = (job_dir / "pid").read_text().strip() if (job_dir / "pid").is_file() else ""
        if pid_text.isdigit():
            try:
                os.killpg(int(pid_text), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            child = _children.get(job_id)
            if child is not None:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(int(pid_text), signal.SIGKILL)
                    child.wait(5)
        with open(job_dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"created_at": int(time.time()), "level": "info",
                                "message": "Fine-tuning job cancelled"}) + "\n")
        return self._info(job_dir)

    # -- serving through vLLM --------------------------------------------------------------------
    def serving(self, job: JobInfo) -> Serving | None:
        if job.status != "succeeded" or not job.fine_tuned_model:
            return None
        job_dir = self._dir(job.id)
        meta = _read(job_dir / "job.json") or {}
        adapter = job_dir / "adapter"
        name = job.fine_tuned_model
        port = urlparse(self.o.serve_base_url).port or 8000
        command = shlex.join(["vllm", "serve", str(meta.get("base_model", job.model)), "--enable-lora",
                              "--lora-modules", f"{name}={adapter}", "--max-lora-rank", str(meta.get("lora_r", 8)),
                              "--port", str(port)])
        body = json.dumps({"lora_name": name, "lora_path": str(adapter)})
        load = (f"curl -X POST {self.o.serve_base_url.rstrip('/')}/load_lora_adapter -H 'Content-Type: "
                f"application/json' -d {shlex.quote(body)}  # server started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
        serving = Serving(model=name, upstream=self.o.serve_upstream, upstream_base_url=self.o.serve_base_url,
                          command=command, load_call=load, input_per_mtok=0.0, output_per_mtok=0.0)
        config = {"upstreams": {self.o.serve_upstream: {"base_url": self.o.serve_base_url, "timeout_s": 60}},
                  "models": {name: {"upstream": self.o.serve_upstream, "input_per_mtok": 0.0,
                                    "output_per_mtok": 0.0}}}
        (job_dir / "serving.yaml").write_text(
            "# router-config entries for the adapter (abgate models add-arm ROUTE " + name + " writes them)\n"
            + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (job_dir / "vllm_serve.sh").write_text(
            f"#!/bin/sh\n# serve the adapter with vLLM's OpenAI-compatible server\n{command}\n"
            f"# or load it into a running server:\n# {load}\n", encoding="utf-8")
        return serving


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) or "(empty log)"
