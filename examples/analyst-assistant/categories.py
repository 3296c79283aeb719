"""Seed 003's curation categories, and how a question maps to one (used by curate.py and the eval set)."""

from __future__ import annotations

import re

CATEGORIES: dict[str, str] = {
    "sec_10k": "10-K annual report questions",
    "sec_10q": "10-Q quarterly report questions",
    "sec_8k": "8-K current report questions",
    "gaap_reconciliation": "GAAP vs non-GAAP questions",
    "sbc_breakdown": "Stock-based compensation questions",
    "analyst_estimates": "Analyst forecast questions",
    "financial_metrics": "Ratios, margins, growth rates",
    "comparison": "Multi-company comparisons",
}

# first match wins; order goes from the most specific question type to the most general
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gaap_reconciliation", re.compile(r"non-gaap|\bgaap\b", re.I)),
    ("comparison", re.compile(r"\b(compare|versus|vs\.?)\b", re.I)),
    ("sbc_breakdown", re.compile(r"\bSBC\b|stock-based comp", re.I)),
    ("analyst_estimates", re.compile(r"\b(estimate|consensus|forecast|guidance)\b", re.I)),
    ("sec_8k", re.compile(r"\b8-K\b", re.I)),
    ("sec_10k", re.compile(r"\b(10-K|annual|fiscal year|FY\d{2,4})\b", re.I)),
    ("financial_metrics", re.compile(r"\b(margin|ratio|growth|free cash flow|cash flow)\b", re.I)),
    ("sec_10q", re.compile(r"\b(10-Q|Q[1-4]|quarter)\b", re.I)),
)


def categorize(question: str) -> str:
    for name, pattern in _RULES:
        if pattern.search(question):
            return name
    return "financial_metrics"
