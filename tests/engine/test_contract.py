"""One contract, every architecture, every method in the catalogue: the engine's promises on tiny
random models.

Subclassed per architecture, as SliceGPT's adapter tests are. Each test names what it proves:

- target 1.0 is a shortcut that rewrites nothing and reproduces the dense model;
- the rewrite itself (not the shortcut) is exact where it drops only units that carry nothing:
  each block is cut to a narrower shape, and the model still computes what it computed;
- every method meets the MAC target, counted from the rewritten modules, not taken from the report;
- ID error does not grow as the target grows, at targets that all compress;
- an artifact saved and loaded is the in-memory compressed model: outputs, buffers, tied weights
  and generated tokens.

The methods are read from the catalogue when this module is collected, so a method registered
before collection (e.g. by a pytest plugin, tests/catalogue/toy_method.py) is held to the same contract.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core import methods as catalogue
from core.kinds import KINDS, MPO, BlockLowRank, LinearKind, LowRank, Monarch, mpo_at_bond
from core.macs import BlockShape, dense_shape, linear_shapes
from tests.factories import batches, tiny_model
from workers.compression.adapters import ModelAdapter, linear_dims
from workers.compression.artifacts import load_compressed, save_compressed
from workers.compression.calibration import Calibrator
from workers.compression.engine import TOLERANCE, CompressionSpec, build_method, compress
from workers.compression.linears.mpo import contract

METHODS = catalogue.names()  # at collection: methods registered before (plugins) are included
L = 16
RANK = 2  # the rank of the consumers (o, down) of the model with dead units


def main_output(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def relative_error(model: nn.Module, dense: nn.Module, data: list[dict[str, Any]]) -> float:
    num = den = 0.0
    for batch in data:
        ref, got = main_output(dense, batch), main_output(model, batch)
        num += float((got - ref).pow(2).sum())
        den += float(ref.pow(2).sum())
    return (num / den) ** 0.5


def executed_macs(module: nn.Module, tokens: int) -> int:
    """The multiply-accumulates a block Linear of any kind executes on `tokens` inputs, counted by
    torch's FLOP counter over the matmuls it actually runs (bias additions are not MACs)."""
    in_features = linear_dims(module)[1]
    p = next(module.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(tokens, in_features, dtype=p.dtype))
    return counter.get_total_flops() // 2


def counted_block_macs(model: nn.Module) -> int:
    """Block MACs counted from the live modules, independently of the engine's accounting: the
    matmuls each block Linear executes on L tokens, and 2·L²·d_h per query head (2·L²·o.in)."""
    adapter = ModelAdapter(copy.deepcopy(model))
    adapter.prepare()
    total = 0
    for layer in adapter.layers:
        for name in adapter.spec.linears:
            total += executed_macs(adapter.linear(layer, name), L)
        total += 2 * L * L * linear_dims(adapter.linear(layer, "o"))[1]
    return total


assert_same = torch.testing.assert_close


def tied_names(model: nn.Module) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return sorted(names for names in groups.values() if len(names) > 1)


def head_dims(heads: np.ndarray, head_dim: int) -> torch.Tensor:
    return torch.as_tensor((heads[:, None] * head_dim + np.arange(head_dim)[None, :]).ravel())


def exact_kind(structures: tuple[str, ...], m: int, n: int) -> LinearKind | None:
    """The factorised kind a method of these structures builds that holds a rank-RANK matrix
    exactly (every block of it has rank ≤ RANK), or for `mpo` a bond-RANK tensor train."""
    if "lowrank" in structures:
        return LowRank(m, n, RANK)
    if "block_lowrank" in structures:
        return BlockLowRank(m, n, (2, 2), ((RANK, RANK), (RANK, RANK)))
    if "monarch" in structures:
        return Monarch(m, n, 2, RANK)
    if "mpo" in structures:
        return mpo_at_bond(m, n, 3, RANK)
    return None


def tensor_train(spec: MPO, gen: torch.Generator) -> torch.Tensor:
    """A random matrix that is exactly the tensor train `spec` describes."""
    cores = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in spec.core_shapes()]
    w = contract(cores)
    return (w / w.std() * spec.in_features ** -0.5).float()


