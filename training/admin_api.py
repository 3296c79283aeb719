"""Seed 003's admin API for the training loop, as Litestar handlers.

Mounted by `abgate.server:create` next to the gateway's own handlers (the gateway never
imports training). Handlers read `request.app.state.runtime` (`state_dir`, `config`) and,
when set, `request.app.state.trainer_factory(config, upstream) -> Trainer` (tests and
embedders inject one; the default is the `openai` SDK from env or a config upstream).
Every mutating call appends an audit event.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, JSONBody

from gateway.archive import append_events
from gateway.auth import AuthIndex, bearer
from gateway.config import RouterConfig
from gateway.errors import ApiError
from gateway.events import Audit, new_event_id, now_rfc3339
from training import providers
from training.providers.base import ProviderRefused
from training.registry import Registry
from training.service import LaunchRefused, export_lines, launch_from_registry
from training.trainer import Trainer, TrainerError, sync_run, trainer_for_job


def _runtime(request: ASGIConnection[Any, Any, Any, Any]) -> Any:
    return request.app.state.runtime


def _config(request: ASGIConnection[Any, Any, Any, Any]) -> RouterConfig | None:
    cv = getattr(_runtime(request), "config", None)
    return cv.config if cv is not None else None


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Open dev mode only when there is no `auth` section and no admin token set."""
    cfg = _config(connection)
    index = AuthIndex(cfg.auth if cfg else None)
    expected = index.admin_token_digest()
    if expected is None:
        if index.open:
            return
        raise ApiError(403, f"admin API disabled: set the admin token in ${index.admin_token_env}", "admin_disabled")
    token = bearer(connection.headers.get("authorization"))
    if not index.is_admin_token(token):
        raise ApiError(401, "admin token required: Authorization: Bearer <admin token>", "invalid_admin_token")


def _registry(request: Request[Any, Any, Any]) -> Registry:
    return Registry(_runtime(request).state_dir)


def _trainer(request: Request[Any, Any, Any], upstream: str | None, provider: str | None = None,
             job_id: str | None = None, reg: Registry | None = None) -> Trainer:
    """The provider: explicit, else the job's own (from its run), else config/env default."""
    factory = getattr(request.app.state, "trainer_factory", None)
    upstream = upstream or os.environ.get("ABGATE_FINETUNE_UPSTREAM") or None
    if factory is not None and provider is None:
        trainer: Trainer = factory(_config(request), upstream)
        return trainer
    try:
        if job_id is not None and reg is not None:
            return trainer_for_job(reg, job_id, config=_config(request), state_dir=_runtime(request).state_dir,
                                   provider=provider, upstream=upstream)
        return providers.resolve(provider, config=_config(request), state_dir=_runtime(request).state_dir,
                                 upstream=upstream)
    except ProviderRefused as err:
        raise ApiError(400, str(err), "provider_refused", param="provider") from None
    except TrainerError as err:
        raise ApiError(503, str(err), "trainer_unavailable") from None


def _audit(request: Request[Any, Any, Any], action: str, detail: dict[str, Any]) -> None:
    event = Audit(event_id=new_event_id(), ts=now_rfc3339(), tenant="system", action=action, actor="admin",
                  detail=detail)
    sink = getattr(_runtime(request), "sink", None)
    if sink is None or not sink.emit(event):
        append_events(_runtime(request).state_dir, [event])


