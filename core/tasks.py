"""Celery task names: the API publishes by name, the workers register under the same names."""

from __future__ import annotations

RUN_JOB = "pare.run_job"
REAP = "pare.reap"
