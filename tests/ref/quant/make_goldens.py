#!/usr/bin/env python3
"""Golden files for tests/c/test_quant.c — an independent reference for peftlua's formats.

Dequantisation goldens come from the `gguf` PyPI package (gguf-py, the llama.cpp project's
Python library): gguf.quants.dequantize() on deterministic pseudo-random blocks, for every
ggml block type peftlua reads. Quantisation goldens (bit-exact bytes) come from
gguf.quants.quantize() for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/BF16, numpy's float16 cast for F16, and a
plain numpy NF4 (absmax scaling, nearest of bitsandbytes' 16 code values). Q8_K (no gguf-py
class) is dequantised here as d*q with numpy.

It also writes reference.safetensors with the official `safetensors` library (torch API, for
bf16): an independent check of peftlua's safetensors reader (tests/c/test_safetensors.c). Its
tensors are simple closed forms the test recomputes:
    f32  [3,4]  0.5*i - 1          f16 [2,3]  0.25*i - 0.5     bf16 [8]  1.5*i - 4
    i32  [5]    1000*i - 2000      i8  [2,3]  i - 3
with __metadata__ {"format": "pt", "writer": "safetensors"}.

Regenerate (from the repository root):
    python3 -m pip install gguf numpy safetensors torch   # tested: gguf 0.19.0, numpy 2.4,
                                                          # safetensors 0.8.0, torch 2.x
    python3 tests/ref/quant/make_goldens.py  # writes goldens.bin and reference.safetensors

File format (little-endian): "PLQG", u32 version (1), u32 record count; each record:
    char type[8] (peftlua dtype name, NUL padded), u32 kind (0: raw -> f32 dequantise,
    1: f32 -> raw quantise), u32 n elements, u32 raw byte count, the raw bytes, n f32 values.
"""
import os
import struct

import numpy as np
from gguf import quants, GGMLQuantizationType as T

rng = np.random.default_rng(20241122)
HERE = os.path.dirname(os.path.abspath(__file__))

# (peftlua name, ggml type, block elements, block bytes, [(offset, kind)] of scale fields)
BLOCK = {
    "q8_0": (T.Q8_0, 32, 34, [(0, "h")]),
    "q4_0": (T.Q4_0, 32, 18, [(0, "h")]),
    "q4_1": (T.Q4_1, 32, 20, [(0, "h"), (2, "h")]),
    "q5_0": (T.Q5_0, 32, 22, [(0, "h")]),
    "q5_1": (T.Q5_1, 32, 24, [(0, "h"), (2, "h")]),
    "q2_k": (T.Q2_K, 256, 84, [(80, "h"), (82, "h")]),
    "q3_k": (T.Q3_K, 256, 110, [(108, "h")]),
    "q4_k": (T.Q4_K, 256, 144, [(0, "h"), (2, "h")]),
    "q5_k": (T.Q5_K, 256, 176, [(0, "h"), (2, "h")]),
    "q6_k": (T.Q6_K, 256, 210, [(208, "h")]),
    "q8_k": (None, 256, 292, [(0, "f")]),
}

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)

records = []


def add(name, kind, raw, values):
    values = np.ascontiguousarray(values, dtype="<f4").ravel()
    raw = bytes(raw)
    records.append(struct.pack("<8sIII", name.encode(), kind, values.size, len(raw)) + raw +
                   values.tobytes())


def random_blocks(name, nblocks):
    qt, nel, nbytes, fields = BLOCK[name]
    raw = bytearray(rng.integers(0, 256, size=nblocks * nbytes, dtype=np.uint8).tobytes())
    for b in range(nblocks):
        for off, k in fields:
            v = float(rng.uniform(-0.08, 0.08))
            if k == "h":
                raw[b * nbytes + off:b * nbytes + off + 2] = np.float16(v).tobytes()
            else:
                raw[b * nbytes + off:b * nbytes + off + 4] = np.float32(v).tobytes()
    return raw


