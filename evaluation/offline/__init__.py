"""Offline evaluation: run a held-out set through a model, score it, compare runs, gate.

dataset  -> held-out JSONL (OpenAI chat format, last assistant message = reference)
runner   -> bounded-concurrency, rate-limited, retried calls (direct or via the gateway)
scorers  -> pluggable per-example metrics (built-ins + `module:function`)
runs     -> `<state>/evals/<run_id>/results.jsonl` + `summary.json`
compare  -> per-metric CIs, paired tests, latency, per-category regressions
gate     -> offline GO / NO-GO / HOLD with the same rules as the online gate
"""
