"""Issue 3's evaluation bars on the real models, written to bench/results/eval_baselines.json.

    python bench/eval_baselines.py [--only sts,perplexity,classification,latency]

Bars:
- sts: all-MiniLM-L6-v2, STS-B dev (GLUE dev.tsv), Spearman 0.867 +- 0.002 (sentence-transformers' figure)
- perplexity: SmolLM2-135M-Instruct (GGUF Q4_1 dequantized), WikiText-2 test, first 16,384 tokens,
  non-overlapping 512-token windows: within 2% of 24.9
- classification: the fine-tuned SST-2 classifier (`pare models finetune-sst2`), alps_dev_split.tsv >= 0.85
- latency: dense all-MiniLM-L6-v2 against a second copy of itself, speed-up within 0.9-1.1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from workers.data import DataSource, default_data_dir  # noqa: E402

log = logging.getLogger("eval_baselines")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _task(task: str, model_id: str, data: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    from workers.evaluation import run_task
    from workers.models import load_model

    model, tokenizer = load_model(model_id)
    source = DataSource(path=str(data)) if data else None
    result = run_task(task, model, tokenizer, data=source, options=options, device="cpu")
    return {"model": model_id, **result.metrics, "protocol": result.protocol}


def sts(data: Path) -> dict[str, Any]:
    out = _task("sts", MINILM, data / "stsb" / "dev.tsv", {})
    return {**out, "bar": "0.867 +- 0.002", "pass": abs(out["spearman"] - 0.867) <= 0.002}


def perplexity(data: Path) -> dict[str, Any]:
    out = _task(
        "perplexity", SMOLLM2, data / "wikitext-2" / "test.txt", {"seq_len": 512, "max_tokens": 16384}
    )
    return {**out, "bar": "within 2% of 24.9", "pass": abs(out["perplexity"] / 24.9 - 1) <= 0.02}


def classification(data: Path) -> dict[str, Any]:
    from workers.evaluation.finetune import SST2_MODEL_ID, FinetuneRecipe, finetune_sst2

    folder = finetune_sst2(FinetuneRecipe(), threads=1)  # one thread: faster on a shared CPU
    out = _task("classification", SST2_MODEL_ID, data / "sst2" / "alps_dev_split.tsv", {})
    finetune = json.loads((folder / "finetune.json").read_text())
    return {**out, "finetune": finetune, "bar": ">= 0.85", "pass": out["accuracy"] >= 0.85}


def latency(data: Path) -> dict[str, Any]:
    from workers.evaluation import compare_latency
    from workers.models import load_model

    first, _ = load_model(MINILM)
    second, _ = load_model(MINILM)
    out = compare_latency(first, second, batch_size=8, seq_len=128, device="cpu", iters=30, min_seconds=3.0)
    return {"model": MINILM, **out, "bar": "speedup within 0.9-1.1", "pass": 0.9 <= out["speedup"] <= 1.1}


BARS = {"sts": sts, "perplexity": perplexity, "classification": classification, "latency": latency}
FILES = {
    "sts": ["stsb/dev.tsv"],
    "perplexity": ["wikitext-2/test.txt"],
    "classification": ["sst2/alps_train_split.tsv", "sst2/alps_dev_split.tsv"],
    "latency": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BARS), help="comma-separated subset of " + ", ".join(BARS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from workers.models import import_bundled

    import_bundled()
    data = default_data_dir()
    results: dict[str, Any] = {}
    for name in args.only.split(","):
        start = time.perf_counter()
        results[name] = {**BARS[name](data), "seconds": time.perf_counter() - start}
        log.info(
            "%s: %s", name, {k: v for k, v in results[name].items() if k not in ("protocol", "finetune")}
        )
    files = [data / f for name in results for f in FILES[name]]
    out = write_result(
        "eval_baselines",
        {"results": results, "all_pass": all(r["pass"] for r in results.values())},
        seeds={"latency_inputs": 0, "finetune": 0},
        data_files=files,
        protocol={"device": "cpu", "note": "per-bar protocols are under results.<bar>.protocol"},
    )
    print(out)


if __name__ == "__main__":
    main()
