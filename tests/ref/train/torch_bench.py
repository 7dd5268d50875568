#!/usr/bin/env python3
"""tests/ref/train/torch_bench.py — the PyTorch side of tests/bench/bench_train.c.

Owner: train. The same steps (batch 4 x 256, LoRA rank 8 on q_proj and v_proj with AdamW, or
full fine-tuning with AdamW) with the reference Llama of train_ref.py in float32, timed after
one warm-up step. Threads: torch.set_num_threads(N) with N from the command line (match the
engine's OMP_NUM_THREADS). Tune it as far as it goes: run it with the OpenBLAS/MKL core type
and malloc settings of your choice, e.g.
    MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=-1 python3 tests/ref/train/torch_bench.py MODEL.gguf 1 3
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_ref as tr  # noqa: E402

B, T, R = 4, 256, 8


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    tr.torch.set_default_dtype(torch.float32)
    meta, W = tr.load(path)
    W = {k: v.float() for k, v in W.items()}
    V = W["token_embd.weight"].shape[0]
    rng = np.random.RandomState(0)
    seq = torch.tensor(rng.randint(3, V, size=(B, T + 1)))
    ids, tg = seq[:, :T], seq[:, 1:]
    for method in ("lora", "full"):
        P = {k: v.detach().clone().float().requires_grad_(method == "full") for k, v in tr.hf_params(meta, W).items()}
        lora = {}
        if method == "lora":
            for l in range(meta["llama.block_count"]):
                for p in ("q_proj", "v_proj"):
                    w = P[f"model.layers.{l}.self_attn.{p}.weight"]
                    A = (torch.rand(R, w.shape[1]) * 2 - 1) / w.shape[1] ** 0.5
                    lora[(l, p)] = (A.requires_grad_(True), torch.zeros(w.shape[0], R, requires_grad=True))
            params = [t for ab in lora.values() for t in ab]
        else:
            params = list(P.values())
        opt = torch.optim.AdamW(params, lr=1e-4)
        tr.R, tr.ALPHA = R, 16.0

        def step():
            opt.zero_grad(set_to_none=True)
            loss = tr.loss_of(tr.forward(meta, P, ids, lora), tg)
            loss.backward()
            opt.step()

        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        dt = (time.perf_counter() - t0) / steps
        print(f"torch {torch.__version__} {method} B{B} x T{T}, {threads} threads: {dt * 1e3:.1f} ms/step, "
              f"{B * T / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
