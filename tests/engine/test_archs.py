"""Architecture facts from core.archs, where the engine applies them: the fused qkv layout under
grouped-query attention, and the Grams the SVD reads.

None of the supported architectures has a fused qkv with fewer kv heads than query heads
(GPT-2 is fused without GQA; the Llama family, Qwen and Gemma are GQA with separate q, k, v), so a test
architecture that has both is registered here only: a tiny torch model whose attention splits its
fused weight as q | k | v with its own arithmetic, driven through the engine's surgery.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import archs
from core.archs import REGISTRY, ArchSpec, fused_qkv_kv_heads, fused_qkv_offsets
from core.macs import BlockShape
from core.methods import MagnitudeParams, SVDParams
from tests.factories import MODEL_CLASSES, tiny_model
from workers.compression.adapters import ModelAdapter
from workers.compression.engine import CompressionSpec, compress
from workers.compression.methods.magnitude import MagnitudeMethod
from workers.compression.methods.structured import attention_rows, prune_heads
from workers.compression.methods.svd import SVDMethod

MODEL_TYPE = "pare_test_fused_gqa"
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, LAYERS, VOCAB = 24, 6, 2, 4, 96, 2, 50
FUSED_GQA = ArchSpec(
    layers="layers",
    linears={"qkv": "attn.qkv", "o": "attn.o", "up": "mlp.up", "down": "mlp.down"},
    attention="attn",
    head_attrs=lambda h, kv, dh: {"num_heads": h, "num_kv_heads": kv},
)


def head_rows(kept: np.ndarray, head_dim: int = HEAD_DIM) -> np.ndarray:
    return (np.asarray(kept)[:, None] * head_dim + np.arange(head_dim)[None, :]).ravel()


class FusedGQAAttention(nn.Module):
    """Causal attention from one fused Linear, [q: h·d_h | k: kv·d_h | v: kv·d_h]; query head i
    reads kv head i // (h / kv), as in Llama."""

    def __init__(self) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = HEADS, KV_HEADS
        self.qkv = nn.Linear(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM)
        self.o = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, kv, dh = self.num_heads, self.num_kv_heads, HEAD_DIM
        q, k, v = self.qkv(x).split([h * dh, kv * dh, kv * dh], dim=-1)
        q = q.view(b, t, h, dh).transpose(1, 2)
        k, v = (z.view(b, t, kv, dh).transpose(1, 2).repeat_interleave(h // kv, dim=1) for z in (k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(out.transpose(1, 2).reshape(b, t, h * dh))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = FusedGQAAttention()
        self.mlp = nn.Sequential()
        self.mlp.up, self.mlp.down = nn.Linear(HIDDEN, INTER), nn.Linear(INTER, HIDDEN)

    def forward(self, x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp.down(F.gelu(self.mlp.up(x)))


class Config:
    model_type = MODEL_TYPE

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
                "num_key_value_heads": KV_HEADS, "num_hidden_layers": LAYERS, "intermediate_size": INTER,
                "vocab_size": VOCAB}


class FusedGQAModel(nn.Module):
    """What the engine needs of a model: `config`, `base_model` and a block list at `spec.layers`."""

    def __init__(self) -> None:
        super().__init__()
        self.config = Config()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(Block() for _ in range(LAYERS))

    @property
    def base_model(self) -> nn.Module:
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.fixture
def fused_gqa(monkeypatch: pytest.MonkeyPatch) -> Iterator[FusedGQAModel]:
    """The test architecture, registered for this test only."""
    monkeypatch.setitem(REGISTRY, MODEL_TYPE, FUSED_GQA)
    torch.manual_seed(0)
    yield FusedGQAModel().eval()


# ----- the row arithmetic ----------------------------------------------------------------------
def test_fused_offsets_put_v_after_the_kv_rows_of_k() -> None:
    assert fused_qkv_offsets(HEADS, KV_HEADS, HEAD_DIM) == (0, 24, 32)  # not v at 2·24 = 48
    assert fused_qkv_offsets(4, 4, 8) == (0, 32, 64)  # without GQA the two agree
    assert fused_qkv_kv_heads((HEADS + 2 * KV_HEADS) * HEAD_DIM, HEADS, HEAD_DIM) == KV_HEADS
    with pytest.raises(ValueError):
        fused_qkv_kv_heads(HEADS * HEAD_DIM + 3, HEADS, HEAD_DIM)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "kept"),
    [(6, 2, [0, 2, 3, 5]), (6, 3, [1, 3, 5]), (4, 4, [1, 3])],
    ids=["gqa-2-of-3-per-group", "gqa-1-of-2-per-group", "mha"],
)
def test_fused_rows_select_what_q_k_v_sliced_separately_select(
    heads: int, kv_heads: int, kept: list[int]
) -> None:
    """Known answer: a fused weight stacked from separate q, k, v blocks, sliced through the rows
    prune_heads uses, equals q, k, v each sliced on its own (GQA keeps every kv head; multi-head
    attention keeps the kept heads' k and v)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n * HEAD_DIM, HIDDEN, generator=g) for n in (heads, kv_heads, kv_heads))
    fused = torch.cat([q, k, v])
    q_rows = head_rows(np.array(kept))
    kv_rows = np.arange(kv_heads * HEAD_DIM) if kv_heads < heads else q_rows
    current = BlockShape(heads=heads, kv_heads=kv_heads, neurons=INTER)
    rows = attention_rows(FUSED_GQA, current, HEAD_DIM, q_rows, kv_rows)
    assert set(rows) == {"qkv"}
    expected = torch.cat([q[q_rows], k[kv_rows], v[kv_rows]])
    torch.testing.assert_close(fused[torch.as_tensor(rows["qkv"])], expected, atol=0, rtol=0)
    separate = attention_rows(REGISTRY["llama"], current, HEAD_DIM, q_rows, kv_rows)
    assert {name: r.tolist() for name, r in separate.items()} == {
        "q": q_rows.tolist(), "k": kv_rows.tolist(), "v": kv_rows.tolist()
    }


# ----- the surgery on a fused grouped-query model ----------------------------------------------
def test_prune_heads_on_a_fused_grouped_query_block_drops_exactly_the_dropped_heads(
    fused_gqa: FusedGQAModel,
) -> None:
    """Keeping query heads {0, 2, 3, 5} (two of three per kv group) gives the dense block with the
    dropped heads' output columns zeroed, and the block reads back as 4 heads over 2 kv heads."""
    adapter = ModelAdapter(fused_gqa)
    layer = adapter.layers[0]
    assert adapter.block_shape(layer) == BlockShape(heads=HEADS, kv_heads=KV_HEADS, neurons=INTER)
    kept, dropped = np.array([0, 2, 3, 5]), np.array([1, 4])
    reference = copy.deepcopy(layer)
    with torch.no_grad():
        reference.attn.o.weight[:, torch.as_tensor(head_rows(dropped))] = 0.0
    o = adapter.linear(layer, "o").weight.detach()
    prune_heads(adapter, layer, kept, o[:, torch.as_tensor(head_rows(kept))])
    assert adapter.block_shape(layer) == BlockShape(heads=4, kv_heads=KV_HEADS, neurons=INTER)
    assert (layer.attn.num_heads, layer.attn.num_kv_heads) == (4, KV_HEADS)
    assert layer.attn.qkv.out_features == (4 + 2 * KV_HEADS) * HEAD_DIM
    x = torch.randn(3, 7, HIDDEN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x), atol=1e-6, rtol=1e-6)
    entry = adapter.manifest()
    assert entry["modules"]["layers.0.attn.qkv"]["out"] == (4 + 2 * KV_HEADS) * HEAD_DIM
    assert entry["attributes"]["layers.0.attn"] == {"num_heads": 4, "num_kv_heads": KV_HEADS}


