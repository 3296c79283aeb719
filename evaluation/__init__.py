"""Offline evaluation, online A/B analysis, the gate, decision records and rollout."""
