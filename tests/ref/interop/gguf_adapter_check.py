#!/usr/bin/env python3
"""tests/ref/interop/gguf_adapter_check.py — read a GGUF LoRA adapter peftlua wrote with PyPI gguf.

Owner: interop. Run by tests/lua/test_adapters.lua (always-on part of `make test`):
    python3 tests/ref/interop/gguf_adapter_check.py ADAPTER.gguf EXPECT.json
EXPECT.json: {"architecture": "llama", "alpha": 11.31, "dtype": "F32",
              "tensors": {"blk.1.attn_q.weight.lora_a": [8, 64], ...}}   (shapes row-major)
Checks general.type == "adapter", adapter.type == "lora", general.architecture, that
adapter.lora.alpha is an f32 equal to alpha (1e-6 relative), and that the tensor names, their
shapes and their type are exactly the expected ones. Prints one line; exit 1 on a mismatch.
"""
import json
import sys
from importlib.metadata import version

import gguf


def main():
    path, expect_path = sys.argv[1:3]
    want = json.load(open(expect_path))
    r = gguf.GGUFReader(path)
    bad = []

    def field(key, vtype):
        f = r.fields.get(key)
        if f is None:
            bad.append(f"{key} missing")
            return None
        if f.types[0] != vtype:
            bad.append(f"{key} has type {f.types[0].name}, not {vtype.name}")
            return None
        return f.contents()

    T = gguf.GGUFValueType
    if field("general.type", T.STRING) != "adapter":
        bad.append("general.type is not 'adapter'")
    if field("adapter.type", T.STRING) != "lora":
        bad.append("adapter.type is not 'lora'")
    arch = field("general.architecture", T.STRING)
    if arch != want["architecture"]:
        bad.append(f"general.architecture {arch!r}, want {want['architecture']!r}")
    alpha = field("adapter.lora.alpha", T.FLOAT32)
    if alpha is None or abs(alpha - want["alpha"]) > 1e-6 * abs(want["alpha"]):
        bad.append(f"adapter.lora.alpha {alpha}, want {want['alpha']}")
    got = {t.name: (list(reversed([int(x) for x in t.shape])), t.tensor_type.name) for t in r.tensors}
    for name, shape in want["tensors"].items():
        if name not in got:
            bad.append(f"tensor {name} missing")
        elif got[name][0] != shape or got[name][1] != want["dtype"]:
            bad.append(f"tensor {name}: {got[name][1]} {got[name][0]}, want {want['dtype']} {shape}")
    for name in got:
        if name not in want["tensors"]:
            bad.append(f"unexpected tensor {name}")
    if bad:
        print(f"{path}: " + "; ".join(bad[:5]))
        return 1
    print(f"gguf {version('gguf')} reads {path}: "
          f"{arch} adapter, alpha {alpha:.6g}, {len(got)} tensors {want['dtype']}, names and shapes as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
