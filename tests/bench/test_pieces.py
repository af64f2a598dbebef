"""The small pieces of bench/: command line, settings, scale sizes, the character model, parameter landing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run
from bench.common import RESULTS
from bench.settings import Settings


def test_quick_results_never_go_to_the_full_results_dir() -> None:
    assert run.results_dir_for(run.parse_args(["--quick"])) == RESULTS / "quick"
    assert run.results_dir_for(run.parse_args([])) == RESULTS
    assert run.results_dir_for(run.parse_args(["--quick", "--results-dir", "x"])) == Path("x").resolve()


def test_settings_from_the_command_line() -> None:
    quick = run.build_settings(run.parse_args(["--quick", "--models", "minilm,sst2", "--threads", "2"]))
    assert quick.quick and quick.models == ("minilm", "sst2") and quick.threads == 2
    assert run.build_settings(run.parse_args(["--quick"])).threads == 1
    full = run.build_settings(run.parse_args(["--max-params", "1e8"]))
    assert not full.quick and full.targets == (1.0, 0.9, 0.8, 0.7, 0.6, 0.5) and full.max_params == 1e8
    with pytest.raises(SystemExit, match="unknown suites: nope"):
        run.main(["--only", "quality,nope"])


def test_quick_is_a_subset_of_full() -> None:
    quick, full = Settings.quick_run(), Settings.full()
    assert set(quick.targets) <= set(full.targets) and set(quick.methods) <= set(full.methods)
    assert quick.samples_for(__import__("bench.settings").settings.MODELS["minilm"]) == 64


def _nominal(name: str) -> float:
    """The size a name promises: "20M" is 20e6 parameters, "0.5B" 5e8."""
    return float(name[:-1]) * {"M": 1e6, "B": 1e9}[name[-1]]


def test_scale_sizes_count_parameters_exactly() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.scale import SIZES

    for name, size in SIZES.items():
        config = LlamaConfig(
            vocab_size=size.vocab,
            hidden_size=size.hidden,
            intermediate_size=size.intermediate,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            num_key_value_heads=size.kv_heads,
            tie_word_embeddings=False,
        )
        with torch.device("meta"):
            model = LlamaForCausalLM(config)
        assert sum(p.numel() for p in model.parameters()) == size.params, name
    # the shapes named after real models have their published parameter counts
    assert SIZES["1B"].params == 1_100_048_384  # TinyLlama-1.1B
    assert SIZES["7B"].params == 6_738_415_616  # Llama-2-7B
    # every size is larger than the one before it, and about the size its name says
    params = [size.params for size in SIZES.values()]
    assert all(a < b for a, b in zip(params, params[1:], strict=False)), params
    ratios = {name: size.params / _nominal(name) for name, size in SIZES.items()}
    assert all(0.65 <= r <= 1.2 for r in ratios.values()), ratios


def test_char_tokenizer_is_one_id_per_character(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from bench.charlm import char_tokenizer, split_text

    text = "First Citizen:\nBefore we proceed,  hear me.\n\nAll:\nSpeak!"
    chars = sorted(set(text))
    tokenizer = char_tokenizer(chars)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert ids == [chars.index(c) for c in text]
    assert loaded.decode(ids) == text
    train, heldout = split_text(text, 0.1)
    assert train + heldout == text and len(heldout) == len(text) - int(len(text) * 0.9)


def test_picogpt_dense_shape_is_about_the_papers_size() -> None:
    from bench.charlm import CharRecipe, build_model
    from bench.picogpt import PAPER

    model = build_model(CharRecipe(), 65)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / PAPER["dense_params"] - 1) < 0.01


def test_land_params_finds_the_closest_count() -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.picogpt import land_params

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    ids = torch.randint(0, 50, (8, 32), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    dense = sum(p.numel() for p in model.parameters())
    goal = int(dense * 0.7)
    best, record = land_params(model, batches, "magnitude", goal, Settings(), iterations=10)
    assert best is not None and record["params_after"] == sum(p.numel() for p in best.parameters())
    tried = [t["params"] for t in record["search"] if "params" in t]
    assert abs(record["params_gap"]) == min(abs(p - goal) for p in tried)
    assert abs(record["params_gap"]) < 0.05 * goal
    assert sum(p.numel() for p in model.parameters()) == dense  # the dense model is left as it was
