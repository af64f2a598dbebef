"""The engine on a CUDA device: the same compression as on the CPU, on every architecture and the
three core methods, with the model resident on the GPU and with its blocks kept on the CPU (the
path a model larger than the GPU takes); artifacts written from a GPU run reload on the CPU.

Selected with `-m gpu` and skipped where torch sees no CUDA device (the CI machines); run on a lent
GPU machine by `scripts/gpu_check.sh`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.factories import MODEL_CLASSES, batches, tiny_model
from workers.compression.artifacts import load_compressed, save_compressed
from workers.compression.engine import TOLERANCE, CompressionSpec, compress

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TARGET = 0.5
SEQ = 16


def _output(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(**{k: v.to(device) for k, v in batch.items()})
    main = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    return main.float().cpu()


def _kept(report: dict) -> list[dict]:
    keys = ("heads", "kv_heads", "neurons", "ranks")
    return [{k: layer[k] for k in keys if k in layer} for layer in report["layers"]]


def _relative(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm())


@pytest.fixture(autouse=True)
def _exact_matmuls():
    """fp32 matmuls without TF32, so CPU and GPU compute the same statistics to rounding."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("method", ["id", "svd", "magnitude"])
@pytest.mark.parametrize("arch", sorted(MODEL_CLASSES))
def test_cuda_compression_equals_cpu_compression(arch: str, method: str) -> None:
    dense = tiny_model(arch)
    data = batches()
    spec = CompressionSpec(method, TARGET, SEQ, {})
    on_cpu = copy.deepcopy(dense)
    cpu_report = compress(on_cpu, data, spec, device="cpu")
    on_gpu = copy.deepcopy(dense)
    gpu_report = compress(on_gpu, data, spec, device="cuda")

    assert next(on_gpu.parameters()).is_cuda  # a tiny model stays resident on the GPU
    assert gpu_report["macs"]["mac_ratio"] <= TARGET + TOLERANCE
    assert gpu_report["macs"]["mac_ratio"] == pytest.approx(cpu_report["macs"]["mac_ratio"], abs=1e-9)
    assert _kept(gpu_report) == _kept(cpu_report)
    for batch in data:
        ref = _output(dense, batch)
        cpu_out, gpu_out = _output(on_cpu, batch), _output(on_gpu, batch)
        assert _relative(gpu_out, cpu_out) < 1e-4, "GPU and CPU compressions compute different models"
        assert _relative(gpu_out, ref) == pytest.approx(_relative(cpu_out, ref), abs=1e-4)


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_blocks_kept_on_the_cpu_visit_the_gpu_one_at_a_time(
    arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that does not fit (free memory reported below twice its size) stays on the CPU and is
    compressed block by block on the GPU, to the same model as a resident one."""
    dense = tiny_model(arch)
    data = batches()
    spec = CompressionSpec("id", TARGET, SEQ, {})
    resident = copy.deepcopy(dense)
    compress(resident, data, spec, device="cuda")
    size = sum(p.numel() * p.element_size() for p in dense.parameters())
    total = torch.cuda.mem_get_info()[1]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *_: (size, total))
    offloaded = copy.deepcopy(dense)
    report = compress(offloaded, data, spec, device="cuda")

    assert report["macs"]["mac_ratio"] <= TARGET + TOLERANCE
    assert all(not p.is_cuda for p in offloaded.parameters()), "the blocks must go back to the CPU"
    for batch in data:
        assert _relative(_output(offloaded, batch), _output(resident, batch)) < 1e-4


@pytest.mark.parametrize("method", ["id", "svd"])
def test_artifact_of_a_gpu_compression_reloads_on_the_cpu(method: str, tmp_path: Path) -> None:
    dense = tiny_model("llama")
    data = batches()
    model = copy.deepcopy(dense)
    report = compress(model, data, CompressionSpec(method, TARGET, SEQ, {}), device="cuda")
    out = save_compressed(model, None, tmp_path / "artifact", report, source={"model_id": "tiny"})
    loaded, _ = load_compressed(out, with_tokenizer=False)
    assert all(not p.is_cuda for p in loaded.parameters())
    for batch in data:
        torch.testing.assert_close(_output(loaded, batch), _output(model, batch), atol=1e-5, rtol=1e-5)
