#!/usr/bin/env python3
"""gen_tokenizer_ref.py — golden token ids for tests/c/test_tokenizer.c (owner: tokenizer).

Independent references, none of them peftlua code:
  llama2_sp.json  the `sentencepiece` package on ../shared/tokenizers/llama2/tokenizer.model
                  (ids for llama2.c's tokenizer.bin, which is the same 32k vocabulary).
  tok512.json     stories260K's tok512.bin has no .model file, so its ids come from a direct
                  Python transcription of llama2.c run.c encode() below; the transcription is
                  first checked against sentencepiece on the Llama 2 vocabulary (it must agree
                  on every case) before its tok512 output is written.
  smollm2.json    the HF `tokenizers` package, with SmolLM2's tokenizer rebuilt from the
                  vocabulary and merges in models/SmolLM2-135M-Instruct.Q4_1.gguf and the
                  pre-tokenizer of SmolLM2's tokenizer.json (Digits(individual) + ByteLevel);
                  its 17 control tokens are added as special tokens (matched in text).
  llama3_style.json, qwen2_style.json
                  the llama3 / qwen2 pre-tokenizer regexes (from those models' tokenizer.json:
                  Split(regex, isolated) + ByteLevel(use_regex=False), llama3 with
                  ignore_merges) run by `tokenizers` over SmolLM2's vocabulary and merges: no
                  llama.cpp vectors exist here for these two, so this checks our scanners
                  against the real regex engine.
  tiny_spm/, tiny_spm_metaspace/
                  a small SentencePiece BPE model (byte_fallback) trained here with
                  `sentencepiece` on Tiny Shakespeare, written as a Llama-style HF
                  tokenizer.json with `tokenizers` (BPE + byte_fallback; legacy
                  Prepend/Replace normalizer, and the newer Metaspace(prepend_scheme="first")
                  pre-tokenizer); tiny_spm*.json hold what `tokenizers` encodes with them.
  tiny_bpe/       a small byte-level BPE trained here with `tokenizers` on Tiny Shakespeare,
                  saved as tokenizer.json (+ tokenizer_config.json); tiny_bpe.json holds
                  what `tokenizers` encodes with it. Tests the tokenizer.json loader.

Regenerate (needs: pip install sentencepiece tokenizers gguf numpy; `make model`):
    python3 tests/ref/tokenizer/gen_tokenizer_ref.py
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
SHARED = os.path.abspath(os.path.join(ROOT, '..', 'shared'))

TEXTS = [
    "Hello world",
    " Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the park.\nOne day, she saw a big dog!",
    "  two leading spaces and  double  spaces",
    "Tabs\tand\nnew\n\nlines\r\n",
    "Numbers: 3 33 333 3333 3.14159 1,000,000",
    "Unicode: Führer, Việt, нещо на Български, 我想在apple工作",
    "Emoji 🦙🚀 and ✅ done",
    "code: def f(x):\n    return x**2  # square",
    "I've been 'told he's there, 'RE you sure?",
    "",
]


def write(name, cases):
    with open(os.path.join(HERE, name), 'w', encoding='utf-8') as f:
        json.dump({"generated_by": "tests/ref/tokenizer/gen_tokenizer_ref.py", "cases": cases},
                  f, ensure_ascii=False, indent=0)
        f.write("\n")


# ---------------------------------------------------------------- llama2.c run.c encode()
def read_llama2c(path):
    data = open(path, 'rb').read()
    (maxlen,) = struct.unpack_from('<i', data, 0)
    off, vocab, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from('<fi', data, off)
        off += 8
        vocab.append(data[off:off + n])
        scores.append(score)
        off += n
    return vocab, scores


def runc_encode(vocab, scores, text, bos):
    """Transcription of run.c encode(): dummy-prefix token, per-UTF-8-character lookup with
    byte fallback (+3), then greedy best-score pair merges (first pair on ties)."""
    lookup = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)        # run.c's bsearch over a vocabulary without duplicates
    raw = text.encode('utf-8')
    toks = [1] if bos else []
    if raw:
        toks.append(lookup[b' '])
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        piece = raw[i:j]
        if piece in lookup:
            toks.append(lookup[piece])
        else:
            toks.extend(b + 3 for b in piece)
        i = j
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for k in range(len(toks) - 1):
            cand = vocab[toks[k]] + vocab[toks[k + 1]]
            if cand in lookup and scores[lookup[cand]] > best:
                best, best_id, best_i = scores[lookup[cand]], lookup[cand], k
        if best_i < 0:
            break
        toks[best_i:best_i + 2] = [best_id]
    return toks


def gen_llama2c():
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(SHARED, 'tokenizers/llama2/tokenizer.model'))
    vocab, scores = read_llama2c(os.path.join(SHARED, 'tokenizers/llama2/tokenizer.bin'))
    assert len(vocab) == 32000
    cases = []
    for k, t in enumerate(TEXTS):
        bos = k % 2 == 0
        ids = ([1] if bos else []) + sp.encode(t)
        port = runc_encode(vocab, scores, t, bos)
        if port != ids:
            sys.exit("run.c transcription disagrees with sentencepiece on %r:\n %s\n %s" % (t, port, ids))
        cases.append({"text": t, "bos": int(bos), "ids": ids})
    write('llama2_sp.json', cases)
    vocab, scores = read_llama2c(os.path.join(SHARED, 'models/stories260K/tok512.bin'))
    assert len(vocab) == 512
    cases = []
    for k, t in enumerate(TEXTS):
        bos = k % 2 == 0
        cases.append({"text": t, "bos": int(bos), "ids": runc_encode(vocab, scores, t, bos)})
    write('tok512.json', cases)


# ---------------------------------------------------------------- SmolLM2 via HF tokenizers
def gguf_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode('utf-8') for i in f.data]


def gen_smollm2():
    import gguf
    from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders
    path = os.path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf')
    r = gguf.GGUFReader(path)
    toks = gguf_strings(r, 'tokenizer.ggml.tokens')
    types = [int(r.fields['tokenizer.ggml.token_type'].parts[i][0]) for i in r.fields['tokenizer.ggml.token_type'].data]
    merges = [tuple(m.split(' ', 1)) for m in gguf_strings(r, 'tokenizer.ggml.merges')]
    vocab = {t: i for i, t in enumerate(toks)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(toks[i], special=True, normalized=False)
                           for i in range(len(toks)) if types[i] == 3])
    texts = TEXTS + [
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "SELECT name FROM table_1 WHERE id = 42 AND x > 3.5",
        "table: 1-10015132-11\ncolumns: Player, No., Nationality\nQ: What position does the player who played for butler cc (ks) play?\nA:",
    ]
    inp = open(os.path.join(SHARED, 'tokenizer-tests/llamacpp/ggml-vocab-gpt-2.gguf.inp'), 'rb').read()
    texts += [p.decode('utf-8') for p in inp.split(b'\n__ggml_vocab_test__\n')[:-1]]
    cases = [{"text": t, "ids": tk.encode(t, add_special_tokens=False).ids} for t in texts]
    write('smollm2.json', cases)


LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def gen_split_styles():
    import gguf
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers
    r = gguf.GGUFReader(os.path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'))
    toks = gguf_strings(r, 'tokenizer.ggml.tokens')
    merges = [tuple(m.split(' ', 1)) for m in gguf_strings(r, 'tokenizer.ggml.merges')]
    vocab = {t: i for i, t in enumerate(toks)}
    inp = open(os.path.join(SHARED, 'tokenizer-tests/llamacpp/ggml-vocab-gpt-2.gguf.inp'), 'rb').read()
    texts = TEXTS + [p.decode('utf-8') for p in inp.split(b'\n__ggml_vocab_test__\n')[:-1]] + [
        "DON'T YOU'LL WE'RE they'Re 12345678 x\r\n\r\n  y\n\n\n  z  ", "a\u00a0b\u3000c \u2028d"]
    for name, rx, ignore in (("llama3_style.json", LLAMA3_RE, True), ("qwen2_style.json", QWEN2_RE, False)):
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore))
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        write(name, [{"text": t, "ids": tk.encode(t, add_special_tokens=False).ids} for t in texts])


# ---------------------------------------------------------------- tiny tokenizer.json
def gen_tiny():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tr = trainers.BpeTrainer(vocab_size=420, special_tokens=special,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = open(os.path.join(SHARED, 'data/text/tinyshakespeare_input.txt'), encoding='utf-8').read()[:60000]
    tk.train_from_iterator([text], trainer=tr)
    d = os.path.join(HERE, 'tiny_bpe')
    os.makedirs(d, exist_ok=True)
    tk.save(os.path.join(d, 'tokenizer.json'), pretty=False)
    json.dump({"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": False,
               "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                                "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
              open(os.path.join(d, 'tokenizer_config.json'), 'w'), indent=1)
    texts = TEXTS + ["First Citizen:\nBefore we proceed any further, hear me speak.",
                     "<|im_start|>user\nSpeak, speak.<|im_end|>\n"]
    write('tiny_bpe.json', [{"text": t, "ids": tk.encode(t, add_special_tokens=False).ids} for t in texts])


def gen_tiny_spm():
    import tempfile
    import sentencepiece as spm
    from tokenizers import Tokenizer, AddedToken, models, normalizers, pre_tokenizers, decoders
    text = open(os.path.join(SHARED, 'data/text/tinyshakespeare_input.txt'), encoding='utf-8').read()[:80000]
    with tempfile.TemporaryDirectory() as td:
        with open(os.path.join(td, 'train.txt'), 'w', encoding='utf-8') as f:
            f.write(text)
        spm.SentencePieceTrainer.train(input=os.path.join(td, 'train.txt'), model_prefix=os.path.join(td, 'tiny'),
                                       model_type='bpe', vocab_size=400, byte_fallback=True, character_coverage=1.0,
                                       add_dummy_prefix=True, remove_extra_whitespaces=False,
                                       normalization_rule_name='identity', split_digits=True, num_threads=1,
                                       bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(td, 'tiny.model'))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    # merges as transformers derives them from a SentencePiece BPE model: every split of a
    # piece into two pieces, ordered by the merged piece's id (= its score order)
    merges = sorted(((l, r) for p in pieces for k in range(1, len(p)) for l, r in [(p[:k], p[k:])]
                     if l in vocab and r in vocab), key=lambda m: (vocab[m[0] + m[1]], vocab[m[0]], vocab[m[1]]))
    texts = TEXTS + ["<s>First Citizen:</s> Speak, speak.", "caf\u00e9 \u00fcber \u20ac5 \U0001F600", " <s> spaced <unk> "]
    for sub, style in (("tiny_spm", "legacy"), ("tiny_spm_metaspace", "metaspace")):
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        if style == "legacy":
            tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        else:
            tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                        decoders.Strip(" ", 1, 0)])
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
        d = os.path.join(HERE, sub)
        os.makedirs(d, exist_ok=True)
        tk.save(os.path.join(d, 'tokenizer.json'), pretty=False)
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True},
                  open(os.path.join(d, 'tokenizer_config.json'), 'w'), indent=1)
        cases = [{"text": t, "ids": tk.encode(t, add_special_tokens=False).ids} for t in texts]
        agree = sum(c["ids"] == sp.encode(c["text"]) for c in cases if "<" not in c["text"])
        print(sub, "agrees with sentencepiece on", agree, "of", sum("<" not in c["text"] for c in cases), "plain texts")
        write(sub + '.json', cases)


if __name__ == '__main__':
    gen_llama2c()
    gen_smollm2()
    gen_split_styles()
    gen_tiny()
    gen_tiny_spm()
    print("wrote goldens into", HERE)