def dequant_ref(name, raw):
    qt = BLOCK[name][0]
    if qt is None:   # Q8_K: f32 d, int8 q[256], int16 bsums[16]
        out = []
        for b in range(len(raw) // 292):
            blk = raw[b * 292:(b + 1) * 292]
            d = np.frombuffer(blk[:4], dtype="<f4")[0]
            q = np.frombuffer(blk[4:260], dtype=np.int8).astype(np.float32)
            out.append(d * q)
        return np.concatenate(out)
    return quants.dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qt).astype(np.float32)


# --- dequantisation of every block type
for name, (qt, nel, nbytes, _) in BLOCK.items():
    nb = 4 if nel == 32 else 2
    raw = random_blocks(name, nb)
    add(name, 0, raw, dequant_ref(name, raw))

# --- scalars: f16 (normals, subnormals, zeros, infinities), bf16
specials = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 6.1e-5, 5.96e-8, 3.0e-6,
                     np.inf, -np.inf, 0.333251953125, 1e-3], dtype=np.float32)
f16 = np.concatenate([specials, rng.normal(0, 3, 51).astype(np.float32)]).astype(np.float16)
add("f16", 0, f16.tobytes(), f16.astype(np.float32))
bf = (rng.normal(0, 100, 64).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
add("bf16", 0, bf.tobytes(), (bf.astype(np.uint32) << 16).view(np.float32))

# --- quantisation (bit-exact bytes)
def inputs(n):
    x = rng.normal(0, 1, n).astype(np.float32) * np.float32(rng.uniform(0.01, 3))
    x[:32] = 0.0                       # an all-zero block
    x[32:64] = np.float32(0.75)        # a constant block
    x[70] = 9.0                        # an outlier
    return x

for name, qt in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0),
                 ("q5_1", T.Q5_1)]:
    x = inputs(256)
    q = quants.quantize(x.reshape(1, -1), qt)
    add(name, 1, q.tobytes(), x)

x = rng.normal(0, 2, 96).astype(np.float32)
x[:8] = [0.0, -0.0, 65520.0, 1e-8, 6.0e-8, -3.1e-5, 70000.0, 0.1]
add("f16", 1, x.astype(np.float16).tobytes(), x)
x = rng.normal(0, 2, 64).astype(np.float32)
add("bf16", 1, quants.quantize(x, T.BF16).tobytes(), x)

# NF4: 64-element blocks, f32 absmax, byte j = code(2j) | code(2j+1) << 4
x = inputs(256)
raw = bytearray()
for b in range(x.size // 64):
    blk = x[b * 64:(b + 1) * 64]
    a = np.float32(np.abs(blk).max())
    v = blk / a if a > 0 else np.zeros_like(blk)
    code = np.abs(v[:, None] - NF4[None, :]).argmin(axis=1).astype(np.uint8)
    raw += a.tobytes() + (code[0::2] | (code[1::2] << 4)).astype(np.uint8).tobytes()
add("nf4", 1, raw, x)
# and its dequantisation
deq = []
for b in range(len(raw) // 36):
    a = np.frombuffer(raw[b * 36:b * 36 + 4], dtype="<f4")[0]
    c = np.frombuffer(raw[b * 36 + 4:b * 36 + 36], dtype=np.uint8)
    codes = np.empty(64, dtype=np.uint8)
    codes[0::2], codes[1::2] = c & 15, c >> 4
    deq.append(a * NF4[codes])
add("nf4", 0, raw, np.concatenate(deq))

with open(os.path.join(HERE, "goldens.bin"), "wb") as f:
    f.write(b"PLQG" + struct.pack("<II", 1, len(records)))
    for r in records:
        f.write(r)
print("wrote", len(records), "records")

# --- an independent safetensors file
import torch
from safetensors.torch import save_file

ar = lambda n: torch.arange(n, dtype=torch.float64)
save_file({
    "f32": (0.5 * ar(12) - 1).to(torch.float32).reshape(3, 4),
    "f16": (0.25 * ar(6) - 0.5).to(torch.float16).reshape(2, 3),
    "bf16": (1.5 * ar(8) - 4).to(torch.bfloat16),
    "i32": (1000 * torch.arange(5) - 2000).to(torch.int32),
    "i8": (torch.arange(6) - 3).to(torch.int8).reshape(2, 3),
}, os.path.join(HERE, "reference.safetensors"), metadata={"format": "pt", "writer": "safetensors"})
print("wrote reference.safetensors")
