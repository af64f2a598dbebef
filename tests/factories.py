"""Test data, in one place: tiny random models and tokenizers, text files, compressed artifacts,
datasets, API keys and job requests.

Tests import their data from here, never from another test module. Everything is built in
milliseconds to a few seconds, offline, and deterministically (fixed seeds). torch and transformers
are imported inside the builders that need them, so the service tests stay light.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    import torch
    import transformers

# --------------------------------------------------------------------------------------------------
# Tiny random models of every supported architecture, in memory (the engine's mathematics)

TINY = dict(hidden=32, heads=4, layers=2, inter=64, vocab=97)

MODEL_CLASSES = {
    "bert": "BertModel", "roberta": "RobertaForSequenceClassification", "distilbert": "DistilBertModel",
    "gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM", "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
    "gemma": "GemmaForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
}


def tiny_config(model_type: str) -> transformers.PretrainedConfig:
    import transformers

    h, n, layers, inter, vocab = (TINY[k] for k in ("hidden", "heads", "layers", "inter", "vocab"))
    if model_type in ("bert", "roberta"):
        cls = transformers.BertConfig if model_type == "bert" else transformers.RobertaConfig
        return cls(vocab_size=vocab, hidden_size=h, num_attention_heads=n, num_hidden_layers=layers,
                   intermediate_size=inter, max_position_embeddings=64, pad_token_id=1)
    if model_type == "distilbert":
        return transformers.DistilBertConfig(vocab_size=vocab, dim=h, n_heads=n, n_layers=layers,
                                             hidden_dim=inter, max_position_embeddings=64)
    if model_type == "gpt2":
        return transformers.GPT2Config(vocab_size=vocab, n_embd=h, n_head=n, n_layer=layers, n_inner=inter,
                                       n_positions=64)
    if model_type == "opt":
        return transformers.OPTConfig(vocab_size=vocab, hidden_size=h, num_attention_heads=n,
                                      num_hidden_layers=layers, ffn_dim=inter, max_position_embeddings=64,
                                      word_embed_proj_dim=h)
    if model_type in ("qwen3", "gemma", "gemma3_text"):
        return _tiny_head_dim_config(model_type)
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
           "qwen2": transformers.Qwen2Config}[model_type]
    return cls(vocab_size=vocab, hidden_size=h, num_attention_heads=n, num_key_value_heads=2,
               num_hidden_layers=layers, intermediate_size=inter, max_position_embeddings=64)


def _tiny_head_dim_config(model_type: str) -> transformers.PretrainedConfig:
    """Qwen3 and the Gemmas with head_dim 16, not hidden/heads = 8; Gemma3 with soft-capped final
    logits and a sliding-window layer (window 6, shorter than the test sequences) beside a full one."""
    import transformers

    common = dict(vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], num_attention_heads=TINY["heads"],
                  num_key_value_heads=2, head_dim=16, num_hidden_layers=TINY["layers"],
                  intermediate_size=TINY["inter"], max_position_embeddings=64)
    if model_type == "qwen3":
        return transformers.Qwen3Config(**common)
    if model_type == "gemma":
        return transformers.GemmaConfig(**common)
    return transformers.Gemma3TextConfig(**common, sliding_window=6, final_logit_softcapping=30.0,
                                         layer_types=["sliding_attention", "full_attention"],
                                         query_pre_attn_scalar=16)


def tiny_model(model_type: str, seed: int = 0) -> torch.nn.Module:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = tiny_config(model_type)
    config.architectures = [MODEL_CLASSES[model_type]]
    model = getattr(transformers, MODEL_CLASSES[model_type])(config)
    return model.eval()


def batches(vocab: int = TINY["vocab"], n: int = 4, bs: int = 4, seq: int = 16, seed: int = 0,
            pad_tail: bool = False) -> list[dict[str, torch.Tensor]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (bs, seq), generator=g)
        mask = torch.ones(bs, seq, dtype=torch.long)
        if pad_tail:
            mask[0, seq // 2:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


# --------------------------------------------------------------------------------------------------
# Tiny tokenizers and saved random models (evaluation, data, CLI; no hub needed)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a man is playing a guitar on the street",
    "hello world, this is a test of the tiny tokenizer.",
    "it was the best of times, it was the worst of times",
    "stocks fell sharply today as markets reacted to the news",
]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
WORDS = sorted({w.strip(".,") for line in CORPUS for w in line.split()})


def bert_tokenizer():  # type: ignore[no-untyped-def]
    """A WordPiece tokenizer: corpus words plus single characters, so any lowercase text encodes."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?'-", *LETTERS]
    vocab += [f"##{c}" for c in LETTERS] + [w for w in WORDS if w not in vocab]
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})