def _float_param(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {value!r}", "invalid_parameter", param=name) from None


@get("/admin/export/jsonl", guards=[admin_guard], sync_to_thread=True)
def export_jsonl(request: Request[Any, Any, Any]) -> Response[bytes]:
    """OpenAI chat JSONL of curated examples; `min_quality` on the 1-10 scale.

    By default exactly the training file `POST /admin/fine-tune/create` trains for the same
    query (validated examples, train split), so the file a team checks is the file trained;
    `split=all|validation|heldout` and `validated_only=false` export the rest.
    """
    q = request.query_params
    min_q = _float_param(q.get("min_quality"), "min_quality")
    split: str | None = q.get("split") or "train"
    if split not in ("train", "validation", "heldout", "all"):
        raise ApiError(400, "split must be train, validation, heldout or all", "invalid_parameter", param="split")
    split = None if split == "all" else split
    validated = q.get("validated_only", "true")
    if validated not in ("true", "false"):
        raise ApiError(400, "validated_only must be true or false", "invalid_parameter", param="validated_only")
    reg = _registry(request)
    try:
        if q.get("dataset_id"):
            try:
                reg.dataset(q["dataset_id"])
            except KeyError as err:
                raise ApiError(404, str(err.args[0]), "dataset_not_found", param="dataset_id") from None
        lines = export_lines(reg, dataset_id=q.get("dataset_id") or None, tenant=q.get("tenant") or None,
                             split=split, min_quality10=min_q, validated_only=validated == "true")
    finally:
        reg.close()
    _audit(request, "export_jsonl", {"examples": len(lines), **{k: v for k, v in q.items()}})
    body = "".join(line + "\n" for line in lines).encode()
    return Response(content=body, media_type="application/jsonl",
                    headers={"x-abgate-examples": str(len(lines)), "x-abgate-split": split or "all",
                             "x-abgate-sha256": hashlib.sha256(body).hexdigest()})


class CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    base_model: str
    min_quality_score: float | None = None
    dataset_id: str | None = None
    tenant: str | None = None
    suffix: str | None = None
    hyperparameters: dict[str, Any] = {}
    min_examples: int = 10
    upstream: str | None = None
    provider: str | None = None


_HP = {"n_epochs": int, "batch_size": int, "learning_rate_multiplier": float}


@post("/admin/fine-tune/create", guards=[admin_guard], sync_to_thread=True, status_code=201)
def finetune_create(request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    try:
        body = msgspec.convert(data, CreateBody)
    except msgspec.ValidationError as err:
        raise ApiError(400, f"invalid request: {err}", "invalid_request") from None
    hyper: dict[str, Any] = {}
    for key, value in body.hyperparameters.items():
        if key not in _HP:
            raise ApiError(400, f"unknown hyperparameter {key!r} (known: {', '.join(_HP)})", "invalid_request",
                           param=f"hyperparameters.{key}")
        if value == "auto":
            continue
        try:
            hyper[key] = _HP[key](value)
        except (TypeError, ValueError):
            raise ApiError(400, f"{key} must be a number or 'auto'", "invalid_request",
                           param=f"hyperparameters.{key}") from None
    trainer = _trainer(request, body.upstream, body.provider)
    reg = _registry(request)
    try:
        if body.dataset_id is not None:
            try:
                reg.dataset(body.dataset_id)
            except KeyError as err:
                raise ApiError(404, str(err.args[0]), "dataset_not_found", param="dataset_id") from None
        launched = launch_from_registry(
            trainer, reg, model=body.base_model, tenant=body.tenant, dataset_id=body.dataset_id,
            min_quality10=body.min_quality_score, min_examples=body.min_examples, config=_config(request),
            suffix=body.suffix, **hyper)
        run = reg.run(launched.run_id)
    except ProviderRefused as err:
        raise ApiError(400, str(err), "provider_refused", param="base_model") from None
    except LaunchRefused as err:
        raise ApiError(422, str(err), "dataset_invalid") from None
    except TrainerError as err:
        raise ApiError(502, str(err), "trainer_error") from None
    finally:
        reg.close()
    _audit(request, "finetune_create", {"job_id": launched.job.id, "run_id": launched.run_id,
                                        "base_model": body.base_model, "provider": run["provider"],
                                        "tenant": run["tenant_id"]})
    return {"job_id": launched.job.id, "run_id": launched.run_id, "status": run["status"],
            "provider": run["provider"], "tenant": run["tenant_id"], "dataset_id": run["dataset_id"],
            "dataset_name": run["dataset_name"], "dataset_version": run["dataset_version"],
            "n_examples": run["n_examples"], "estimated_cost_usd": run["estimated_cost_usd"],
            "estimated_tokens": run["estimated_tokens"], "epochs": launched.estimate.epochs,
            "estimated_completion": run["estimated_finish"]}


@get("/admin/fine-tune/{job_id:str}/status", guards=[admin_guard], sync_to_thread=True)
def finetune_status(request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, Any]:
    reg = _registry(request)
    try:
        if reg.run_by_job(job_id) is None:
            raise ApiError(404, f"no training run for job {job_id!r}", "job_not_found", param="job_id")
        trainer = _trainer(request, request.query_params.get("upstream"), request.query_params.get("provider"),
                           job_id=job_id, reg=reg)
        try:
            job = trainer.retrieve(job_id)
        except TrainerError as err:
            raise ApiError(502, str(err), "trainer_error") from None
        run = sync_run(reg, job, _config(request), trainer)
        versions = [v for v in reg.model_versions() if v["run_id"] == run["id"]]
    finally:
        reg.close()
    return {"job_id": job_id, "run": run, "fine_tuned_model": job.fine_tuned_model, "status": job.status,
            "trained_tokens": job.trained_tokens, "error": job.error,
            "model_version": versions[0] if versions else None}


@get("/admin/fine-tune/models", guards=[admin_guard], sync_to_thread=True)
def finetune_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    reg = _registry(request)
    try:
        return {"data": reg.model_versions(request.query_params.get("tenant") or None)}
    finally:
        reg.close()


def _summary(reg: Registry, ds: dict[str, Any]) -> dict[str, Any]:
    exs = reg.examples(dataset_id=ds["id"])
    count: dict[str, dict[str, int]] = {"splits": {}, "status": {}, "categories": {}}
    for e in exs:
        for key, value in (("splits", e["split"]), ("status", e["status"]), ("categories", e["category"])):
            count[key][str(value)] = count[key].get(str(value), 0) + 1
    return {k: ds[k] for k in ("id", "tenant_id", "name", "description", "source", "created_at", "example_count")} \
        | count | {"validated": sum(1 for e in exs if e["validated"])}


@get("/admin/datasets", guards=[admin_guard], sync_to_thread=True)
def datasets(request: Request[Any, Any, Any]) -> dict[str, Any]:
    reg = _registry(request)
    try:
        return {"data": [_summary(reg, d) for d in reg.datasets(request.query_params.get("tenant") or None)]}
    finally:
        reg.close()


@get("/admin/datasets/{dataset_id:str}", guards=[admin_guard], sync_to_thread=True)
def dataset(request: Request[Any, Any, Any], dataset_id: FromPath[str]) -> dict[str, Any]:
    reg = _registry(request)
    try:
        try:
            ds = reg.dataset(dataset_id)
        except KeyError as err:
            raise ApiError(404, str(err.args[0]), "dataset_not_found", param="dataset_id") from None
        return _summary(reg, ds) | {"report": ds["report"], "params": ds["params"]}
    finally:
        reg.close()


handlers = [export_jsonl, finetune_create, finetune_status, finetune_models, datasets, dataset]
