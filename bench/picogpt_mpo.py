"""The PicoGPT table's own method, retraining-free: `mpo` at the paper's bond dimensions χ = 4, 8, 16, 32.

The paper (arXiv 2603.28534) initialises every Linear's MPO cores by TT-SVD of the trained weights
and then trains them; here the same dense model as `bench.picogpt` (`bench.charlm`) gets `mpo`
with `bond: χ` fixed for every block Linear (3 cores) and no training: TT-SVD of the weights
(`mpo-plain`, the paper's initialisation) and the activation-aware fit (Kronecker-whitened
TT-SVD, `mpo`). With a fixed bond the plan is fixed, so the MAC target passed to the engine is
the plan's own kept ratio, computed torch-free from `core.kinds` (the engine checks it again on the
rewritten modules). Token accuracy over the held-out windows as in `bench.picogpt`; the paper's
trained-core figures and parameter counts beside ours (our LM head and embeddings stay dense).

Writes bench/results/picogpt_mpo.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.charlm import CharRecipe, text_path, trained_model
from bench.common import write_result
from bench.harness import compress_point
from bench.picogpt import CALIBRATION, PAPER, SEQ_LEN, _count, _evaluate, _train_facts
from bench.settings import Settings

log = logging.getLogger(__name__)
CORES = 3


def planned_ratio(config: dict[str, Any], chi: int, cores: int, seq_len: int) -> float:
    """Kept fraction of block MACs when every block Linear is an MPO at bond χ."""
    from core.kinds import mpo_at_bond
    from core.macs import Geometry, block_macs, dense_shape, linear_shapes

    geom = Geometry.from_config(config)
    dense = dense_shape(geom)
    factors = {name: mpo_at_bond(m, n, cores, chi) for name, (m, n) in linear_shapes(geom, dense).items()}
    return block_macs(geom, dense.with_factors(factors), seq_len) / block_macs(geom, dense, seq_len)


def rewrite_outside_budget(dense: Any, batches: list[Any], label: str,
                           chi: int) -> tuple[Any, dict[str, Any]]:
    """Every block Linear an MPO at bond χ, staged block by block with the method's own fit, for a
    plan that executes more MACs than the dense model (the engine's MAC target is at most 1)."""
    import copy
    import time

    import torch

    from bench.harness import method_spec
    from core.kinds import mpo_at_bond
    from core.macs import linear_shapes
    from workers.compression.adapters import ModelAdapter
    from workers.compression.calibration import Calibrator
    from workers.compression.engine import measure
    from workers.compression.methods import get_method

    model = copy.deepcopy(dense)
    method_name, params = method_spec(label, {"bond": chi, "cores": CORES})
    adapter = ModelAdapter(model)
    adapter.prepare()
    before = measure(adapter, SEQ_LEN)
    impl = get_method(method_name)(get_method(method_name).Params(**params), adapter, SEQ_LEN)
    start = time.perf_counter()
    calibrator = Calibrator(adapter, torch.device("cpu"), torch.device("cpu"))
    inputs = calibrator.capture(batches) if impl.needs_data else None
    shape = adapter.block_shape(adapter.layers[0])  # every block of the dense model has this shape
    for i, layer in enumerate(adapter.layers):
        factors = {n: mpo_at_bond(m, k, CORES, chi)
                   for n, (m, k) in linear_shapes(adapter.geometry, shape).items()}
        stats = calibrator.run(layer, inputs, impl.observed(layer))[0] if inputs is not None else None
        impl.compress_block(i, layer, stats, shape.with_factors(factors))  # type: ignore[arg-type]
        if inputs is not None:
            inputs = inputs.with_hidden(calibrator.run(layer, inputs)[1])
    after = measure(adapter, SEQ_LEN)
    return model, {
        "method": label, "engine_method": method_name, "params": params, "target": None,
        "outside_mac_budget": True,
        "mac_ratio": after["block_macs"] / before["block_macs"],
        "mac_ratio_model": after["model_macs"] / before["model_macs"],
        "params_before": before["params"], "params_after": after["params"],
        "seconds": time.perf_counter() - start,
    }


def run(settings: Settings, results_dir: Path) -> list[Path]:
    from workers.data import DataSource, build_calibration
    from workers.models import load_model

    recipe = CharRecipe()
    if settings.picogpt_steps:
        recipe = CharRecipe(steps=settings.picogpt_steps, warmup=max(1, settings.picogpt_steps // 10))
    folder = trained_model(recipe)
    dense, tokenizer = load_model(str(folder))
    heldout = DataSource(path=str(folder / "heldout.txt"))
    dense_metrics, protocol = _evaluate(dense, tokenizer, heldout, settings)
    samples = 16 if settings.quick else CALIBRATION[0]
    calib = build_calibration(tokenizer, DataSource(path=str(folder / "train.txt")), num_samples=samples,
                              max_seq_length=SEQ_LEN, seed=settings.seed, mode="chunk")
    chis = (16,) if settings.quick else tuple(row["chi"] for row in PAPER["mpo"])
    rows = []
    for paper in (r for r in PAPER["mpo"] if r["chi"] in chis):
        ratio = planned_ratio(dense.config.to_dict(), paper["chi"], CORES, SEQ_LEN)
        for label in ("mpo-plain", "mpo"):
            row: dict[str, Any] = {"chi": paper["chi"], "cores": CORES, "paper_params": paper["params"],
                                   "paper_token_accuracy": paper["token_accuracy"],
                                   "planned_mac_ratio": ratio}
            if ratio >= 1.0:  # more MACs than dense: no MAC target expresses it; the method's fit, directly
                model, record = rewrite_outside_budget(dense, calib.batches, label, paper["chi"])
            else:
                model, record = compress_point(dense, calib.batches, label=label, target=ratio,
                                               reference_seq_len=SEQ_LEN, device=settings.device,
                                               seed=settings.seed,
                                               overrides={"bond": paper["chi"], "cores": CORES})
            if model is not None:
                record["metrics"], _ = _evaluate(model, tokenizer, heldout, settings)
            rows.append({**row, **record})
            log.info("picogpt mpo χ=%d %s: %s params, %s", paper["chi"], label, record.get("params_after"),
                     record.get("metrics", record.get("error")))
    payload = {
        "suite": "picogpt_mpo",
        "quick": settings.quick,
        "paper": PAPER,
        "dense": {"params": _count(dense), "metrics": dense_metrics, "train": _train_facts(folder)},
        "settings": {"chis": chis, "cores": CORES, "calibration_windows": samples, "seq_len": SEQ_LEN},
        "rows": rows,
    }
    return [write_result("picogpt_mpo", payload, seeds={"train": recipe.seed, "calibration": settings.seed},
                         data_files=[text_path()],
                         protocol={**protocol, "split": "held-out = last 10% of the characters"},
                         results_dir=results_dir)]
