"""The engine refuses what it cannot do with the project's own errors, before it rewrites anything.

A plan that misses the MAC budget is caught on the plan (BudgetInfeasible, field target.mac_ratio)
with every module of the model still the same object holding the same weights; a method whose
rewrite disagrees with its own plan is a PlanMismatch; bad calibration data is
InvalidCalibrationData, a model whose forward skips its blocks UnsupportedArchitecture.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.errors import (
    BudgetInfeasible,
    InvalidCalibrationData,
    InvalidSpec,
    PareError,
    PlanMismatch,
    UnsupportedArchitecture,
)
from core.macs import BlockShape, dense_shape
from tests.factories import batches, tiny_model
from workers.compression import engine
from workers.compression.adapters import ModelAdapter
from workers.compression.calibration import Calibrator
from workers.compression.engine import CompressionSpec, compress
from workers.compression.methods.factorized import FactorizedMethod
from workers.compression.methods.structured import StructuredMethod

L = 16
Snapshot = tuple[dict[str, int], dict[str, torch.Tensor]]


def snapshot(model: torch.nn.Module) -> Snapshot:
    """The identity of every module and a copy of every tensor."""
    return {name: id(m) for name, m in model.named_modules()}, {
        k: v.detach().clone() for k, v in model.state_dict().items()
    }


def assert_untouched(model: torch.nn.Module, before: Snapshot) -> None:
    modules, tensors = snapshot(model)
    assert modules == before[0]
    assert tensors.keys() == before[1].keys()
    for key, value in tensors.items():
        assert value.shape == before[1][key].shape, key
        torch.testing.assert_close(value, before[1][key], atol=0, rtol=0, msg=key)


def no_rewrite(*_: Any) -> dict[str, Any]:
    raise AssertionError("a block was rewritten although the plan misses the budget")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("id", {"allocation": "uniform"}),
        ("id", {"allocation": "global"}),
        ("magnitude", {}),
        ("svd", {"allocation": "uniform"}),
        ("svd", {"allocation": "global"}),
        ("block_lowrank", {}),
        ("monarch", {}),
        ("mpo", {}),
    ],
)
def test_an_unreachable_target_is_refused_before_any_block_is_rewritten(
    method: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.01 of the block MACs is below one head and one neuron per block (and below the attention
    scores, which no rank touches): every method refuses it and the model is as it was."""
    monkeypatch.setattr(StructuredMethod, "compress_block", no_rewrite)
    monkeypatch.setattr(FactorizedMethod, "compress_block", no_rewrite)
    model = tiny_model("bert")
    before = snapshot(model)
    with pytest.raises(BudgetInfeasible) as caught:
        compress(model, batches(), CompressionSpec(method, 0.01, L, params))
    assert caught.value.field == "target.mac_ratio"
    assert caught.value.code == "budget_infeasible"
    assert_untouched(model, before)


def _plan_keeping(fraction: float) -> Any:
    """A plan that keeps `fraction` of every block's neurons and all heads, whatever the target."""

    def plan(self: StructuredMethod, _target: float) -> list[BlockShape]:
        g = self.geometry
        return [BlockShape(g.heads, g.kv_heads, max(1, int(fraction * g.intermediate)))] * g.num_layers

    return plan


@pytest.mark.parametrize("fraction", [1.0, 0.05])
def test_a_plan_above_or_far_below_the_target_is_refused_on_the_plan(
    fraction: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too wide (dense at a 0.5 target) or too narrow (more than TOLERANCE below): refused with the
    plan's ratio in the message, and compress_block is never called."""
    monkeypatch.setattr(StructuredMethod, "plan", _plan_keeping(fraction))
    monkeypatch.setattr(StructuredMethod, "compress_block", no_rewrite)
    model = tiny_model("llama")
    before = snapshot(model)
    with pytest.raises(BudgetInfeasible, match="nothing was compressed") as caught:
        compress(model, batches(), CompressionSpec("id", 0.5, L, {"allocation": "uniform"}))
    assert caught.value.field == "target.mac_ratio"
    assert_untouched(model, before)


def test_a_plan_for_the_wrong_number_of_blocks_is_a_plan_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StructuredMethod, "plan", lambda self, _t: [dense_shape(self.geometry)])
    model = tiny_model("bert")
    before = snapshot(model)
    with pytest.raises(PlanMismatch, match="planned 1 blocks"):
        compress(model, batches(), CompressionSpec("id", 0.5, L, {"allocation": "uniform"}))
    assert_untouched(model, before)