def test_magnitude_scores_heads_by_the_query_rows_of_the_fused_weight(fused_gqa: FusedGQAModel) -> None:
    adapter = ModelAdapter(fused_gqa)
    layer = adapter.layers[0]
    method = MagnitudeMethod(MagnitudeParams(), adapter, 16)
    before = method._head_scores(layer)
    w = layer.attn.qkv.weight.detach().double()
    q = w[: HEADS * HEAD_DIM].reshape(HEADS, -1).norm(dim=1)
    o = layer.attn.o.weight.detach().double().reshape(HIDDEN, HEADS, HEAD_DIM).permute(1, 0, 2)
    np.testing.assert_allclose(before, (q * o.reshape(HEADS, -1).norm(dim=1)).numpy(), rtol=1e-12)
    with torch.no_grad():
        layer.attn.qkv.weight[HEADS * HEAD_DIM :] *= 100.0  # k and v rows do not score query heads
    np.testing.assert_allclose(method._head_scores(layer), before, rtol=1e-12)


@pytest.mark.parametrize("method", ["id", "magnitude"])
def test_the_engine_compresses_a_fused_grouped_query_model(fused_gqa: FusedGQAModel, method: str) -> None:
    """End to end through compress(): every kv group keeps the same number of query heads, all kv
    heads stay, the head attributes follow, and the target is met."""
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, VOCAB, (8, 16), generator=g),
             "attention_mask": torch.ones(8, 16, dtype=torch.long)} for _ in range(4)]
    report = compress(fused_gqa, data, CompressionSpec(method, 0.5, 16, {"allocation": "uniform"}))
    assert 0.49 <= report["macs"]["mac_ratio"] <= 0.5
    adapter = ModelAdapter(fused_gqa)
    for layer in adapter.layers:
        shape = adapter.block_shape(layer)
        assert shape.heads < HEADS and shape.kv_heads == KV_HEADS and shape.heads % KV_HEADS == 0
        assert (layer.attn.num_heads, layer.attn.num_kv_heads) == (shape.heads, KV_HEADS)
    with torch.no_grad():
        assert torch.isfinite(fused_gqa(data[0]["input_ids"])).all()


