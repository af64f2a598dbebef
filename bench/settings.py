"""What the benchmarks run: the models with their tasks and data, the methods, and full/quick settings.

Torch-free, so `bench.report` can read labels and bars without importing torch. Data paths are
relative to `workers.data.default_data_dir()` ($PARE_DATA_DIR).

MAC targets are the kept fraction of *block* MACs (Kwon et al. accounting, `workers/compression/macs.py`)
at the model's `reference_seq_len`, which is the calibration length (the service default).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# The id `pare models finetune-sst2` caches the fine-tuned classifier under
# (workers.evaluation.finetune.SST2_MODEL_ID; repeated here to keep this module torch-free).
SST2_MODEL_ID = "pare-local/all-MiniLM-L6-v2-sst2"


@dataclass(frozen=True)
class ModelBench:
    """One benchmarked model: how it is calibrated and evaluated."""

    key: str
    label: str
    model_id: str
    task: str  # an evaluation task of workers.evaluation.run_task
    metric: str  # the headline metric key of that task
    higher_is_better: bool
    eval_file: str
    calibration: str  # "FILE[:column]", relative to the data dir
    calib_mode: str  # workers.data.build_calibration mode
    num_samples: int
    max_seq_length: int
    eval_options: dict[str, Any] = field(default_factory=dict)
    extra_metrics: tuple[str, ...] = ()
    speed_target: float = 0.5  # the target of the speed suite
    latency_seq_len: int = 128

    @property
    def reference_seq_len(self) -> int:
        return self.max_seq_length


MODELS: dict[str, ModelBench] = {
    "minilm": ModelBench(
        key="minilm",
        label="all-MiniLM-L6-v2",
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        task="sts",
        metric="spearman",
        higher_is_better=True,
        eval_file="stsb/dev.tsv",
        calibration="stsb/train.tsv:sentence1",
        calib_mode="sentences",
        num_samples=256,
        max_seq_length=128,
    ),
    "sst2": ModelBench(
        key="sst2",
        label="MiniLM SST-2 classifier",
        model_id=SST2_MODEL_ID,
        task="classification",
        metric="accuracy",
        higher_is_better=True,
        eval_file="sst2/alps_dev_split.tsv",
        calibration="sst2/alps_train_split.tsv:sentence",
        calib_mode="sentences",
        num_samples=256,
        max_seq_length=128,
        extra_metrics=("macro_f1",),
    ),
    "smollm2": ModelBench(
        key="smollm2",
        label="SmolLM2-135M-Instruct",
        model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        task="perplexity",
        metric="perplexity",
        higher_is_better=False,
        eval_file="wikitext-2/test.txt",
        calibration="wikitext-2/valid.txt",
        calib_mode="chunk",
        num_samples=64,
        max_seq_length=256,
        eval_options={"seq_len": 512, "max_tokens": 16384},
        extra_metrics=("token_accuracy",),
        speed_target=0.7,
        latency_seq_len=256,
    ),
}

# label -> (engine method, params). "svd-aa" is SVD-LLM-style whitened SVD; "svd" is plain truncation.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "id": ("id", {}),
    "svd-aa": ("svd", {"activation_aware": True}),
    "svd": ("svd", {"activation_aware": False}),
    "magnitude": ("magnitude", {}),
}
METHOD_LABELS = {
    "id": "ID (STAT)",
    "svd-aa": "SVD, activation-aware",
    "svd": "SVD, plain",
    "magnitude": "magnitude",
}
# The factorization families (issue 10), each activation-aware by default and plain as an ablation.
FACTOR_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "block_lowrank": ("block_lowrank", {}),
    "monarch": ("monarch", {}),
    "mpo": ("mpo", {}),
    "block_lowrank-plain": ("block_lowrank", {"activation_aware": False}),
    "monarch-plain": ("monarch", {"activation_aware": False}),
    "mpo-plain": ("mpo", {"activation_aware": False}),
}
METHOD_LABELS.update({
    "block_lowrank": "block low rank, activation-aware",
    "monarch": "Monarch, activation-aware",
    "mpo": "MPO (tensor train), activation-aware",
    "block_lowrank-plain": "block low rank, plain",
    "monarch-plain": "Monarch, plain",
    "mpo-plain": "MPO, plain",
})
SUITES = ("quality", "speed", "latency", "scale", "picogpt", "factorizations", "picogpt_mpo")


@dataclass(frozen=True)
class Settings:
    """Every knob of a run; `full()` is the manual run, `quick()` the CI subset (a few minutes)."""

    quick: bool = False
    models: tuple[str, ...] = ("minilm", "sst2", "smollm2")
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; quick: 1 (OpenMP spin-waits on a shared CPU)
    # quality
    targets: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
    methods: tuple[str, ...] = tuple(METHODS)
    num_samples: int | None = None  # None: the model's own calibration size
    eval_limit: int | None = None  # first N rows of a labeled eval file
    eval_max_tokens: int | None = None  # caps a perplexity eval's max_tokens
    ablation_models: tuple[str, ...] = ("minilm", "sst2")
    ablation_targets: tuple[float, ...] = (0.7, 0.5)
    ablation_samples: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    ablation_variants: tuple[str, ...] = ("unstaged", "uniform", "no_heads")
    # speed
    speed_methods: tuple[str, ...] = tuple(METHODS)
    # latency
    latency_methods: tuple[str, ...] = tuple(METHODS)
    latency_targets: tuple[float, ...] = (0.7, 0.5)
    latency_batches: tuple[int, ...] = (1, 8)
    latency_iters: int = 10  # at least; and at least latency_min_seconds of timed runs per model
    latency_min_seconds: float = 3.0
    # scale
    scale_sizes: tuple[str, ...] = ("20M", "50M", "100M", "200M")
    scale_gpu_sizes: tuple[str, ...] = ("0.5B", "1B", "3B", "7B")
    scale_calibration: tuple[int, int] = (32, 128)  # samples x tokens of random ids
    max_params: float | None = None
    scale_methods: tuple[str, ...] = ("id", "svd-aa")
    scale_job_timeout: float | None = None  # seconds per scale job; a job past it is recorded as an error
    # factorizations: each family beside id and svd-aa, with the artifact's latency and compression time
    factor_models: tuple[str, ...] = ("minilm", "sst2", "smollm2")
    factor_methods: tuple[str, ...] = ("id", "svd-aa", "block_lowrank", "monarch", "mpo")
    factor_targets: tuple[float, ...] = (0.9, 0.7, 0.5)
    factor_ablations: tuple[str, ...] = ("block_lowrank-plain", "monarch-plain", "mpo-plain")
    factor_ablation_models: tuple[str, ...] = ("minilm",)
    factor_latency_batches: tuple[int, ...] = (8,)
    factor_measure: bool = True  # False: a targets check (MACs, the artifact reload), no metric, no latency
    # picogpt
    picogpt_steps: int | None = None  # None: the recipe's steps
    picogpt_eval_chars: int | None = None  # None: the whole held-out split

    @classmethod
    def full(cls, **overrides: Any) -> Settings:
        return replace(cls(), **overrides)

    @classmethod
    def quick_run(cls, **overrides: Any) -> Settings:
        quick = cls(
            quick=True,
            threads=1,
            models=("minilm",),
            targets=(0.5,),
            num_samples=64,
            eval_limit=300,
            eval_max_tokens=2048,
            ablation_models=("minilm",),
            ablation_targets=(0.5,),
            ablation_samples=(32,),
            ablation_variants=("unstaged",),
            speed_methods=("id",),
            latency_methods=("id",),
            latency_targets=(0.5,),
            latency_iters=5,
            latency_min_seconds=0.5,
            scale_sizes=("1M", "4M"),
            scale_gpu_sizes=("1M", "4M"),
            scale_calibration=(8, 64),
            factor_models=("minilm",),
            factor_methods=("block_lowrank", "monarch", "mpo"),
            factor_targets=(0.5,),
            factor_ablations=(),
            picogpt_steps=30,
            picogpt_eval_chars=20000,
        )
        return replace(quick, **overrides)

    def samples_for(self, bench: ModelBench) -> int:
        return self.num_samples or bench.num_samples
