"""Tiny tokenizers and random models built in a few milliseconds, for tests that must not need a hub."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a man is playing a guitar on the street",
    "hello world, this is a test of the tiny tokenizer.",
    "it was the best of times, it was the worst of times",
    "stocks fell sharply today as markets reacted to the news",
]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
WORDS = sorted({w.strip(".,") for line in CORPUS for w in line.split()})


def bert_tokenizer():
    """A WordPiece tokenizer: corpus words plus single characters, so any lowercase text encodes."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?'-", *LETTERS]
    vocab += [f"##{c}" for c in LETTERS] + [w for w in WORDS if w not in vocab]
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})


def bpe_tokenizer(vocab_size: int = 300):
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


def save_tiny_llama(folder: Path, *, layers: int = 2, hidden: int = 32) -> Path:
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
    LlamaForCausalLM(config).save_pretrained(folder)
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
