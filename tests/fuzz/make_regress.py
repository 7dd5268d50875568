#!/usr/bin/env python3
"""tests/fuzz/make_regress.py — the issue-12 cases as small files in tests/fuzz/regress/<target>/.

Each was a finding (unbounded allocation, UB, leak, out-of-range id); every one must now give
an error. `make fuzz-replay` (in `make asan`) runs them under ASan+UBSan through the harnesses;
tests/c/test_hostile.c loads each and checks the message. Crash inputs a fuzzer finds later
are added to the same directories (as they are, named crash-<what>).
Run from the repository root (needs tests/fuzz/corpus/, from make_seeds.py and the harnesses).
"""
import json, math, os, struct, sys

sys.path.insert(0, os.path.dirname(__file__))
import make_seeds as S  # noqa: E402

OUT = "tests/fuzz/regress"
SPLIT = S.SPLIT


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    # tokenizer.json: one id of 1e8 sized the vocabulary (140 bytes, ~20 GB, ~90 s)
    put("tokenizer_json", "id_1e8.json",
        '{"model":{"type":"BPE","vocab":{"a":0,"b":100000000},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}')
    put("tokenizer_json", "id_16m_sparse.json",
        '{"model":{"type":"BPE","vocab":{"a":0,"b":16000000},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}')
    put("tokenizer_json", "id_fraction.json",
        '{"model":{"type":"BPE","vocab":{"a":0,"b":1.5},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}')
    put("tokenizer_json", "added_id_huge.json",
        '{"added_tokens":[{"id":4e9,"content":"<x>"}],"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}')
    # adapters: r 4000000 (> 4 GB zeroed before the weights were read), r 9e9 (cast UB), r 0
    # (the message was lost: "adapter_config.json: adapter_config.json: "), r larger than the
    # weights file holds, a layer index of 1e12
    seed = open("tests/fuzz/corpus/adapter/fixture_shape_v_down", "rb").read()
    cfg, weights = seed.split(SPLIT)
    c = json.loads(cfg)
    for name, r in [("r_4000000", 4000000), ("r_9e9", 9e9), ("r_0", 0), ("r_60000_small_file", 60000), ("r_nan_like", -1e308)]:
        d = dict(c, r=r)
        put("adapter", name, json.dumps(d).encode() + SPLIT + weights)
    empty = struct.pack("<Q", 8) + b"{}      "
    allm = dict(c, r=65536, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    del allm["layers_to_transform"]
    put("adapter", "r_65536_no_tensors", json.dumps(allm).encode() + SPLIT + empty)
    put("adapter", "r_9e9_no_weights", '{"peft_type":"LORA","r":9e9}')
    put("adapter", "layer_1e12", json.dumps(dict(c, layers_to_transform=[1e12])).encode() + SPLIT + weights)
    # GGUF LoRA adapters (llama.cpp layout): a rank of 2^20 in a zero-byte tensor, a rank that
    # does not fit the model's projection
    put("adapter", "gguf_rank_2p20_empty.gguf", S.gguf_adapter(tensors=[("blk.1.attn_v.weight.lora_a", (1 << 20, 0))]))
    put("adapter", "gguf_wrong_in.gguf", S.gguf_adapter(tensors=[("blk.1.attn_v.weight.lora_a", (2, 64))]))
    # checkpoints: blob_size 4 GiB in a short file; counters at INT64_MAX; a bit flip; truncation
    ck = open("tests/fuzz/corpus/checkpoint/with_blob", "rb").read()
    man, state = ck.split(SPLIT)
    v1 = b'{"format": "peftlua-checkpoint", "version": 1, "state": "state-00000000.bin"}'
    st = bytearray(state)
    st[64:72] = struct.pack("<Q", 1 << 32)               # blob_size
    put("checkpoint", "blob_size_4g", v1 + SPLIT + bytes(st))
    st = bytearray(state)
    st[32:40] = struct.pack("<q", (1 << 63) - 1)         # step
    st[40:48] = struct.pack("<q", (1 << 63) - 1)         # tokens_seen
    put("checkpoint", "step_int64_max", v1 + SPLIT + bytes(st))
    st = bytearray(state)
    st[200] ^= 0x10                                      # one bit in the trained vector
    put("checkpoint", "bit_flip", man + SPLIT + bytes(st))
    put("checkpoint", "truncated", man + SPLIT + state[:-100])
    # GGUF: a NaN weight (reached pl_k_expf: NaN converted to int); an infinite norm weight;
    # attention.key_length x head_count overflowing int
    g = bytearray(open("tests/fuzz/corpus/gguf/tiny_f32.gguf", "rb").read())
    tail = len(g) - S.D * 4                              # output_norm.weight is the last tensor
    g2 = bytearray(g)
    g2[tail:tail + 4] = struct.pack("<f", float("nan"))
    put("gguf", "nan_weight.gguf", bytes(g2))
    g3 = bytearray(g)
    g3[tail + 4:tail + 8] = struct.pack("<f", float("inf"))
    put("gguf", "inf_weight.gguf", bytes(g3))
    key = S.gstr("llama.attention.head_count") + struct.pack("<I", 4)
    i = bytes(g).index(key)
    kl = S.gkv("llama.attention.key_length", 4, 1 << 30)
    g4 = bytearray(g[:i]) + kl + g[i:]
    g4[16:24] = struct.pack("<Q", struct.unpack("<Q", bytes(g[16:24]))[0] + 1)  # kv count + 1
    put("gguf", "head_dim_overflow.gguf", bytes(g4))
    # a q8_0 model (dim 32) whose first block scale in blk.0.attn_q.weight is NaN
    S.D, S.F = 32, 64
    put("gguf", "nan_q8_0_scale.gguf", S.gguf(True, "blk.0.attn_q.weight"))
    S.D, S.F = 8, 16
    # HF config.json: out-of-range optional fields (casts were UB), head_dim x heads overflow
    hc = json.loads(S.hf_config())
    for name, k, v in [("kv_heads_1e300", "num_key_value_heads", 1e300), ("head_dim_2e9", "head_dim", 2147483647),
                       ("max_pos_neg", "max_position_embeddings", -1e20), ("bos_1e10", "bos_token_id", 1e10),
                       ("rope_theta_inf", "rope_theta", 1e999)]:
        put("hf_config", name + ".json", json.dumps(dict(hc, **{k: v})).replace("Infinity", "1e999"))
    # llama2.c: vocab_size INT32_MIN (negated: UB); a NaN weight
    m = bytearray(open("tests/fuzz/corpus/llama2c_model/tiny.bin", "rb").read())
    m2 = bytearray(m)
    m2[20:24] = struct.pack("<i", -(1 << 31))
    put("llama2c_model", "vocab_int32_min.bin", bytes(m2))
    put("llama2c_model", "huge_header.bin", struct.pack("<7i", 1 << 20, 1 << 22, 4096, 16, 16, 1 << 24, 1 << 20) + bytes(m[28:]))
    m3 = bytearray(m)
    m3[28 + 40:28 + 44] = struct.pack("<f", float("nan"))
    put("llama2c_model", "nan_weight.bin", bytes(m3))
    # llama2.c tokenizer under 259 tokens (byte fallback returned ids outside it)
    toks = ["<unk>", "<s>", "</s>", "a", "b"]
    t = struct.pack("<i", 5) + b"".join(struct.pack("<fi", 0.0, len(x)) + x.encode() for x in toks)
    put("llama2c_tokenizer", "vocab_5.bin", t)
    # safetensors: an empty "__metadata__" followed by a second one (leaked the first table)
    h = b'{"__metadata__":{},"__metadata__":{"a":"b"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    h += b" " * ((-len(h)) % 8)
    put("safetensors", "metadata_twice.safetensors", struct.pack("<Q", len(h)) + h + struct.pack("<f", 1.0))


if __name__ == "__main__":
    main()
