"""A paper's table, retraining-free: PicoGPT (arXiv 2603.28534) compressed to the MPO parameter counts.

The paper replaces every Linear of a 1,020,224-parameter character GPT by an MPO (tensor-train)
chain, initialises the cores by TT-SVD of the trained weights and then *trains the cores*; at bond
dimension χ = 16 the whole model has 191,872 parameters and 51.6% held-out token accuracy against
52.8% dense. Here the dense model is ours (`bench.charlm`), and each method compresses it without
any training to the same whole-model parameter count: the MAC target is searched by bisection
(parameters grow with the target) for the compressed model whose parameter count lands closest to
the paper's; both the target and the landed count are reported.

Token accuracy: top-1 next-character accuracy over non-overlapping 256-character windows of the
held-out last 10% (`run_task("perplexity")`, the GPTQ window protocol; the first character of a
window is context only). Writes bench/results/picogpt_shakespeare.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.charlm import CharRecipe, text_path, trained_model
from bench.common import write_result
from bench.harness import compress_point
from bench.settings import Settings

log = logging.getLogger(__name__)

PAPER: dict[str, Any] = {
    "source": "Javanmard, Pandit, Mardani, arXiv 2603.28534 (MPO cores trained after TT-SVD initialisation)",
    "dense_params": 1_020_224,
    "dense_token_accuracy": 0.528,
    "mpo": [
        {"chi": 4, "params": 78_336, "token_accuracy": 0.368},
        {"chi": 8, "params": 110_592, "token_accuracy": 0.468},
        {"chi": 16, "params": 191_872, "token_accuracy": 0.516},
        {"chi": 32, "params": 408_832, "token_accuracy": 0.524},
    ],
}
METHODS = ("id", "svd-aa", "svd", "magnitude")
SEQ_LEN = 256
CALIBRATION = (128, SEQ_LEN)  # windows x characters from the training split


def run(settings: Settings, results_dir: Path) -> list[Path]:
    from workers.data import DataSource, build_calibration
    from workers.models import load_model

    recipe = CharRecipe()
    if settings.picogpt_steps:  # a short schedule (quick): warm-up scaled down with it
        recipe = CharRecipe(steps=settings.picogpt_steps, warmup=max(1, settings.picogpt_steps // 10))
    folder = trained_model(recipe)
    dense, tokenizer = load_model(str(folder))
    heldout = DataSource(path=str(folder / "heldout.txt"))
    dense_metrics, protocol = _evaluate(dense, tokenizer, heldout, settings)
    log.info("picogpt dense (%d params): %s", _count(dense), dense_metrics)
    samples = 16 if settings.quick else CALIBRATION[0]
    calib = build_calibration(
        tokenizer,
        DataSource(path=str(folder / "train.txt")),
        num_samples=samples,
        max_seq_length=SEQ_LEN,
        seed=settings.seed,
        mode="chunk",
    )
    chis = (16,) if settings.quick else tuple(row["chi"] for row in PAPER["mpo"])
    methods = ("id", "svd") if settings.quick else METHODS
    rows = []
    for row in (r for r in PAPER["mpo"] if r["chi"] in chis):
        for label in methods:
            model, record = land_params(dense, calib.batches, label, row["params"], settings)
            if model is not None:
                metrics, _ = _evaluate(model, tokenizer, heldout, settings)
                record["metrics"] = metrics
            rows.append(
                {
                    "chi": row["chi"],
                    "goal_params": row["params"],
                    "paper_token_accuracy": row["token_accuracy"],
                    **record,
                }
            )
            log.info(
                "picogpt χ=%d %s: %s params, %s",
                row["chi"],
                label,
                record.get("params_after"),
                record.get("metrics", record.get("error")),
            )
    payload = {
        "suite": "picogpt",
        "quick": settings.quick,
        "paper": PAPER,
        "dense": {"params": _count(dense), "metrics": dense_metrics, "train": _train_facts(folder)},
        "settings": {
            "methods": methods,
            "chis": chis,
            "calibration_windows": samples,
            "seq_len": SEQ_LEN,
            "reference_seq_len": SEQ_LEN,
            "search": "bisection on the MAC target, closest whole-model params",
        },
        "rows": rows,
    }
    return [
        write_result(
            "picogpt_shakespeare",
            payload,
            seeds={"train": recipe.seed, "calibration": settings.seed},
            data_files=[text_path()],
            protocol={**protocol, "split": "held-out = last 10% of the characters"},
            results_dir=results_dir,
        )
    ]


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _train_facts(folder: Path) -> dict[str, Any]:
    import json

    stats = json.loads((folder / "train.json").read_text())
    return {k: v for k, v in stats.items() if k != "losses_every_50"} | {"cache": folder.name}


def _evaluate(
    model: Any, tokenizer: Any, data: Any, settings: Settings
) -> tuple[dict[str, float], dict[str, Any]]:
    from workers.evaluation import run_task

    options = {"seq_len": SEQ_LEN, "max_tokens": settings.picogpt_eval_chars, "batch_size": 16}
    result = run_task("perplexity", model, tokenizer, data=data, options=options, device=settings.device)
    return result.metrics, result.protocol


def land_params(
    dense: Any, batches: list[Any], label: str, goal: int, settings: Settings, iterations: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """Bisection on the MAC target for the compressed model whose parameter count is closest to `goal`.

    A target the engine cannot meet (BudgetInfeasible: the floor on kept widths) counts as too low.
    Returns (best model or None, its record with "search": every (target, params) tried).
    """
    lo, hi = 0.0, 1.0
    best: tuple[Any, dict[str, Any]] | None = None
    tried: list[dict[str, Any]] = []
    for _ in range(iterations or (4 if settings.quick else 12)):
        target = round((lo + hi) / 2, 5)
        model, record = compress_point(
            dense,
            batches,
            label=label,
            target=target,
            reference_seq_len=SEQ_LEN,
            device=settings.device,
            seed=settings.seed,
        )
        if model is None:
            tried.append({"target": target, "error": record["error"]})
            lo = target
            continue
        params = record["params_after"]
        tried.append({"target": target, "params": params})
        if best is None or abs(params - goal) < abs(best[1]["params_after"] - goal):
            best = (model, record)
        if abs(params - goal) <= 0.002 * goal:
            break
        lo, hi = (lo, target) if params > goal else (target, hi)
    if best is None:
        return None, {"method": label, "error": "no target in (0, 1] could be met", "search": tried}
    model, record = best
    return model, {**record, "search": tried, "params_gap": record["params_after"] - goal}
