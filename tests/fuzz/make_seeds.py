#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py — the small synthesized seeds of the fuzz corpora.

Writes tiny but valid files with Python's struct/json only (independent of the engine's own
writers): a 1-layer Llama GGUF with a llama2.c-style SPM vocabulary (f32 and q8_0 weights), the
same model as HF safetensors + config.json + a tiny tokenizer.json, a llama2.c model .bin and
tokenizer .bin, datasets in each format, chat messages, an adapter (config + weights).
Run from the repository root; writes tests/fuzz/corpus/<target>/ and tests/fuzz/data/.
Checkpoint and tuner-history seeds are written by their harnesses (PL_FUZZ_MAKE_SEED=dir),
the real files (stories260K, ../shared datasets, tokenizer fixtures) are added by
tests/fuzz/seeds.sh at fuzzing time.
"""
import json, os, random, struct

R = random.Random(12)
OUT = "tests/fuzz/corpus"
SPLIT = b"\n--PEFTLUA-FUZZ-SPLIT--\n"
D, F, L, H, KV, V, T = 8, 16, 1, 2, 2, 264, 16   # vocab: <unk> <s> </s>, 256 bytes, 5 words


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def floats(n, scale=0.3):
    return [R.uniform(-scale, scale) for _ in range(n)]


def vocab():
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581the", "\u2581a", "\u2581cat", "at", "\u2581"]
    return toks


# ---- GGUF
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, val):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == 4: out += struct.pack("<I", val)
    elif typ == 6: out += struct.pack("<f", val)
    elif typ == 8: out += gstr(val)
    elif typ == 9:
        et, items = val
        out += struct.pack("<IQ", et, len(items))
        for it in items:
            out += gstr(it) if et == 8 else struct.pack({6: "<f", 5: "<i", 4: "<I"}[et], it)
    return out


def q8_0(vals):
    out = b""
    for i in range(0, len(vals), 32):
        blk = vals[i:i + 32]
        amax = max(abs(v) for v in blk) or 1.0
        d = amax / 127
        out += struct.pack("<e", d) + bytes(struct.pack("<b", max(-127, min(127, round(v / d))))[0] for v in blk)
    return out


def llama_tensors():
    """(gguf name, hf name, shape rows x cols (HF order), values)"""
    ts = [("token_embd.weight", "model.embed_tokens.weight", (V, D))]
    for l in range(L):
        for g, h, sh in [("attn_norm", "input_layernorm", (D,)), ("ffn_norm", "post_attention_layernorm", (D,)),
                         ("attn_q", "self_attn.q_proj", (D, D)), ("attn_k", "self_attn.k_proj", (KV * D // H, D)),
                         ("attn_v", "self_attn.v_proj", (KV * D // H, D)), ("attn_output", "self_attn.o_proj", (D, D)),
                         ("ffn_gate", "mlp.gate_proj", (F, D)), ("ffn_up", "mlp.up_proj", (F, D)),
                         ("ffn_down", "mlp.down_proj", (D, F))]:
            ts.append((f"blk.{l}.{g}.weight", f"model.layers.{l}.{h}.weight", sh))
    ts.append(("output_norm.weight", "model.norm.weight", (D,)))
    out = []
    for g, h, sh in ts:
        n = sh[0] * (sh[1] if len(sh) > 1 else 1)
        vals = [1.0] * n if len(sh) == 1 else floats(n)
        out.append((g, h, sh, vals))
    return out


def gguf(quant, nan_scale_in=None):
    tv = llama_tensors()
    toks = vocab()
    kvs = [gkv("general.architecture", 8, "llama"), gkv("general.name", 8, "fuzz-tiny"),
           gkv("llama.block_count", 4, L), gkv("llama.embedding_length", 4, D),
           gkv("llama.feed_forward_length", 4, F), gkv("llama.attention.head_count", 4, H),
           gkv("llama.attention.head_count_kv", 4, KV), gkv("llama.context_length", 4, T),
           gkv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5), gkv("llama.rope.freq_base", 6, 10000.0),
           gkv("tokenizer.ggml.model", 8, "llama"), gkv("tokenizer.ggml.tokens", 9, (8, toks)),
           gkv("tokenizer.ggml.scores", 9, (6, [0.0] * 3 + [0.0] * 256 + [-1.0, -2.0, -3.0, -4.0, -5.0])),
           gkv("tokenizer.ggml.token_type", 9, (5, [2, 3, 3] + [6] * 256 + [1] * 5)),
           gkv("tokenizer.ggml.bos_token_id", 4, 1), gkv("tokenizer.ggml.eos_token_id", 4, 2),
           gkv("tokenizer.chat_template", 8, "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")]
    infos, blobs, off = b"", [], 0
    for g, h, sh, vals in tv:
        q = quant and len(sh) == 2 and sh[1] % 32 == 0 and g != "token_embd.weight"
        data = q8_0(vals) if q else struct.pack(f"<{len(vals)}f", *vals)
        if q and g == nan_scale_in:
            data = struct.pack("<H", 0x7e00) + data[2:]     # the first block's f16 scale: NaN
        dims = list(reversed(sh))
        infos += gstr(g) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", 8 if q else 0, off)
        pad = (-len(data)) % 32
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tv), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % 32)
    return head + b"".join(blobs)


# ---- safetensors
def safetensors(tensors, meta=None):
    hdr, data = {}, b""
    if meta is not None: hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(vals): return struct.pack(f"<{len(vals)}f", *vals)
def bf16(vals): return b"".join(struct.pack("<f", v)[2:] for v in vals)


def hf_model():
    ts = [(h, "F32", sh, f32(vals)) for g, h, sh, vals in llama_tensors()]
    return safetensors(ts, {"format": "pt"})


def hf_config():
    return json.dumps({"model_type": "llama", "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L,
                       "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V,
                       "max_position_embeddings": T, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                       "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": True}, indent=1)


def tokenizer_json():
    toks = vocab()
    return json.dumps({"version": "1.0", "added_tokens": [{"id": 1, "content": "<s>", "special": True},
                                                          {"id": 2, "content": "</s>", "special": True}],
                       "normalizer": {"type": "Sequence", "normalizers": [
                           {"type": "Prepend", "prepend": "\u2581"},
                           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
                       "pre_tokenizer": None,
                       "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                                 "vocab": {t: i for i, t in enumerate(toks)},
                                 "merges": []}}, ensure_ascii=False)


# ---- llama2.c
def l2c_model():
    h = struct.pack("<7i", D, F, L, H, KV, V, T)
    tv = {g: vals for g, h_, sh, vals in llama_tensors()}
    order = ["token_embd.weight"] + [f"blk.0.{n}.weight" for n in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"]] + ["output_norm.weight"]
    body = b"".join(f32(tv[k]) for k in order)
    body += f32([0.0] * (T * (D // H)))   # freq_cis real + imag: seq * head/2 each
    return h + body


def l2c_tokenizer():
    toks = vocab()
    out = struct.pack("<i", max(len(t.encode()) for t in toks))
    for i, t in enumerate(toks):
        b = t.encode()
        out += struct.pack("<fi", -float(i) if i > 258 else 0.0, len(b)) + b
    return out


def gguf_adapter(r=2, tensors=None):
    """A llama.cpp-layout GGUF LoRA adapter for the adapter harness's model shape (hidden 24,
    kv dim 12, ffn 40): blk.1 attn_v and ffn_down, f32."""
    if tensors is None:
        tensors = [("blk.1.attn_v.weight.lora_a", (r, 24)), ("blk.1.attn_v.weight.lora_b", (12, r)),
                   ("blk.1.ffn_down.weight.lora_a", (r, 40)), ("blk.1.ffn_down.weight.lora_b", (24, r))]
    kvs = [gkv("general.architecture", 8, "llama"), gkv("general.type", 8, "adapter"),
           gkv("adapter.type", 8, "lora"), gkv("adapter.lora.alpha", 6, 4.0)]
    infos, blobs, off = b"", [], 0
    for name, sh in tensors:
        n = sh[0] * sh[1]
        data = struct.pack(f"<{n}f", *floats(n))
        infos += gstr(name) + struct.pack("<I", 2) + struct.pack("<QQ", sh[1], sh[0]) + struct.pack("<IQ", 0, off)
        pad = (-len(data)) % 32
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % 32)
    return head + b"".join(blobs)


def main():
    put("gguf", "tiny_f32.gguf", gguf(False))
    st = hf_model()
    put("safetensors", "tiny_llama.safetensors", st)
    put("safetensors", "mixed.safetensors", safetensors([("a", "F32", (2, 3), f32(floats(6))), ("b", "BF16", (4,), bf16(floats(4))),
                                                          ("c", "F16", (2,), struct.pack("<2e", 1.0, -2.0)),
                                                          ("d", "I32", (3,), struct.pack("<3i", 1, 2, 3))], {"k": "v"}))
    os.makedirs("tests/fuzz/data/tiny-hf", exist_ok=True)
    with open("tests/fuzz/data/tiny-hf/model.safetensors", "wb") as f: f.write(st)
    put("hf_config", "config_only.json", hf_config())
    put("hf_config", "config_and_tokenizer", hf_config().encode() + SPLIT + tokenizer_json().encode())
    put("tokenizer_json", "tiny_spm_style.json", tokenizer_json())
    put("llama2c_model", "tiny.bin", l2c_model())
    put("llama2c_tokenizer", "tiny_tok.bin", l2c_tokenizer())
    # datasets: one per format (first byte of the input picks the forced format in the harness)
    put("data", "text.jsonl", '{"text": "Once upon a time there was a cat."}\n{"text": "the end"}\n')
    put("data", "completion.jsonl", '{"prompt": "2+2=", "completion": "4"}\n')
    put("data", "alpaca.json", json.dumps([{"instruction": "Add", "input": "2 2", "output": "4"}, {"instruction": "Say hi", "output": "hi"}]))
    put("data", "chat.jsonl", json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}) + "\n")
    # chat: template, then role/content pairs
    tmpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    put("chat", "chatml", tmpl.encode() + SPLIT + b"system" + SPLIT + b"Be brief." + SPLIT + b"user" + SPLIT + b"Hi" + SPLIT + b"assistant" + SPLIT + b"Hello!")
    put("chat", "llama3", b"<|start_header_id|>{{ message['role'] }}<|end_header_id|>" + SPLIT + b"user" + SPLIT + b"Hi" + SPLIT + b"assistant" + SPLIT + b"Yo")
    put("chat", "zephyr", b"<|user|>\n{{ message['content'] }}</s>" + SPLIT + b"user" + SPLIT + b"Hi")
    # adapter for the tiny GGUF model: config, then weights
    # (the harness's model shape: tests/data/lora/peft_fixture's, hidden 24, ffn 40, kv dim 12)
    r = 2
    ats = []
    for p, (i, o) in {"self_attn.v_proj": (24, 12), "mlp.down_proj": (40, 24)}.items():
        ats.append((f"base_model.model.model.layers.1.{p}.lora_A.weight", "F32", (r, i), f32(floats(r * i))))
        ats.append((f"base_model.model.model.layers.1.{p}.lora_B.weight", "BF16", (o, r), bf16(floats(o * r))))
    cfg = json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 4, "lora_dropout": 0.0, "bias": "none",
                      "target_modules": ["v_proj", "down_proj"], "layers_to_transform": [1]})
    global D, F
    D, F = 32, 64          # q8_0 rows need multiples of 32 (last: the other seeds' numbers stay)
    put("gguf", "small_q8_0.gguf", gguf(True))
    D, F = 8, 16
    put("adapter", "gguf_v_down.gguf", gguf_adapter())
    put("adapter", "fixture_shape_v_down", cfg.encode() + SPLIT + safetensors(ats, {"format": "pt"}))


if __name__ == "__main__":
    main()
