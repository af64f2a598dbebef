"""The kinds of block Linear, torch-free: what each computes, what it costs, how an artifact names it.

A block Linear W (out × in) is executed in one of these forms. Each kind is a frozen dataclass
whose fields are its factor shapes; it counts the MACs of the form *as executed* (per token, so
`macs(L)` is L times that) and its weights, and is the `structure` entry the artifact's
compression.json stores and the loader rebuilds from. The engine's torch module for each kind
is named by import path (`module`), so the API, which computes estimates from this module,
never imports torch.

- `linear`: dense, out·in.
- `lowrank`: W ≈ B·A, A (rank × in), B (out × rank): rank·(in + out).
- `block_lowrank` (Gupta et al., arXiv 2406.11307): W cut into a grid of row and column chunks,
  block (i, j) factorised at its own rank r_ij. Executed in two stages with a permutation
  between them: each column chunk j maps its inputs to the stacked codes of every block in it
  (Σ_i r_ij outputs), the codes are regrouped by row chunk, and each row chunk i maps its
  Σ_j r_ij codes to its outputs: Σ_ij r_ij·(in/cols + out/rows) MACs. One rank everywhere is
  Monarch on a contiguous grid; a 1 × 1 grid is `lowrank`.
- `monarch` (Dao et al., arXiv 2204.00595): W ≈ P·L·Pᵀ·R with R block-diagonal (b blocks, each
  in/b → b·r), L block-diagonal (b blocks, each b·r → out/b) and P the stride permutation
  (output row a·b + i belongs to block i); r = 1 with b = √n is the original square Monarch,
  r > 1 the generalised one. Two batched matmuls: r·b·(in + out) MACs.
- `mpo` (tensor train / matrix product operator, MPOP arXiv 2106.02205): out = ∏ i_k,
  in = ∏ j_k, cores k of shape (χ_{k-1}, i_k, j_k, χ_k), χ_0 = χ_K = 1. The input is contracted
  core by core, from the last core (right to left) or from the first (left to right), whichever
  costs fewer MACs (`order`); see `MPO.step_macs` for the count of each step.

Adding a kind: a dataclass here with `kind`, `keys`, `module`, `macs_per_token`, `params` and
`validate`, one `register_kind(...)` line, and the torch module it names (which executes the
form, builds from the spec and reports its spec back).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from core.errors import InvalidArtifact


@dataclass(frozen=True)
class LinearKind:
    """One block Linear's executed form. `out_features × in_features` is the matrix it stands for."""

    kind: ClassVar[str]
    module: ClassVar[str]  # "module:Class" of the torch module that executes it

    out_features: int
    in_features: int

    def macs_per_token(self) -> int:
        raise NotImplementedError

    def params(self) -> int:
        """Weights of the factors (biases excluded, as in the MAC accounting)."""
        raise NotImplementedError

    def macs(self, seq_len: int) -> int:
        return seq_len * self.macs_per_token()

    def validate(self) -> None:
        """Raise ValueError when the fields do not describe a buildable module."""
        if self.out_features < 1 or self.in_features < 1:
            raise ValueError("out and in features must be positive")

    def entry(self) -> dict[str, Any]:
        """The artifact's structure entry: {"type": kind, "out": …, "in": …, factor fields…}."""
        body = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        out, inp = body.pop("out_features"), body.pop("in_features")
        return {"type": self.kind, "out": out, "in": inp, **body}

    @property
    def dense(self) -> bool:
        return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuple(v) for v in value)
    return value


@dataclass(frozen=True)
class Dense(LinearKind):
    kind: ClassVar[str] = "linear"
    module: ClassVar[str] = "torch.nn:Linear"

    def macs_per_token(self) -> int:
        return self.out_features * self.in_features

    def params(self) -> int:
        return self.out_features * self.in_features

    @property
    def dense(self) -> bool:
        return True


@dataclass(frozen=True)
class LowRank(LinearKind):
    kind: ClassVar[str] = "lowrank"
    module: ClassVar[str] = "workers.compression.linears.lowrank:LowRankLinear"

    rank: int

    def macs_per_token(self) -> int:
        return self.rank * (self.out_features + self.in_features)

    def params(self) -> int:
        return self.macs_per_token()

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.rank <= min(self.out_features, self.in_features):
            raise ValueError(f"rank {self.rank} outside 1..{min(self.out_features, self.in_features)}")


