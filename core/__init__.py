"""Pare's torch-free core: what the API and the workers both need, importing neither.

errors (domain exceptions with stable codes), archs (architecture facts), macs (MAC accounting),
hub (model-id and revision rules, offline cache resolution), methods (the method catalogue),
tasks (Celery task names). Standard library and pydantic only: `tests/test_layout.py` holds it.
"""
