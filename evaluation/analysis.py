"""Online A/B analysis of one experiment phase, straight from the JSONL archive.

All heavy lifting happens in DuckDB: events -> one row per live interaction -> one row
per (unit, arm) -> a handful of sufficient statistics per arm and metric. Python only
sees those sums, so 10M events never become Python objects.

What each metric means (per-unit mean or ratio, which values count) is defined once in
`gateway.metric_catalog`; this module computes it:
- `unit_mean` metrics (interaction metrics `error`, `latency_ms`, ...; count metrics
  `edited_response`, `followup`, `policy_violation`): one value per unit, then Welch /
  delta method on the unit values. A count metric with no event in an arm has no data
  there (HOLD), it is never filled with zeros;
- `ratio` metrics (`thumbs`, `approved`, `csat`, `review.<field>`, custom): sum of values
  over the interactions that have that feedback, with unit-level delta-method variances;
  "units" counts the units with at least one value.
Intervals are confidence sequences by default (`method="sequential"`, valid at any number
of looks); `method="fixed"` gives Welch t intervals for one pre-registered look.
Feedback: duplicates (same event_id) collapse, and per (interaction_id, metric) the
event with the latest *parsed* timestamp wins (ties: the larger event_id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from duckdb import DuckDBPyConnection as Con

from evaluation import archive_sql, stats
from evaluation.archive_sql import ArchiveHealth
from gateway import metric_catalog as catalog

if TYPE_CHECKING:
    from gateway.config_store import ConfigStore

INTERACTION_METRICS = catalog.INTERACTION_NAMES
ZERO_FILL_METRICS = catalog.COUNT_METRICS  # count metrics: an interaction without the event counts 0
REVIEW_FIELDS = catalog.REVIEW_FIELDS

MetricKind = Literal["mean", "ratio"]  # "mean" = catalog aggregation unit_mean


class AnalysisError(RuntimeError):
    """Nothing to analyse (no such experiment/phase); the message says what was looked for."""


@dataclass(frozen=True, slots=True)
class ArmStat:
    units: int  # units contributing a value
    observations: int  # interactions with a value (count metrics: events of the metric)
    mean: float
    sd: float  # sd of per-unit values (mean metrics) or unit-level sd equivalent (ratio)
    moments: stats.ArmMoments | stats.RatioMoments
    coverage: float = math.nan  # share of the arm's interactions with this metric


@dataclass(frozen=True, slots=True)
class Lift:
    absolute: stats.Comparison
    relative: stats.Comparison


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    kind: MetricKind
    arms: dict[str, ArmStat]
    lifts: dict[str, Lift]  # per non-control arm, vs control
    events: int  # feedback events behind it (interaction metrics: interactions)

    def has_data(self, arm: str) -> bool:
        s = self.arms.get(arm)
        return s is not None and s.observations > 0 and math.isfinite(s.mean)

    @property
    def definition(self) -> str:
        d = catalog.definition(self.name)
        return f"{d.aggregation}: {d.meaning}"


@dataclass(frozen=True, slots=True)
class ArmSummary:
    name: str
    models: tuple[str, ...]
    expected_weight: float | None
    units: int
    interactions: int


@dataclass(frozen=True, slots=True)
class Analysis:
    experiment: str
    route: str | None
    phase: int
    phases: tuple[int, ...]
    config_versions: tuple[int, ...]
    control: str
    arms: tuple[ArmSummary, ...]
    srm: stats.SrmResult | None
    metrics: dict[str, MetricResult]
    first_ts: str | None
    last_ts: str | None
    days: float
    archive: ArchiveHealth
    units_in_multiple_arms: int
    alpha: float
    warnings: tuple[str, ...] = field(default=())
    method: stats.Method = "sequential"
    tuning: float = stats.DEFAULT_TUNING

    def compare(self, metric: str, treatment: str, effect: str, alpha: float) -> stats.Comparison:
        """The lift of `treatment` over control on `metric` at another alpha (the gate's
        multiplicity-adjusted level), with this analysis' method."""
        res = self.metrics[metric]
        return compare(res, self.control, treatment, effect, alpha, self.method, self.tuning)

    def arm(self, name: str) -> ArmSummary | None:
        return next((a for a in self.arms if a.name == name), None)


