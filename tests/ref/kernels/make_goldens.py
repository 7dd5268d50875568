#!/usr/bin/env python3
"""tests/ref/kernels/make_goldens.py — PyTorch reference outputs and gradients for the layer
kernels of include/peftlua/kernels.h (owner: kernels). tests/c/test_kernels.c reads the file.

Every reference is computed by PyTorch autograd in float64 from float32 inputs, written
independently of the C code (HF-style formulas: RMSNorm as LlamaRMSNorm, RoPE both as the Meta
complex-number form (interleaved pairs) and HF rotate_half, attention by an explicit masked
softmax with repeat_interleave for grouped-query heads, F.cross_entropy with ignore_index).
Backward references are the gradients of L = sum(out * dout) for a random dout stored alongside.

Regenerate (needs torch: `pip install torch`):
    python3 tests/ref/kernels/make_goldens.py tests/ref/kernels/kernels_golden.bin

File layout (little endian):
    char[8]  magic "PLKERNEL"
    int32    version (1)
    int32    count of records
    record:  char[32] name (NUL padded), int32 kind (0 = f32, 1 = i32), int32 ndim,
             int32 shape[4] (unused dims 1), then prod(shape) elements of the kind
"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(20260101)
records = []


def put(name, t):
    t = t.detach()
    if t.dtype in (torch.int32, torch.int64):
        kind, data = 1, t.to(torch.int32).contiguous().numpy().tobytes()
    else:
        kind, data = 0, t.to(torch.float32).contiguous().numpy().tobytes()
    shape = list(t.shape) + [1] * (4 - t.dim())
    records.append(struct.pack("<32sii4i", name.encode(), kind, t.dim(), *shape) + data)


def rnd(*shape, scale=1.0):
    # float32 inputs (what the C side reads), promoted to float64 for the reference math
    return (torch.randn(*shape) * scale).to(torch.float32)


def leaf(t):
    return t.to(torch.float64).requires_grad_(True)


# ---- RMSNorm: y = x * rsqrt(mean(x^2) + eps) * w
N, C, eps = 6, 16, 1e-5
x, w, dout = rnd(N, C), rnd(C, scale=0.5) + 1.0, rnd(N, C)
xl, wl = leaf(x), leaf(w)
y = xl * torch.rsqrt(xl.pow(2).mean(-1, keepdim=True) + eps) * wl
(y * dout.double()).sum().backward()
for n, t in [("rms.x", x), ("rms.w", w), ("rms.dout", dout), ("rms.y", y),
             ("rms.dx", xl.grad), ("rms.dw", wl.grad)]:
    put(n, t)

# ---- RoPE on [N tokens, H heads, HD]
N, H, HD, theta = 6, 2, 8, 10000.0
pos = torch.tensor([0, 1, 2, 5, 7, 100], dtype=torch.int32)
x, dout = rnd(N, H, HD), rnd(N, H, HD)
inv = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
ang = pos.double()[:, None] * inv[None, :]                    # [N, HD/2]
put("rope.x", x); put("rope.pos", pos); put("rope.dout", dout)
# normal (interleaved) mode: Meta/llama2.c complex multiplication of pairs (x[2i], x[2i+1])
xl = leaf(x)
xc = torch.view_as_complex(xl.reshape(N, H, HD // 2, 2))
rot = torch.polar(torch.ones_like(ang), ang)[:, None, :]
y = torch.view_as_real(xc * rot).reshape(N, H, HD)
(y * dout.double()).sum().backward()
put("rope.normal.y", y); put("rope.normal.dx", xl.grad)
# neox mode: HF rotate_half with cos/sin duplicated over the two halves
xl = leaf(x)
cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
x1, x2 = xl[..., : HD // 2], xl[..., HD // 2:]
y = xl * cos + torch.cat([-x2, x1], -1) * sin
(y * dout.double()).sum().backward()
put("rope.neox.y", y); put("rope.neox.dx", xl.grad)


# ---- causal GQA attention (optionally with a KV cache of `past` positions)
def attention(prefix, B, T, past, Tcap, NH, NKV, HD):
    Tk = past + T
    q, k, v = rnd(B, T, NH, HD), rnd(B, Tcap, NKV, HD), rnd(B, Tcap, NKV, HD)
    dout = rnd(B, T, NH, HD)
    ql, kl, vl = leaf(q), leaf(k), leaf(v)
    rep = NH // NKV
    kk = kl[:, :Tk].repeat_interleave(rep, dim=2).permute(0, 2, 1, 3)   # [B,NH,Tk,HD]
    vv = vl[:, :Tk].repeat_interleave(rep, dim=2).permute(0, 2, 1, 3)
    qq = ql.permute(0, 2, 1, 3)                                          # [B,NH,T,HD]
    s = qq @ kk.transpose(-1, -2) / math.sqrt(HD)
    qpos = torch.arange(T)[:, None] + past
    kpos = torch.arange(Tk)[None, :]
    s = s.masked_fill(kpos > qpos, float("-inf"))
    p = torch.softmax(s, -1)
    y = (p @ vv).permute(0, 2, 1, 3)                                     # [B,T,NH,HD]
    (y * dout.double()).sum().backward()
    for n, t in [("q", q), ("k", k), ("v", v), ("dout", dout), ("y", y), ("p", p),
                 ("dq", ql.grad), ("dk", kl.grad), ("dv", vl.grad)]:
        put(prefix + "." + n, t)


attention("att", 2, 5, 0, 5, 4, 2, 8)
attention("attc", 2, 3, 4, 8, 4, 1, 8)      # KV cache: 4 past positions, Tcap 8 (one unused)

# ---- SwiGLU
N = 50
g, u, dout = rnd(N, scale=2.0), rnd(N), rnd(N)
gl, ul = leaf(g), leaf(u)
y = F.silu(gl) * ul
(y * dout.double()).sum().backward()
for n, t in [("swi.g", g), ("swi.u", u), ("swi.dout", dout), ("swi.y", y),
             ("swi.dg", gl.grad), ("swi.du", ul.grad)]:
    put(n, t)

# ---- linear with bias: y = x Wᵀ + b
M, K, N = 5, 12, 7
x, W, b, dout = rnd(M, K), rnd(N, K, scale=0.3), rnd(N), rnd(M, N)
xl, Wl, bl = leaf(x), leaf(W), leaf(b)
y = F.linear(xl, Wl, bl)
(y * dout.double()).sum().backward()
for n, t in [("lin.x", x), ("lin.W", W), ("lin.b", b), ("lin.dout", dout), ("lin.y", y),
             ("lin.dx", xl.grad), ("lin.dW", Wl.grad), ("lin.db", bl.grad)]:
    put(n, t)

# ---- LoRA: y = scale * (x Aᵀ) Bᵀ
M, K, N, r, scale = 5, 12, 7, 3, 2.0
x, A, Bm, dout = rnd(M, K), rnd(r, K, scale=0.3), rnd(N, r, scale=0.3), rnd(M, N)
xl, Al, Bl = leaf(x), leaf(A), leaf(Bm)
y = scale * (xl @ Al.T) @ Bl.T
(y * dout.double()).sum().backward()
for n, t in [("lora.x", x), ("lora.A", A), ("lora.B", Bm), ("lora.dout", dout), ("lora.y", y),
             ("lora.dx", xl.grad), ("lora.dA", Al.grad), ("lora.dB", Bl.grad)]:
    put(n, t)

# ---- cross-entropy with ignored targets (mean over the others)
N, V = 6, 11
logits = rnd(N, V, scale=2.0)
tg = torch.tensor([3, -100, 0, 10, -1, 7], dtype=torch.int32)
ll = leaf(logits)
losses = F.cross_entropy(ll, tg.long().clamp(min=0), reduction="none") * (tg >= 0)
mean = F.cross_entropy(ll, tg.long().masked_fill(tg < 0, -100), ignore_index=-100)
mean.backward()
for n, t in [("ce.logits", logits), ("ce.targets", tg), ("ce.losses", losses),
             ("ce.mean", mean.reshape(1)), ("ce.dlogits", ll.grad)]:
    put(n, t)

# ---- embedding
V, C = 10, 8
W = rnd(V, C)
tok = torch.tensor([3, 0, 9, 3, 5, 3, 1], dtype=torch.int32)
dout = rnd(len(tok), C)
Wl = leaf(W)
y = F.embedding(tok.long(), Wl)
(y * dout.double()).sum().backward()
for n, t in [("emb.W", W), ("emb.tok", tok), ("emb.dout", dout), ("emb.y", y),
             ("emb.dW", Wl.grad)]:
    put(n, t)

with open(sys.argv[1], "wb") as f:
    f.write(b"PLKERNEL" + struct.pack("<ii", 1, len(records)))
    for rec in records:
        f.write(rec)
print(f"wrote {len(records)} records to {sys.argv[1]}")
