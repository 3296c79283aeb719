"""The training registry: SQLite at `<state>/registry.sqlite` (WAL), migrated by `user_version`.

Tables (all carry tenant_id): datasets, examples, training_runs, model_versions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.events import new_event_id, now_rfc3339

RUN_STATUSES = ("queued", "validating_files", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

# Each entry migrates from user_version i to i + 1; never edit a shipped entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        report TEXT NOT NULL DEFAULT '{}',
        system_prompt_sha TEXT,
        example_count INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE examples (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        dataset_id TEXT NOT NULL REFERENCES datasets(id),
        source_id TEXT,
        messages TEXT NOT NULL,
        response TEXT,
        gold TEXT,
        signal TEXT,
        category TEXT,
        quality REAL,
        quality10 REAL,
        confidence REAL,
        status TEXT NOT NULL DEFAULT 'pending',
        validated INTEGER NOT NULL DEFAULT 0,
        validated_by TEXT,
        validated_at TEXT,
        split TEXT NOT NULL DEFAULT 'train',
        content_sha TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX examples_dataset ON examples(dataset_id);
    CREATE INDEX examples_source ON examples(tenant_id, source_id);
    CREATE TABLE training_runs (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        dataset_id TEXT,
        provider TEXT NOT NULL DEFAULT 'openai',
        provider_job_id TEXT UNIQUE,
        base_model TEXT NOT NULL,
        suffix TEXT,
        status TEXT NOT NULL,
        hyperparameters TEXT NOT NULL DEFAULT '{}',
        training_file TEXT,
        validation_file TEXT,
        n_examples INTEGER,
        system_prompt_sha TEXT,
        trained_tokens INTEGER,
        estimated_tokens INTEGER,
        estimated_cost_usd REAL,
        actual_cost_usd REAL,
        result_model TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE TABLE model_versions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        version TEXT NOT NULL,
        date TEXT NOT NULL,
        examples INTEGER,
        base_model TEXT NOT NULL,
        dataset_id TEXT,
        run_id TEXT UNIQUE,
        model_id TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (tenant_id, version)
    );
    """,
    # 2: providers behind one seam (issue 19) and seed 004's runs log
    """
    ALTER TABLE training_runs ADD COLUMN dataset_name TEXT;
    ALTER TABLE training_runs ADD COLUMN dataset_version TEXT;
    ALTER TABLE training_runs ADD COLUMN gpu_seconds REAL;
    ALTER TABLE training_runs ADD COLUMN estimated_finish TEXT;
    ALTER TABLE training_runs ADD COLUMN serving TEXT;
    ALTER TABLE model_versions ADD COLUMN provider TEXT;
    ALTER TABLE model_versions ADD COLUMN serving TEXT;
    """,
    # 3: the chat-format function tools an example was trained with (JSON list; NULL = none)
    """
    ALTER TABLE examples ADD COLUMN tools TEXT
    """,
)


