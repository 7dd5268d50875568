#!/usr/bin/env python3
"""tests/ref/train/torch_bench.py — the PyTorch side of tests/bench/bench_train.c.

Owner: train. The same steps (batch 4 x 256, LoRA rank 8 on q_proj and v_proj with AdamW, or
full fine-tuning with AdamW) with the reference Llama of train_ref.py in float32, timed after
one warm-up step. Threads: torch.set_num_threads(N) with N from the command line (match the
engine's OMP_NUM_THREADS). Tune it as far as it goes: run it with the OpenBLAS/MKL core type
and malloc settings of your choice, e.g.
    MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=-1 python3 tests/ref/train/torch_bench.py MODEL.gguf 1 3
Variants (4th argument, comma-separated; default ref,fast): ref = train_ref.forward as written
(einsum attention with a mask); fast = the same model as a tuned PyTorch Llama is written (F.rms_norm,
a RoPE table, scaled_dot_product_attention with is_causal and GQA); compile = fast under
torch.compile (inductor; needs a C compiler).
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_ref as tr  # noqa: E402

B, T, R = 4, 256, 8
F = torch.nn.functional


def fast_forward(meta, P, ids, lora, cs):
    """The same model written the way a tuned PyTorch Llama is (HF transformers' sdpa path):
    F.rms_norm, a RoPE table computed once, F.scaled_dot_product_attention with is_causal and
    grouped-query heads, no [T, T] mask tensor. Same maths as train_ref.forward."""
    L = meta["llama.block_count"]
    H = meta["llama.attention.head_count"]
    Hkv = meta.get("llama.attention.head_count_kv", H)
    dim = meta["llama.embedding_length"]
    eps = meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
    hd = dim // H
    c, s = cs
    out_w = P.get("lm_head.weight", P["model.embed_tokens.weight"])
    Bn, Tn = ids.shape
    x = P["model.embed_tokens.weight"][ids]

    def lin(l, p, h):
        blk = "self_attn" if p in tr.PROJ[:4] else "mlp"
        y = F.linear(h, P[f"model.layers.{l}.{blk}.{p}.weight"])
        if (l, p) in lora:
            A, Bm = lora[(l, p)]
            y = y + (tr.ALPHA / tr.R) * F.linear(F.linear(h, A), Bm)
        return y

    def rope(t):  # [B, H, T, hd], interleaved pairs as GGUF llama files expect
        t0, t1 = t[..., 0::2], t[..., 1::2]
        return torch.stack([t0 * c - t1 * s, t0 * s + t1 * c], dim=-1).flatten(-2)

    for l in range(L):
        h = F.rms_norm(x, (dim,), P[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = rope(lin(l, "q_proj", h).view(Bn, Tn, H, hd).transpose(1, 2))
        k = rope(lin(l, "k_proj", h).view(Bn, Tn, Hkv, hd).transpose(1, 2))
        v = lin(l, "v_proj", h).view(Bn, Tn, Hkv, hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
        x = x + lin(l, "o_proj", a.transpose(1, 2).reshape(Bn, Tn, H * hd))
        h = F.rms_norm(x, (dim,), P[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        x = x + lin(l, "down_proj", F.silu(lin(l, "gate_proj", h)) * lin(l, "up_proj", h))
    x = F.rms_norm(x, (dim,), P["model.norm.weight"], eps)
    return F.linear(x, out_w)


def rope_table(meta, Tn):
    H = meta["llama.attention.head_count"]
    hd = meta["llama.embedding_length"] // H
    base = meta.get("llama.rope.freq_base", 10000.0)
    i = torch.arange(hd // 2, dtype=torch.float64)
    ang = torch.arange(Tn, dtype=torch.float64)[:, None] * base ** (-2.0 * i / hd)[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    variants = (sys.argv[4] if len(sys.argv) > 4 else "ref,fast").split(",")
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    tr.torch.set_default_dtype(torch.float32)
    meta, W = tr.load(path)
    W = {k: v.float() for k, v in W.items()}
    V = W["token_embd.weight"].shape[0]
    rng = np.random.RandomState(0)
    seq = torch.tensor(rng.randint(3, V, size=(B, T + 1)))
    ids, tg = seq[:, :T], seq[:, 1:]
    cs = rope_table(meta, T)
    for method, variant in [(m, v) for m in ("lora", "full") for v in variants]:
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

        if variant == "ref":
            fwd = lambda: tr.forward(meta, P, ids, lora)  # noqa: E731
        elif variant == "fast":
            fwd = lambda: fast_forward(meta, P, ids, lora, cs)  # noqa: E731
        elif variant == "compile":
            cf = torch.compile(fast_forward)
            fwd = lambda: cf(meta, P, ids, lora, cs)  # noqa: E731
        else:
            sys.exit(f"unknown variant {variant} (ref, fast, compile)")

        def step():
            opt.zero_grad(set_to_none=True)
            loss = tr.loss_of(fwd(), tg)
            loss.backward()
            opt.step()

        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        dt = (time.perf_counter() - t0) / steps
        print(f"torch {torch.__version__} {method} ({variant}) B{B} x T{T}, {threads} threads: {dt * 1e3:.1f} ms/step, "
              f"{B * T / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