def with_dead_units(model: nn.Module, structures: tuple[str, ...] = ()) -> tuple[ModelAdapter, BlockShape]:
    """Make half of every block's units carry nothing, and its consumers low rank, in place.

    The last half of the FFN neurons and the last half of the query heads (of each kv group, under
    grouped-query attention) get zero columns in their consumer (down, o), so they add nothing to
    the block's output; o and down are rank RANK. Returns the prepared adapter and the shape that
    drops exactly the dead units (for a pruning method) or keeps every unit and factorises o and
    down as the method's kind that holds them exactly (for a factorising one): at that shape a
    method that drops the units or terms that carry nothing rewrites every block exactly. For
    `mpo` (no unit is dropped, and zero columns are not a tensor train) o and down are instead
    exact tensor trains of bond RANK.
    """
    adapter = ModelAdapter(model)
    adapter.prepare()
    g = adapter.geometry
    heads = np.arange(g.heads)
    if g.group_size > 1:
        dead_heads = heads[heads % g.group_size >= g.group_size // 2]
    else:
        dead_heads = heads[g.heads // 2 :]
    gen = torch.Generator().manual_seed(1)
    kept = g.heads - len(dead_heads)
    shape = BlockShape(heads=kept, kv_heads=g.kv_heads if g.group_size > 1 else kept,
                       neurons=g.intermediate // 2)
    factorising = bool(set(structures) & set(KINDS))
    if factorising:  # the matrices keep their dense shapes, and o and down become the method's kind
        shape = dense_shape(g)
    dims = linear_shapes(g, shape)
    with torch.no_grad():
        for layer in adapter.layers:
            for name in ("o", "down"):
                w = adapter.linear(layer, name).weight
                if "mpo" in structures:
                    w.copy_(tensor_train(mpo_at_bond(*w.shape, 3, RANK), gen))
                    continue
                left = torch.randn(w.shape[0], RANK, generator=gen)
                w.copy_(left @ torch.randn(RANK, w.shape[1], generator=gen) * w.shape[1] ** -0.5)
            if "mpo" not in structures:
                adapter.linear(layer, "o").weight[:, head_dims(dead_heads, g.head_dim)] = 0.0
                adapter.linear(layer, "down").weight[:, g.intermediate // 2 :] = 0.0
    if not factorising:
        return adapter, shape
    factors = {name: exact_kind(structures, *dims[name]) for name in ("o", "down")}
    return adapter, shape.with_factors({k: v for k, v in factors.items() if v is not None})


class ArchitectureContract:
    model_type: ClassVar[str]

    @pytest.fixture
    def dense(self) -> nn.Module:
        return tiny_model(self.model_type)

    @pytest.fixture
    def data(self) -> list[dict[str, torch.Tensor]]:
        return batches(n=4, bs=8, seq=L)

    @pytest.mark.parametrize("method", METHODS)
    def test_target_one_rewrites_nothing_and_reproduces_the_dense_model(
        self, dense, data, method: str
    ) -> None:
        """The shortcut: at target 1.0 no block is rewritten (no per-layer report) and the outputs
        are the dense model's."""
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, 1.0, L))
        assert report["macs"]["mac_ratio"] == pytest.approx(1.0) and report["layers"] == []
        assert counted_block_macs(model) == counted_block_macs(dense)
        assert_same(main_output(model, data[0]), main_output(dense, data[0]), atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("method", METHODS)
    def test_the_rewrite_is_exact_where_the_dropped_units_carry_nothing(
        self, dense, data, method: str
    ) -> None:
        """The rewrite itself, not the 1.0 shortcut: every block is cut to a shape narrower than
        dense (heads and neurons dropped, or o and down factorised, by what the method changes),
        and since the dropped units add nothing the outputs stay those of the uncut model."""
        model = copy.deepcopy(dense)
        structures = catalogue.get(method).structures
        adapter, shape = with_dead_units(model, structures)
        reference = copy.deepcopy(model)
        impl = build_method(CompressionSpec(method, 0.5, L), adapter)
        calibrator = Calibrator(adapter, torch.device("cpu"), torch.device("cpu"))
        inputs = calibrator.capture(data)
        full = dense_shape(adapter.geometry)
        for i, layer in enumerate(adapter.layers):
            stats, outputs = calibrator.run(layer, inputs, impl.observed(layer))
            impl.compress_block(i, layer, stats, shape)
            after = adapter.block_shape(layer)
            assert after != full, f"block {i}: no surgery happened"
            assert after.heads == (shape.heads if "heads" in structures else full.heads)
            assert after.neurons == (shape.neurons if "neurons" in structures else full.neurons)
            assert after.factors == (shape.factors if set(structures) & set(KINDS) else {})
            _, outputs = calibrator.run(layer, inputs)
            inputs = inputs.with_hidden(outputs)
        assert counted_block_macs(model) < counted_block_macs(reference)
        for batch in data:
            assert_same(main_output(model, batch), main_output(reference, batch), atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("target", [0.5, 0.7])
    def test_meets_the_mac_target(self, dense, data, method: str, target: float) -> None:
        """Counted from the rewritten modules: the kept fraction of block MACs is ≤ the target and
        within TOLERANCE of it, and is what the report states; fewer parameters; finite outputs."""
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, target, L))
        ratio = counted_block_macs(model) / counted_block_macs(dense)
        assert target - TOLERANCE <= ratio <= target
        assert report["macs"]["mac_ratio"] == pytest.approx(ratio, abs=1e-12)
        before, after = (sum(p.numel() for p in m.parameters()) for m in (dense, model))
        assert after < before and report["params"] == {"before": before, "after": after}
        assert torch.isfinite(main_output(model, data[0])).all()

    def test_id_error_does_not_grow_as_the_target_grows(self, dense, data) -> None:
        """At targets that all compress (0.99 is not the 1.0 shortcut: the model is rewritten and its
        error is not zero), a larger target never gives a larger error on the calibration data."""
        errors = []
        for target in (0.4, 0.6, 0.8, 0.99):
            model = copy.deepcopy(dense)
            compress(model, data, CompressionSpec("id", target, L))
            assert counted_block_macs(model) < counted_block_macs(dense)
            errors.append(relative_error(model, dense, data))
        assert errors[-1] > 0
        for smaller, larger in zip(errors, errors[1:], strict=False):
            assert larger <= smaller + 1e-6, errors

    def test_id_beats_magnitude_on_calibration_data(self, dense, data) -> None:
        errs = {}
        for method in ("id", "magnitude"):
            model = copy.deepcopy(dense)
            compress(model, data, CompressionSpec(method, 0.5, L))
            errs[method] = relative_error(model, dense, data)
        assert errs["id"] < errs["magnitude"]

    @pytest.mark.parametrize("method", METHODS)
    def test_save_and_load_round_trip(self, dense, data, tmp_path, method: str) -> None:
        """A compressed artifact (not the dense one) reloads as the in-memory compressed model:
        same class, outputs, non-persistent buffers (rotary frequencies, position ids), tied
        weights, and, for causal models, the same generated tokens."""
        model = copy.deepcopy(dense)
        report = compress(model, data, CompressionSpec(method, 0.5, L))
        assert counted_block_macs(model) < counted_block_macs(dense)
        out = save_compressed(model, None, tmp_path / "artifact", report, source={"model_id": "tiny"})
        files = sorted(p.name for p in out.iterdir())
        assert files == ["compression.json", "config.json", "model.safetensors"]
        loaded, _ = load_compressed(out, with_tokenizer=False)
        assert type(loaded) is type(model)
        assert counted_block_macs(loaded) == counted_block_macs(model)
        for batch in data:
            assert_same(main_output(loaded, batch), main_output(model, batch), atol=1e-5, rtol=0)
        buffers, expected = dict(loaded.named_buffers()), dict(model.named_buffers())
        assert buffers.keys() == expected.keys()
        for name, buffer in expected.items():
            assert_same(buffers[name], buffer, atol=0, rtol=0, msg=name)
        assert tied_names(loaded) == tied_names(model)
        if loaded.config.architectures[0].endswith(("CausalLM", "LMHeadModel")):
            ids = data[0]["input_ids"][:2, :4]
            kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
            assert_same(loaded.generate(ids, **kwargs), model.generate(ids, **kwargs), atol=0, rtol=0)


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


class TestQwen3(ArchitectureContract):
    model_type = "qwen3"


class TestGemma(ArchitectureContract):
    model_type = "gemma"


class TestGemma3Text(ArchitectureContract):
    model_type = "gemma3_text"
