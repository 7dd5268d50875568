#!/usr/bin/env python3
"""tests/ref/interop/peft_adapters.py — adapters saved by Hugging Face PEFT, and PEFT's logits.

Owner: interop. Writes fixtures that tests/lua/test_adapters.lua loads with m:load_adapter:
  tests/data/lora/st260k_lora/     LoRA r=4, alpha=8 on all seven projections
  tests/data/lora/st260k_rslora/   rsLoRA r=8, alpha=4 on q,k,v,o of layers 1 and 3
  tests/data/lora/st260k_dora/     DoRA (use_dora) on q,v (peftlua loads it since issue 13)
each by PEFT's own save_pretrained over stories260K (the base is peftlua's HF export of
../shared/models/stories260K/stories260K.gguf, which transformers' LlamaForCausalLM reads),
with every LoRA tensor drawn from N(0, 0.1^2) (seed 0) so that B is non-zero; and the logits
PEFT's model gives for IDS as raw little-endian f32 [T, vocab] in
tests/ref/interop/golden/<name>_logits.f32 (and the base's, base_logits.f32).

CI only reads these files. Regenerate (needs torch, transformers, peft and a built peftlua):
    python3 tests/ref/interop/peft_adapters.py
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GGUF = os.path.join(ROOT, "..", "shared", "models", "stories260K", "stories260K.gguf")
IDS = [1, 403, 395, 260, 418, 294, 307, 262, 377, 30]
FIXTURES = {
    "st260k_lora": dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                           "gate_proj", "up_proj", "down_proj"]),
    "st260k_rslora": dict(r=8, lora_alpha=4, use_rslora=True, layers_to_transform=[1, 3],
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    "st260k_dora": dict(r=2, lora_alpha=4, use_dora=True, target_modules=["q_proj", "v_proj"]),
}


def main():
    host = os.path.join(ROOT, "build", "peftlua")
    base_dir = os.path.join(ROOT, "build", "tmp", "st260k_hf")
    os.makedirs(os.path.dirname(base_dir), exist_ok=True)
    subprocess.run([host, "-e", f'peft.train.export(peft.model.load("{GGUF}"), "{base_dir}", '
                    '{format = "safetensors"})'], check=True)
    gold = os.path.join(ROOT, "tests", "ref", "interop", "golden")
    os.makedirs(gold, exist_ok=True)
    ids = torch.tensor([IDS])
    base = LlamaForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    base.eval()
    with torch.no_grad():
        base(ids).logits[0].numpy().astype("<f4").tofile(os.path.join(gold, "base_logits.f32"))
    for name, kw in FIXTURES.items():
        torch.manual_seed(0)
        model = LlamaForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
        pm = get_peft_model(model, LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", **kw))
        with torch.no_grad():
            for pname, p in pm.named_parameters():
                if "lora_A" in pname or "lora_B" in pname:
                    p.copy_(torch.randn(p.shape) * 0.1)
        pm.eval()
        out = os.path.join(ROOT, "tests", "data", "lora", name)
        shutil.rmtree(out, ignore_errors=True)
        pm.save_pretrained(out)
        readme = os.path.join(out, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
        with torch.no_grad():
            got = pm(ids).logits[0].numpy()
        got.astype("<f4").tofile(os.path.join(gold, f"{name}_logits.f32"))
        cfg = json.load(open(os.path.join(out, "adapter_config.json")))
        print(f"{name}: r={cfg['r']} alpha={cfg['lora_alpha']} rslora={cfg['use_rslora']} "
              f"dora={cfg['use_dora']} peft {cfg.get('peft_version')}; logits {got.shape}, "
              f"max |adapter - base| {np.abs(got - base(ids).logits[0].detach().numpy()).max():.4g}")
    with open(os.path.join(gold, "ids.txt"), "w") as f:
        f.write(",".join(str(i) for i in IDS) + "\n")


if __name__ == "__main__":
    sys.exit(main())
