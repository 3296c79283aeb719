"""The offline training loop: datasets, curation, validation, export, fine-tune jobs, model registry.

May import `gateway` (schemas, archive, config store); `gateway` never imports this package.
"""
