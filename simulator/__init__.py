"""OpenAI-compatible fake upstream (chat, streaming, files, fine-tuning, embeddings) and simulated users.

Run it with `python -m simulator --host H --port P`; the traffic generator is `python -m simulator.traffic`.
"""
