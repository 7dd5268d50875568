#!/usr/bin/env python3
"""tests/ref/train/lion_ref.py — reference for the Lion optimizer in tests/c/test_optim.c.

Owner: train. torch.optim has no Lion, so this writes Algorithm 2 of Chen et al. 2023
("Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675) as a torch.optim.Optimizer
in torch's own tensor ops (f32), as the authors' reference and lion-pytorch do:
    c = beta1*m + (1-beta1)*g;  p = p*(1 - lr*wd);  p = p - lr*sign(c);  m = beta2*m + (1-beta2)*g

Regenerate (needs torch, numpy):
    python3 tests/ref/train/lion_ref.py tests/ref/train/golden/lion.bin

Layout (little endian):
    char[8] "PLLION01"; int32 n, steps; float32 beta1, beta2, weight_decay
    float32 p0[n]; float32 grads[steps][n]; float32 lrs[steps]
    float32 lion[steps][n]     param after each step
    float32 m[n]               the momentum after the last step
"""
import struct
import sys

import numpy as np
import torch

N, STEPS = 96, 6
BETA1, BETA2, WD = 0.9, 0.99, 0.1


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if "exp_avg" not in st:
                    st["exp_avg"] = torch.zeros_like(p)
                m = st["exp_avg"]
                c = m.mul(b1).add(p.grad, alpha=1 - b1)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(c), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def main(path):
    rng = np.random.RandomState(11)
    p0 = rng.randn(N).astype(np.float32)
    grads = (rng.randn(STEPS, N) * np.linspace(0.01, 3.0, N)).astype(np.float32)
    grads[0, 5] = 0.0   # sign(0) = 0 on the first step
    lrs = np.array([1e-3, 2e-3, 3e-3, 2.5e-3, 1e-3, 5e-4], dtype=np.float32)[:STEPS]
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = Lion([p], lr=1e-3, betas=(BETA1, BETA2), weight_decay=WD)
    out = []
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = float(lr)
        p.grad = torch.tensor(g)
        opt.step()
        out.append(p.detach().numpy().copy())
    m = opt.state[p]["exp_avg"].numpy().astype(np.float32)
    with open(path, "wb") as f:
        f.write(b"PLLION01")
        f.write(struct.pack("<ii", N, STEPS))
        f.write(struct.pack("<fff", BETA1, BETA2, WD))
        for arr in (p0, grads, lrs, np.stack(out), m):
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/ref/train/golden/lion.bin")