def metric_kind(name: str) -> MetricKind:
    return "mean" if catalog.aggregation(name) == "unit_mean" else "ratio"


def compare(res: MetricResult, control: str, treatment: str, effect: str, alpha: float,
            method: stats.Method = "sequential", tuning: float = stats.DEFAULT_TUNING) -> stats.Comparison:
    """Treatment vs control on one metric: absolute or relative lift, fixed or sequential."""
    c, t = res.arms[control].moments, res.arms[treatment].moments
    relative = effect == "relative"
    if isinstance(c, stats.ArmMoments) and isinstance(t, stats.ArmMoments):
        f = stats.relative_lift if relative else stats.welch
        return f(c, t, alpha, method=method, tuning=tuning)
    if isinstance(c, stats.RatioMoments) and isinstance(t, stats.RatioMoments):
        return stats.ratio_compare(c, t, alpha, relative, method=method, tuning=tuning)
    raise TypeError(f"metric {res.name!r} has mixed moments")


# --------------------------------------------------------------------------------------
# SQL

# Values as `gateway.metric_catalog` defines them (and the feedback API accepts them):
# thumbs +1 -> 1, -1 -> 0; booleans 1/0; edited_response: a non-empty text = 1 (an edit);
# numbers as they are. Anything else is not a value (NULL), never a silent 0.
_VALUE_SQL = """
CASE
  WHEN t IS NULL OR t = 'NULL' THEN NULL
  WHEN metric = 'thumbs' THEN CASE
      WHEN t IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND value::DOUBLE = 1 THEN 1.0
      WHEN t IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND value::DOUBLE = -1 THEN 0.0
    END
  WHEN metric = 'edited_response' THEN CASE
      WHEN t = 'BOOLEAN' THEN CASE WHEN value::VARCHAR = 'true' THEN 1.0 ELSE 0.0 END
      WHEN t = 'VARCHAR' AND (value->>'$') = '' THEN 0.0
      ELSE 1.0
    END
  WHEN t = 'BOOLEAN' THEN CASE WHEN value::VARCHAR = 'true' THEN 1.0 ELSE 0.0 END
  WHEN t IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN value::DOUBLE
  WHEN t = 'VARCHAR' THEN TRY_CAST(value->>'$' AS DOUBLE)
END
"""

Row = tuple[Any, ...]


def _q(con: Con, sql: str, params: list[object] | None = None) -> list[Row]:
    rows: list[Row] = con.execute(sql, params or []).fetchall()
    return rows


def _load(con: Con, state_dir: Path, experiment: str) -> dict[str, int]:
    """The view `ev` over the experiment's interaction/feedback events; corrupt lines per file."""
    return archive_sql.load_events(con, "ev", state_dir, experiment=experiment, kinds=("interaction", "feedback"))


def analyze(
    state_dir: Path,
    experiment: str,
    *,
    phase: int | None = None,
    control: str | None = None,
    metrics: list[str] | None = None,
    expected_weights: dict[str, float] | None = None,
    store: ConfigStore | None = None,
    alpha: float = 0.05,
    threads: int | None = None,
    method: stats.Method = "sequential",
    tuning: float = stats.DEFAULT_TUNING,
) -> Analysis:
    """Analyse one phase (latest by default) of `experiment` in the archive at `state_dir`.

    `metrics` are extra metric names that must appear in the result (as no-data entries
    if nothing was logged). Expected weights come from `expected_weights`, else from the
    phase's config version in `store` (a gateway ConfigStore), else SRM is skipped.
    `method`/`tuning`: confidence sequences (default, tuned for `tuning` total units) or
    fixed-horizon intervals for the lifts.
    """
    if not (state_dir / "events").exists():
        raise AnalysisError(f"no event archive under {state_dir / 'events'}")
    con = archive_sql.connect(threads)
    try:
        a = _analyze(con, state_dir, experiment, phase, control, metrics or [], expected_weights, store, alpha,
                     method, tuning)
        return a
    finally:
        con.close()


