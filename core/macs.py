"""MAC accounting, torch-free (the API imports this module for estimates).

Kwon et al. 2022 (arXiv 2204.09656), reused by STAT, at a reference sequence length L,
width d, head size d_h:

- per attention head: 3·L·d·d_h (q, k, v) + 2·L²·d_h (QKᵀ and A·V) + L·d_h·d (output)
- grouped-query attention: per query head L·d·d_h + 2·L²·d_h + L·d_h·d, per kv head 2·L·d·d_h
- per FFN neuron: 2·L·d; gated (SwiGLU: gate, up, down): 3·L·d
- a dense Linear m×n: L·m·n; rank r: L·r·(m+n)

Every formula above is the sum over the block's Linear maps of L·in·out plus 2·L²·d_h per
query head, so that is how it is computed here: from a `BlockShape` that names each Linear's
shape and, for a factorised one, its kind (`core.kinds`: low rank, block low rank, Monarch,
MPO), which counts its own MACs as executed. Embeddings, norms, softmax and biases are not counted. The block
total is what a MAC target means; the whole-model figure adds the LM head (L·d·V) or the
pooler and classifier (once per sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from core.archs import get_spec, is_causal
from core.errors import ModelRefused
from core.kinds import Dense, LinearKind, LowRank

# Names of a block's Linear maps. Fused GPT-2 attention uses "qkv" in place of q, k, v.
ATTENTION_LINEARS = ("q", "k", "v", "qkv", "o")
FFN_LINEARS = ("gate", "up", "down")


# config keys of the query-head count and the FFN width across the architectures, first present wins
HEADS_KEYS = ("num_attention_heads", "n_head", "n_heads")
INTERMEDIATE_KEYS = ("intermediate_size", "n_inner", "ffn_dim", "hidden_dim")


@dataclass(frozen=True)
class Geometry:
    """The dense shapes of a transformer, read from its config."""

    model_type: str
    num_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    gated: bool  # SwiGLU: gate and up producers
    fused_qkv: bool  # GPT-2's c_attn
    vocab: int
    lm_head: bool
    num_labels: int = 0

    @property
    def group_size(self) -> int:
        return self.heads // self.kv_heads

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Geometry:
        """Read a config dict (config.json or PretrainedConfig.to_dict())."""
        mt = str(config.get("model_type", ""))
        spec = get_spec(mt, field="model.id")

        def read(*keys: str, default: int | None = None) -> int:
            """The first key present as a positive integer (a hostile config gets ModelRefused)."""
            value = next((config[k] for k in keys if config.get(k) is not None), default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelRefused(
                    f"config of model_type {mt!r}: {keys[0]} must be a positive integer, got {value!r}",
                    field="model.id",
                )
            return value

        hidden = read("hidden_size", "n_embd", "dim", "d_model")
        heads = read(*HEADS_KEYS)
        inter = read(*INTERMEDIATE_KEYS, default=4 * hidden if mt == "gpt2" else None)
        kv_heads = read("num_key_value_heads", default=heads)
        head_dim = read("head_dim", default=hidden // heads if hidden % heads == 0 else None)
        if heads % kv_heads:
            raise ModelRefused(
                f"{heads} attention heads are not a multiple of {kv_heads} kv heads", field="model.id"
            )
        archs = config.get("architectures") or []
        seqcls = isinstance(archs, list) and any(str(a).endswith("ForSequenceClassification") for a in archs)
        labels = config.get("id2label") or {}
        vocab = config.get("vocab_size") or 0
        return cls(
            model_type=mt,
            num_layers=read("num_hidden_layers", "n_layer", "n_layers"),
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate=inter,
            gated=spec.gated,
            fused_qkv=spec.fused_qkv,
            vocab=vocab if isinstance(vocab, int) and vocab > 0 else 0,
            lm_head=is_causal(config),
            num_labels=len(labels) if seqcls and isinstance(labels, dict) else 0,
        )


@dataclass(frozen=True)
class BlockShape:
    """What one block keeps: query heads, kv heads, FFN neurons, and the factorised Linears' kinds."""

    heads: int
    kv_heads: int
    neurons: int
    factors: dict[str, LinearKind] = field(default_factory=dict)  # linear name -> kind (absent = dense)

    def with_factors(self, factors: dict[str, LinearKind]) -> BlockShape:
        return replace(self, factors={k: v for k, v in factors.items() if not v.dense})

    @property
    def ranks(self) -> dict[str, int]:
        """The ranks of the low-rank Linears (the `svd` view of `factors`)."""
        return {k: v.rank for k, v in self.factors.items() if isinstance(v, LowRank)}


def dense_shape(geom: Geometry) -> BlockShape:
    return BlockShape(heads=geom.heads, kv_heads=geom.kv_heads, neurons=geom.intermediate)


