#!/usr/bin/env python3
"""tests/ref/train/train_ref.py — PyTorch autograd reference for whole-model gradients.

Owner: train. An independent float64 PyTorch Llama (it shares no code with peftlua): reads a
GGUF with the `gguf` package, dequantises every tensor, runs the forward (RMSNorm,
interleaved-pair RoPE as GGUF llama files expect, causal GQA attention, SwiGLU, tied or
separate output), mean cross-entropy over targets (-1 ignored), and writes
  - the LoRA gradients (rank 4, alpha 8, every projection of every layer, with fixed random
    A and nonzero B stored in the file so the C side can install them), and
  - the full fine-tuning gradients of every weight (norm + a fixed sample of entries).
tests/c/test_train.c reads the goldens.

Regenerate (needs torch, numpy, gguf):
    python3 tests/ref/train/train_ref.py ../shared/models/stories260K/stories260K.gguf \
        tests/ref/train/golden/stories260K_grads.bin

Layout (little endian):
    char[8] "PLTRGRD1"; int32 version 1, B, T, r; float32 alpha; int32 n_adapters
    int32 ids[B*T], targets[B*T]; float64 loss_lora, loss_base
    per adapter (layer-major, then q,k,v,o,gate,up,down):
        int32 layer, proj, in, out; float32 A[r*in], B[out*r], dA[r*in], dB[out*r]
    int32 n_params; per parameter (HF name):
        int32 name_len; char name[]; int64 numel; float64 grad_norm; int32 k;
        int32 idx[k]; float32 grad[k]
--small stores only layer 0's q_proj and down_proj adapters and k=32 samples (keeps
SmolLM2's file small). --ids FILE takes the two rows of 17 token ids from FILE (one row per
line, comma-separated: ids are the first 16, targets the last 16) instead of random ids; the
SmolLM2 golden uses tests/ref/train/golden/smollm2_ids.txt (WikiSQL text encoded by peftlua's
tokenizer), which keeps the loss in a natural range and the float32 gradients well conditioned.
    python3 tests/ref/train/train_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/ref/train/golden/smollm2_grads.bin --small --ids tests/ref/train/golden/smollm2_ids.txt
"""
import struct
import sys

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize

torch.set_default_dtype(torch.float64)
B, T, R, ALPHA = 2, 16, 4, 8.0
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GG = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
      "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def load(path):
    r = GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        try:
            meta[k] = f.contents()
        except Exception:
            pass
    W = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))
        W[t.name] = torch.tensor(dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape))
    return meta, W


