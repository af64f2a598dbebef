"""The method catalogue: every compression method's name, description, parameters and abilities.

One entry per method feeds the CLI's choices, the API schema (`method.name`, `method.params`
validated at submit time), `GET /v1/capabilities`, the engine's lookup and the contract tests.
Torch-free: the implementation is named by import path ("module:Class") and imported by the
engine only. Adding a method is one implementation module and one `register(MethodInfo(...))`
(the built-in ones are at the bottom of this file).

Parameters are pydantic models with `extra="forbid"` and a version (llm-compressor's habit), so an
unknown key, a wrong type or a NaN is refused before any model is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidSpec
from core.kinds import BlockLowRank, LinearKind, LowRank, Monarch, divisors, mpo_at_bond
from core.macs import max_useful_rank

DAMPING = "Ridge, relative to the Gram's mean diagonal."
STAGED = "Calibrate block l on the outputs of the compressed blocks before it."


class MethodParams(BaseModel):
    """Parameters every method has: validated, versioned, unknown keys refused, floats finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    version: Literal[1] = 1
    staged: bool = Field(default=True, description=STAGED)
    damping: float = Field(default=1e-2, ge=0.0, le=1.0, description=DAMPING)


class StructuredParams(MethodParams):
    # auto: global for bidirectional encoders, uniform for causal decoders, whose massive
    # activations make energy-normalised error signals misleading (measured: README, bench/).
    allocation: Literal["auto", "global", "uniform"] = Field(
        default="auto",
        description=(
            "How the MAC budget is split across blocks (auto: global for encoders, uniform for "
            "decoders). global is more accurate on encoders; uniform widths make an artifact that "
            "stock transformers loads (BERT-family encoders also need prune_heads false)."
        ),
    )
    prune_heads: bool = Field(default=True, description="Prune attention heads as well as FFN neurons.")
    # Global allocation keeps at least this fraction of each component's units in every block:
    # layers with massive activations look almost lossless to the normalised error signal.
    min_keep: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Global allocation keeps at least this fraction per block."
    )


class IDParams(StructuredParams):
    damping: float = Field(default=1e-2, ge=0.0, le=1.0, description="Ridge, relative to the scaled Gram.")


class MagnitudeParams(StructuredParams):
    allocation: Literal["auto", "global", "uniform"] = Field(
        default="uniform", description="How the MAC budget is split across blocks (data-free: uniform)."
    )


class FactorizedParams(MethodParams):
    """Parameters of every method that replaces block Linears by factorised kinds.

    `cheapest(out, in)` is the fewest-MAC form the method can build on a matrix of that shape
    (None: none), and `keeps_dense` whether a matrix may stay dense: together they bound the
    reachable MAC target from the shapes alone (`core.macs.least_block_macs`), which the API's
    estimates and the engine both check before any compute.
    """

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        return None

    def keeps_dense(self) -> bool:
        return True

    activation_aware: bool = Field(
        default=True,
        description="Fit to the calibration inputs (minimise the Linear's output error); "
        "false: weight space, no data.",
    )
    damping: float = Field(default=1e-3, ge=0.0, le=1.0, description=DAMPING)


class SVDParams(FactorizedParams):
    activation_aware: bool = Field(
        default=True, description="Whiten with the Cholesky factor of the calibration Gram (SVD-LLM)."
    )
    allocation: Literal["global", "uniform"] = Field(
        default="global", description="Ranks by one global error-per-MAC threshold, or one fraction for all."
    )

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        return LowRank(out_features, in_features, 1) if max_useful_rank(out_features, in_features) else None


GridSide = Annotated[int, Field(ge=1, le=64)]


class BlockLowRankParams(FactorizedParams):
    grid: tuple[GridSide, GridSide] = Field(
        default=(2, 2),
        description="Row chunks × column chunks of every matrix "
        "(reduced to a divisor where one does not divide).",
    )

    def grid_for(self, out_features: int, in_features: int) -> tuple[int, int]:
        """The grid on a matrix: each side the largest divisor of its dimension not above the parameter."""
        rows, cols = self.grid
        return (max(d for d in divisors(out_features) if d <= rows),
                max(d for d in divisors(in_features) if d <= cols))

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        gr, gc = self.grid_for(out_features, in_features)
        ranks = tuple(tuple(int((i, j) == (0, 0)) for j in range(gc)) for i in range(gr))
        spec = BlockLowRank(out_features, in_features, (gr, gc), ranks)
        return spec if spec.macs_per_token() < out_features * in_features else None


class MonarchParams(FactorizedParams):
    blocks: int | None = Field(
        default=None, ge=2, le=256,
        description="Fixed number of blocks b for every matrix; default: b and the rank chosen per matrix.",
    )
    max_blocks: int = Field(default=16, ge=2, le=256, description="Largest b considered when b is chosen.")

    def block_counts(self, out_features: int, in_features: int) -> list[int]:
        """The numbers of blocks b a matrix may take: common divisors of its dimensions."""
        common = divisors(math.gcd(out_features, in_features))
        if self.blocks is not None:
            return [self.blocks] if self.blocks in common else []
        return [b for b in common if 2 <= b <= self.max_blocks]

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        counts = self.block_counts(out_features, in_features)
        if not counts:
            return None
        spec = Monarch(out_features, in_features, min(counts), 1)  # r·b·(out + in): fewest blocks
        return spec if spec.macs_per_token() < out_features * in_features else None


