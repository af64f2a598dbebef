"""Scale: compression time and peak memory of `id` and activation-aware `svd` at MAC 0.5 on randomly
initialised Llama-shaped models of growing size, with a fixed calibration budget.

Random weights are fine here: the cost of the algorithms depends on the shapes (widths, layers,
calibration tokens), not on what the weights learned. Calibration is `samples x tokens` seeded
random token ids. Each (size, method) runs in a fresh process (`bench.jobs`) so its peak memory is
its own. The report fits time ∝ params^a by least squares on log-log.

Sizes on the CPU go to about 200M parameters; on a GPU (`--device cuda`) to about 7B. `--max-params`
drops the larger ones. Writes bench/results/scale_llama.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.jobs import cuda_peak_mb, peak_rss_mb, run_in_subprocess
from bench.settings import Settings

log = logging.getLogger(__name__)

METHODS = ("id", "svd-aa")
TARGET = 0.5


@dataclass(frozen=True)
class LlamaSize:
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def params(self) -> int:
        """Parameter count of LlamaForCausalLM with untied embeddings (exact, no instantiation)."""
        h, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        block = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate + 2 * h
        return self.layers * block + 2 * self.vocab * h + h

    @property
    def block_params(self) -> int:
        h, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        return self.layers * (2 * h * h + 2 * h * kv + 3 * h * self.intermediate)


SIZES: dict[str, LlamaSize] = {
    "1M": LlamaSize(128, 2, 384, 4, 2, 1024),
    "4M": LlamaSize(256, 4, 768, 4, 2, 1024),
    "20M": LlamaSize(384, 8, 1024, 6, 2, 8192),
    "50M": LlamaSize(512, 12, 1536, 8, 4, 8192),
    "100M": LlamaSize(768, 14, 2048, 12, 4, 8192),
    "200M": LlamaSize(1024, 16, 2816, 16, 4, 8192),
    "0.5B": LlamaSize(1536, 20, 4096, 16, 4, 32000),
    "1B": LlamaSize(2048, 22, 5632, 32, 4, 32000),  # TinyLlama-1.1B's shape
    "3B": LlamaSize(3200, 26, 8640, 32, 32, 32000),  # OpenLLaMA-3B's shape
    "7B": LlamaSize(4096, 32, 11008, 32, 32, 32000),  # Llama-2-7B's shape
}


def run(settings: Settings, results_dir: Path) -> list[Path]:
    names = settings.scale_gpu_sizes if settings.device.startswith("cuda") else settings.scale_sizes
    if settings.max_params:
        names = tuple(n for n in names if SIZES[n].params <= settings.max_params)
    samples, tokens = settings.scale_calibration
    records = []
    for name in names:
        for label in METHODS:
            job = {
                "size": name,
                "method": label,
                "target": TARGET,
                "samples": samples,
                "tokens": tokens,
                "device": settings.device,
                "seed": settings.seed,
                "threads": settings.threads,
            }
            log.info("scale job %s (%d params)", job, SIZES[name].params)
            records.append(run_in_subprocess("scale", job))
            log.info(
                "-> %.1f s, peak %.0f MiB",
                records[-1].get("seconds", float("nan")),
                records[-1].get("peak_rss_mb_compress", float("nan")),
            )
    payload = {
        "suite": "scale",
        "quick": settings.quick,
        "settings": {
            "sizes": {n: {**asdict(SIZES[n]), "params": SIZES[n].params} for n in names},
            "methods": METHODS,
            "target": TARGET,
            "calibration_samples": samples,
            "calibration_tokens": tokens,
            "device": settings.device,
            "threads": settings.threads,
        },
        "jobs": records,
    }
    protocol = {
        "models": "LlamaForCausalLM, random init (torch.manual_seed), float32, untied embeddings",
        "calibration": f"{samples} x {tokens} random token ids (seeded)",
        "time": "engine wall time (capture + planning + compression); model build excluded",
        "peak_memory": "ru_maxrss of the job process after compression (includes the model), MiB",
        "fit": "least squares of log(seconds) on log(params): seconds ∝ params^a",
    }
    return [
        write_result(
            "scale_llama",
            payload,
            seeds={"init": settings.seed, "calibration": settings.seed},
            protocol=protocol,
            results_dir=results_dir,
        )
    ]


def random_batches(
    vocab: int, samples: int, tokens: int, seed: int, batch_size: int = 16
) -> list[dict[str, Any]]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (samples, tokens), generator=gen)
    return [
        {"input_ids": ids[i : i + batch_size], "attention_mask": torch.ones_like(ids[i : i + batch_size])}
        for i in range(0, samples, batch_size)
    ]


def scale_job(job: dict[str, Any]) -> dict[str, Any]:
    """The child side: build the random model on the device, compress it in place, report."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.harness import compress_point

    size, device = SIZES[job["size"]], job["device"]
    config = LlamaConfig(
        vocab_size=size.vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=max(2048, job["tokens"]),
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],  # so the whole-model MAC figure counts the LM head
    )
    start = time.perf_counter()
    torch.manual_seed(job["seed"])
    with torch.device(device):
        model = LlamaForCausalLM(config).eval()
    build_seconds = time.perf_counter() - start
    rss_built = peak_rss_mb()
    batches = random_batches(size.vocab, job["samples"], job["tokens"], job["seed"])
    _, record = compress_point(
        model,
        batches,
        label=job["method"],
        target=job["target"],
        reference_seq_len=job["tokens"],
        device=device,
        seed=job["seed"],
        in_place=True,
    )
    timings = record.get("timings", {})
    return {
        **job,
        **{k: v for k, v in record.items() if k != "layers"},
        "block_params": size.block_params,
        "build_seconds": build_seconds,
        "capture_seconds": timings.get("capture", 0.0),
        "decomposition_seconds": timings.get("total", 0.0) - timings.get("capture", 0.0),
        "peak_rss_mb_built": rss_built,
        "peak_rss_mb_compress": peak_rss_mb(),
        "cuda_peak_mb": cuda_peak_mb(device),
    }
