#!/usr/bin/env python3
"""tests/ref/train/peft_check.py — load a peftlua-saved adapter with HF PEFT and compare logits.

Owner: train. Not run by the test suite (it needs torch, transformers, peft); it documents and
reproduces the PEFT-compatibility check. The base model is an HF directory (config.json +
model.safetensors) as peft.train.export(model, dir, {format = "safetensors"}) writes it; the
adapter directory is applied with peft.PeftModel.from_pretrained; the logits for the token ids
given are compared with those peftlua wrote (raw little-endian f32, [T, vocab]) for base +
adapter. tests/ref/train/peft_check.lua writes all three inputs:

    peftlua tests/ref/train/peft_check.lua build/tmp/peft_check
    python3 tests/ref/train/peft_check.py build/tmp/peft_check/base build/tmp/peft_check/adapter \
        build/tmp/peft_check/logits.f32 1,30,40,50,30,40,50,30
"""
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    gguf, adapter, logits_path, ids = sys.argv[1:]
    ids = [int(x) for x in ids.split(",")]
    base = AutoModelForCausalLM.from_pretrained(gguf, torch_dtype=torch.float32)
    with torch.no_grad():
        plain = base(torch.tensor([ids])).logits[0].numpy()
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].numpy()
    ours = np.fromfile(logits_path, dtype="<f4").reshape(got.shape)
    diff = np.abs(got - ours).max()
    print(f"PEFT logits vs peftlua: max |diff| {diff:.3g} (logits up to {np.abs(got).max():.3g}); "
          f"the adapter moves them by up to {np.abs(got - plain).max():.3g}")
    sys.exit(0 if diff <= 1e-3 * max(1.0, np.abs(got).max()) else 1)


if __name__ == "__main__":
    main()
