"""The hf-lora training process: TRL SFT + PEFT LoRA on one job directory (`python -m ... JOB_DIR`).

Started by `training.providers.hf_lora` (locally, or through `accelerate launch` on GPU hosts).
Reads `job.json`, writes `status.json` (atomically), `events.jsonl` and the adapter directory;
its stdout/stderr is the run log `train.log`. Heavy imports (torch, transformers, trl, peft)
live only here, so abgate itself never needs them.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class JobFiles:
    def __init__(self, job_dir: Path):
        self.dir = job_dir
        self.job: dict[str, Any] = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
        self.state: dict[str, Any] = {"status": "validating_files"}
        self.rank0 = int(os.environ.get("RANK", "0")) == 0

    def event(self, message: str, level: str = "info", **data: Any) -> None:
        if not self.rank0:
            return
        with open(self.dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"created_at": int(time.time()), "level": level, "message": message, "data": data})
                    + "\n")

    def status(self, **fields: Any) -> None:
        self.state.update(fields)
        if self.rank0:
            write_json(self.dir / "status.json", self.state)


def _rows(path: str) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            msgs = json.loads(line)["messages"]
            rows.append({"messages": [{"role": m["role"], "content": m.get("content") or ""} for m in msgs]})
    return rows


def train(files: JobFiles) -> None:
    job = files.job
    files.status(status="validating_files")
    files.event(f"Validating training file: {Path(job['training_path']).name}")
    train_rows = _rows(job["training_path"])
    val_rows = _rows(job["validation_path"]) if job.get("validation_path") else None
    files.event(f"Files validated: {len(train_rows)} training examples"
                + (f", {len(val_rows)} validation" if val_rows else ""))

    base = job["base_model"]
    from transformers import AutoConfig

    AutoConfig.from_pretrained(base)  # an unknown architecture fails here, before TRL's import
    files.event(f"Base model config loaded: {base}")

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    seed = int(job.get("seed") or 0)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cuda = torch.cuda.is_available()
    epochs = int(job.get("n_epochs") or 1)
    cfg = SFTConfig(
        output_dir=str(files.dir / "checkpoints"), num_train_epochs=epochs,
        per_device_train_batch_size=int(job.get("batch_size") or 1),
        learning_rate=2e-4 * float(job.get("learning_rate_multiplier") or 1.0),
        max_steps=int(job.get("max_steps") or -1), logging_steps=1, save_strategy="no", report_to=[], seed=seed,
        max_length=int(job["max_seq_length"]), use_cpu=not cuda, bf16=False, dataloader_num_workers=0,
        disable_tqdm=True, eval_strategy="epoch" if val_rows else "no")

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            files.status(status="running", started_at=int(time.time()), total_steps=state.max_steps, step=0)
            files.event(f"Fine-tuning job started: {state.max_steps} steps on "
                        + ("GPU" if cuda else "CPU"))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                files.status(step=state.global_step, loss=round(float(logs["loss"]), 4))
                files.event(f"Step {state.global_step}/{state.max_steps}: training loss={float(logs['loss']):.4f}",
                            step=state.global_step, total_steps=state.max_steps, train_loss=float(logs["loss"]))
            if "eval_loss" in logs:
                files.event(f"Step {state.global_step}: validation loss={float(logs['eval_loss']):.4f}")

    lora = LoraConfig(r=int(job["lora_r"]), lora_alpha=int(job["lora_alpha"]), lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(val_rows) if val_rows else None, processing_class=tok,
                         peft_config=lora, callbacks=[Progress()])
    processed: Any = trainer.train_dataset  # tokenized by TRL: one `input_ids` list per example
    per_epoch = sum(len(ids) for ids in processed["input_ids"])
    t0 = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - t0
    adapter = files.dir / "adapter"
    trained: Any = trainer.model  # the PEFT-wrapped model: save_pretrained writes only the adapter
    if files.rank0:
        trained.save_pretrained(adapter)
        tok.save_pretrained(adapter)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    files.event(f"Adapter written to {adapter}")
    files.status(status="succeeded", finished_at=int(time.time()), trained_tokens=per_epoch * epochs,
                 gpu_seconds=round(seconds * world, 3), fine_tuned_model=job["output_name"],
                 device="cuda" if cuda else "cpu")
    files.event(f"New fine-tuned model created: {job['output_name']}")
    files.event("The job has successfully completed")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = JobFiles(Path(args[0]))
    try:
        train(files)
    except Exception as err:  # noqa: BLE001 - every failure becomes the job's error, with the traceback in the log
        traceback.print_exc()
        files.status(status="failed", finished_at=int(time.time()), error=f"{type(err).__name__}: {err}")
        files.event(f"Training failed: {type(err).__name__}: {err}", level="error")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