def _analyze(con: Con, state_dir: Path, experiment: str, phase: int | None, control: str | None, wanted: list[str],
             expected_weights: dict[str, float] | None, store: ConfigStore | None, alpha: float,
             method: stats.Method, tuning: float) -> Analysis:
    bad = _load(con, state_dir, experiment)
    health = archive_sql.health_from_counts(state_dir, bad)
    phases = tuple(
        int(p)
        for (p,) in _q(con, "SELECT DISTINCT phase FROM ev WHERE kind = 'interaction' AND phase IS NOT NULL ORDER BY 1")
    )
    if not phases:
        raise AnalysisError(f"no interactions for experiment {experiment!r} in the archive under {state_dir}")
    if phase is None:
        phase = phases[-1]
    elif phase not in phases:
        raise AnalysisError(f"experiment {experiment!r} has no phase {phase}; phases in the archive: {list(phases)}")

    _interactions(con, phase)
    # Latest feedback per (interaction, metric); exact duplicates (same event_id) are identical.
    review_values = ", ".join(f"('{k}')" for k in REVIEW_FIELDS)
    con.execute(
        f"""
        CREATE TEMP TABLE fbv AS
        WITH fb AS ({archive_sql.latest_feedback_sql("ev")}), j AS (
            SELECT f.interaction_id, f.metric, f.value, json_type(f.value) AS t
            FROM fb f SEMI JOIN inter i ON f.interaction_id = i.interaction_id
        )
        SELECT interaction_id, metric AS key, {_VALUE_SQL} AS v FROM j WHERE metric <> 'review'
        UNION ALL
        SELECT interaction_id, 'review.' || k.key AS key,
               TRY_CAST(json_extract_string(value, '$.' || k.key) AS DOUBLE) AS v
        FROM j, (VALUES {review_values}) AS k(key) WHERE metric = 'review' AND t = 'OBJECT'
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE units AS
        SELECT unit, arm, count(*) AS n, avg(error) AS error, avg(latency_ms) AS latency_ms,
               avg(ttft_ms) AS ttft_ms, avg(prompt_tokens) AS prompt_tokens,
               avg(completion_tokens) AS completion_tokens, avg(cost_usd) AS cost_usd
        FROM inter GROUP BY unit, arm
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE ufb AS
        SELECT i.unit, i.arm, f.key, sum(f.v) AS x, count(*) AS y
        FROM fbv f JOIN inter i ON f.interaction_id = i.interaction_id
        WHERE f.v IS NOT NULL GROUP BY i.unit, i.arm, f.key
        """
    )

    # Arms, models, data range, config versions.
    arm_rows = _q(
        con,
        """
        SELECT u.arm, u.units, u.interactions, m.models FROM
          (SELECT arm, count(*) AS units, sum(n) AS interactions FROM units GROUP BY arm) u
          LEFT JOIN (SELECT arm, string_agg(DISTINCT model, '\n' ORDER BY model) AS models
                     FROM inter WHERE model IS NOT NULL GROUP BY arm) m USING (arm)
        """,
    )
    first_ts, last_ts, route, n_inter = _q(
        con,
        "SELECT strftime(min(ts), '%Y-%m-%dT%H:%M:%S.%gZ'), strftime(max(ts), '%Y-%m-%dT%H:%M:%S.%gZ'), "
        "any_value(route), count(*) FROM inter",
    )[0]
    versions = tuple(int(v) for (v,) in _q(con, "SELECT DISTINCT config_version FROM inter WHERE config_version IS NOT NULL ORDER BY 1"))
    multi = _q(con, "SELECT count(*) FROM (SELECT unit FROM units GROUP BY unit HAVING count(*) > 1)")[0][0]
    warnings: list[str] = []
    if n_inter == 0:
        warnings.append(f"phase {phase} has no live interactions with a unit")
    if multi:
        warnings.append(f"{multi} units were seen in more than one arm in phase {phase}")

    # Expected weights and arm order: the phase's config (arms[0] is control).
    cfg_arms: list[tuple[str, str, float]] = []
    if store is not None and versions:
        try:
            cfg = store.get(versions[-1]).config
            r = cfg.routes.get(route) if route else None
            if r is None:
                r = next((x for x in cfg.routes.values() if x.experiment == experiment), None)
            if r is not None:
                cfg_arms = [(a.name, a.model, a.weight) for a in r.arms]
        except KeyError:
            warnings.append(f"config version {versions[-1]} is not in the store; no expected weights from config")
    weights = dict(expected_weights) if expected_weights else {n: w for n, _, w in cfg_arms} or None
    observed = {a: (int(u), int(i), tuple(m.split("\n")) if m else ()) for a, u, i, m in arm_rows}
    order = [n for n, _, _ in cfg_arms] or sorted(observed)
    for a in sorted(observed):
        if a not in order:
            order.append(a)
    if weights:
        for a in weights:
            if a not in order:
                order.append(a)
    if control is None:
        control = order[0] if order else "control"
    elif control in order:
        order.remove(control)
        order.insert(0, control)
    else:
        order.insert(0, control)
    arms = tuple(
        ArmSummary(
            name=a,
            models=observed.get(a, (0, 0, ()))[2] or tuple(m for n, m, _ in cfg_arms if n == a),
            expected_weight=(weights or {}).get(a),
            units=observed.get(a, (0, 0, ()))[0],
            interactions=observed.get(a, (0, 0, ()))[1],
        )
        for a in order
    )

    srm = None
    if weights:
        counts = {a.name: a.units for a in arms}
        try:
            srm = stats.srm_test(counts, weights)
        except ValueError as e:
            warnings.append(f"SRM: {e}")
            srm = stats.SrmResult(math.inf, 0.0, counts, {})
    else:
        warnings.append("no expected weights (no config version in the store and none in the criteria); SRM not tested")

    results = _metrics(con, [a.name for a in arms], control, wanted, alpha, method, tuning)
    days = 0.0
    if first_ts and last_ts:
        days = (_parse_ts(last_ts) - _parse_ts(first_ts)).total_seconds() / 86400.0
    return Analysis(
        experiment=experiment,
        route=route,
        phase=phase,
        phases=phases,
        config_versions=versions,
        control=control,
        arms=arms,
        srm=srm,
        metrics=results,
        first_ts=first_ts,
        last_ts=last_ts,
        days=days,
        archive=health,
        units_in_multiple_arms=int(multi),
        alpha=alpha,
        warnings=tuple(warnings),
        method=method,
        tuning=tuning,
    )


