"""Known answers for the mathematics: ID, block-pivoted heads, whitened SVD, the budget."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from core.errors import BudgetInfeasible, Cancelled, InvalidSpec, UnsupportedArchitecture
from core.macs import Geometry, block_macs, dense_shape
from tests.factories import batches, tiny_model
from workers.compression import budget, interpolative, lowrank
from workers.compression.adapters import ModelAdapter
from workers.compression.engine import CompressionSpec, compress


def low_rank_activations(tokens: int, n: int, rank: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, rank, generator=g, dtype=torch.float64) @ torch.randn(
        rank, n, generator=g, dtype=torch.float64
    )


def test_interpolative_decomposition_is_exact_when_activations_have_rank_at_most_k() -> None:
    z = low_rank_activations(400, 48, rank=10)
    w = torch.randn(16, 48, dtype=torch.float64)
    pf = interpolative.pivoted_cholesky(z.T @ z, interpolative.column_scale(w), damping=1e-13)
    kept, t = interpolative.interpolation(pf, 12)
    assert len(kept) == 12 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(t[:, kept], np.eye(12))  # T[:, S] = I exactly
    corrected = w @ torch.from_numpy(t).T  # W·Tᵀ
    torch.testing.assert_close(z[:, kept] @ corrected.T, z @ w.T, atol=1e-6, rtol=1e-6)
    assert pf.errors[10] < 1e-9 and pf.errors[9] > 1e-6  # the error curve sees the rank


def test_pivoting_matches_column_pivoted_qr_on_the_scaled_activations() -> None:
    from scipy.linalg import qr

    z = torch.randn(300, 20, dtype=torch.float64) * torch.linspace(0.1, 3, 20, dtype=torch.float64)
    w = torch.randn(8, 20, dtype=torch.float64)
    scale = interpolative.column_scale(w)
    pf = interpolative.pivoted_cholesky(z.T @ z, scale, damping=0.0)
    _, r, piv = qr(z.numpy() * scale, mode="economic", pivoting=True)
    np.testing.assert_array_equal(pf.order[:10], piv[:10])
    np.testing.assert_allclose(np.abs(np.diag(pf.factor))[:10], np.abs(np.diag(r))[:10], rtol=1e-8)


def test_head_selection_keeps_redundant_heads_out_and_corrects_exactly() -> None:
    head_dim, heads = 4, 5
    base = low_rank_activations(500, 3 * head_dim, rank=3 * head_dim)
    # heads 3 and 4 are linear combinations of heads 0..2: keeping 0..2 loses nothing
    mix = torch.randn(3 * head_dim, 2 * head_dim, dtype=torch.float64)
    z = torch.cat([base, base @ mix], dim=1)
    w = torch.randn(6, heads * head_dim, dtype=torch.float64)
    scale = interpolative.column_scale(w)
    sel = interpolative.select_heads(z.T @ z, scale, head_dim, damping=1e-13, keep=3)
    assert sel.errors[-1] < 1e-9
    dims = (sel.kept[:, None] * head_dim + np.arange(head_dim)).ravel()
    t = interpolative.head_interpolation(z.T @ z, scale, dims, damping=1e-13)
    torch.testing.assert_close(z[:, dims] @ (w @ torch.from_numpy(t).T).T, z @ w.T, atol=1e-6, rtol=1e-6)


def test_grouped_query_head_selection_keeps_the_same_count_in_every_group() -> None:
    z = torch.randn(200, 6 * 4, dtype=torch.float64)
    w = torch.randn(5, 24, dtype=torch.float64)
    sel = interpolative.select_heads(
        z.T @ z, interpolative.column_scale(w), 4, damping=1e-6, keep=4, group_size=3, per_group=2
    )
    groups = sel.kept // 3
    assert sorted(np.bincount(groups, minlength=2).tolist()) == [2, 2]


def test_whitened_svd_error_is_the_tail_of_the_spectrum() -> None:
    x = torch.randn(600, 24, dtype=torch.float64) @ torch.randn(24, 24, dtype=torch.float64)
    w = torch.randn(18, 24, dtype=torch.float64)
    spec = lowrank.spectrum(w, x.T @ x, damping=1e-12)
    pair = lowrank.factorised(spec, 6, None, torch.float64)
    with torch.no_grad():
        approx = pair(x)
    err = float((x @ w.T - approx).pow(2).sum())
    assert err == pytest.approx(float(spec.s[6:].pow(2).sum()), rel=1e-6)
    plain = lowrank.spectrum(w, None, damping=0.0)
    full = lowrank.factorised(plain, 18, torch.zeros(18, dtype=torch.float64), torch.float64)
    torch.testing.assert_close(full(x), x @ w.T)


def test_activation_aware_svd_beats_plain_svd_on_the_calibration_inputs() -> None:
    x = torch.randn(800, 32, dtype=torch.float64) * torch.logspace(-2, 1, 32, dtype=torch.float64)
    w = torch.randn(20, 32, dtype=torch.float64)
    aware = lowrank.factorised(lowrank.spectrum(w, x.T @ x, 1e-10), 5, None, torch.float64)
    plain = lowrank.factorised(lowrank.spectrum(w, None, 0.0), 5, None, torch.float64)
    assert (aware(x) - x @ w.T).norm() < (plain(x) - x @ w.T).norm()


def test_global_threshold_meets_the_budget_and_spends_it() -> None:
    rng = np.random.default_rng(0)
    menus = []
    for _ in range(4):
        widths = np.arange(1, 101)
        errors = np.sort(rng.random(100))[::-1] * np.linspace(1, 0, 100)
        errors[-1] = 0.0
        menus.append(budget.Curve(widths, np.minimum.accumulate(errors)).menu(float))
    plan = budget.threshold(menus, 200.0)
    assert 199 <= sum(o.choice for o in plan) <= 200
    with pytest.raises(BudgetInfeasible):
        budget.threshold(menus, 3.0)


def test_adapter_rejects_unknown_types_naming_the_supported_ones() -> None:
    model = tiny_model("bert")
    model.config.model_type = "t5"
    with pytest.raises(UnsupportedArchitecture, match="supported: bert, roberta"):
        ModelAdapter(model)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5])
def test_mac_target_outside_the_unit_interval_is_refused(target: float) -> None:
    with pytest.raises(InvalidSpec, match="mac_target"):
        compress(tiny_model("bert"), batches(), CompressionSpec("id", target, 16))


def test_unknown_method_parameters_are_refused_by_name() -> None:
    with pytest.raises(InvalidSpec, match="bogus"):
        compress(tiny_model("bert"), batches(), CompressionSpec("id", 0.5, 16, {"bogus": 1}))


def test_deterministic_for_the_same_inputs() -> None:
    weights = []
    for _ in range(2):
        model = tiny_model("llama")
        compress(model, batches(), CompressionSpec("id", 0.5, 16))
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], atol=0, rtol=0)


def test_padding_tokens_never_enter_the_statistics() -> None:
    """A padded batch gives the same compressed model as the same sequences without padding."""
    data = batches(n=1, bs=4, seq=16)
    padded = copy.deepcopy(data)
    padded[0]["attention_mask"][1, 8:] = 0  # row 1 is only 8 tokens long ...
    trimmed = [{"input_ids": data[0]["input_ids"][1:2, :8],
                "attention_mask": torch.ones(1, 8, dtype=torch.long)},
               {k: v[[0, 2, 3]] for k, v in data[0].items()}]
    a, b = tiny_model("bert"), tiny_model("bert")
    compress(a, padded, CompressionSpec("id", 0.5, 16, {"allocation": "uniform"}))
    compress(b, trimmed, CompressionSpec("id", 0.5, 16, {"allocation": "uniform"}))
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(va, vb, atol=1e-4, rtol=1e-4, msg=ka)


def test_cancel_is_honoured_at_a_block_boundary() -> None:
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 1

    model = tiny_model("gpt2")
    with pytest.raises(Cancelled):
        compress(model, batches(), CompressionSpec("id", 0.5, 16, {"allocation": "uniform"}),
                 should_cancel=should_cancel)
    assert len(calls) == 2


def test_ffn_pruning_is_exact_for_duplicated_neurons() -> None:
    """Neurons 32..63 copy 0..31: their activations have rank ≤ 32, so keeping 32 is lossless."""
    model = tiny_model("bert")
    for layer in model.encoder.layer:
        up = layer.intermediate.dense
        with torch.no_grad():
            up.weight[32:] = up.weight[:32]
            up.bias[32:] = up.bias[:32]
    dense = copy.deepcopy(model)
    g, L = Geometry.from_config(model.config.to_dict()), 16
    full = block_macs(g, dense_shape(g), L)
    target = (full - 32 * 2 * L * g.hidden) / full  # exactly 32 neurons fewer per block
    params = {"allocation": "uniform", "prune_heads": False, "damping": 1e-12}
    compress(model, batches(), CompressionSpec("id", target, L, params))
    assert model.encoder.layer[0].intermediate.dense.out_features == 32
    x = batches(n=1, seed=5)[0]
    with torch.no_grad():
        torch.testing.assert_close(
            model(**x).last_hidden_state, dense(**x).last_hidden_state, atol=2e-4, rtol=1e-4
        )
