"""MAC accounting against Kwon et al.'s formulas computed by hand."""

from __future__ import annotations

import pytest

from core.kinds import LowRank
from core.macs import (
    BlockShape,
    Geometry,
    block_macs,
    dense_shape,
    estimate,
    linear_macs,
    max_useful_rank,
    uniform_shape,
)

BERT_BASE = {"model_type": "bert", "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
             "intermediate_size": 3072, "vocab_size": 30522, "architectures": ["BertModel"]}
SMOLLM2 = {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
           "num_hidden_layers": 30, "intermediate_size": 1536, "vocab_size": 49152,
           "architectures": ["LlamaForCausalLM"]}


def test_bert_block_matches_kwon_per_head_and_per_neuron() -> None:
    g, L = Geometry.from_config(BERT_BASE), 128
    d, dh = 768, 64
    per_head = 3 * L * d * dh + 2 * L * L * dh + L * dh * d
    per_neuron = 2 * L * d
    assert block_macs(g, dense_shape(g), L) == 12 * per_head + 3072 * per_neuron
    kept = BlockShape(heads=5, kv_heads=5, neurons=1000)
    assert block_macs(g, kept, L) == 5 * per_head + 1000 * per_neuron


def test_bert_ffn_share_is_about_two_thirds_at_short_lengths() -> None:
    g, L = Geometry.from_config(BERT_BASE), 32  # Kwon: FFN holds 64-66% of block MACs
    ffn = 3072 * 2 * L * 768
    assert 0.64 <= ffn / block_macs(g, dense_shape(g), L) <= 0.67


def test_grouped_query_attention_counts_kv_heads_once_per_group() -> None:
    g, L = Geometry.from_config(SMOLLM2), 256
    d, dh = 576, 64
    per_q = L * d * dh + 2 * L * L * dh + L * dh * d
    per_kv = 2 * L * d * dh
    per_neuron = 3 * L * d  # SwiGLU
    assert g.group_size == 3
    assert block_macs(g, dense_shape(g), L) == 9 * per_q + 3 * per_kv + 1536 * per_neuron
    assert block_macs(g, BlockShape(6, 3, 700), L) == 6 * per_q + 3 * per_kv + 700 * per_neuron


def test_low_rank_factor_costs_r_times_m_plus_n() -> None:
    assert linear_macs(768, 3072, None, 10) == 10 * 768 * 3072
    assert linear_macs(768, 3072, 100, 10) == 10 * 100 * (768 + 3072)
    r = max_useful_rank(768, 3072)
    assert r * (768 + 3072) < 768 * 3072 <= (r + 1) * (768 + 3072)
    g, L = Geometry.from_config(BERT_BASE), 16
    shape = dense_shape(g).with_factors({"up": LowRank(3072, 768, 50)})
    saved = L * 3072 * 768 - L * 50 * (3072 + 768)
    assert block_macs(g, dense_shape(g), L) - block_macs(g, shape, L) == saved


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7, 0.9])
def test_uniform_shape_meets_target_closely(ratio: float) -> None:
    for cfg in (BERT_BASE, SMOLLM2):
        g = Geometry.from_config(cfg)
        dense = block_macs(g, dense_shape(g), 128)
        got = block_macs(g, uniform_shape(g, ratio, 128), 128) / dense
        assert ratio - 0.01 <= got <= ratio
        shape = uniform_shape(g, ratio, 128)
        assert shape.heads % shape.kv_heads == 0 and shape.kv_heads <= g.kv_heads


def test_estimate_reports_whole_model_with_lm_head() -> None:
    est = estimate(SMOLLM2, 0.5, 128)
    assert est["model_macs"] - est["block_macs"] == 128 * 576 * 49152
    assert est["planned"]["mac_ratio"] <= 0.5
    assert est["planned"]["mac_ratio_model"] > est["planned"]["mac_ratio"]  # the LM head is not pruned



GEMMA_7B = {"model_type": "gemma", "hidden_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 16,
            "head_dim": 256, "num_hidden_layers": 28, "intermediate_size": 24576, "vocab_size": 256000,
            "architectures": ["GemmaForCausalLM"]}


def test_explicit_head_dim_sizes_the_heads_not_hidden_over_heads() -> None:
    """Gemma-7B: 16 heads of d_h 256 (4096 wide) in a 3072-wide model, GeGLU gated like SwiGLU."""
    g, L = Geometry.from_config(GEMMA_7B), 128
    d, dh = 3072, 256
    assert g.head_dim == dh != d // 16
    per_head = 3 * L * d * dh + 2 * L * L * dh + L * dh * d
    per_neuron = 3 * L * d
    assert block_macs(g, dense_shape(g), L) == 16 * per_head + 24576 * per_neuron
    assert block_macs(g, BlockShape(5, 5, 10000), L) == 5 * per_head + 10000 * per_neuron