# One row per live interaction of the phase. An interaction is normally one event; one that
# appears more than once (a replayed spool line, a retried write) is merged: earliest time,
# latest config version, an error if any of its events is one.
_INTER_COLS = ("interaction_id, unit, arm, model, route, config_version, TRY_CAST(ts AS TIMESTAMPTZ) AS ts, "
               "CASE WHEN status = 'ok' THEN 0.0 ELSE 1.0 END AS error, latency_ms, ttft_ms, prompt_tokens, "
               "completion_tokens, cost_usd")
_INTER_MERGE = ("interaction_id, any_value(unit), any_value(arm), any_value(model), any_value(route), "
                "max(config_version), min(ts), max(error), any_value(latency_ms), any_value(ttft_ms), "
                "any_value(prompt_tokens), any_value(completion_tokens), any_value(cost_usd)")


def _interactions(con: Con, phase: int) -> None:
    """Create `inter`. Rows are copied as they are and only repeated ids are merged: checking
    for repeats by a 64-bit hash first is much cheaper than grouping every row by its id."""
    con.execute(
        f"CREATE TEMP TABLE inter AS SELECT {_INTER_COLS} FROM ev "
        "WHERE kind = 'interaction' AND phase = ? AND traffic = 'live' AND unit IS NOT NULL "
        "AND unit <> 'anonymous' AND arm IS NOT NULL AND interaction_id IS NOT NULL",
        [phase],
    )
    if not _q(con, "SELECT count(*) FROM (SELECT hash(interaction_id) AS h FROM inter GROUP BY h HAVING count(*) > 1)"
              )[0][0]:
        return  # every id once (the usual case)
    con.execute("CREATE TEMP TABLE dup AS SELECT interaction_id FROM inter GROUP BY interaction_id HAVING count(*) > 1")
    if _q(con, "SELECT count(*) FROM dup")[0][0]:
        con.execute(f"CREATE TEMP TABLE merged AS SELECT {_INTER_MERGE} FROM inter "
                    "WHERE interaction_id IN (SELECT interaction_id FROM dup) GROUP BY interaction_id")
        con.execute("DELETE FROM inter WHERE interaction_id IN (SELECT interaction_id FROM dup)")
        con.execute("INSERT INTO inter SELECT * FROM merged")


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _metrics(con: Con, arm_names: list[str], control: str, wanted: list[str], alpha: float, method: stats.Method,
             tuning: float) -> dict[str, MetricResult]:
    raw: dict[str, tuple[MetricKind, dict[str, stats.ArmMoments | stats.RatioMoments], dict[str, int], int]] = {}
    n_inter = _q(con, "SELECT count(*) FROM inter")[0][0]
    inter_by_arm = {a: int(n) for a, n in _q(con, "SELECT arm, sum(n) FROM units GROUP BY arm")}

    # Interaction metrics: per-unit means of non-null values.
    sel = ", ".join(f"count({m}), sum({m}), sum({m} * {m})" for m in INTERACTION_METRICS)
    for row in _q(con, f"SELECT arm, {sel} FROM units GROUP BY arm"):
        arm = row[0]
        for i, m in enumerate(INTERACTION_METRICS):
            c, s, ss = row[1 + 3 * i : 4 + 3 * i]
            entry = raw.setdefault(m, ("mean", {}, {}, n_inter))
            entry[1][arm] = stats.ArmMoments.from_sums(int(c), float(s or 0.0), float(ss or 0.0))
    obs_sel = ", ".join(f"count({m})" for m in INTERACTION_METRICS)
    for row in _q(con, f"SELECT arm, {obs_sel} FROM inter GROUP BY arm"):
        for i, m in enumerate(INTERACTION_METRICS):
            raw[m][2][row[0]] = int(row[1 + i])

    keys = {k: int(n) for k, n in _q(con, "SELECT key, count(*) FROM fbv WHERE v IS NOT NULL GROUP BY key")}
    # Count metrics: each unit's share of interactions with the event (no event = 0 for that
    # interaction) -- but only in an arm where the metric was logged at all (observations > 0).
    zero_keys = [k for k in ZERO_FILL_METRICS if k in keys or k in wanted]
    if zero_keys:
        con.execute("CREATE TEMP TABLE zk AS SELECT * FROM (VALUES " + ", ".join(f"('{k}')" for k in zero_keys) + ") t(key)")
        rows = _q(
            con,
            """
            SELECT u.arm, zk.key, count(*), sum(coalesce(f.x, 0) / u.n), sum(power(coalesce(f.x, 0) / u.n, 2)),
                   sum(coalesce(f.y, 0))
            FROM units u CROSS JOIN zk LEFT JOIN ufb f ON f.unit = u.unit AND f.arm = u.arm AND f.key = zk.key
            GROUP BY u.arm, zk.key
            """,
        )
        for arm, key, c, s, ss, nobs in rows:
            entry = raw.setdefault(key, ("mean", {}, {}, keys.get(key, 0)))
            entry[1][arm] = stats.ArmMoments.from_sums(int(c), float(s), float(ss)) if nobs else \
                stats.ArmMoments(0, math.nan, math.nan)
            entry[2][arm] = int(nobs)
    # Ratio metrics: per-unit sums over the units with at least one value.
    for arm, key, n, sx, sy, sxx, syy, sxy in _q(
        con,
        "SELECT arm, key, count(*), sum(x), sum(y), sum(x * x), sum(y * y), sum(x * y) FROM ufb GROUP BY arm, key",
    ):
        if key in ZERO_FILL_METRICS:
            continue
        entry = raw.setdefault(key, ("ratio", {}, {}, keys.get(key, 0)))
        entry[1][arm] = stats.RatioMoments(int(n), float(sx), float(sy), float(sxx), float(syy), float(sxy))
        entry[2][arm] = int(sy)

    out: dict[str, MetricResult] = {}
    for name in [*raw, *[w for w in wanted if w not in raw]]:
        kind, moments, obs, events = raw.get(name, (metric_kind(name), {}, {}, 0))
        out[name] = metric_result(name, kind, moments, obs, inter_by_arm, arm_names, control, alpha, method,
                                  tuning, events)
    return out