def hf_params(meta, W):
    """HF name -> leaf tensor, in peftlua's pl_model_param order."""
    L = meta["llama.block_count"]
    P = {"model.embed_tokens.weight": W["token_embd.weight"]}
    for l in range(L):
        P[f"model.layers.{l}.input_layernorm.weight"] = W[f"blk.{l}.attn_norm.weight"]
        for p in PROJ[:4]:
            P[f"model.layers.{l}.self_attn.{p}.weight"] = W[f"blk.{l}.{GG[p]}.weight"]
        P[f"model.layers.{l}.post_attention_layernorm.weight"] = W[f"blk.{l}.ffn_norm.weight"]
        for p in PROJ[4:]:
            P[f"model.layers.{l}.mlp.{p}.weight"] = W[f"blk.{l}.{GG[p]}.weight"]
    P["model.norm.weight"] = W["output_norm.weight"]
    if "output.weight" in W:
        P["lm_head.weight"] = W["output.weight"]
    return {k: v.clone().requires_grad_(True) for k, v in P.items()}


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, base, n_rot):
    # x: [B, T, H, hd]; rotate (x[2i], x[2i+1]) by pos * base^(-2i/n_rot)
    Tn = x.shape[1]
    pos = torch.arange(Tn, dtype=x.dtype)[:, None]
    i = torch.arange(n_rot // 2, dtype=x.dtype)[None, :]
    ang = pos * base ** (-2.0 * i / n_rot)
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    r0, r1 = x0 * c - x1 * s, x0 * s + x1 * c
    out = torch.stack([r0, r1], dim=-1).reshape(*x.shape[:-1], n_rot)
    return torch.cat([out, x[..., n_rot:]], dim=-1)


def forward(meta, P, ids, lora):
    L = meta["llama.block_count"]
    H = meta["llama.attention.head_count"]
    Hkv = meta.get("llama.attention.head_count_kv", H)
    dim = meta["llama.embedding_length"]
    eps = meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
    base = meta.get("llama.rope.freq_base", 10000.0)
    hd = dim // H
    n_rot = meta.get("llama.rope.dimension_count", hd)
    out_w = P.get("lm_head.weight", P["model.embed_tokens.weight"])
    Bn, Tn = ids.shape
    x = P["model.embed_tokens.weight"][ids]
    mask = torch.triu(torch.full((Tn, Tn), float("-inf"), dtype=x.dtype), 1)

    def lin(l, p, h):
        blk = "self_attn" if p in PROJ[:4] else "mlp"
        y = h @ P[f"model.layers.{l}.{blk}.{p}.weight"].T
        if (l, p) in lora:
            A, Bm = lora[(l, p)]
            y = y + (ALPHA / R) * (h @ A.T) @ Bm.T
        return y

    for l in range(L):
        h = rmsnorm(x, P[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = rope(lin(l, "q_proj", h).reshape(Bn, Tn, H, hd), base, n_rot)
        k = rope(lin(l, "k_proj", h).reshape(Bn, Tn, Hkv, hd), base, n_rot)
        v = lin(l, "v_proj", h).reshape(Bn, Tn, Hkv, hd)
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("bthd,bshd->bhts", q, k) / np.sqrt(hd) + mask
        a = torch.einsum("bhts,bshd->bthd", torch.softmax(s, -1), v).reshape(Bn, Tn, H * hd)
        x = x + lin(l, "o_proj", a)
        h = rmsnorm(x, P[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        g, u = lin(l, "gate_proj", h), lin(l, "up_proj", h)
        x = x + lin(l, "down_proj", torch.nn.functional.silu(g) * u)
    x = rmsnorm(x, P["model.norm.weight"], eps)
    return x @ out_w.T


def loss_of(logits, targets):
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
                                             ignore_index=-1, reduction="mean")


def main():
    argv = sys.argv[1:]
    ids_file = None
    if "--ids" in argv:
        k = argv.index("--ids")
        ids_file = argv[k + 1]
        del argv[k:k + 2]
    args = [a for a in argv if not a.startswith("--")]
    small = "--small" in argv
    if len(args) != 2:
        raise SystemExit(__doc__)
    meta, W = load(args[0])
    P = hf_params(meta, W)
    V = P["model.embed_tokens.weight"].shape[0]
    L = meta["llama.block_count"]
    rng = np.random.RandomState(20261122)
    seq = rng.randint(3, V, size=(B, T + 1))
    if ids_file:
        seq = np.array([[int(x) for x in line.split(",")] for line in open(ids_file).read().split()])
        assert seq.shape == (B, T + 1), seq.shape
    ids = torch.tensor(seq[:, :T])
    tg = seq[:, 1:].copy()
    tg[0, :3] = -1          # ignored prompt-like positions
    tg[1, T - 2:] = -1      # and padding-like ones at the end
    targets = torch.tensor(tg)

    # LoRA gradients (base frozen)
    lora, order = {}, []
    layers = [0] if small else range(L)
    for l in layers:
        for pi, p in enumerate(PROJ):
            if small and p not in ("q_proj", "down_proj"):
                continue
            blk = "self_attn" if pi < 4 else "mlp"
            w = P[f"model.layers.{l}.{blk}.{p}.weight"]
            out_f, in_f = w.shape
            A = torch.tensor(rng.uniform(-1, 1, size=(R, in_f)) / np.sqrt(in_f), requires_grad=True)
            Bm = torch.tensor(rng.randn(out_f, R) * 0.05, requires_grad=True)
            lora[(l, p)] = (A, Bm)
            order.append((l, pi, in_f, out_f))
    lo = loss_of(forward(meta, P, ids, lora), targets)
    lo.backward()
    # Full gradients (no adapters)
    for v in P.values():
        v.grad = None
    lb = loss_of(forward(meta, P, ids, {}), targets)
    lb.backward()

    k_samp = 32 if small else 64
    with open(args[1], "wb") as f:
        f.write(b"PLTRGRD1")
        f.write(struct.pack("<4if", 1, B, T, R, ALPHA))
        f.write(struct.pack("<i", len(order)))
        f.write(ids.numpy().astype("<i4").tobytes())
        f.write(targets.numpy().astype("<i4").tobytes())
        f.write(struct.pack("<dd", lo.item(), lb.item()))
        for (l, pi, in_f, out_f) in order:
            A, Bm = lora[(l, PROJ[pi])]
            f.write(struct.pack("<4i", l, pi, in_f, out_f))
            for arr in (A.detach(), Bm.detach(), A.grad, Bm.grad):
                f.write(arr.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<i", len(P)))
        srng = np.random.RandomState(5)
        for name, v in P.items():
            g = v.grad.numpy().reshape(-1)
            n = g.size
            idx = np.arange(n) if n <= k_samp else np.sort(srng.choice(n, k_samp, replace=False))
            nb = name.encode()
            f.write(struct.pack("<i", len(nb)) + nb)
            f.write(struct.pack("<qdi", n, float(np.linalg.norm(g)), len(idx)))
            f.write(idx.astype("<i4").tobytes())
            f.write(g[idx].astype("<f4").tobytes())
    print(f"{args[1]}: loss with LoRA {lo.item():.6f}, base {lb.item():.6f}, "
          f"{len(order)} adapters, {len(P)} parameters")


if __name__ == "__main__":
    main()
