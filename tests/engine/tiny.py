"""Tiny random models of every supported architecture, for the mathematics."""

from __future__ import annotations

import torch
import transformers

TINY = dict(hidden=32, heads=4, layers=2, inter=64, vocab=97)


def tiny_config(model_type: str) -> transformers.PretrainedConfig:
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
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
           "qwen2": transformers.Qwen2Config}[model_type]
    return cls(vocab_size=vocab, hidden_size=h, num_attention_heads=n, num_key_value_heads=2,
               num_hidden_layers=layers, intermediate_size=inter, max_position_embeddings=64)


MODEL_CLASSES = {
    "bert": "BertModel", "roberta": "RobertaForSequenceClassification", "distilbert": "DistilBertModel",
    "gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM", "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
}


def tiny_model(model_type: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    config.architectures = [MODEL_CLASSES[model_type]]
    model = getattr(transformers, MODEL_CLASSES[model_type])(config)
    return model.eval()


def batches(vocab: int = TINY["vocab"], n: int = 4, bs: int = 4, seq: int = 16, seed: int = 0,
            pad_tail: bool = False) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (bs, seq), generator=g)
        mask = torch.ones(bs, seq, dtype=torch.long)
        if pad_tail:
            mask[0, seq // 2:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out
