#!/usr/bin/env python3
"""tests/ref/methods/methods_ref.py — DoRA and IA3 against HF PEFT itself.

Owner: train. Needs torch, transformers, peft (not run by the test suite; CI reads the goldens
it writes). Versions used for the committed goldens: torch 2.15.0, transformers 5.25.0,
peft 0.21.2 (printed again on every run and written to GOLDEN/versions.txt).

1. Interop (peftlua -> PEFT): for each method, PEFT's PeftModel.from_pretrained loads the
   adapter peftlua saved (tests/ref/methods/methods_check.lua OUTDIR) onto the HF export of
   stories260K; PEFT's logits are compared with peftlua's (max |diff| printed; exit 1 above
   1e-4) and both the adapter and PEFT's logits are copied into GOLDEN/<method>_interop/, which
   tests/lua/test_methods.lua reads: peftlua loads that adapter again and must reproduce PEFT's
   logits within 1e-4.
2. Gradients (PEFT -> peftlua): PEFT's own DoRA (LoraConfig use_dora, r 4, alpha 8, every
   projection) and IA3 (IA3Config k_proj, v_proj, down_proj; feedforward down_proj) on the same
   base, with adapter values set to fixed random numbers (float32), saved with save_pretrained
   into GOLDEN/<method>_grad/adapter; then the model in float64, the mean cross-entropy of fixed
   ids/targets (targets -1 ignored) and autograd. Written: GOLDEN/<method>_grad/grads.safetensors
   (float32 gradients under the adapter file's tensor names) and case.json (ids, targets, loss).
   tests/c/test_methods.c loads the adapter with pl_lora_load and compares its gradients.

Regenerate:
    build/peftlua tests/ref/methods/methods_check.lua build/tmp/methods_check
    python3 tests/ref/methods/methods_ref.py build/tmp/methods_check tests/ref/methods/golden
"""
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
import transformers
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

IDS = [1, 30, 40, 50, 30, 40, 50, 30]


def interop(work, golden, method):
    base = AutoModelForCausalLM.from_pretrained(os.path.join(work, "base"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(work, method))
    model.eval()
    with torch.no_grad():
        got = model(torch.tensor([IDS])).logits[0].numpy()
        with model.disable_adapter():
            plain = model(torch.tensor([IDS])).logits[0].numpy()
    ours = np.fromfile(os.path.join(work, method + "_logits.f32"), dtype="<f4").reshape(got.shape)
    diff = float(np.abs(got - ours).max())
    moved = float(np.abs(got - plain).max())
    print(f"{method}: PEFT {peft.__version__} logits vs peftlua: max |diff| {diff:.3g} "
          f"(logits up to {np.abs(got).max():.3g}); the adapter moves them by up to {moved:.3g}")
    out = os.path.join(golden, method + "_interop")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(os.path.join(work, method), os.path.join(out, "adapter"))
    got.astype("<f4").tofile(os.path.join(out, "peft_logits.f32"))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"ids": IDS, "max_abs_diff_peftlua": diff, "adapter_moves": moved}, f, indent=1)
    return diff <= 1e-4 and moved > 1e-2


def grads(work, golden, method):
    torch.manual_seed(20261206)
    base = AutoModelForCausalLM.from_pretrained(os.path.join(work, "base"), dtype=torch.float32)
    if method == "dora":
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True, task_type="CAUSAL_LM",
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"])
    else:
        cfg = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                        feedforward_modules=["down_proj"], task_type="CAUSAL_LM")
    pm = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            elif "lora_magnitude_vector" in name or "ia3_l" in name:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
    out = os.path.join(golden, method + "_grad")
    shutil.rmtree(out, ignore_errors=True)
    pm.save_pretrained(os.path.join(out, "adapter"))
    readme = os.path.join(out, "adapter", "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    pm = pm.double()
    V = base.config.vocab_size
    rng = np.random.RandomState(20261122)
    seq = rng.randint(3, V, size=(2, 17))
    ids = torch.tensor(seq[:, :16])
    tg = seq[:, 1:].copy()
    tg[0, :3] = -1
    tg[1, 14:] = -1
    logits = pm(ids).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(tg).reshape(-1),
                                             ignore_index=-1)
    loss.backward()
    gr = {}
    for name, p in pm.named_parameters():
        if p.requires_grad:
            key = name.replace(".default", "")
            if "lora_magnitude_vector" in key:
                key = key[: -len(".weight")] if key.endswith(".weight") else key
            gr[key] = p.grad.float().contiguous()
    save_file(gr, os.path.join(out, "grads.safetensors"))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"ids": seq[:, :16].tolist(), "targets": tg.tolist(), "loss": loss.item(),
                   "tensors": len(gr)}, f, indent=1)
    print(f"{method}: PEFT float64 loss {loss.item():.8f}, {len(gr)} gradient tensors -> {out}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    work, golden = sys.argv[1:]
    os.makedirs(golden, exist_ok=True)
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    print(versions)
    with open(os.path.join(golden, "versions.txt"), "w") as f:
        f.write(versions + "\n")
    ok = True
    for method in ("dora", "ia3"):
        ok = interop(work, golden, method) and ok
        grads(work, golden, method)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
