#!/usr/bin/env python3
"""tests/ref/train/optim_ref.py — torch.optim reference for tests/c/test_optim.c.

Owner: train. Runs torch.optim.AdamW, torch.optim.SGD (momentum, dampening, nesterov) and
torch.nn.utils.clip_grad_norm_ on fixed random data and writes what they produced.

Regenerate (needs torch, numpy):
    python3 tests/ref/train/optim_ref.py tests/ref/train/golden/optim.bin

Layout (little endian):
    char[8] "PLOPTIM1"; int32 n, steps
    float32 p0[n]; float32 grads[steps][n]; float32 lrs[steps]
    float32 adamw[steps][n]          AdamW(betas .9/.999, eps 1e-8, wd 0.1), param after each step
    float32 sgd[steps][n]            SGD(momentum .9, dampening .1, wd .01)
    float32 sgd_nesterov[steps][n]   SGD(momentum .9, nesterov, wd .01)
    float32 clip_norm; float32 clipped[n]   clip_grad_norm_([g0[:n/4], g0[n/4:]], max_norm=0.5)
"""
import struct
import sys

import numpy as np
import torch

N, STEPS = 96, 6


def run(make_opt, p0, grads, lrs):
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = make_opt([p])
    out = []
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = float(lr)
        p.grad = torch.tensor(g)
        opt.step()
        out.append(p.detach().numpy().copy())
    return np.stack(out).astype(np.float32)


def main(path):
    rng = np.random.RandomState(7)
    p0 = rng.randn(N).astype(np.float32)
    grads = (rng.randn(STEPS, N) * np.linspace(0.01, 3.0, N)).astype(np.float32)
    lrs = np.array([1e-2, 2e-2, 3e-2, 2.5e-2, 1e-2, 5e-3], dtype=np.float32)[:STEPS]
    adamw = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                             weight_decay=0.1, foreach=False), p0, grads, lrs)
    sgd = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1,
                                         weight_decay=0.01, foreach=False), p0, grads, lrs * 10)
    sgdn = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                          weight_decay=0.01, foreach=False), p0, grads, lrs * 10)
    g0 = torch.tensor(grads[0])
    a, b = g0[: N // 4].clone(), g0[N // 4:].clone()
    pa, pb = torch.nn.Parameter(torch.zeros_like(a)), torch.nn.Parameter(torch.zeros_like(b))
    pa.grad, pb.grad = a, b
    norm = torch.nn.utils.clip_grad_norm_([pa, pb], max_norm=0.5)
    clipped = torch.cat([pa.grad, pb.grad]).numpy().astype(np.float32)
    with open(path, "wb") as f:
        f.write(b"PLOPTIM1")
        f.write(struct.pack("<ii", N, STEPS))
        for arr in (p0, grads, lrs, adamw, sgd, sgdn):
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())
        f.write(struct.pack("<f", float(norm)))
        f.write(clipped.astype("<f4").tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/ref/train/golden/optim.bin")
