"""Files and fine-tuning jobs like OpenAI's API (what the `openai` SDK calls).

Everything lives on disk under the state dir so `--workers N` processes agree. A job's status is a
pure function of its creation time and `--ft-seconds` (validating_files -> queued -> running ->
succeeded, or failed when its training file is bad), so nothing has to advance it in the background;
only cancel writes.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec

from simulator import ftdata
from simulator.errors import error
from simulator.generate import BadRequest, json_object
from simulator.http import Request, Response

_json = msgspec.json.Encoder()
ORG = "abgate-sim"
PURPOSES = {"fine-tune", "assistants", "batch", "vision", "user_data", "evals"}
FINE_TUNABLE = {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14",
                "gpt-4.1-2025-04-14", "gpt-3.5-turbo-0125"}
# share of --ft-seconds spent in each phase before running
VALIDATING_END, QUEUED_END = 0.2, 0.35
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ok(data: Any, status: int = 200) -> Response:
    return Response(status, _json.encode(data))


def not_found(kind: str, ident: str) -> Response:
    return error(404, f"No such {kind}: '{ident}'", code=None, param="id")


class FineTuneStore:
    def __init__(self, root: Path, *, ft_seconds: float, seed: int) -> None:
        self.files = root / "files"
        self.jobs = root / "jobs"
        self.files.mkdir(parents=True, exist_ok=True)
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.ft_seconds = max(0.0, ft_seconds)
        self.seed = seed

    # ------------------------------------------------------------------ routing
    def route(self, req: Request, path: str) -> Response:
        parts = [p for p in path.split("/") if p]
        m = req.method
        if parts[0] == "files":
            if len(parts) == 1:
                return self.upload(req) if m == "POST" else self.list_files(req) if m == "GET" else _method(req)
            fid = parts[1]
            if len(parts) == 2:
                return self.get_file(fid) if m == "GET" else self.delete_file(fid) if m == "DELETE" else _method(req)
            if len(parts) == 3 and parts[2] == "content" and m == "GET":
                return self.file_content(fid)
        elif parts[:2] == ["fine_tuning", "jobs"]:
            if len(parts) == 2:
                return self.create_job(req) if m == "POST" else self.list_jobs(req) if m == "GET" else _method(req)
            jid = parts[2]
            if len(parts) == 3 and m == "GET":
                return self.get_job(jid)
            if len(parts) == 4 and parts[3] == "events" and m == "GET":
                return self.list_events(jid, req)
            if len(parts) == 4 and parts[3] == "cancel" and m == "POST":
                return self.cancel(jid)
            if len(parts) == 4 and parts[3] == "checkpoints" and m == "GET":
                return ok({"object": "list", "data": [], "has_more": False}) if self._job(jid) else not_found("job", jid)
        return error(404, f"Invalid URL ({req.method} {req.path})", code="unknown_url")

    # -------------------------------------------------------------------- files
    def upload(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "")
        if "multipart/form-data" not in ctype:
            return error(400, "Expected a multipart/form-data body with 'file' and 'purpose'.")
        try:
            fields = parse_multipart(req.body, ctype)
        except ValueError as err:
            return error(400, f"Could not parse the multipart body: {err}")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if "file" not in fields:
            return error(400, "Missing required parameter: 'file'.", param="file")
        if purpose not in PURPOSES:
            return error(400, f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'", param="purpose")
        filename, content = fields["file"]
        fid = "file-" + os.urandom(12).hex()
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename or "upload.jsonl", "purpose": purpose, "status": "processed",
                "status_details": None, "expires_at": None}
        (self.files / f"{fid}.bin").write_bytes(content)
        _write(self.files / f"{fid}.json", meta)
        return ok(meta)

    def _file(self, fid: str) -> dict[str, Any] | None:
        return _read(self.files / f"{fid}.json") if _ID.match(fid) else None

    def get_file(self, fid: str) -> Response:
        meta = self._file(fid)
        return ok(meta) if meta else not_found("file", fid)

    def list_files(self, req: Request) -> Response:
        q = parse_qs(req.query)
        purpose = q.get("purpose", [None])[0]
        metas = [_read(p) for p in self.files.glob("*.json")]
        data = sorted((m for m in metas if m and (purpose is None or m["purpose"] == purpose)),
                      key=lambda m: (m["created_at"], m["id"]), reverse=True)
        return ok({"object": "list", "data": data, "has_more": False})

    def file_content(self, fid: str) -> Response:
        if not self._file(fid):
            return not_found("file", fid)
        return Response(200, (self.files / f"{fid}.bin").read_bytes(), content_type="application/octet-stream")

    def delete_file(self, fid: str) -> Response:
        if not self._file(fid):
            return not_found("file", fid)
        (self.files / f"{fid}.json").unlink(missing_ok=True)
        (self.files / f"{fid}.bin").unlink(missing_ok=True)
        return ok({"id": fid, "object": "file", "deleted": True})

    # --------------------------------------------------------------------- jobs
    def create_job(self, req: Request) -> Response:
        try:
            body = json_object(req.body)
        except BadRequest as err:
            return error(400, str(err))
        base = body.get("model")
        if not isinstance(base, str) or not (base in FINE_TUNABLE or base.startswith("ft:")):
            return error(400, f"Model {base!r} is not available for fine-tuning or does not exist.",
                         code="model_not_available", param="model")
        files: dict[str, str | None] = {}
        for key in ("training_file", "validation_file"):
            fid = body.get(key)
            if fid is None and key == "validation_file":
                files[key] = None
                continue
            meta = self._file(fid) if isinstance(fid, str) else None
            if meta is None:
                return error(400, f"invalid {key}: file {fid!r} does not exist", code="invalid_request_error", param=key)
            if meta["purpose"] != "fine-tune":
                return error(400, f"invalid {key}: file {fid} has purpose '{meta['purpose']}', expected 'fine-tune'",
                             param=key)
            files[key] = fid
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 64):
            return error(400, "suffix must be a string of 1 to 64 characters", param="suffix")
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        if not isinstance(method, dict) or method.get("type") != "supervised":
            return error(400, "the simulator supports method.type 'supervised' only", param="method.type")
        hp_in = dict(body.get("hyperparameters") or {})
        sup = method.get("supervised") or {}
        hp_in.update((sup.get("hyperparameters") if isinstance(sup, dict) else None) or {})
        problem = _check_hp(hp_in)
        if problem:
            return error(400, problem, param="method.supervised.hyperparameters")
        metadata = body.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
            return error(400, "metadata must be an object of string values", param="metadata")

        # the job fails in validating_files when a file is bad, as on OpenAI
        train = ftdata.check((self.files / f"{files['training_file']}.bin").read_bytes())
        problems = [f"training file: {p}" for p in train.problems]
        if files["validation_file"]:
            val = ftdata.check((self.files / f"{files['validation_file']}.bin").read_bytes())
            problems += [f"validation file: {p}" for p in val.problems if "at least" not in p]
        n = train.examples
        hp = {
            "n_epochs": _resolve(hp_in.get("n_epochs"), ftdata.auto_epochs(n)),
            "batch_size": _resolve(hp_in.get("batch_size"), ftdata.auto_batch_size(n)),
            "learning_rate_multiplier": _resolve(hp_in.get("learning_rate_multiplier"), 1.8),
        }
        jid = "ftjob-" + os.urandom(12).hex()
        now = time.time()
        job = {
            "id": jid, "model": base, "training_file": files["training_file"], "validation_file": files["validation_file"],
            "suffix": suffix, "seed": body.get("seed") if isinstance(body.get("seed"), int) else int(now) % 2**31,
            "metadata": metadata, "hyperparameters": hp, "created": now, "duration": self.ft_seconds,
            "examples": n, "tokens": train.tokens, "problems": problems[:20], "cancelled_at": None,
        }
        _write(self.jobs / f"{jid}.json", job)
        return ok(self._view(job, now))

    def _job(self, jid: str) -> dict[str, Any] | None:
        return _read(self.jobs / f"{jid}.json") if _ID.match(jid) else None

    def get_job(self, jid: str) -> Response:
        job = self._job(jid)
        return ok(self._view(job, time.time())) if job else not_found("job", jid)

    def list_jobs(self, req: Request) -> Response:
        q = parse_qs(req.query)
        jobs = sorted((j for j in (_read(p) for p in self.jobs.glob("*.json")) if j),
                      key=lambda j: (j["created"], j["id"]), reverse=True)
        now = time.time()
        views = [self._view(j, now) for j in jobs]
        return ok(_page(views, q))

    def list_events(self, jid: str, req: Request) -> Response:
        job = self._job(jid)
        if not job:
            return not_found("job", jid)
        events = list(reversed(_events(job, time.time())))  # newest first, like OpenAI
        return ok(_page(events, parse_qs(req.query)))

    def cancel(self, jid: str) -> Response:
        job = self._job(jid)
        if not job:
            return not_found("job", jid)
        now = time.time()
        status = _status(job, now)
        if status in ("succeeded", "failed", "cancelled"):
            return error(400, f"Job {jid} has already {status} and cannot be cancelled.", code="invalid_state")
        job["cancelled_at"] = now
        _write(self.jobs / f"{jid}.json", job)
        return ok(self._view(job, now))

    def model_ids(self) -> list[str]:
        now = time.time()
        out = []
        for p in self.jobs.glob("*.json"):
            job = _read(p)
            if job and _status(job, now) == "succeeded":
                out.append(fine_tuned_name(job))
        return sorted(out)

    def _view(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        status = _status(job, now)
        done_at = _finished_at(job, status)
        hp = job["hyperparameters"]
        err = None
        if status == "failed":
            err = {"code": "invalid_training_file", "param": "training_file",
                   "message": "The job failed due to an invalid training file. " + " ".join(job["problems"][:5])}
        return {
            "id": job["id"], "object": "fine_tuning.job", "created_at": int(job["created"]), "error": err,
            "fine_tuned_model": fine_tuned_name(job) if status == "succeeded" else None,
            "finished_at": int(done_at) if done_at else None, "hyperparameters": hp, "model": job["model"],
            "organization_id": f"org-{ORG}", "result_files": [f"file-result-{job['id'][6:]}"] if status == "succeeded" else [],
            "seed": job["seed"], "status": status,
            "trained_tokens": job["tokens"] * hp["n_epochs"] if status == "succeeded" else None,
            "training_file": job["training_file"], "validation_file": job["validation_file"],
            "estimated_finish": int(job["created"] + job["duration"]) if status in ("queued", "running") else None,
            "integrations": [], "metadata": job["metadata"], "user_provided_suffix": job["suffix"],
            "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
        }


def fine_tuned_name(job: dict[str, Any]) -> str:
    return f"ft:{job['model']}:{ORG}:{job['suffix'] or ''}:{job['id'][6:14]}"


def _status(job: dict[str, Any], now: float) -> str:
    t = now - job["created"]
    d = job["duration"]
    cancelled = job["cancelled_at"]
    if job["problems"] and t >= d * VALIDATING_END:
        return "cancelled" if cancelled and cancelled - job["created"] < d * VALIDATING_END else "failed"
    if cancelled and cancelled - job["created"] < d:
        return "cancelled"
    if t >= d:
        return "succeeded"
    if t < d * VALIDATING_END:
        return "validating_files"
    return "queued" if t < d * QUEUED_END else "running"


def _finished_at(job: dict[str, Any], status: str) -> float | None:
    if status == "cancelled":
        return float(job["cancelled_at"])
    if status == "failed":
        return float(job["created"] + job["duration"] * VALIDATING_END)
    if status == "succeeded":
        return float(job["created"] + job["duration"])
    return None


def _events(job: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Events that have happened by `now`, oldest first."""
    c, d = job["created"], job["duration"]
    hp = job["hyperparameters"]
    steps = max(1, math.ceil(job["examples"] / hp["batch_size"])) * hp["n_epochs"]
    planned: list[tuple[float, str, str, dict[str, Any] | None]] = [
        (c, "info", "Created fine-tuning job", None),
        (c, "info", f"Validating training file: {job['training_file']}"
         + (f" and validation file: {job['validation_file']}" if job["validation_file"] else ""), None),
    ]
    if job["problems"]:
        planned.append((c + d * VALIDATING_END, "error",
                        "Training file validation failed: " + " ".join(job["problems"][:5]), None))
    else:
        planned += [
            (c + d * VALIDATING_END, "info", "Files validated, moving job to queued state", None),
            (c + d * QUEUED_END, "info", "Fine-tuning job started", None),
        ]
        every = max(1, steps // 20)
        span = d * (1 - QUEUED_END) * 0.9
        for step in range(1, steps + 1):
            if step % every and step != steps:
                continue
            frac = step / steps
            loss = round(0.15 + 1.85 * math.exp(-4 * frac) + 0.03 * math.sin(step * 1.7 + job["seed"]), 4)
            data = {"step": step, "total_steps": steps, "train_loss": loss, "train_mean_token_accuracy": round(1 - loss / 2.5, 4)}
            planned.append((c + d * QUEUED_END + span * frac, "info", f"Step {step}/{steps}: training loss={loss}", data))
        planned += [
            (c + d - 1e-3, "info", f"Checkpoint created at step {steps}", None),
            (c + d, "info", f"New fine-tuned model created: {fine_tuned_name(job)}", None),
            (c + d, "info", "The job has successfully completed", None),
        ]
    cancelled = job["cancelled_at"]
    out = []
    for i, (at, level, message, payload) in enumerate(planned):
        if at > now or (cancelled and at > cancelled):
            continue
        out.append({"id": f"ftevent-{job['id'][6:]}{i:04d}", "object": "fine_tuning.job.event", "created_at": int(at),
                    "level": level, "message": message, "data": payload or {}, "type": "metrics" if payload else "message"})
    if cancelled and cancelled <= now:
        out.append({"id": f"ftevent-{job['id'][6:]}9999", "object": "fine_tuning.job.event",
                    "created_at": int(cancelled), "level": "info", "message": "Fine-tuning job cancelled",
                    "data": {}, "type": "message"})
    return out


def _page(items: list[dict[str, Any]], q: dict[str, list[str]]) -> dict[str, Any]:
    after = q.get("after", [None])[0]
    try:
        limit = max(1, min(100, int(q.get("limit", ["20"])[0])))
    except ValueError:
        limit = 20
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _resolve(value: Any, auto: Any) -> Any:
    return auto if value in (None, "auto") else value


def _check_hp(hp: dict[str, Any]) -> str | None:
    rules: dict[str, tuple[type | tuple[type, ...], float, float]] = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": ((int, float), 0.0, 10.0)}
    for key, value in hp.items():
        if key not in rules:
            return f"unknown hyperparameter '{key}'"
        kind, lo, hi = rules[key]
        if value == "auto":
            continue
        num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if num is None or not isinstance(value, kind) or not (
                lo < num <= hi if key == "learning_rate_multiplier" else lo <= num <= hi):
            return f"invalid {key}: {value!r} (expected 'auto' or a number in {'(' if key == 'learning_rate_multiplier' else '['}{lo}, {hi}])"
    return None


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Minimal multipart/form-data parser: name -> (filename, bytes)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("no boundary in content-type")
    sep = b"--" + m.group(1).encode("latin-1")
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(sep)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part
        head, _, data = part.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disp = next((h for h in head.decode("utf-8", "replace").split("\r\n")
                     if h.lower().startswith("content-disposition")), "")
        name = re.search(r'\bname="([^"]*)"', disp)
        if not name:
            raise ValueError("a part has no name")
        fname = re.search(r'filename="([^"]*)"', disp)
        out[name.group(1)] = (fname.group(1) if fname else None, data)
    return out


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(_json.encode(data))
    os.replace(tmp, path)  # atomic, so another worker never reads half a record


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = msgspec.json.decode(path.read_bytes())
        return data
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def _method(req: Request) -> Response:
    return error(405, f"Method {req.method} not allowed for {req.path}", code="method_not_allowed")