@dataclass(frozen=True)
class BlockLowRank(LinearKind):
    kind: ClassVar[str] = "block_lowrank"
    module: ClassVar[str] = "workers.compression.linears.blocks:BlockLowRankLinear"

    grid: tuple[int, int]  # (row chunks, column chunks); each must divide its dimension
    ranks: tuple[tuple[int, ...], ...]  # ranks[i][j] of block (row chunk i, column chunk j); 0 allowed

    @property
    def chunk(self) -> tuple[int, int]:
        return self.out_features // self.grid[0], self.in_features // self.grid[1]

    def macs_per_token(self) -> int:
        rows, cols = self.chunk
        return sum(sum(r) for r in self.ranks) * (rows + cols)

    def params(self) -> int:
        return self.macs_per_token()

    def validate(self) -> None:
        super().validate()
        gr, gc = self.grid
        if gr < 1 or gc < 1 or self.out_features % gr or self.in_features % gc:
            raise ValueError(f"grid {self.grid} does not divide {self.out_features} × {self.in_features}")
        if len(self.ranks) != gr or any(len(row) != gc for row in self.ranks):
            raise ValueError(f"ranks must be a {gr} × {gc} table")
        rows, cols = self.chunk
        if any(not 0 <= r <= min(rows, cols) for row in self.ranks for r in row):
            raise ValueError(f"a block rank is outside 0..{min(rows, cols)}")
        if sum(sum(row) for row in self.ranks) < 1:
            raise ValueError("every block has rank 0")


@dataclass(frozen=True)
class Monarch(LinearKind):
    kind: ClassVar[str] = "monarch"
    module: ClassVar[str] = "workers.compression.linears.blocks:MonarchLinear"

    blocks: int  # b: divides both dimensions
    rank: int  # r: rank of each block pair

    def macs_per_token(self) -> int:
        return self.rank * self.blocks * (self.out_features + self.in_features)

    def params(self) -> int:
        return self.macs_per_token()

    def validate(self) -> None:
        super().validate()
        b = self.blocks
        if b < 1 or self.out_features % b or self.in_features % b:
            raise ValueError(f"{b} blocks do not divide {self.out_features} × {self.in_features}")
        if not 1 <= self.rank <= min(self.out_features, self.in_features) // b:
            raise ValueError(f"rank {self.rank} outside 1..{min(self.out_features, self.in_features) // b}")


@dataclass(frozen=True)
class MPO(LinearKind):
    kind: ClassVar[str] = "mpo"
    module: ClassVar[str] = "workers.compression.linears.mpo:MPOLinear"

    out_factors: tuple[int, ...]  # i_1 … i_K, product = out_features
    in_factors: tuple[int, ...]  # j_1 … j_K, product = in_features
    bonds: tuple[int, ...]  # χ_1 … χ_{K-1}
    order: str = "right"  # "right": contract the last core first; "left": the first core first

    @property
    def cores(self) -> int:
        return len(self.out_factors)

    def chain(self) -> tuple[int, ...]:
        """χ_0 … χ_K."""
        return (1, *self.bonds, 1)

    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        chi = self.chain()
        return [(chi[k], self.out_factors[k], self.in_factors[k], chi[k + 1]) for k in range(self.cores)]

    def step_macs(self, order: str | None = None) -> list[int]:
        """Per-token MACs of each contraction step, in execution order.

        Right to left, step k contracts (j_k, χ_k) of the state with core k and leaves
        (χ_{k-1}, i_k): ∏_{l<k} j_l · ∏_{l>k} i_l · j_k·χ_k · χ_{k-1}·i_k.
        Left to right, step k contracts (χ_{k-1}, j_k) and leaves (i_k, χ_k):
        ∏_{l<k} i_l · ∏_{l>k} j_l · χ_{k-1}·j_k · i_k·χ_k.
        """
        order = order or self.order
        i, j, chi, K = self.out_factors, self.in_factors, self.chain(), self.cores
        steps = []
        ks = range(K - 1, -1, -1) if order == "right" else range(K)
        for k in ks:
            if order == "right":
                outer = math.prod(j[:k]) * math.prod(i[k + 1:])
            else:
                outer = math.prod(i[:k]) * math.prod(j[k + 1:])
            steps.append(outer * j[k] * i[k] * chi[k] * chi[k + 1])
        return steps

    def macs_per_token(self) -> int:
        return sum(self.step_macs())

    def params(self) -> int:
        return sum(a * b * c * d for a, b, c, d in self.core_shapes())

    def validate(self) -> None:
        super().validate()
        if len(self.out_factors) != len(self.in_factors) or len(self.bonds) != len(self.out_factors) - 1:
            raise ValueError("mpo needs K out factors, K in factors and K-1 bonds")
        if math.prod(self.out_factors) != self.out_features or math.prod(self.in_factors) != self.in_features:
            raise ValueError("the factors' products must be the matrix dimensions")
        if any(f < 1 for f in (*self.out_factors, *self.in_factors, *self.bonds)):
            raise ValueError("factors and bonds must be positive")
        if self.order not in ("left", "right"):
            raise ValueError("order must be 'left' or 'right'")
        left = 1
        for k, chi in enumerate(self.bonds):  # a bond above the rank of its unfolding is waste
            left *= self.out_factors[k] * self.in_factors[k]
            right = self.out_features * self.in_features // left
            if chi > min(left, right):
                raise ValueError(
                    f"bond {k + 1} ({chi}) exceeds the rank of its unfolding ({min(left, right)})"
                )

    @classmethod
    def cheapest_order(cls, out_factors: tuple[int, ...], in_factors: tuple[int, ...],
                       bonds: tuple[int, ...]) -> MPO:
        """The spec with the contraction order that costs fewer MACs."""
        m, n = math.prod(out_factors), math.prod(in_factors)
        right = cls(m, n, out_factors, in_factors, bonds, "right")
        left = cls(m, n, out_factors, in_factors, bonds, "left")
        return left if left.macs_per_token() < right.macs_per_token() else right


