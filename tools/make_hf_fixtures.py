#!/usr/bin/env python3
"""make_hf_fixtures.py: tiny random transformers checkpoints for Frugal's import tests.

Writes tests/fixtures/hf_gpt2 (GPT2LMHeadModel), tests/fixtures/hf_llama
(LlamaForCausalLM) and tests/fixtures/hf_glm4_moe (Glm4MoeForCausalLM) with save_pretrained (config.json, generation_config.json,
model.safetensors), each with a byte-level tokenizer.json whose ids are the byte values
plus <|endoftext|> = 256 (Frugal's byte tokenizer), so `frugal train --tokenizer byte`
fine-tunes them. Every weight, norms and biases included, is random, so a wrong mapping
of any tensor shows in the logits. Seeded: rerunning writes the same weights for the
same torch version.

usage: /work/peers/venv/bin/python tools/make_hf_fixtures.py
"""
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Glm4MoeConfig, Glm4MoeForCausalLM, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")


def byte_tokenizer(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()  # the 256 byte-level characters
    # bytes_to_unicode order: byte b -> its character; ids = byte values
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    assert set(vocab) == set(alphabet)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(path)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def main():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      bos_token_id=256, eos_token_id=256, activation_function="gelu_new"))
    randomize(gpt2, 1)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                                         rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=256,
                                         eos_token_id=256))
    randomize(llama, 2)
    # the MoE class whose routing is Frugal's: sigmoid scores, a selection-only bias,
    # normalised top-K gates x routed_scaling_factor; full rotary, no QK norm
    glm = Glm4MoeForCausalLM(Glm4MoeConfig(vocab_size=257, hidden_size=32, intermediate_size=64,
                                           moe_intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=4, head_dim=8, max_position_embeddings=64,
                                           n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                                           first_k_dense_replace=1, routed_scaling_factor=2.0, n_group=1,
                                           topk_group=1, norm_topk_prob=True, use_qk_norm=False,
                                           partial_rotary_factor=1.0, attention_bias=False, rms_norm_eps=1e-5,
                                           tie_word_embeddings=False, bos_token_id=256, eos_token_id=256))
    randomize(glm, 3)
    with torch.no_grad():  # a buffer, not a parameter: give the selection bias values too
        for layer in glm.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.copy_(0.1 * torch.randn(4, generator=torch.Generator().manual_seed(4)))
    for name, m in (("hf_gpt2", gpt2), ("hf_llama", llama), ("hf_glm4_moe", glm)):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        m.save_pretrained(d, safe_serialization=True)
        byte_tokenizer(os.path.join(d, "tokenizer.json"))
        print(f"{d}: {sum(p.numel() for p in m.parameters())} parameters")


if __name__ == "__main__":
    main()