def test_a_rewrite_that_disagrees_with_its_plan_is_a_plan_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final check on the measured model stays: a method that ignores its plan is a bug."""
    monkeypatch.setattr(StructuredMethod, "compress_block", lambda self, i, *_: {"index": i})
    with pytest.raises(PlanMismatch) as caught:
        compress(tiny_model("bert"), batches(), CompressionSpec("id", 0.5, L, {"allocation": "uniform"}))
    assert caught.value.code == "plan_mismatch"


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("method", ["id", "svd", "magnitude"])
def test_the_plan_checked_is_what_the_compressed_model_measures(
    model_type: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned: list[float] = []
    check = engine.check_plan
    monkeypatch.setattr(engine, "check_plan", lambda *a: planned.append(check(*a)) or planned[-1])
    report = compress(tiny_model(model_type), batches(), CompressionSpec(method, 0.6, L))
    assert planned == [report["macs"]["mac_ratio"]]


def test_calibration_without_tokens_is_invalid_data() -> None:
    data = batches(n=2)
    for batch in data:
        batch["attention_mask"].zero_()
    model = tiny_model("bert")
    with pytest.raises(InvalidCalibrationData) as caught:
        compress(model, data, CompressionSpec("id", 0.5, L))
    assert caught.value.field == "calibration"


def test_a_forward_that_never_reaches_the_first_block_is_an_unsupported_architecture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("bert")
    monkeypatch.setattr(model, "forward", lambda **_: None)
    calibrator = Calibrator(ModelAdapter(model), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(UnsupportedArchitecture, match="did not reach the first block"):
        calibrator.capture(batches(n=1))


def test_a_bad_revision_sha_for_the_cache_is_an_invalid_spec(tmp_path: Any) -> None:
    from workers.models import place_in_cache

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(InvalidSpec, match="40 lowercase hex"):
        place_in_cache(tmp_path / "m", "org/name", revision_sha="not-a-sha", hf_home=tmp_path / "hf")


def test_every_refusal_carries_a_stable_code() -> None:
    for cls in (BudgetInfeasible, InvalidCalibrationData, InvalidSpec, PlanMismatch, UnsupportedArchitecture):
        assert issubclass(cls, PareError) and cls.code != PareError.code


@pytest.mark.parametrize(("method", "params"), [("monarch", {"blocks": 3}), ("mpo", {"bond": 64})])
def test_a_target_the_cheapest_forms_cannot_reach_is_refused_before_any_compute(
    method: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known from the shapes alone (core.macs.least_block_macs): refused before calibration is even
    looked at (no batches are given, which a method that needs data would otherwise refuse)."""
    def no_capture(*_: Any, **__: Any) -> None:
        raise AssertionError("calibration was captured")

    monkeypatch.setattr(Calibrator, "capture", no_capture)
    model = tiny_model("bert")
    before = snapshot(model)
    with pytest.raises(BudgetInfeasible, match="cannot go below") as caught:
        compress(model, [], CompressionSpec(method, 0.5, L, params))
    assert caught.value.field == "target.mac_ratio"
    assert_untouched(model, before)


def test_a_matrix_a_family_cannot_shrink_stays_dense_and_the_report_says_so() -> None:
    """Monarch with 8 blocks on a model whose FFN is 36 wide: no common divisor of 8 with 36 × 32, so
    the FFN matrices stay dense (named in `kept_dense`), the attention ones are factorised, and the
    target is met on what remains."""
    import transformers

    config = transformers.BertConfig(vocab_size=97, hidden_size=32, num_attention_heads=4,
                                     num_hidden_layers=2, intermediate_size=36, max_position_embeddings=64,
                                     pad_token_id=1, architectures=["BertModel"])
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    report = compress(model, batches(), CompressionSpec("monarch", 0.8, L, {"blocks": 8}))
    kept = report["method_params"]["kept_dense"]
    assert sorted(kept) == sorted(f"encoder.layer.{i}.{p}" for i in range(2)
                                  for p in ("intermediate.dense", "output.dense"))
    assert all("no form of a" in why for why in kept.values())
    assert 0.79 <= report["macs"]["mac_ratio"] <= 0.8
    for layer in report["layers"]:  # what was factorised is attention only, and every one is Monarch
        assert set(layer["linears"]) <= {"q", "k", "v", "o"} and layer["linears"]
        assert {entry["type"] for entry in layer["linears"].values()} == {"monarch"}