KINDS: dict[str, type[LinearKind]] = {}


def register_kind(cls: type[LinearKind]) -> type[LinearKind]:
    if cls.kind in KINDS and KINDS[cls.kind] is not cls:
        raise ValueError(f"Linear kind {cls.kind!r} is already registered")
    KINDS[cls.kind] = cls
    return cls


for _cls in (Dense, LowRank, BlockLowRank, Monarch, MPO):
    register_kind(_cls)


def entry_keys(kind: str) -> frozenset[str]:
    """The keys a structure entry of this kind has (besides "type"; "bias" is the module's)."""
    cls = KINDS[kind]
    names = {f.name for f in fields(cls)} - {"out_features", "in_features"}
    return frozenset({"out", "in", "bias", *names})


def from_entry(entry: dict[str, Any], where: str = "entry") -> LinearKind:
    """The spec a structure entry describes, validated (InvalidArtifact naming `where`)."""
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidArtifact(f"{where} has unknown type {kind!r} (known: {', '.join(KINDS)})")
    cls = KINDS[kind]
    body = {k: _tuple(v) for k, v in entry.items() if k not in ("type", "bias", "out", "in")}
    try:
        spec = cls(entry["out"], entry["in"], **body)
        spec.validate()
        _check_types(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArtifact(f"{where}: invalid {kind} entry ({exc})") from None
    return spec


def _check_types(spec: LinearKind) -> None:
    def ints(value: Any) -> bool:
        if isinstance(value, tuple):
            return all(ints(v) for v in value)
        return isinstance(value, int) and not isinstance(value, bool)

    for name, value in asdict(spec).items():
        if name != "order" and not ints(_tuple(value)):
            raise ValueError(f"{name} must be integers, got {value!r}")


# ----- shapes a family can take on one matrix (used by the methods' option lists) ---------------

def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def balanced_factors(n: int, k: int) -> tuple[int, ...]:
    """n as k factors as equal as the divisors allow (sorted ascending, e.g. 384, 3 → (6, 8, 8))."""
    if k == 1:
        return (n,)
    target = n ** (1.0 / k)
    best = min(divisors(n), key=lambda d: (abs(math.log(d) - math.log(target)), d))
    return tuple(sorted((best, *balanced_factors(n // best, k - 1))))


def max_bonds(out_factors: tuple[int, ...], in_factors: tuple[int, ...]) -> tuple[int, ...]:
    """The rank of each unfolding of the interleaved tensor: the largest useful bond per cut."""
    m, n = math.prod(out_factors), math.prod(in_factors)
    left, out = 1, []
    for k in range(len(out_factors) - 1):
        left *= out_factors[k] * in_factors[k]
        out.append(min(left, m * n // left))
    return tuple(out)


def mpo_factors(out_features: int, in_features: int, cores: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Balanced factors of both dimensions, large out factors paired with small in factors."""
    i, j = balanced_factors(out_features, cores), balanced_factors(in_features, cores)
    return i, tuple(reversed(j))


def mpo_at_bond(out_features: int, in_features: int, cores: int, chi: int | tuple[int, ...]) -> MPO:
    """The MPO of a matrix at bond χ (one for every cut, or one per cut; each capped by the rank
    of its unfolding), in the cheaper contraction order."""
    i, j = mpo_factors(out_features, in_features, cores)
    caps = max_bonds(i, j)
    chis = chi if isinstance(chi, tuple) else (chi,) * len(caps)
    return MPO.cheapest_order(i, j, tuple(min(c, cap) for c, cap in zip(chis, caps, strict=True)))
