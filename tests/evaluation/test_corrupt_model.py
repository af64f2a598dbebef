"""A model folder whose safetensors do not parse fails with its own code, not internal_error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import ModelCorrupt
from tests import factories
from workers.models import load_model


@pytest.mark.parametrize("damage", ["truncated", "zeros", "huge header", "empty"])
def test_corrupt_weights_are_model_corrupt(tmp_path: Path, damage: str) -> None:
    model = factories.make_tiny_bert(tmp_path / "src")
    folder = tmp_path / damage.replace(" ", "-")
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({
        "truncated": data[: len(data) // 2],
        "zeros": b"\x00" * 64,
        "huge header": b"\xff" * 8 + data[8:],
        "empty": b"",
    }[damage])
    with pytest.raises(ModelCorrupt) as err:
        load_model(str(folder))
    assert err.value.code == "model_corrupt" and "safetensors" in str(err.value)
