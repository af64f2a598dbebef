"""The compression driver: one pass to plan (when the method allocates from data), one to compress.

    report = compress(model, batches, CompressionSpec("id", 0.5, reference_seq_len=128))

`model` is rewritten in place (same transformers class; block Linears replaced), `batches`
are {"input_ids", "attention_mask"} dicts. Staged (default): block l is calibrated on the
outputs of the already compressed blocks 0..l-1; `staged: false` calibrates every block on
the dense model's activations. Cancellation is honoured between blocks.

The budget is checked on the plan, before any block is rewritten: a plan whose block MACs are
above the target, or more than `TOLERANCE` below it, raises `BudgetInfeasible` and leaves the
model as it was (up to `prepare()`, which turns GPT-2's Conv1D into an equivalent Linear).
The measured model is checked again at the end; a disagreement there is a method's bug
(`PlanMismatch`), never the request's fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core import methods as catalogue
from core.errors import BudgetInfeasible, Cancelled, InvalidSpec, PlanMismatch
from core.macs import BlockShape, block_macs, head_macs
from workers.compression.adapters import ModelAdapter
from workers.compression.calibration import BlockInputs, BlockStats, Calibrator, move_except_layers, on_device
from workers.compression.methods import Method, get_method

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, blocks done, total blocks)
TOLERANCE = 0.01  # achieved kept ratio must be ≤ target and within this of it
DENSE_STATS_BYTES = 4 << 30  # the most an unstaged sweep keeps of dense Grams between targets


@dataclass(frozen=True)
class CompressionSpec:
    method: str
    mac_target: float
    reference_seq_len: int = 128
    params: dict[str, Any] = field(default_factory=dict)


def build_method(spec: CompressionSpec, adapter: ModelAdapter) -> Method:
    if not 0.0 < spec.mac_target <= 1.0:
        raise InvalidSpec(f"mac_target must be in (0, 1], got {spec.mac_target}", field="target.mac_ratio")
    if spec.reference_seq_len < 1:
        raise InvalidSpec("reference_seq_len must be positive", field="target.reference_seq_len")
    params = catalogue.get(spec.method).validate_params(spec.params)
    return get_method(spec.method)(params, adapter, spec.reference_seq_len)


def measure(adapter: ModelAdapter, seq_len: int) -> dict[str, int]:
    """Block and whole-model MACs and parameters of the model as it is now."""
    g = adapter.geometry
    blocks = sum(block_macs(g, adapter.block_shape(layer), seq_len) for layer in adapter.layers)
    params = sum(p.numel() for p in adapter.model.parameters())
    return {"block_macs": blocks, "model_macs": blocks + head_macs(g, seq_len), "params": params}


def in_budget(ratio: float, target: float) -> bool:
    """A kept ratio meets the target: ≤ target and within `TOLERANCE` of it."""
    return target - TOLERANCE <= ratio <= target + 1e-9


def check_plan(spec: CompressionSpec, method: Method, plan: list[BlockShape], dense_block_macs: int) -> float:
    """The plan's kept ratio of block MACs; BudgetInfeasible (field target.mac_ratio) when it misses."""
    g, n = method.geometry, method.geometry.num_layers
    if len(plan) != n:
        raise PlanMismatch(f"method {spec.method!r} planned {len(plan)} blocks for a model of {n}")
    planned = sum(block_macs(g, shape, spec.reference_seq_len) for shape in plan)
    ratio = planned / dense_block_macs
    if not in_budget(ratio, spec.mac_target):
        raise BudgetInfeasible(
            f"method {spec.method!r} cannot meet mac_ratio {spec.mac_target} on this model: its plan keeps "
            f"{ratio:.4f} of the block MACs, and a plan must keep between "
            f"{max(spec.mac_target - TOLERANCE, 0.0):.4f} and {spec.mac_target} (nothing was compressed)",
            field="target.mac_ratio",
        )
    return ratio


def check_reachable(spec: CompressionSpec, method: Method, dense_block_macs: int) -> None:
    """BudgetInfeasible, before any calibration or decomposition, when the method's cheapest forms
    of every matrix (known from the shapes alone) already keep more than the target."""
    least = method.least_block_macs()
    if least is not None and least > spec.mac_target * dense_block_macs * (1 + 1e-9):  # float slack
        raise BudgetInfeasible(
            f"method {spec.method!r} cannot go below {least / dense_block_macs:.4f} of the block MACs of "
            f"this model with these parameters, above mac_ratio {spec.mac_target} (nothing was compressed)",
            field="target.mac_ratio",
        )


@dataclass
class Prepared:
    """What every target of one model and one calibration set shares: the dense model (prepared),
    the block inputs captured from the batches, and, when the method allocates from data, the dense
    planning pass. `compress_to` then rewrites this model, or a copy of it, to any target; a sweep
    or a search pays for capture and planning once (their times are in `timings`)."""

    adapter: ModelAdapter
    spec: CompressionSpec
    method: Method  # holds the planning statistics (curves, menus) every target's plan reads
    before: dict[str, int]
    calibrator: Calibrator
    inputs: BlockInputs | None
    device: torch.device
    home: torch.device
    batches: int
    timings: dict[str, float] = field(default_factory=dict)
    # unstaged methods only: every block's dense statistics, kept for the next target's pass (None:
    # not kept, staged or above DENSE_STATS_BYTES)
    dense_stats: dict[int, BlockStats] | None = None


