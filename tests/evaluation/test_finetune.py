"""Fine-tuning helpers: length-grouped batches and the learning-rate schedule."""

from __future__ import annotations

import torch

from workers.evaluation.base import torch_threads
from workers.evaluation.finetune import _schedule, length_grouped_batches


def test_length_grouped_batches_cover_every_example_once_and_are_seeded() -> None:
    texts = ["x" * (i % 37) for i in range(1000)]
    batches = length_grouped_batches(texts, 32, torch.Generator().manual_seed(0), group=5)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    spread = [max(len(texts[i]) for i in b) - min(len(texts[i]) for i in b) for b in batches]
    assert sum(spread) / len(spread) < 10  # random batches would spread over about 35 characters
    again = length_grouped_batches(texts, 32, torch.Generator().manual_seed(0), group=5)
    assert again == batches


def test_linear_warmup_then_linear_decay() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = _schedule(optimizer, total=10, warmup=2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert (
        rates[:3] == [0.5, 1.0, 1.0]
        and rates[-1] == 0.125
        and rates == sorted(rates[:2]) + sorted(rates[2:], reverse=True)
    )


def test_torch_threads_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