def linear_shapes(geom: Geometry, shape: BlockShape) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each Linear of a block of this shape."""
    d, dh = geom.hidden, geom.head_dim
    q, kv = shape.heads * dh, shape.kv_heads * dh
    out: dict[str, tuple[int, int]] = {}
    if geom.fused_qkv:
        out["qkv"] = (q + 2 * kv, d)
    else:
        out.update(q=(q, d), k=(kv, d), v=(kv, d))
    out["o"] = (d, q)
    if geom.gated:
        out["gate"] = (shape.neurons, d)
    out["up"] = (shape.neurons, d)
    out["down"] = (d, shape.neurons)
    return out


def linear_macs(out_features: int, in_features: int, rank: int | None, seq_len: int) -> int:
    """L·m·n dense, L·r·(m+n) factorised."""
    if rank is None:
        return seq_len * out_features * in_features
    return seq_len * rank * (out_features + in_features)


def linear_kinds(geom: Geometry, shape: BlockShape) -> dict[str, LinearKind]:
    """Every Linear of a block of this shape as its kind (dense where `shape` names none)."""
    out: dict[str, LinearKind] = {}
    for name, (m, n) in linear_shapes(geom, shape).items():
        kind = shape.factors.get(name)
        if kind is not None and (kind.out_features, kind.in_features) != (m, n):
            raise ValueError(f"{name}: a {kind.kind} of {kind.out_features}×{kind.in_features} in a "
                             f"block whose {name} is {m}×{n}")
        out[name] = kind if kind is not None else Dense(m, n)
    return out


def block_macs(geom: Geometry, shape: BlockShape, seq_len: int) -> int:
    """MACs of one block at sequence length L (see the module docstring)."""
    total = 2 * seq_len * seq_len * geom.head_dim * shape.heads
    return total + sum(kind.macs(seq_len) for kind in linear_kinds(geom, shape).values())


def head_macs(geom: Geometry, seq_len: int) -> int:
    """What the whole-model figure adds to the blocks: LM head per token, or pooler+classifier."""
    if geom.lm_head:
        return seq_len * geom.hidden * geom.vocab
    if geom.num_labels:
        return geom.hidden * geom.hidden + geom.hidden * geom.num_labels
    return 0


def max_useful_rank(out_features: int, in_features: int) -> int:
    """The largest rank whose factorisation saves MACs: r < m·n/(m+n)."""
    return max(0, math.ceil(out_features * in_features / (out_features + in_features)) - 1)


def uniform_shape(geom: Geometry, ratio: float, seq_len: int, *, prune_heads: bool = True) -> BlockShape:
    """One shape for every block keeping about `ratio` of its MACs: heads and neurons at the
    same kept fraction (heads rounded, at least one kv group), then neurons filled so that
    block MACs ≤ ratio · dense."""
    budget = ratio * block_macs(geom, dense_shape(geom), seq_len)
    groups = geom.kv_heads
    if prune_heads and geom.group_size > 1:
        per_group = max(1, round(ratio * geom.group_size))
        heads, kv = per_group * groups, groups
    elif prune_heads:
        heads = kv = max(1, round(ratio * geom.heads))
    else:
        heads, kv = geom.heads, geom.kv_heads
    shape = BlockShape(heads=heads, kv_heads=kv, neurons=0)
    per_neuron = (3 if geom.gated else 2) * seq_len * geom.hidden
    neurons = int((budget - block_macs(geom, shape, seq_len)) // per_neuron)
    neurons = max(1, min(geom.intermediate, neurons))
    return replace(shape, neurons=neurons)


def estimate(config: dict[str, Any], mac_target: float, reference_seq_len: int) -> dict[str, Any]:
    """Dry run for the API: dense MACs and parameters, and a uniform plan for the target."""
    geom = Geometry.from_config(config)
    L = reference_seq_len
    dense = dense_shape(geom)
    dense_block = block_macs(geom, dense, L)
    plan = uniform_shape(geom, mac_target, L)
    planned_block = block_macs(geom, plan, L)
    extra = head_macs(geom, L)
    n = geom.num_layers
    return {
        "model_type": geom.model_type,
        "reference_seq_len": L,
        "num_layers": n,
        "block_macs": n * dense_block,
        "model_macs": n * dense_block + extra,
        "block_params": n * block_params(geom, dense),
        "planned": {
            "allocation": "uniform",
            "heads_per_layer": plan.heads,
            "kv_heads_per_layer": plan.kv_heads,
            "neurons_per_layer": plan.neurons,
            "mac_ratio": planned_block / dense_block,
            "mac_ratio_model": (n * planned_block + extra) / (n * dense_block + extra),
            "block_params": n * block_params(geom, plan),
        },
    }


def block_params(geom: Geometry, shape: BlockShape) -> int:
    """Weights of the block's Linear maps (biases and norms excluded)."""
    return sum(kind.params() for kind in linear_kinds(geom, shape).values())


def least_block_macs(geom: Geometry, shapes: list[BlockShape], params: Any, seq_len: int) -> int:
    """The fewest block MACs a factorising method (its parameters: `cheapest`, `keeps_dense`, see
    `core.methods.FactorizedParams`) can reach from blocks of these shapes: the attention scores
    stay, every matrix takes its cheapest form, or stays dense where the family has none."""
    total = 0
    for shape in shapes:
        total += 2 * seq_len * seq_len * geom.head_dim * shape.heads
        for kind in linear_kinds(geom, shape).values():
            dense = kind.macs(seq_len)
            cheap = params.cheapest(kind.out_features, kind.in_features)
            if cheap is None:
                total += dense
            else:
                total += min(dense, cheap.macs(seq_len)) if params.keeps_dense() else cheap.macs(seq_len)
    return total