def bpe_tokenizer(vocab_size: int = 300):  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer with an eos token and no pad token (like GPT-2 and Llama)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def save_tiny_llama(folder: Path, *, layers: int = 2, hidden: int = 32, trained_steps: int = 0) -> Path:
    """A tiny Llama (GQA) and its BPE tokenizer; `trained_steps` of Adam on CORPUS make its
    perplexity mean something (compression then costs quality, as on a real model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if trained_steps:
        ids = torch.tensor(tokenizer("\n".join(CORPUS * 8))["input_ids"])
        windows = ids[: len(ids) // 32 * 32].view(-1, 32)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(trained_steps):
            batch = windows[torch.randint(len(windows), (8,), generator=torch.Generator().manual_seed(step))]
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = bpe_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path, *, head: bool = False, layers: int = 2, hidden: int = 32) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tokenizer = bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config) if head else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_compressed_artifact(
    model_dir: Path, out_dir: Path, *, method: str = "id", mac_target: float = 0.5, seq_len: int = 16
) -> tuple[Path, dict[str, Any]]:
    """Compress the saved model in `model_dir` through the engine, calibrated on CORPUS cut into
    `seq_len`-token windows, and write a real artifact (`save_compressed`, source `model_dir`);
    returns (artifact dir, engine report)."""
    import torch

    from workers.compression.artifacts import save_compressed
    from workers.compression.engine import CompressionSpec, compress
    from workers.models import load_model

    model, tokenizer = load_model(str(model_dir))
    ids = tokenizer("\n".join(CORPUS * 8), add_special_tokens=False)["input_ids"]
    windows = torch.tensor(ids[: len(ids) // seq_len * seq_len]).view(-1, seq_len)
    data = [{"input_ids": chunk, "attention_mask": torch.ones_like(chunk)} for chunk in windows.split(8)]
    torch.manual_seed(0)
    report = compress(model, data, CompressionSpec(method, mac_target, seq_len))
    out = save_compressed(model, tokenizer, out_dir, report, source={"model_id": str(model_dir)})
    return out, report


# --------------------------------------------------------------------------------------------------
# Text files

def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """One document per line, newline-terminated; parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_corpus(path: Path, repeat: int = 40) -> Path:
    """CORPUS repeated: text that the tiny tokenizers encode compactly (calibration, perplexity)."""
    return write_lines(path, CORPUS * repeat)


def word_lines(n_lines: int, offset: int = 0, words: list[str] | None = None) -> list[str]:
    """Deterministic sentences of corpus words (8 to 13 words each), different for each offset."""
    words = words or WORDS
    return [
        " ".join(words[(offset + i * 5 + j * 7) % len(words)] for j in range(8 + i % 6)) + "."
        for i in range(n_lines)
    ]


# --------------------------------------------------------------------------------------------------
# The service's models (placed in a temporary HF cache under these hub ids) and datasets

TINY_BERT = "pare-test/tiny-bert"
AUTO_MAP = "pare-test/auto-map"
PICKLE_ONLY = "pare-test/pickle-only"
SERVICE_WORDS = (
    "the a is of and to in model data text compression layer head neuron rank budget small fast slow "
    "good bad token sentence word cat dog runs jumps over under river mountain city light dark"
).split()


def make_tiny_bert(dest: Path) -> Path:
    """A random 2-layer BERT (hidden 32, 4 heads) with a word-level vocab, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    dest.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SERVICE_WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores `vocab_file` here (an empty vocab: every word [UNK]); the mapping it reads
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(dest)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest)
    return dest


class _Sentinel:
    """Unpickling this creates a file: proof that a pickle was opened."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def make_bad_models(root: Path, tiny: Path, sentinel: Path) -> tuple[Path, Path]:
    """A copy of tiny with auto_map in its config, and a folder with only a booby-trapped pickle."""
    auto = root / "auto-map"
    auto.mkdir(parents=True, exist_ok=True)
    config = json.loads((tiny / "config.json").read_text())
    (auto / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "evil.EvilModel"}}))
    (auto / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    pkl = root / "pickle-only"
    pkl.mkdir(parents=True, exist_ok=True)
    (pkl / "config.json").write_text(json.dumps(config))
    with (pkl / "pytorch_model.bin").open("wb") as fh:
        pickle.dump(_Sentinel(str(sentinel)), fh)
    return auto, pkl


def calibration_lines(n: int = 64) -> str:
    """JSONL calibration data (`text`) of SERVICE_WORDS, which the tiny BERT's vocab covers."""
    lines = []
    for i in range(n):
        words = [SERVICE_WORDS[(i * 7 + j * 3) % len(SERVICE_WORDS)] for j in range(6 + i % 5)]
        lines.append(json.dumps({"text": " ".join(words)}))
    return "\n".join(lines) + "\n"


def upload_dataset(client: httpx.Client, content: bytes = b"text\n", name: str = "c.txt") -> str:
    """POST /v1/datasets; returns the new dataset's id."""
    response = client.post("/v1/datasets", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --------------------------------------------------------------------------------------------------
# API keys and job requests

def make_key(settings, tenant: str) -> str:  # type: ignore[no-untyped-def]
    """A new API key for `tenant` (created if absent), written straight to the database."""
    from app.db.engine import session_scope
    from app.services import keys

    with session_scope(settings.database_url) as session:
        _, key = keys.create_key(session, tenant_name=tenant)
    return key


def job_body(dataset: str, **overrides) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """A POST /v1/jobs body: the tiny BERT to half its MACs with `id`, 16 samples of 32 tokens."""
    body = {
        "model": {"id": TINY_BERT},
        "method": {"name": "id"},
        "target": {"mac_ratio": 0.5},
        "calibration": {"dataset": dataset, "num_samples": 16, "max_seq_length": 32},
        "evaluation": [],
    }
    body.update(overrides)
    return body


def insert_queued(settings, client: httpx.Client, dataset: str, **overrides) -> str:  # type: ignore[no-untyped-def]
    """A job inserted through the service layer without publishing it (no worker will take it)."""
    from app.db.engine import session_scope
    from app.schemas import JobRequest
    from app.services import jobs
    from app.services.keys import authenticate

    with session_scope(settings.database_url) as session:
        tenant = authenticate(session, key=client.headers["authorization"].split()[1])
        job = jobs.create_job(
            session,
            tenant_id=tenant.id,
            request=JobRequest.model_validate(job_body(dataset, **overrides)),
            settings=settings,
        )
        return job.id
