"""One contract, every architecture: the engine's promises on tiny random models.

Subclassed per architecture, as SliceGPT's adapter tests are: target 1.0 reproduces the dense
model, every method meets the MAC target, ID error does not grow as the target grows, and an
artifact saved and loaded gives the same outputs as the in-memory compressed model.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import pytest
import torch

from core.macs import dense_shape
from tests.factories import batches, tiny_model
from workers.compression.adapters import ModelAdapter
from workers.compression.artifacts import load_compressed, save_compressed
from workers.compression.calibration import Calibrator
from workers.compression.engine import CompressionSpec, build_method, compress

METHODS = ("id", "svd", "magnitude")
L = 16


def main_output(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def relative_error(model: torch.nn.Module, dense: torch.nn.Module, data: list[dict[str, Any]]) -> float:
    num = den = 0.0
    for batch in data:
        ref, got = main_output(dense, batch), main_output(model, batch)
        num += float((got - ref).pow(2).sum())
        den += float(ref.pow(2).sum())
    return (num / den) ** 0.5


class ArchitectureContract:
    model_type: ClassVar[str]

    @pytest.fixture
    def dense(self) -> torch.nn.Module:
        return tiny_model(self.model_type)

    @pytest.fixture
    def data(self) -> list[dict[str, torch.Tensor]]:
        return batches(n=4, bs=8, seq=L)

    @pytest.mark.parametrize("method", METHODS)
    def test_target_one_reproduces_the_dense_model(self, dense, data, method: str) -> None:
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, 1.0, L))
        assert report["macs"]["mac_ratio"] == pytest.approx(1.0)
        torch.testing.assert_close(
            main_output(model, data[0]), main_output(dense, data[0]), atol=1e-5, rtol=1e-5
        )

    @pytest.mark.parametrize("method", METHODS)
    def test_a_full_width_plan_leaves_every_block_unchanged(self, dense, data, method: str) -> None:
        """The rewrite itself, not the 1.0 shortcut: compress_block at the dense shape is exact."""
        model = copy.deepcopy(dense)
        adapter = ModelAdapter(model)
        adapter.prepare()
        impl = build_method(CompressionSpec(method, 0.5, L), adapter)
        calibrator = Calibrator(adapter, torch.device("cpu"), torch.device("cpu"))
        inputs = calibrator.capture(data)
        for i, layer in enumerate(adapter.layers):
            stats, outputs = calibrator.run(layer, inputs, impl.observed(layer))
            impl.compress_block(i, layer, stats, dense_shape(adapter.geometry))
            inputs = inputs.with_hidden(outputs)
        torch.testing.assert_close(
            main_output(model, data[0]), main_output(dense, data[0]), atol=1e-5, rtol=1e-5
        )

    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("target", [0.5, 0.7])
    def test_meets_the_mac_target(self, dense, data, method: str, target: float) -> None:
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, target, L))
        ratio = report["macs"]["mac_ratio"]
        assert target - 0.01 <= ratio <= target
        assert report["params"]["after"] < report["params"]["before"]
        assert torch.isfinite(main_output(model, data[0])).all()

    def test_id_error_does_not_grow_as_the_target_grows(self, dense, data) -> None:
        errors = []
        for target in (0.4, 0.6, 0.8, 1.0):
            model = copy.deepcopy(dense)
            compress(model, data, CompressionSpec("id", target, L))
            errors.append(relative_error(model, dense, data))
        assert errors[-1] < 1e-5
        for smaller, larger in zip(errors, errors[1:], strict=False):
            assert larger <= smaller + 1e-6, errors

    def test_id_beats_magnitude_on_calibration_data(self, dense, data) -> None:
        errs = {}
        for method in ("id", "magnitude"):
            model = copy.deepcopy(dense)
            compress(model, data, CompressionSpec(method, 0.5, L))
            errs[method] = relative_error(model, dense, data)
        assert errs["id"] < errs["magnitude"]

    @pytest.mark.parametrize("method", ["id", "svd"])
    def test_save_and_load_round_trip(self, dense, data, tmp_path, method: str) -> None:
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, 0.5, L))
        out = save_compressed(model, None, tmp_path / "artifact", report, source={"model_id": "tiny"})
        files = sorted(p.name for p in out.iterdir())
        assert files == ["compression.json", "config.json", "model.safetensors"]
        loaded, _ = load_compressed(out, with_tokenizer=False)
        assert type(loaded) is type(model)
        for batch in data:
            got, want = main_output(loaded, batch), main_output(model, batch)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        causal = loaded.config.architectures[0].endswith(("CausalLM", "LMHeadModel"))
        if hasattr(loaded, "generate") and causal:
            ids = data[0]["input_ids"][:1, :4]
            out = loaded.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
            assert out.shape == (1, 7)


class TestBert(ArchitectureContract):
    model_type = "bert"


class TestRobertaSequenceClassification(ArchitectureContract):
    model_type = "roberta"


class TestDistilBert(ArchitectureContract):
    model_type = "distilbert"


class TestGPT2(ArchitectureContract):
    model_type = "gpt2"


class TestOPT(ArchitectureContract):
    model_type = "opt"


class TestLlama(ArchitectureContract):
    model_type = "llama"


class TestMistral(ArchitectureContract):
    model_type = "mistral"


class TestQwen2(ArchitectureContract):
    model_type = "qwen2"
