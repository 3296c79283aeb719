"""abgate: A/B routing and online evaluation gateway for LLM applications."""

__version__ = "0.1.0"
