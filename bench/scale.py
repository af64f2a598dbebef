"""Scale: compression time and peak memory of `id` and activation-aware `svd` at MAC 0.5 on randomly
initialised Llama-shaped models of growing size, with a fixed calibration budget.

Random weights are fine here: the cost of the algorithms depends on the shapes (widths, layers,
calibration tokens), not on what the weights learned. Calibration is `samples x tokens` seeded
random token ids. Each (size, method) runs in a fresh process (`bench.jobs`) so its peak memory is
its own. The report fits time ∝ params^a by least squares on log-log.

Sizes on the CPU go to about 200M parameters; on a GPU (`--device cuda`) to about 7B. `--max-params`
drops the larger ones. On a GPU each job also times a prefill forward pass of the dense and of the
compressed model (CUDA events, fp32 as compressed, and bf16 as served) and names the device. Jobs run
method by method, smallest size first, and the result file is rewritten after every job, so a run cut
short keeps what finished. Writes bench/results/scale_llama.json (scale_llama_cuda.json on a GPU).
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

TARGET = 0.5
LATENCY_BATCH, LATENCY_SEQ, LATENCY_ITERS = 1, 2048, 10


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
    records: list[dict[str, Any]] = []
    cuda = settings.device.startswith("cuda")
    paths: list[Path] = []
    for label in settings.scale_methods:
        for name in names:
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
            records.append(run_in_subprocess("scale", job, timeout=settings.scale_job_timeout))
            log.info(
                "-> %.1f s, peak %.0f MiB",
                records[-1].get("seconds", float("nan")),
                records[-1].get("peak_rss_mb_compress", float("nan")),
            )
            paths = [_write(settings, names, records, results_dir, cuda)]
    return paths


def _write(
    settings: Settings, names: tuple[str, ...], records: list[dict[str, Any]], results_dir: Path, cuda: bool
) -> Path:
    samples, tokens = settings.scale_calibration
    payload = {
        "suite": "scale",
        "quick": settings.quick,
        "settings": {
            "sizes": {n: {**asdict(SIZES[n]), "params": SIZES[n].params} for n in names},
            "methods": settings.scale_methods,
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
    if cuda:
        protocol["latency"] = (
            f"prefill forward of batch {LATENCY_BATCH} x {LATENCY_SEQ} tokens, median of "
            f"{LATENCY_ITERS} timed runs after 3 warm-ups (CUDA events), dense then compressed, fp32 and bf16"
        )
    return write_result(
        "scale_llama_cuda" if cuda else "scale_llama",
        payload,
        seeds={"init": settings.seed, "calibration": settings.seed},
        protocol=protocol,
        results_dir=results_dir,
    )


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
    cuda = device.startswith("cuda")
    dense_ms = cuda_latency_ms(model, size.vocab) if cuda else {}
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
        **(
            {
                "gpu": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "latency_ms_dense": dense_ms,
                "latency_ms_compressed": cuda_latency_ms(model, size.vocab),
            }
            if cuda
            else {}
        ),
    }


def cuda_latency_ms(model: Any, vocab: int) -> dict[str, float]:
    """Median prefill latency (ms) of `model` on its CUDA device in fp32 and in bf16 (the model is
    cast back to fp32 after), timed with CUDA events."""
    import torch

    ids = torch.randint(0, vocab, (LATENCY_BATCH, LATENCY_SEQ), device="cuda")
    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(dtype)
        times = []
        with torch.inference_mode():
            for i in range(3 + LATENCY_ITERS):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
                end.record()
                torch.cuda.synchronize()
                if i >= 3:
                    times.append(start.elapsed_time(end))
        out[name] = float(sorted(times)[len(times) // 2])
    model.to(torch.float32)
    return out
