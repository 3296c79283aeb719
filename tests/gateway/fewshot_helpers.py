"""Few-shot exports for tests, embedded exactly as the simulator's /v1/embeddings embeds."""

from __future__ import annotations

from pathlib import Path

from gateway import fewshot
from simulator.embeddings import embed

SUPPORT_PAIRS = (
    ("ex_refund", "I want a refund for order 123, it arrived broken", "Refunds for broken items: 5 days."),
    ("ex_refund2", "how do I get my money back for a damaged order", "Send a photo; refund in 5 days."),
    ("ex_ship", "where is my package, tracking says nothing", "Tracking updates within 24 hours."),
    ("ex_pwd", "I forgot my password and cannot log in", "Use the reset link on the login page."),
    ("ex_cancel", "please cancel my subscription today", "Cancelled; no further charges."),
)


def write_export(state: Path, dataset: str = "ds_support1", tenant: str = "default",
                 pairs: tuple[tuple[str, str, str], ...] = SUPPORT_PAIRS, model: str = "text-embedding-3-small",
                 path: Path | None = None) -> Path:
    export = fewshot.FewShotExport(
        format=fewshot.FORMAT, dataset=dataset, tenant=tenant, embedding_model=model, dim=256,
        created_at="2026-12-01T00:00:00.000Z",
        examples=tuple(fewshot.ExportedExample(id=i, user=u, assistant=a, embedding=fewshot.encode_vector(embed(u)))
                       for i, u, a in pairs))
    out = path or fewshot.export_path(state, dataset)
    fewshot.write_export(out, export)
    return out
