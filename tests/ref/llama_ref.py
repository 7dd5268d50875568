#!/usr/bin/env python3
"""tests/ref/llama_ref.py — an independent plain-NumPy Llama that writes golden logits.

Owner: model. It shares no code with peftlua: it reads the GGUF with the `gguf` PyPI package,
dequantises every tensor with gguf.quants.dequantize, and runs a float64 Llama forward
(RMSNorm, interleaved-pair RoPE as GGUF llama files expect, causal grouped-query attention,
SwiGLU, tied or separate output). The C tests (tests/c/test_model.c) read the goldens.

Regenerate (needs numpy and gguf: `pip install numpy gguf`):
    python3 tests/ref/llama_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/ref/golden/smollm2_logits.bin
    python3 tests/ref/llama_ref.py ../shared/models/stories260K/stories260K.gguf \
        tests/ref/golden/stories260K_logits.bin

Golden file layout (little endian):
    char[8]  magic "PLGOLDEN"
    int32    version (1)
    int32    B, T, V, C          batch, sequence, vocabulary, number of stored columns
    int32    tokens[B*T]         the input ids (fixed: see TOKENS below)
    int32    cols[C]             vocabulary ids whose logits are stored
    float32  logits[B*T*C]       logits[b, t, cols[c]]
    float32  lse[B*T]            log-sum-exp over the whole vocabulary row
    int32    argmax[B*T]         argmax over the whole vocabulary row
Storing a column subset plus each row's log-sum-exp and argmax keeps the file small while
still checking every vocabulary entry of every row indirectly.
"""
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

B, T = 2, 16


def fixed_tokens(vocab):
    # Two fixed sequences: a BOS-led run of ordinary ids and a spread over the vocabulary.
    rng = np.random.RandomState(1234)
    a = [1] + list(rng.randint(3, min(vocab, 1000), size=T - 1))
    b = list(rng.randint(3, vocab, size=T))
    return np.array([a, b], dtype=np.int64)


def load(path):
    r = GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        try:
            meta[k] = f.contents()
        except Exception:
            pass
    arch = meta["general.architecture"]
    if arch != "llama":
        raise SystemExit(f"{path}: this reference handles llama only, got {arch}")
    W = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))  # ggml ne order -> row-major
        a = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        W[t.name] = a
    return meta, W


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, base, n_rot):
    # x: [T, H, hd]; rotate adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/n_rot)
    Tn, H, hd = x.shape
    out = x.copy()
    pos = np.arange(Tn)[:, None]
    i = np.arange(n_rot // 2)[None, :]
    ang = pos * base ** (-2.0 * i / n_rot)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[:, :, 0:n_rot:2], x[:, :, 1:n_rot:2]
    out[:, :, 0:n_rot:2] = x0 * c - x1 * s
    out[:, :, 1:n_rot:2] = x0 * s + x1 * c
    return out


def forward(meta, W, toks):
    p = "llama."
    L = meta[p + "block_count"]
    H = meta[p + "attention.head_count"]
    Hkv = meta.get(p + "attention.head_count_kv", H)
    dim = meta[p + "embedding_length"]
    eps = meta.get(p + "attention.layer_norm_rms_epsilon", 1e-5)
    base = meta.get(p + "rope.freq_base", 10000.0)
    hd = dim // H
    n_rot = meta.get(p + "rope.dimension_count", hd)
    out_w = W.get("output.weight", W["token_embd.weight"])
    x = W["token_embd.weight"][toks]  # [T, dim]
    Tn = len(toks)
    mask = np.triu(np.full((Tn, Tn), -np.inf), 1)
    for l in range(L):
        g = lambda n: W[f"blk.{l}.{n}.weight"]
        h = rmsnorm(x, g("attn_norm"), eps)
        q = (h @ g("attn_q").T).reshape(Tn, H, hd)
        k = (h @ g("attn_k").T).reshape(Tn, Hkv, hd)
        v = (h @ g("attn_v").T).reshape(Tn, Hkv, hd)
        q, k = rope(q, base, n_rot), rope(k, base, n_rot)
        att = np.zeros((Tn, H, hd))
        for hh in range(H):
            kv = hh // (H // Hkv)
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        x = x + att.reshape(Tn, H * hd) @ g("attn_output").T
        h = rmsnorm(x, g("ffn_norm"), eps)
        a = h @ g("ffn_gate").T
        u = h @ g("ffn_up").T
        x = x + ((a / (1 + np.exp(-a))) * u) @ g("ffn_down").T
    x = rmsnorm(x, W["output_norm.weight"], eps)
    return x @ out_w.T


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    meta, W = load(sys.argv[1])
    V = W["token_embd.weight"].shape[0]
    toks = fixed_tokens(V)
    logits = np.stack([forward(meta, W, toks[b]) for b in range(B)])  # [B, T, V]
    C = min(V, 512)
    cols = np.unique(np.concatenate([np.arange(min(V, 256)),
                                     np.linspace(0, V - 1, C - min(V, 256)).astype(np.int64)]))
    if len(cols) < C:  # small vocabularies: store everything
        cols = np.arange(C)
    C = len(cols)
    m = logits.max(axis=-1)
    lse = m + np.log(np.exp(logits - m[..., None]).sum(axis=-1))
    with open(sys.argv[2], "wb") as f:
        f.write(b"PLGOLDEN")
        f.write(struct.pack("<5i", 1, B, T, V, C))
        f.write(toks.astype("<i4").tobytes())
        f.write(cols.astype("<i4").tobytes())
        f.write(logits[:, :, cols].astype("<f4").tobytes())
        f.write(lse.astype("<f4").tobytes())
        f.write(logits.argmax(axis=-1).astype("<i4").tobytes())
    print(f"{sys.argv[2]}: B={B} T={T} V={V} C={C} argmax[0]={logits.argmax(-1)[0][:8]}")


if __name__ == "__main__":
    main()