def prepare(
    model: nn.Module | ModelAdapter,
    batches: list[dict[str, torch.Tensor]],
    spec: CompressionSpec,
    *,
    targets: list[float] | None = None,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Prepared:
    """Validate the method against the model and every target (`targets`, default spec's), then
    capture block inputs and run the planning pass when some target compresses at all."""
    adapter = model if isinstance(model, ModelAdapter) else ModelAdapter(model)
    adapter.prepare()
    ratios = targets if targets is not None else [spec.mac_target]
    for ratio in ratios:
        build_method(_at(spec, ratio), adapter)  # the target's own range check
    method = build_method(spec, adapter)
    before = measure(adapter, spec.reference_seq_len)
    dev = torch.device(device)
    home, store = _place(adapter.model, adapter, dev)
    calibrator = Calibrator(adapter, dev, store)
    prepared = Prepared(adapter, spec, method, before, calibrator, None, dev, home, len(batches))
    if all(ratio >= 1.0 for ratio in ratios):  # everything is kept: no statistics, no passes
        return prepared
    if not getattr(method.params, "staged", True) and _gram_bytes(adapter, method) <= DENSE_STATS_BYTES:
        prepared.dense_stats = {}
    for ratio in ratios:
        if ratio < 1.0:
            check_reachable(_at(spec, ratio), method, before["block_macs"])
    if method.needs_data:
        if not batches:
            raise InvalidSpec(f"method {spec.method!r} needs calibration data", field="calibration")
        t = time.perf_counter()
        prepared.inputs = calibrator.capture(batches)
        prepared.timings["capture"] = time.perf_counter() - t
    if method.needs_planning_pass:
        assert prepared.inputs is not None
        t = time.perf_counter()
        _planning_pass(adapter, method, calibrator, prepared.inputs, dev, home,
                       on_progress or (lambda *_: None), _canceller(should_cancel), keep=prepared.dense_stats)
        prepared.timings["planning"] = time.perf_counter() - t
    return prepared


def compress_to(
    prepared: Prepared,
    mac_target: float,
    *,
    copy: bool = False,
    on_progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[ModelAdapter, dict[str, Any]]:
    """Rewrite the prepared model (in place) or a deep copy of it (`copy`, the dense model stays
    as it is for the next target) to `mac_target`; returns the rewritten model's adapter and the
    report that goes into compression.json. The plan comes from the shared planning statistics;
    the compression pass is the target's own (staged: each block is calibrated on the outputs of
    this target's compressed blocks)."""
    started = time.perf_counter()
    spec = _at(prepared.spec, mac_target)
    adapter = ModelAdapter(deepcopy(prepared.adapter.model)) if copy else prepared.adapter
    method = build_method(spec, adapter)
    method.adopt_plan(prepared.method)
    before, timings = prepared.before, dict(prepared.timings)
    if mac_target >= 1.0:
        _gather_home(prepared, adapter)
        return adapter, _report(spec, method, before, before, [], 0, timings, started, prepared.device)
    check_reachable(spec, method, before["block_macs"])
    plan = method.plan(spec.mac_target)
    check_plan(spec, method, plan, before["block_macs"])  # before any block is rewritten
    t = time.perf_counter()
    layers = _compress_pass(
        adapter, method, prepared.calibrator, prepared.inputs, plan, prepared.device, prepared.home,
        on_progress or (lambda *_: None), _canceller(should_cancel), prepared.dense_stats,
    )
    timings["compression"] = time.perf_counter() - t
    _gather_home(prepared, adapter)
    after = measure(adapter, spec.reference_seq_len)
    tokens = prepared.inputs.num_tokens if prepared.inputs else 0
    # a copy's report counts capture and planning as this target's: each artifact says what it cost
    report = _report(spec, method, before, after, layers, tokens, timings, started, prepared.device,
                     batches=prepared.batches)
    report["timings"]["total"] += sum(prepared.timings.values())
    return adapter, report


def _gather_home(prepared: Prepared, adapter: ModelAdapter) -> None:
    """Blocks kept on the CPU while the rest visited the device: the rest goes back beside them, so
    the rewritten model is on one device."""
    if prepared.home != prepared.device:
        move_except_layers(adapter, prepared.home)


def compress(
    model: nn.Module | ModelAdapter,
    batches: list[dict[str, torch.Tensor]],
    spec: CompressionSpec,
    *,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Compress `model` in place to `spec`; return the report that goes into compression.json.

    `model` may be given as its `ModelAdapter` (the pipeline builds one and passes it on).
    """
    prepared = prepare(model, batches, spec, device=device, on_progress=on_progress,
                       should_cancel=should_cancel)
    _, report = compress_to(prepared, spec.mac_target, on_progress=on_progress, should_cancel=should_cancel)
    return report


def _gram_bytes(adapter: ModelAdapter, method: Method) -> int:
    """float64 bytes of every block's observed input Grams (what keeping dense statistics costs)."""
    total = 0
    for layer in adapter.layers:
        for _, module in method.observed(layer):
            width = int(getattr(module, "in_features", 0))
            total += 8 * width * width
    return total


def _at(spec: CompressionSpec, mac_target: float) -> CompressionSpec:
    return CompressionSpec(spec.method, mac_target, spec.reference_seq_len, dict(spec.params))


def _canceller(should_cancel: Callable[[], bool] | None) -> Callable[[], None]:
    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled("cancelled at a block boundary")

    return check_cancel


def _report(spec: CompressionSpec, method: Method, before: dict[str, int], after: dict[str, int],
            layers: list[dict[str, Any]], tokens: int, timings: dict[str, float], started: float,
            dev: torch.device, batches: int = 0) -> dict[str, Any]:
    ratio = after["block_macs"] / before["block_macs"]
    if not in_budget(ratio, spec.mac_target):
        raise PlanMismatch(
            f"method {spec.method!r} planned within the budget but the compressed model keeps {ratio:.4f} "
            f"of the block MACs (target {spec.mac_target})"
        )
    return {
        "method": spec.method,
        "method_params": {**method.params.model_dump(), **method.resolved()},
        "target": {"mac_ratio": spec.mac_target, "reference_seq_len": spec.reference_seq_len, "of": "blocks"},
        "macs": {
            "dense_block": before["block_macs"],
            "compressed_block": after["block_macs"],
            "mac_ratio": ratio,
            "dense_model": before["model_macs"],
            "compressed_model": after["model_macs"],
            "mac_ratio_model": after["model_macs"] / before["model_macs"],
        },
        "params": {"before": before["params"], "after": after["params"]},
        "calibration": {"batches": batches, "tokens": tokens},
        "layers": layers,
        "timings": {**timings, "total": time.perf_counter() - started},
        "device": str(dev),
    }


def _place(model: nn.Module, adapter: ModelAdapter, dev: torch.device) -> tuple[torch.device, torch.device]:
    """(home of the blocks, home of activations). Blocks stay on the CPU when the model would
    not fit comfortably on the accelerator; one block at a time then visits the device."""
    if dev.type != "cuda":
        model.to(dev)
        return dev, dev
    free, _ = torch.cuda.mem_get_info(dev)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size < 0.5 * free:
        model.to(dev)
        return dev, dev
    log.info("model (%.1f GB) kept on the CPU; blocks visit %s one at a time", size / 1e9, dev)
    move_except_layers(adapter, dev)
    return torch.device("cpu"), torch.device("cpu")


def _planning_pass(
    adapter: ModelAdapter, method: Method, calibrator: Calibrator, inputs: BlockInputs,
    dev: torch.device, home: torch.device, progress: Progress, check_cancel: Callable[[], None],
    keep: dict[int, BlockStats] | None = None,
) -> None:
    """Run the dense model block by block once and hand every block's statistics to the method
    (and to `keep`, when given: an unstaged compression pass reads the same dense statistics)."""
    n = len(adapter.layers)
    current = inputs
    for i, layer in enumerate(adapter.layers):
        check_cancel()
        with on_device(layer, dev, home):
            stats, outputs = calibrator.run(layer, current, method.observed(layer), keep_outputs=i < n - 1)
            method.observe_plan(i, layer, stats)
        if keep is not None:
            keep[i] = stats
        current = current.with_hidden(outputs)
        progress("planning", i + 1, n)


def _compress_pass(
    adapter: ModelAdapter, method: Method, calibrator: Calibrator, inputs: BlockInputs | None,
    plan: list[BlockShape], dev: torch.device, home: torch.device, progress: Progress,
    check_cancel: Callable[[], None], dense_stats: dict[int, BlockStats] | None = None,
) -> list[dict[str, Any]]:
    """Rewrite every block to its planned shape; staged: calibrated on the compressed blocks' outputs.

    Unstaged, every block is calibrated on the dense model's activations: `dense_stats`, when it
    holds every block (from the planning pass or an earlier target), replaces the forward passes;
    when empty it is filled, for the next target.
    """
    n, staged = len(adapter.layers), method.params.staged
    cached = dense_stats is not None and not staged and len(dense_stats) == n
    current, reports = (None if cached else inputs), []
    for i, layer in enumerate(adapter.layers):
        check_cancel()
        last = i == n - 1
        with on_device(layer, dev, home):
            stats, outputs = BlockStats(), list[torch.Tensor]()
            if cached:
                assert dense_stats is not None
                stats = dense_stats[i]
            elif current is not None:
                keep = not staged and not last
                stats, outputs = calibrator.run(layer, current, method.observed(layer), keep_outputs=keep)
                if dense_stats is not None and not staged:
                    dense_stats[i] = stats
            reports.append(method.compress_block(i, layer, stats, plan[i]))
            del stats
            if current is not None and staged and not last:
                _, outputs = calibrator.run(layer, current)
        if current is not None:
            current = current.with_hidden(outputs)
        progress("compressing", i + 1, n)
    return reports
