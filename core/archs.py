"""Architecture facts, torch-free: where each family keeps its blocks, Linears and head counts.

Per-architecture differences are data (`ArchSpec`) in one registry keyed by `config.model_type`
(PEFT / llm-compressor style); an unknown type raises `UnsupportedArchitecture` listing the
supported ones. The hub's refusal rules, the MAC accounting, the engine's adapters and the
artifact loader all read these facts from here and nowhere else.

The engine talks to a block only through the names of `core.macs`: q, k, v (or GPT-2's fused
qkv), o, gate, up, down. A fused qkv Linear stacks its output rows as
[q: heads·d_h | k: kv_heads·d_h | v: kv_heads·d_h] (`fused_qkv_offsets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import UnsupportedArchitecture

HeadAttrs = Callable[[int, int, int], dict[str, int]]  # (heads, kv_heads, head_dim) -> attributes


@dataclass(frozen=True)
class ArchSpec:
    """One architecture family.

    layers: path of the block list, relative to `model.base_model`.
    linears: macs name -> path of the Linear relative to a block.
    attention: path (relative to a block) of the module whose attributes carry head counts.
    head_attrs: the attribute values of that module for a given (heads, kv_heads, head_dim).
    gated: the FFN has a gate producer (SwiGLU), so a neuron costs 3·L·d MACs, not 2·L·d.
    """

    layers: str
    linears: Mapping[str, str]
    attention: str
    head_attrs: HeadAttrs
    gated: bool = False

    @property
    def fused_qkv(self) -> bool:
        return "qkv" in self.linears

    @property
    def attention_inputs(self) -> tuple[str, ...]:
        """Producers of the attention (fed by the block input)."""
        return ("qkv",) if self.fused_qkv else ("q", "k", "v")

    @property
    def query_producer(self) -> str:
        """The Linear whose first heads·d_h output rows are the queries."""
        return "qkv" if self.fused_qkv else "q"

    @property
    def ffn_producers(self) -> tuple[str, ...]:
        return ("gate", "up") if self.gated else ("up",)

    @property
    def head_attr_names(self) -> frozenset[str]:
        """The attribute names `head_attrs` sets: the only ones an artifact may set."""
        return frozenset(self.head_attrs(1, 1, 1))

    def input_of(self, name: str) -> str:
        """The Linear whose input Gram `name` shares (q, k, v read one input; so do gate and up)."""
        if name in ("q", "k", "v"):
            return "q"
        if name == "gate":
            return "up"
        return name

    @property
    def observed_inputs(self) -> tuple[str, ...]:
        """One Linear per distinct block input: the Grams a data-aware factorisation needs."""
        return tuple(sorted({self.input_of(name) for name in self.linears}))


def fused_qkv_offsets(heads: int, kv_heads: int, head_dim: int) -> tuple[int, int, int]:
    """Row offsets of q, k and v inside a fused qkv weight with `heads` query and `kv_heads` kv heads.

    v starts after the kv_heads·d_h rows of k, not at 2·heads·d_h: the two agree only without
    grouped-query attention.
    """
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    return 0, q_width, q_width + kv_width


def fused_qkv_kv_heads(rows: int, heads: int, head_dim: int) -> int:
    """The kv heads of a fused qkv weight of `rows` output rows and `heads` query heads (the
    inverse of `fused_qkv_offsets`); ValueError when the rows are not q | k | v of whole heads."""
    _, k_start, _ = fused_qkv_offsets(heads, 0, head_dim)
    kv_heads, rest = divmod(rows - k_start, 2 * head_dim)
    if rest or kv_heads < 1:
        raise ValueError(f"{rows} fused qkv rows are not {heads} query heads and whole kv heads ({head_dim})")
    return kv_heads


def _bert_attrs(h: int, kv: int, dh: int) -> dict[str, int]:
    return {"num_attention_heads": h, "all_head_size": h * dh}


def _gpt2_attrs(h: int, kv: int, dh: int) -> dict[str, int]:
    return {"num_heads": h, "split_size": h * dh, "embed_dim": h * dh}


def _opt_attrs(h: int, kv: int, dh: int) -> dict[str, int]:
    return {"num_heads": h}


def _distilbert_attrs(h: int, kv: int, dh: int) -> dict[str, int]:
    return {"n_heads": h}


def _llama_attrs(h: int, kv: int, dh: int) -> dict[str, int]:
    return {"num_key_value_groups": h // kv}


_BERT = ArchSpec(
    layers="encoder.layer",
    linears={
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "up": "intermediate.dense",
        "down": "output.dense",
    },
    attention="attention.self",
    head_attrs=_bert_attrs,
)
_LLAMA = ArchSpec(
    layers="layers",
    linears={
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    },
    attention="self_attn",
    head_attrs=_llama_attrs,
    gated=True,
)

REGISTRY: dict[str, ArchSpec] = {
    "bert": _BERT,
    "roberta": _BERT,
    "distilbert": ArchSpec(
        layers="transformer.layer",
        linears={
            "q": "attention.q_lin",
            "k": "attention.k_lin",
            "v": "attention.v_lin",
            "o": "attention.out_lin",
            "up": "ffn.lin1",
            "down": "ffn.lin2",
        },
        attention="attention",
        head_attrs=_distilbert_attrs,
    ),
    "gpt2": ArchSpec(
        layers="h",
        linears={"qkv": "attn.c_attn", "o": "attn.c_proj", "up": "mlp.c_fc", "down": "mlp.c_proj"},
        attention="attn",
        head_attrs=_gpt2_attrs,
    ),
    "opt": ArchSpec(
        layers="decoder.layers",
        linears={
            "q": "self_attn.q_proj",
            "k": "self_attn.k_proj",
            "v": "self_attn.v_proj",
            "o": "self_attn.out_proj",
            "up": "fc1",
            "down": "fc2",
        },
        attention="self_attn",
        head_attrs=_opt_attrs,
    ),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    # Llama's layout. Qwen3 and Gemma3 normalise q and k per head over d_h (q_norm, k_norm: one
    # d_h-wide weight shared by every head), so dropping whole heads leaves them valid. The Gemmas
    # set head_dim apart from hidden/heads (Geometry reads it) and gate with GeGLU; Gemma3
    # soft-caps the final logits and alternates sliding-window layers: none of it depends on the
    # head or neuron counts.
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma3_text": _LLAMA,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(REGISTRY)


def get_spec(model_type: str, *, field: str | None = None) -> ArchSpec:
    """The spec of a model type, or UnsupportedArchitecture naming the supported ones."""
    spec = REGISTRY.get(model_type)
    if spec is None:
        raise UnsupportedArchitecture(
            f"model_type {model_type or '(missing)'!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
            field=field,
        )
    return spec


def is_causal(config: Mapping[str, Any]) -> bool:
    """A decoder with an LM head, by the config's `architectures`."""
    archs = config.get("architectures") or []
    return isinstance(archs, list) and any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
