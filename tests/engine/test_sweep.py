"""One preparation, many targets: capture and the planning pass run once; each target's model is
the one an independent single-target run builds (same code path, same inputs), and the dense model
the sweep copies from is left as it was."""

from __future__ import annotations

import copy

import pytest
import torch

from core.errors import BudgetInfeasible
from tests.factories import batches, tiny_model
from workers.compression.engine import CompressionSpec, compress, compress_to, prepare

CASES = [
    ("bert", "id", {"allocation": "global"}),
    ("llama", "id", {}),  # uniform allocation, grouped-query attention
    ("bert", "svd", {}),
    ("gpt2", "monarch", {}),
    # unstaged: every target reads the dense statistics, kept from the planning pass (global) or
    # from the first target's pass (uniform)
    ("bert", "id", {"allocation": "global", "staged": False}),
    ("llama", "id", {"staged": False}),
    ("bert", "svd", {"staged": False}),
]


def _outputs(model: torch.nn.Module, data: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**data[0])
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize(("arch", "method", "params"), CASES)
def test_each_target_equals_an_independent_run(arch: str, method: str, params: dict) -> None:  # type: ignore[type-arg]
    data = batches()
    dense = tiny_model(arch)
    reference = _outputs(dense, data)
    spec = CompressionSpec(method, 0.8, reference_seq_len=16, params=params)
    targets = [0.8, 0.6]
    prepared = prepare(dense, data, spec, targets=targets)
    for target in targets:
        model = copy.deepcopy(tiny_model(arch))
        alone = compress(model, data, CompressionSpec(method, target, reference_seq_len=16, params=params))
        swept, report = compress_to(prepared, target, copy=True)
        assert report["macs"]["mac_ratio"] == pytest.approx(alone["macs"]["mac_ratio"])
        assert [layer.get("neurons") for layer in report["layers"]] == [
            layer.get("neurons") for layer in alone["layers"]
        ]
        torch.testing.assert_close(_outputs(swept.model, data), _outputs(model, data), rtol=0, atol=1e-6)
    torch.testing.assert_close(_outputs(dense, data), reference, rtol=0, atol=0)  # the dense is intact
    if params.get("staged") is False:
        assert prepared.dense_stats is not None and len(prepared.dense_stats) == len(swept.layers)
    else:
        assert prepared.dense_stats is None
    assert set(prepared.timings) <= {"capture", "planning"} and "capture" in prepared.timings


def test_every_target_is_checked_before_any_compute() -> None:
    spec = CompressionSpec("svd", 0.9, reference_seq_len=16)
    with pytest.raises(BudgetInfeasible):
        prepare(tiny_model("bert"), batches(), spec, targets=[0.9, 0.01])