class MPOParams(FactorizedParams):
    cores: int = Field(default=3, ge=2, le=8,
                       description="Cores K of each tensor train (each dimension split into K).")
    bond: int | None = Field(
        default=None, ge=1, le=4096,
        description="Fixed bond dimension χ for every matrix (the PicoGPT setting); default: χ per matrix "
        "chosen from the MAC target.",
    )

    def keeps_dense(self) -> bool:
        return self.bond is None  # a fixed bond replaces every matrix, as the paper does

    def cheapest(self, out_features: int, in_features: int) -> LinearKind | None:
        spec = mpo_at_bond(out_features, in_features, self.cores, self.bond or 1)
        if self.keeps_dense() and spec.macs_per_token() >= out_features * in_features:
            return None
        return spec


@dataclass(frozen=True)
class MethodInfo:
    """One catalogue entry.

    implementation: "module:Class" of the engine's `Method` subclass (or the class itself, for a
    method defined in a test), imported only where torch is.
    structures: what the method changes ("heads", "neurons", or the Linear kinds it builds, `core.kinds`).
    data: "required" (calibration batches), "optional" (a parameter turns it off) or "none".
    """

    name: str
    description: str
    params: type[MethodParams]
    implementation: str | type[Any]
    structures: tuple[str, ...]
    data: Literal["required", "optional", "none"] = "required"
    paper: str = ""

    def validate_params(self, params: dict[str, Any], *, field_prefix: str = "method.params") -> MethodParams:
        """The parameters as the method's model, or InvalidSpec naming the first bad field."""
        if not isinstance(params, dict):
            raise InvalidSpec("method parameters must be an object", field=field_prefix)
        try:
            return self.params(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            name = f"{field_prefix}.{where}" if where else field_prefix
            raise InvalidSpec(
                f"invalid parameter {where or '(params)'} for method {self.name!r}: {first.get('msg', '')}",
                field=name,
            ) from exc

    def describe(self) -> dict[str, Any]:
        """The capabilities entry: name, description, abilities and the parameters' JSON schema."""
        return {
            "id": self.name,
            "description": self.description,
            "structures": list(self.structures),
            "data": self.data,
            "paper": self.paper,
            "params": self.params.model_json_schema(),
            "defaults": self.params().model_dump(),
        }


_CATALOGUE: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method to the catalogue (a name registered twice is an error)."""
    if info.name in _CATALOGUE and _CATALOGUE[info.name] != info:
        raise ValueError(f"method {info.name!r} is already registered")
    _CATALOGUE[info.name] = info
    return info


def unregister(name: str) -> None:
    """Remove a method (for tests that register a toy one)."""
    _CATALOGUE.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_CATALOGUE)


def entries() -> Iterator[MethodInfo]:
    return iter(tuple(_CATALOGUE.values()))


def get(name: str, *, field: str = "method.name") -> MethodInfo:
    """The entry of `name`, or InvalidSpec listing the available methods."""
    try:
        return _CATALOGUE[name]
    except (KeyError, TypeError):
        available = ", ".join(_CATALOGUE)
        raise InvalidSpec(f"unknown method {name!r}; available: {available}", field=field) from None


register(MethodInfo(
    name="id",
    description="interpolative decomposition (STAT): keeps FFN neurons and attention heads chosen by pivoted "
    "QR of calibration activations and folds the interpolation matrix into the next layer",
    params=IDParams,
    implementation="workers.compression.methods.id:InterpolativeMethod",
    structures=("heads", "neurons"),
    paper="Flynn, Wang, Alvarez, De Sa, Damle 2024, arXiv 2406.00061 (STAT)",
))
register(MethodInfo(
    name="svd",
    description="low-rank factorisation of every block Linear, activation-aware (SVD-LLM whitening) by "
    "default, ranks allocated globally by error per MAC",
    params=SVDParams,
    implementation="workers.compression.methods.svd:SVDMethod",
    structures=("lowrank",),
    data="optional",
    paper="Wang et al. 2024, arXiv 2403.07378 (SVD-LLM)",
))
register(MethodInfo(
    name="magnitude",
    description="structured pruning baseline: the same widths and surgery as id, units scored by weight "
    "norms, no correction, no data",
    params=MagnitudeParams,
    implementation="workers.compression.methods.magnitude:MagnitudeMethod",
    structures=("heads", "neurons"),
    data="none",
))
register(MethodInfo(
    name="block_lowrank",
    description="block-wise low rank: every block Linear cut into a grid, each block at its own rank (ranks "
    "allocated globally by output error per MAC), executed as two block-diagonal stages with a permutation",
    params=BlockLowRankParams,
    implementation="workers.compression.methods.block_lowrank:BlockLowRankMethod",
    structures=("block_lowrank",),
    data="optional",
    paper="Gupta, Srikumar, Sadayappan, Mahdipour Saravani 2024, arXiv 2406.11307",
))
register(MethodInfo(
    name="monarch",
    description="Monarch matrices P·L·Pᵀ·R (block-diagonal L, R): number of blocks and per-block rank "
    "chosen per matrix from the MAC target, fitted by the closed-form block projection",
    params=MonarchParams,
    implementation="workers.compression.methods.monarch:MonarchMethod",
    structures=("monarch",),
    data="optional",
    paper="Dao et al. 2022, arXiv 2204.00595 (Monarch)",
))
register(MethodInfo(
    name="mpo",
    description="matrix product operators (tensor trains) by TT-SVD, bond dimension per matrix chosen from "
    "the MAC target, executed by contracting the cores with the input in the cheaper order",
    params=MPOParams,
    implementation="workers.compression.methods.mpo:MPOMethod",
    structures=("mpo",),
    data="optional",
    paper="Gao et al. 2020 (MPO); Liu et al. 2021, arXiv 2106.02205 (MPOP); PicoGPT, arXiv 2603.28534",
))
