"""Known answers for the Linear kinds: MAC and parameter counts by hand, the executed MACs counted
by torch's FLOP counter, the contraction order, exact recovery of representable matrices, and the
objective each activation-aware fit minimises."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from core.errors import InvalidArtifact
from core.kinds import MPO, BlockLowRank, Dense, LowRank, Monarch, balanced_factors, from_entry, mpo_at_bond
from workers.compression import linears
from workers.compression.linears.blocks import Layout, block_spectra, fit_blocks
from workers.compression.linears.mpo import contract, kronecker_factors, tt_svd
from workers.compression.methods.factorized import relative_output_error

SPECS = [
    Dense(12, 8),
    LowRank(12, 8, 3),
    BlockLowRank(12, 8, (3, 2), ((1, 2), (0, 3), (2, 0))),
    Monarch(12, 8, 2, 3),
    Monarch(12, 8, 4, 1),
    MPO(6, 8, (2, 3), (4, 2), (5,), "left"),
    MPO(6, 8, (2, 3), (4, 2), (5,), "right"),
    mpo_at_bond(24, 36, 3, 4),
]


def matrix_of(module: torch.nn.Module, n: int) -> torch.Tensor:
    """The matrix a module applies (bias removed)."""
    with torch.no_grad():
        y = module(torch.eye(n, dtype=torch.float64)).T
        bias = linears.bias_of(module)
        return y - bias[:, None] if bias is not None else y


def random_module(spec, seed: int = 0) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    module = linears.build(spec, True, torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


def test_hand_counted_macs_and_parameters() -> None:
    assert LowRank(768, 3072, 100).macs(10) == 10 * 100 * (768 + 3072)
    blr = BlockLowRank(12, 8, (3, 2), ((1, 2), (0, 3), (2, 0)))
    assert blr.chunk == (4, 4) and blr.macs_per_token() == 8 * (4 + 4) == blr.params()
    assert Monarch(12, 8, 2, 3).macs_per_token() == 3 * 2 * (12 + 8)
    # cores (1, 2, 4, 5) and (5, 3, 2, 1): 40 + 30 weights
    left, right = MPO(6, 8, (2, 3), (4, 2), (5,), "left"), MPO(6, 8, (2, 3), (4, 2), (5,), "right")
    assert left.params() == right.params() == 70
    # right to left: core 2 on (j1=4 outer) 4·(2·1)·(5·3) = 120,
    # then core 1 with i2=3 outer: 3·(4·5)·(1·2) = 120
    assert right.step_macs() == [120, 120]
    # left to right: core 1 with j2=2 outer: 2·(1·4)·(2·5) = 80,
    # then core 2 with i1=2 outer: 2·(5·2)·(3·1) = 60
    assert left.step_macs() == [80, 60]
    assert MPO.cheapest_order((2, 3), (4, 2), (5,)).order == "left"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{getattr(s, 'order', '')}")
def test_the_module_executes_the_macs_its_kind_counts(spec) -> None:  # type: ignore[no-untyped-def]
    module = random_module(spec)
    tokens = 7
    with FlopCounterMode(display=False) as counter:
        module(torch.zeros(tokens, spec.in_features, dtype=torch.float64))
    assert counter.get_total_flops() // 2 == spec.macs(tokens)
    assert sum(p.numel() for p in module.parameters()) == spec.params() + spec.out_features  # + bias
    assert linears.spec_of(module) == spec


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{getattr(s, 'order', '')}")
def test_the_module_is_linear_in_its_input(spec) -> None:  # type: ignore[no-untyped-def]
    module = random_module(spec, seed=3)
    x = torch.randn(2, 5, spec.in_features, dtype=torch.float64)
    w = matrix_of(module, spec.in_features)
    torch.testing.assert_close(module(x), x @ w.T + linears.bias_of(module))


def test_both_contraction_orders_compute_the_same_matrix() -> None:
    left = random_module(MPO(6, 8, (2, 3), (4, 2), (5,), "left"), seed=1)
    right = linears.build(MPO(6, 8, (2, 3), (4, 2), (5,), "right"), False, torch.float64)
    right.load_cores(list(left.cores))
    torch.testing.assert_close(matrix_of(left, 8), matrix_of(right, 8))
    torch.testing.assert_close(matrix_of(left, 8), contract(list(left.cores)))


def gram(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * n, n, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, n,
                                                                             dtype=torch.float64)
    return x.T @ x


@pytest.mark.parametrize("aware", [False, True])
def test_block_low_rank_recovers_a_matrix_it_can_represent(aware: bool) -> None:
    spec = BlockLowRank(12, 8, (3, 2), ((1, 2), (0, 3), (2, 0)))
    w = matrix_of(random_module(spec), 8)
    g = gram(8) if aware else None
    layout = Layout.contiguous(12, 8, spec.grid)
    ranks = [list(r) for r in spec.ranks]
    first, second = fit_blocks(w, g, 1e-12, layout, ranks, block_spectra(w, g, 1e-12, layout))
    fitted = linears.build(spec, False, torch.float64)
    fitted.load_factors(first, second)
    torch.testing.assert_close(matrix_of(fitted, 8), w, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("aware", [False, True])
def test_monarch_projection_recovers_a_monarch_matrix(aware: bool) -> None:
    spec = Monarch(12, 8, 2, 2)
    w = matrix_of(random_module(spec), 8)
    g = gram(8) if aware else None
    layout = Layout.monarch(12, 8, 2)
    first, second = fit_blocks(w, g, 1e-12, layout, [[2, 2], [2, 2]], block_spectra(w, g, 1e-12, layout))
    fitted = linears.build(spec, False, torch.float64)
    fitted.load_factors(first, second)
    torch.testing.assert_close(matrix_of(fitted, 8), w, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("aware", [False, True])
def test_tt_svd_recovers_a_tensor_train(aware: bool) -> None:
    spec = mpo_at_bond(24, 36, 3, 3)
    w = contract(list(random_module(spec).cores))
    whiten = kronecker_factors(gram(36), spec.in_factors, 1e-12) if aware else None
    torch.testing.assert_close(contract(tt_svd(w, spec, whiten)), w, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("family", ["block_lowrank", "monarch", "mpo"])
def test_activation_aware_fit_has_less_output_error_and_plain_less_weight_error(family: str) -> None:
    """On a matrix the structure cannot hold: the Gram-weighted fit wins on the calibration outputs,
    the weight-space fit on ‖W − Ŵ‖ (each minimises its own objective)."""
    torch.manual_seed(0)
    m, n = 24, 36
    w = torch.randn(m, n, dtype=torch.float64)
    g = gram(n, seed=2)
    if family == "mpo":
        spec = mpo_at_bond(m, n, 3, 2)
        fits = {aware: contract(tt_svd(w, spec,
                                       kronecker_factors(g, spec.in_factors, 1e-9) if aware else None))
                for aware in (False, True)}
    else:
        layout = Layout.contiguous(m, n, (2, 2)) if family == "block_lowrank" else Layout.monarch(m, n, 2)
        ranks = [[2, 2], [2, 2]]
        fits = {}
        for aware in (False, True):
            gg = g if aware else None
            first, second = fit_blocks(w, gg, 1e-9, layout, ranks, block_spectra(w, gg, 1e-9, layout))
            spec = (BlockLowRank(m, n, (2, 2), ((2, 2), (2, 2))) if family == "block_lowrank"
                    else Monarch(m, n, 2, 2))
            module = linears.build(spec, False, torch.float64)
            module.load_factors(first, second)
            fits[aware] = matrix_of(module, n)
    assert relative_output_error(w, fits[True], g) < relative_output_error(w, fits[False], g)
    assert relative_output_error(w, fits[False], None) < relative_output_error(w, fits[True], None)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{getattr(s, 'order', '')}")
def test_structure_entries_round_trip(spec) -> None:  # type: ignore[no-untyped-def]
    entry = {**spec.entry(), "bias": True}
    assert from_entry(entry) == spec


@pytest.mark.parametrize("entry", [
    {"type": "monarch", "out": 12, "in": 8, "blocks": 3, "rank": 1},  # 3 does not divide 8
    {"type": "monarch", "out": 12, "in": 8, "blocks": 2, "rank": 5},  # above min(12, 8) / 2
    {"type": "block_lowrank", "out": 12, "in": 8, "grid": [3, 2], "ranks": [[1, 2], [0, 3]]},  # 2 rows of 3
    {"type": "block_lowrank", "out": 12, "in": 8, "grid": [3, 2], "ranks": [[0, 0], [0, 0], [0, 0]]},
    {"type": "block_lowrank", "out": 12, "in": 8, "grid": [3, 2], "ranks": [["1", 2], [0, 3], [2, 0]]},
    {"type": "mpo", "out": 6, "in": 8, "out_factors": [2, 2], "in_factors": [4, 2], "bonds": [5],
     "order": "left"},
    {"type": "mpo", "out": 6, "in": 8, "out_factors": [2, 3], "in_factors": [4, 2], "bonds": [9],
     "order": "left"},
    {"type": "mpo", "out": 6, "in": 8, "out_factors": [2, 3], "in_factors": [4, 2], "bonds": [5],
     "order": "up"},
    {"type": "lowrank", "out": 6, "in": 8, "rank": 7},
])
def test_an_entry_that_describes_no_buildable_module_is_refused(entry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArtifact, match=f"invalid {entry['type']} entry"):
        from_entry({**entry, "bias": False})


@pytest.mark.parametrize(("n", "k"), [(384, 3), (1536, 3), (576, 2), (97, 3), (64, 4)])
def test_balanced_factors_multiply_back(n: int, k: int) -> None:
    factors = balanced_factors(n, k)
    assert len(factors) == k and math.prod(factors) == n
    assert balanced_factors(384, 3) == (6, 8, 8)