def registry_path(state_dir: Path) -> Path:
    return state_dir / "registry.sqlite"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class Registry:
    """Thin, typed access to the registry; one connection per instance (not shared across threads)."""

    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = registry_path(state_dir)
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path} has schema version {current}, newer than this abgate knows ({len(MIGRATIONS)})"
            )
        for i in range(current, len(MIGRATIONS)):
            with self.tx():
                self._apply(i)

    def _apply(self, i: int) -> None:
        for stmt in MIGRATIONS[i].split(";"):
            if stmt.strip():
                self.db.execute(stmt)
        self.db.execute(f"PRAGMA user_version = {i + 1}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.rollback()
            raise
        else:
            self.db.commit()

    # -- datasets and examples -------------------------------------------------------------

    def create_dataset(
        self,
        *,
        tenant: str,
        name: str,
        source: str,
        examples: Iterable[dict[str, Any]],
        description: str = "",
        params: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
        system_prompt_sha: str | None = None,
    ) -> str:
        ds_id = "ds_" + new_event_id()[:16]
        now = now_rfc3339()
        rows = list(examples)
        with self.tx() as db:
            db.execute(
                "INSERT INTO datasets (id, tenant_id, name, description, source, params, report, system_prompt_sha,"
                " example_count, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (ds_id, tenant, name, description, source, _dumps(params or {}), _dumps(report or {}),
                 system_prompt_sha, len(rows), now),
            )
            for r in rows:
                db.execute(
                    "INSERT INTO examples (id, tenant_id, dataset_id, source_id, messages, response, gold, signal,"
                    " category, quality, quality10, confidence, status, validated, validated_by, validated_at, split,"
                    " content_sha, created_at, tools) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    ("ex_" + new_event_id()[:16], r.get("tenant_id", tenant), ds_id, r.get("source_id"),
                     _dumps(r["messages"]), r.get("response"), r.get("gold"), r.get("signal"), r.get("category"),
                     r.get("quality"), r.get("quality10"), r.get("confidence"), r.get("status", "pending"),
                     int(bool(r.get("validated"))), r.get("validated_by"), r.get("validated_at"),
                     r.get("split", "train"), r["content_sha"], now,
                     _dumps(r["tools"]) if r.get("tools") else None),
                )
        return ds_id

    def datasets(self, tenant: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM datasets" + (" WHERE tenant_id = ?" if tenant else "") + " ORDER BY created_at, rowid"
        return [self._ds(r) for r in self.db.execute(q, (tenant,) if tenant else ())]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise KeyError(f"no dataset {dataset_id!r}")
        return self._ds(row)

    @staticmethod
    def _ds(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["params"] = json.loads(d["params"])
        d["report"] = json.loads(d["report"])
        return d

    def examples(
        self,
        *,
        dataset_id: str | None = None,
        tenant: str | None = None,
        split: str | None = None,
        status: Iterable[str] | None = None,
        min_quality10: float | None = None,
        validated_only: bool = False,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[object] = []
        if dataset_id:
            where.append("dataset_id = ?")
            args.append(dataset_id)
        if tenant:
            where.append("tenant_id = ?")
            args.append(tenant)
        if split:
            where.append("split = ?")
            args.append(split)
        if status is not None:
            st = list(status)
            where.append(f"status IN ({','.join('?' * len(st))})")
            args.extend(st)
        if min_quality10 is not None:
            where.append("quality10 >= ?")
            args.append(min_quality10)
        if validated_only:
            where.append("validated = 1")
        q = "SELECT * FROM examples" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        return [self._ex(r) for r in self.db.execute(q, args)]

    @staticmethod
    def _ex(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["messages"] = json.loads(d["messages"])
        d["validated"] = bool(d["validated"])
        d["tools"] = json.loads(d["tools"]) if d.get("tools") else None
        return d

    def used_source_ids(self, tenant: str | None = None) -> set[str]:
        q = "SELECT source_id FROM examples WHERE source_id IS NOT NULL AND status != 'rejected'"
        args: tuple[Any, ...] = ()
        if tenant:
            q += " AND tenant_id = ?"
            args = (tenant,)
        return {r[0] for r in self.db.execute(q, args)}

    def review_example(
        self,
        example_id: str,
        *,
        action: str,
        reviewer: str,
        gold: str | None = None,
        category: str | None = None,
        quality10: float | None = None,
        quality: float | None = None,
    ) -> dict[str, Any]:
        """Accept / edit / reject one example; records validated_by and validated_at."""
        row = self.db.execute("SELECT * FROM examples WHERE id = ?", (example_id,)).fetchone()
        if row is None:
            raise KeyError(f"no example {example_id!r}")
        ex = self._ex(row)
        if action not in ("accept", "edit", "reject"):
            raise ValueError(f"action must be accept, edit or reject, got {action!r}")
        if action == "edit" and not gold:
            raise ValueError("an edit needs the corrected answer (gold)")
        if quality10 is not None and not 1 <= quality10 <= 10:
            raise ValueError(f"quality (1-10) out of range: {quality10:g}")
        if quality is not None and not 0 <= quality <= 1:
            raise ValueError(f"quality score (0-1) out of range: {quality:g}")
        messages = ex["messages"]
        if action == "edit" or (action == "accept" and gold and gold.strip()):
            # a correction given with `accept` is the gold answer too (it must not be stored and ignored)
            messages = replace_answer(messages, gold or "")
        if quality10 is not None and quality is None:
            quality = quality10 / 10.0
        if quality is not None and quality10 is None:
            quality10 = quality * 10.0
        with self.tx() as db:
            db.execute(
                "UPDATE examples SET status = ?, validated = ?, validated_by = ?, validated_at = ?, messages = ?,"
                " gold = COALESCE(?, gold), category = COALESCE(?, category), quality = COALESCE(?, quality),"
                " quality10 = COALESCE(?, quality10), content_sha = ? WHERE id = ?",
                ("rejected" if action == "reject" else "accepted", int(action != "reject"), reviewer, now_rfc3339(),
                 _dumps(messages), gold, category, quality, quality10, content_sha(messages), example_id),
            )
        return self._ex(self.db.execute("SELECT * FROM examples WHERE id = ?", (example_id,)).fetchone())

    def rejected_source_ids(self, tenant: str | None = None) -> set[str]:
        q = "SELECT source_id FROM examples WHERE source_id IS NOT NULL AND status = 'rejected'"
        args: tuple[Any, ...] = ()
        if tenant:
            q += " AND tenant_id = ?"
            args = (tenant,)
        return {r[0] for r in self.db.execute(q, args)}

    def used_content_keys(self, tenant: str | None = None) -> set[str]:
        """Content identities of every example already curated, rejected ones included (as stored,
        and with its original answer): a re-run does not propose them again."""
        q = "SELECT messages, response, content_sha FROM examples WHERE 1 = 1"
        args: tuple[Any, ...] = ()
        if tenant:
            q += " AND tenant_id = ?"
            args = (tenant,)
        out: set[str] = set()
        for messages, response, sha in self.db.execute(q, args):
            out.add(sha)
            if response is not None:
                out.add(content_sha(replace_answer(json.loads(messages), response)))
        return out

    def examples_by_content(self, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """content_sha -> the newest example with that content (to look up an exported file's lines)."""
        want = set(shas)
        out: dict[str, dict[str, Any]] = {}
        for row in self.db.execute("SELECT * FROM examples ORDER BY rowid"):
            if row["content_sha"] in want:
                out[row["content_sha"]] = self._ex(row)
        return out

    def validate_at_or_above(self, dataset_id: str, min_quality: float, *, reviewer: str) -> int:
        """Seed 004's `UPDATE ... SET validated = true WHERE quality_score >= X` (0-1 scale), pending
        and accepted examples only; returns how many were newly validated."""
        self.dataset(dataset_id)
        with self.tx() as db:
            cur = db.execute(
                "UPDATE examples SET status = 'accepted', validated = 1, validated_by = ?, validated_at = ?"
                " WHERE dataset_id = ? AND validated = 0 AND status != 'rejected' AND quality IS NOT NULL"
                " AND quality >= ?", (reviewer, now_rfc3339(), dataset_id, min_quality))
            return int(cur.rowcount)

    def delete_dataset(self, dataset_id: str) -> int:
        """Delete a dataset and its examples (training runs and model versions keep its id); returns the
        number of examples deleted. Its interactions become candidates for later builds again."""
        self.dataset(dataset_id)
        with self.tx() as db:
            n = db.execute("DELETE FROM examples WHERE dataset_id = ?", (dataset_id,)).rowcount
            db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        return int(n)

    # -- training runs -----------------------------------------------------------------------

    def create_run(self, *, tenant: str, base_model: str, status: str, **fields: Any) -> str:
        run_id = "run_" + new_event_id()[:16]
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        cols = {"id": run_id, "tenant_id": tenant, "base_model": base_model, "status": status,
                "created_at": now_rfc3339(), **fields}
        if "hyperparameters" in cols:
            cols["hyperparameters"] = _dumps(cols["hyperparameters"] or {})
        if isinstance(cols.get("serving"), dict):
            cols["serving"] = _dumps(cols["serving"])
        with self.tx() as db:
            db.execute(
                f"INSERT INTO training_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                tuple(cols.values()),
            )
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"unknown run status {fields['status']!r}")
        if isinstance(fields.get("serving"), dict):
            fields["serving"] = _dumps(fields["serving"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE training_runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM training_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no training run {run_id!r}")
        return self._run(row)

    def run_by_job(self, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM training_runs WHERE provider_job_id = ?", (job_id,)).fetchone()
        return self._run(row) if row else None

    def runs(self, tenant: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM training_runs" + (" WHERE tenant_id = ?" if tenant else "") + " ORDER BY created_at, rowid"
        return [self._run(r) for r in self.db.execute(q, (tenant,) if tenant else ())]

    @staticmethod
    def _run(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["hyperparameters"] = json.loads(d["hyperparameters"])
        d["serving"] = json.loads(d["serving"]) if d.get("serving") else None
        return d

    # -- model versions ----------------------------------------------------------------------

    def register_model(
        self,
        *,
        tenant: str,
        model_id: str,
        base_model: str,
        examples: int | None,
        dataset_id: str | None,
        run_id: str | None,
        notes: str = "",
        provider: str | None = None,
        serving: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add the next version (v1, v2, ...) for the tenant; idempotent per run."""
        if run_id is not None:
            row = self.db.execute("SELECT * FROM model_versions WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                return self._mv(row)
        with self.tx() as db:
            n = db.execute("SELECT COUNT(*) FROM model_versions WHERE tenant_id = ?", (tenant,)).fetchone()[0]
            now = now_rfc3339()
            mv_id = "mv_" + new_event_id()[:16]
            db.execute(
                "INSERT INTO model_versions (id, tenant_id, version, date, examples, base_model, dataset_id, run_id,"
                " model_id, notes, created_at, provider, serving) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (mv_id, tenant, f"v{n + 1}", now[:10], examples, base_model, dataset_id, run_id, model_id, notes, now,
                 provider, _dumps(serving) if serving else None),
            )
        return self._mv(self.db.execute("SELECT * FROM model_versions WHERE id = ?", (mv_id,)).fetchone())

    def model_versions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM model_versions" + (" WHERE tenant_id = ?" if tenant else "") + " ORDER BY created_at, rowid"
        return [self._mv(r) for r in self.db.execute(q, (tenant,) if tenant else ())]

    def model_version_by_model(self, model_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM model_versions WHERE model_id = ? ORDER BY rowid DESC LIMIT 1",
                              (model_id,)).fetchone()
        return self._mv(row) if row else None

    @staticmethod
    def _mv(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["serving"] = json.loads(d["serving"]) if d.get("serving") else None
        return d


def replace_answer(messages: list[dict[str, Any]], answer: str) -> list[dict[str, Any]]:
    """The conversation with its last assistant message replaced (or appended) by `answer`."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "assistant":
            m["content"] = answer
            return out
    return [*out, {"role": "assistant", "content": answer}]


def content_sha(messages: list[dict[str, Any]]) -> str:
    import hashlib

    return hashlib.sha256(_dumps(messages).encode()).hexdigest()
