"""Operations shared by the CLI and the admin API: export, validate-then-launch, poll."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import RouterConfig
from training import build as bd
from training.registry import Registry
from training.trainer import Launched, Trainer, launch
from training.validate import Report, validate_file


class LaunchRefused(ValueError):
    def __init__(self, message: str, report: Report | None = None):
        super().__init__(message)
        self.report = report


def export_lines(
    reg: Registry,
    *,
    dataset_id: str | None = None,
    tenant: str | None = None,
    split: str | None = None,
    min_quality10: float | None = None,
    validated_only: bool = False,
) -> list[str]:
    """OpenAI chat JSONL lines of the non-rejected examples; each distinct conversation once."""
    seen: set[str] = set()
    out = []
    for e in reg.examples(dataset_id=dataset_id, tenant=tenant, split=split, status=("accepted", "pending"),
                          min_quality10=min_quality10, validated_only=validated_only):
        if e["content_sha"] in seen:
            continue
        seen.add(e["content_sha"])
        out.append(bd.to_openai_line(e["messages"], e.get("tools")))
    return out


@dataclass(frozen=True)
class Checked:
    report: Report
    validation: Report | None


def check_files(
    path: Path,
    *,
    model: str,
    validation: Path | None = None,
    min_examples: int = 10,
    allow_mixed_system_prompts: bool = False,
    config: RouterConfig | None = None,
) -> Checked:
    """Validate before any upload; raise LaunchRefused naming the first problems."""
    rep = validate_file(path, model=model, min_examples=min_examples,
                        allow_mixed_system_prompts=allow_mixed_system_prompts, config=config)
    if not rep.ok:
        shown = "; ".join(str(p) for p in rep.errors[:5]) + (" ..." if len(rep.errors) > 5 else "")
        raise LaunchRefused(f"{path} failed validation ({len(rep.errors)} error(s)): {shown}", rep)
    vrep = None
    if validation is not None:
        vrep = validate_file(validation, model=model, min_examples=1,
                             allow_mixed_system_prompts=allow_mixed_system_prompts, config=config)
        if not vrep.ok:
            shown = "; ".join(str(p) for p in vrep.errors[:5])
            raise LaunchRefused(f"{validation} failed validation ({len(vrep.errors)} error(s)): {shown}", vrep)
    return Checked(rep, vrep)


def launch_file(
    trainer: Trainer,
    reg: Registry,
    path: Path,
    *,
    model: str,
    validation: Path | None = None,
    min_examples: int = 10,
    tenant: str = "default",
    dataset_id: str | None = None,
    dataset_name: str | None = None,
    allow_mixed_system_prompts: bool = False,
    config: RouterConfig | None = None,
    **hyper: Any,
) -> Launched:
    """Validate, then the provider's own checks, then upload and launch (nothing is uploaded on a refusal)."""
    if dataset_id is not None and dataset_name is None:
        try:
            dataset_name = reg.dataset(dataset_id)["name"]
        except KeyError:
            dataset_name = None
    checked = check_files(path, model=model, validation=validation, min_examples=min_examples,
                          allow_mixed_system_prompts=allow_mixed_system_prompts, config=config)
    rows = checked.report.rows
    return launch(trainer, reg, training_path=path, validation_path=validation, model=model,
                  token_counts=checked.report.token_counts, tenant=tenant, dataset_id=dataset_id,
                  dataset_name=dataset_name, system_prompt_sha=bd.prompt_sha(rows), config=config, **hyper)


@dataclass(frozen=True)
class Selection:
    """What a registry launch trains: the same examples the admin export returns for the same query."""

    tenant: str
    dataset_id: str | None
    dataset_name: str | None
    train: list[str]
    validation: list[str]


def training_selection(
    reg: Registry,
    *,
    tenant: str | None = None,
    dataset_id: str | None = None,
    min_quality10: float | None = None,
) -> Selection:
    """Validated (reviewed) examples only; a dataset's runs belong to the dataset's tenant.

    The held-out split is never trained; train and validation are, exactly as
    `GET /admin/export/jsonl?split=train` and `?split=validation` return them.
    """
    name = None
    if dataset_id is not None:
        try:
            ds = reg.dataset(dataset_id)
        except KeyError as err:
            raise LaunchRefused(str(err.args[0])) from None
        if tenant is not None and tenant != ds["tenant_id"]:
            raise LaunchRefused(f"dataset {dataset_id} belongs to tenant {ds['tenant_id']!r}, not {tenant!r}")
        tenant, name = ds["tenant_id"], ds["name"]
    kw: dict[str, Any] = {"dataset_id": dataset_id, "tenant": tenant, "min_quality10": min_quality10,
                          "validated_only": True}
    train = export_lines(reg, split="train", **kw)
    validation = export_lines(reg, split="validation", **kw)
    if not train:
        every = export_lines(reg, dataset_id=dataset_id, tenant=tenant, min_quality10=min_quality10)
        hint = f" ({len(every)} match but none is validated: review them first)" if every else ""
        raise LaunchRefused("no validated training examples match" + (f" in dataset {dataset_id}" if dataset_id
                                                                       else "") + hint)
    return Selection(tenant=tenant or "default", dataset_id=dataset_id, dataset_name=name, train=train,
                     validation=validation)


def launch_from_registry(
    trainer: Trainer,
    reg: Registry,
    *,
    model: str,
    tenant: str | None = None,
    dataset_id: str | None = None,
    min_quality10: float | None = None,
    min_examples: int = 10,
    config: RouterConfig | None = None,
    **hyper: Any,
) -> Launched:
    """Seed 003/004's `POST /admin/fine-tune/create`: the validated train split, validated, launched."""
    sel = training_selection(reg, tenant=tenant, dataset_id=dataset_id, min_quality10=min_quality10)
    lines, vlines = sel.train, sel.validation
    with tempfile.TemporaryDirectory(prefix="abgate-ft-") as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        val = None
        if vlines:
            val = Path(tmp) / "validation.jsonl"
            val.write_text("".join(line + "\n" for line in vlines), encoding="utf-8")
        return launch_file(trainer, reg, train, model=model, validation=val, min_examples=min_examples,
                           tenant=sel.tenant, dataset_id=dataset_id, dataset_name=sel.dataset_name, config=config,
                           **hyper)
