"""A model folder whose safetensors or tokenizer do not parse fails with its own code, not internal_error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import ModelCorrupt, PareError
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


@pytest.mark.parametrize("damage", ["tokenizer.json cut", "tokenizer_config.json cut", "no tokenizer"])
def test_corrupt_tokenizer_is_model_corrupt(tmp_path: Path, damage: str) -> None:
    model = factories.make_tiny_bert(tmp_path / "src")
    folder = tmp_path / damage.replace(" ", "-")
    shutil.copytree(model, folder)
    if damage == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            (folder / name).unlink()
    else:
        target = folder / damage.split()[0]
        target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(PareError) as err:
        load_model(str(folder))
    # a tokenizer_config.json that is not JSON is refused when the folder is inspected (auto_map)
    expected = "model_refused" if damage == "tokenizer_config.json cut" else "model_corrupt"
    assert err.value.code == expected and "tokenizer" in str(err.value)