def metric_result(
    name: str, kind: MetricKind, moments: dict[str, stats.ArmMoments | stats.RatioMoments], obs: dict[str, int],
    interactions: dict[str, int], arm_names: list[str], control: str, alpha: float,
    method: stats.Method = "sequential", tuning: float = stats.DEFAULT_TUNING, events: int = 0,
) -> MetricResult:
    """One metric's per-arm statistics and lifts vs control, from sufficient statistics.
    (The SQL above produces them from the archive; the gate simulation from numpy.)"""
    arm_stats: dict[str, ArmStat] = {}
    for a in arm_names:
        m = moments.get(a)
        if m is None:
            m = stats.ArmMoments(0, math.nan, math.nan) if kind == "mean" else stats.RatioMoments(0, 0, 0, 0, 0, 0)
        arm_stats[a] = _arm_stat(m, obs.get(a, 0), interactions.get(a, 0))
    res = MetricResult(name, kind, arm_stats, {}, events)
    for a in arm_names:
        if a != control:
            res.lifts[a] = Lift(compare(res, control, a, "absolute", alpha, method, tuning),
                                compare(res, control, a, "relative", alpha, method, tuning))
    return res


def _arm_stat(m: stats.ArmMoments | stats.RatioMoments, observations: int, interactions: int) -> ArmStat:
    cov = observations / interactions if interactions else math.nan
    if isinstance(m, stats.ArmMoments):
        sd = math.sqrt(m.var) if m.n > 1 and math.isfinite(m.var) else math.nan
        return ArmStat(m.n, observations if m.n else 0, m.mean, sd, m, cov)
    r, var = stats.ratio_estimate(m)
    if m.sy == 0:
        r = math.nan
    elif not math.isfinite(r):
        r = m.sx / m.sy
    sd = math.sqrt(var * m.n) if math.isfinite(var) else math.nan
    return ArmStat(m.n if m.sy else 0, observations, r, sd, m, cov)


def units_needed(result: MetricResult, control: str, treatment: str, min_effect: float, effect: str,
                 alpha: float = 0.05, power: float = 0.8, *, method: stats.Method = "sequential",
                 tuning: float = stats.DEFAULT_TUNING) -> int | None:
    """Units per arm to detect `min_effect` with the given power, from the observed spread."""
    from evaluation import planning

    if min_effect <= 0:
        return None
    c, t = result.arms.get(control), result.arms.get(treatment)
    if c is None or t is None or not (math.isfinite(c.sd) and math.isfinite(c.mean)):
        return None
    mde = min_effect * abs(c.mean) if effect == "relative" else min_effect
    if mde <= 0:
        return None
    sd_t = t.sd if math.isfinite(t.sd) else c.sd
    if c.sd == 0 and sd_t == 0:
        return 2
    return planning.units_per_arm(c.sd, mde, alpha=alpha, power=power, sd_treatment=sd_t, method=method,
                                  tuning=tuning)
