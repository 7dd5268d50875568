#!/usr/bin/env python3
"""tests/ref/train/peft_fixture.py — write tests/data/lora/peft_fixture with HF PEFT itself.

Owner: train. A tiny LlamaForCausalLM (hidden 24, intermediate 40, 3 layers, 4 heads, 2 kv
heads, vocab 50) gets a LoraConfig(r=2, lora_alpha=4, target q_proj+v_proj); every LoRA
tensor is set to k/100 for its k-th element (row-major) and PEFT's save_pretrained writes the
directory. tests/c/test_lora.c loads it. Also prints the tensor names/shapes PEFT wrote.

Regenerate (needs torch, transformers, peft):
    python3 tests/ref/train/peft_fixture.py tests/data/lora/peft_fixture
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM


def main(out):
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
                      max_position_embeddings=32)
    model = LlamaForCausalLM(cfg)
    lc = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                    task_type="CAUSAL_LM")
    pm = get_peft_model(model, lc)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) / 100)
    pm.save_pretrained(out)
    # keep the fixture small and stable: drop the README PEFT writes
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    with safe_open(os.path.join(out, "adapter_model.safetensors"), "pt") as f:
        for k in f.keys():
            print(k, list(f.get_slice(k).get_shape()))
    print(json.dumps(json.load(open(os.path.join(out, "adapter_config.json"))), indent=1)[:2000])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/lora/peft_fixture")