# ----- the Grams the SVD reads -----------------------------------------------------------------
@pytest.mark.parametrize("model_type", sorted(MODEL_CLASSES))
def test_svd_observes_one_gram_per_distinct_block_input(model_type: str) -> None:
    spec = archs.get_spec(model_type)
    expected = ("down", "o", "qkv", "up") if spec.fused_qkv else ("down", "o", "q", "up")
    assert spec.observed_inputs == expected
    assert {spec.input_of(name) for name in spec.linears} == set(expected)
    adapter = ModelAdapter(tiny_model(model_type))
    adapter.prepare()
    method = SVDMethod(SVDParams(), adapter, 16)
    assert tuple(name for name, _ in method.observed(adapter.layers[0])) == expected


# ----- per-head q/k norms and an explicit head_dim (Qwen3, the Gemmas) ---------------------------
@pytest.mark.parametrize("model_type", ["qwen3", "gemma", "gemma3_text"])
def test_head_dim_is_the_configs_not_hidden_over_heads(model_type: str) -> None:
    adapter = ModelAdapter(tiny_model(model_type))
    assert adapter.geometry.head_dim == 16 != adapter.geometry.hidden // adapter.geometry.heads
    assert adapter.block_shape(adapter.layers[0]) == BlockShape(heads=4, kv_heads=2, neurons=64)


@pytest.mark.parametrize("model_type", ["qwen3", "gemma3_text"])
def test_pruning_heads_keeps_the_shared_per_head_q_k_norms_exact(model_type: str) -> None:
    """q_norm and k_norm normalise each head over d_h with one d_h-wide weight shared by all heads,
    so keeping query heads {0, 2} (one per kv group) in every block gives the dense model with the
    dropped heads' output columns zeroed, and the norms keep their d_h-wide weights untouched."""
    model = tiny_model(model_type)
    for layer in model.model.layers:  # non-trivial norm weights, so a misapplied norm would show
        with torch.no_grad():
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    reference = copy.deepcopy(model)
    dh, kept, dropped = 16, np.array([0, 2]), np.array([1, 3])
    for layer in reference.model.layers:
        with torch.no_grad():
            layer.self_attn.o_proj.weight[:, torch.as_tensor(head_rows(dropped, dh))] = 0.0
    adapter = ModelAdapter(model)
    norms = [layer.self_attn.q_norm.weight.clone() for layer in adapter.layers]
    for layer in adapter.layers:
        o = adapter.weight(layer, "o").detach()
        prune_heads(adapter, layer, kept, o[:, torch.as_tensor(head_rows(kept, dh))])
        assert adapter.block_shape(layer) == BlockShape(heads=2, kv_heads=2, neurons=64)
    for layer, norm in zip(adapter.layers, norms, strict=True):
        torch.testing.assert_close(layer.self_attn.q_norm.weight, norm, atol=0, rtol=0)
    ids = torch.randint(3, 97, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
