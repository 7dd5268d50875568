/* tokenizer_load.c — building tokenizers from files (owner: tokenizer):
 *   GGUF metadata (tokenizer.ggml.*) through peftlua/gguf.h,
 *   llama2.c tokenizer.bin (int32 max_token_length, then {f32 score, int32 len, bytes} to EOF),
 *   Hugging Face tokenizer.json (byte-level BPE) through peftlua/json.h, with
 *   tokenizer_config.json beside it for BOS/EOS and the chat template.
 * Each loader fills a struct pl_tokenizer_spec and calls pl_tokenizer_new().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer_internal.h"
#include "peftlua/alloc.h"
#include "peftlua/gguf.h"
#include "peftlua/json.h"

static void spec_defaults(struct pl_tokenizer_spec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->bos = sp->eos = sp->unk = sp->pad = -1;
    sp->add_bos = sp->add_eos = sp->add_space_prefix = -1;
}

/* ------------------------------------------------------------------ GGUF */

static int32_t gguf_id(const struct pl_gguf *g, const char *key, int32_t dflt)
{
    const struct pl_gguf_value *v = pl_gguf_find(g, key);
    if (!v) return dflt;
    int64_t x;
    switch (v->type) {
    case PL_GGUF_UINT8: case PL_GGUF_UINT16: case PL_GGUF_UINT32: case PL_GGUF_UINT64:
        return v->v.u64 >= 0x7FFFFFFFu ? -1 : (int32_t)v->v.u64;
    case PL_GGUF_INT8: case PL_GGUF_INT16: case PL_GGUF_INT32: case PL_GGUF_INT64:
        x = v->v.i64;
        return (x < 0 || x >= 0x7FFFFFFF) ? -1 : (int32_t)x;
    default: return dflt;
    }
}

static int gguf_bool(const struct pl_gguf *g, const char *key)
{
    const struct pl_gguf_value *v = pl_gguf_find(g, key);
    if (!v) return -1;
    if (v->type == PL_GGUF_BOOL) return v->v.b ? 1 : 0;
    if (v->type <= PL_GGUF_INT32 || v->type == PL_GGUF_UINT64 || v->type == PL_GGUF_INT64) return v->v.u64 != 0;
    return -1;
}

enum pl_status pl_tokenizer_load_gguf(struct pl_tokenizer **out, const char *path)
{
    *out = NULL;
    struct pl_gguf *g = NULL;
    enum pl_status st = pl_gguf_open(path, &g);
    if (st) return st;
    struct pl_tokenizer_spec sp;
    spec_defaults(&sp);
    const char **toks = NULL, **merges = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;

    const char *model = pl_gguf_str_or(g, "tokenizer.ggml.model", NULL);
    if (!model) { st = pl_fail(PL_ERR_FORMAT, "%s: no tokenizer (metadata key 'tokenizer.ggml.model' not found)", path); goto done; }
    if (strcmp(model, "llama") == 0) {
        sp.kind = PL_TOK_SPM;
        sp.bos = 1; sp.eos = 2; sp.unk = 0;           /* llama.cpp's defaults for SPM */
    } else if (strcmp(model, "gpt2") == 0) {
        sp.kind = PL_TOK_BPE;
    } else if (strcmp(model, "bert") == 0) {
        sp.kind = PL_TOK_WPM;
        sp.unk = 100;                                  /* llama.cpp's defaults for WPM */
        sp.bos = gguf_id(g, "tokenizer.ggml.cls_token_id", 101);
        sp.eos = gguf_id(g, "tokenizer.ggml.seperator_token_id", 102);
    } else {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (llama, gpt2, bert are)", path, model);
        goto done;
    }
    uint64_t n = 0;
    const struct pl_gguf_str *tv = pl_gguf_str_array(g, "tokenizer.ggml.tokens", &n);
    if (!tv) { st = pl_fail(PL_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.tokens missing or not strings)", path); goto done; }
    if (n == 0 || n > 0x7FFFFFFF) { st = pl_fail(PL_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path, (unsigned long long)n); goto done; }
    toks = pl_alloc(n * sizeof *toks, PL_MEM_WORKSPACE);
    lens = pl_alloc(n * sizeof *lens, PL_MEM_WORKSPACE);
    if (!toks || !lens) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (uint64_t i = 0; i < n; i++) { toks[i] = tv[i].s; lens[i] = (uint32_t)tv[i].len; }
    sp.n_vocab = (int32_t)n;
    sp.tokens = toks; sp.token_lens = lens;

    const struct pl_gguf_value *sv = pl_gguf_find(g, "tokenizer.ggml.scores");
    if (sv) {
        if (sv->type != PL_GGUF_ARRAY || sv->v.arr.n != n) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tokenizer.ggml.scores is not an array of %llu numbers", path, (unsigned long long)n);
            goto done;
        }
        if (!(scores = pl_alloc(n * sizeof *scores, PL_MEM_WORKSPACE))) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (uint64_t i = 0; i < n; i++) {
            double d;
            if (!pl_gguf_value_f64(sv, i, &d)) { st = pl_fail(PL_ERR_FORMAT, "%s: tokenizer.ggml.scores[%llu] is not a number", path, (unsigned long long)i); goto done; }
            scores[i] = (float)d;
        }
        sp.scores = scores;
    }
    const struct pl_gguf_value *yv = pl_gguf_find(g, "tokenizer.ggml.token_type");
    if (yv) {
        if (yv->type != PL_GGUF_ARRAY || yv->v.arr.n != n) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an array of %llu integers", path, (unsigned long long)n);
            goto done;
        }
        if (!(types = pl_alloc(n * sizeof *types, PL_MEM_WORKSPACE))) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (uint64_t i = 0; i < n; i++) {
            int64_t x;
            if (!pl_gguf_value_i64(yv, i, &x)) { st = pl_fail(PL_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%llu] is not an integer", path, (unsigned long long)i); goto done; }
            types[i] = (int32_t)x;
        }
        sp.types = types;
    } else {
        /* no types: everything is normal except the byte tokens (found by pl_tokenizer_new) */
        if (!(types = pl_alloc(n * sizeof *types, PL_MEM_WORKSPACE))) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (uint64_t i = 0; i < n; i++) {
            const char *s = tv[i].s;
            types[i] = (tv[i].len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') ? PL_TOKT_BYTE : PL_TOKT_NORMAL;
        }
        sp.types = types;
    }
    if (sp.kind == PL_TOK_BPE) {
        uint64_t nm = 0;
        const struct pl_gguf_str *mv = pl_gguf_str_array(g, "tokenizer.ggml.merges", &nm);
        if (!mv) { st = pl_fail(PL_ERR_FORMAT, "%s: BPE tokenizer without tokenizer.ggml.merges", path); goto done; }
        if (!(merges = pl_alloc((nm ? nm : 1) * sizeof *merges, PL_MEM_WORKSPACE))) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (uint64_t i = 0; i < nm; i++) merges[i] = mv[i].s;
        sp.merges = merges;
        sp.n_merges = (int32_t)nm;
        sp.pre = pl_gguf_str_or(g, "tokenizer.ggml.pre", "default");
    }
    sp.bos = gguf_id(g, "tokenizer.ggml.bos_token_id", sp.bos);
    sp.eos = gguf_id(g, "tokenizer.ggml.eos_token_id", sp.eos);
    sp.unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", sp.unk);
    sp.pad = gguf_id(g, "tokenizer.ggml.padding_token_id", sp.pad);
    sp.add_bos = gguf_bool(g, "tokenizer.ggml.add_bos_token");
    sp.add_eos = gguf_bool(g, "tokenizer.ggml.add_eos_token");
    sp.add_space_prefix = gguf_bool(g, "tokenizer.ggml.add_space_prefix");
    sp.chat_template = pl_gguf_str_or(g, "tokenizer.chat_template", NULL);
    st = pl_tokenizer_new(out, &sp, path);
done:
    pl_free(toks); pl_free(lens); pl_free(scores); pl_free(types); pl_free(merges);
    pl_gguf_close(g);
    return st;
}

/* ------------------------------------------------------------------ llama2.c */

enum pl_status pl_tokenizer_load_llama2c(struct pl_tokenizer **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum pl_status st = PL_OK;
    char **toks = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;
    size_t n = 0, cap = 0;
    int32_t maxlen;
    if (fread(&maxlen, 4, 1, f) != 1) { st = pl_fail(PL_ERR_FORMAT, "%s: truncated header (no max_token_length)", path); goto done; }
    if (maxlen <= 0 || maxlen > 4096) { st = pl_fail(PL_ERR_FORMAT, "%s: max_token_length %d is not plausible (not a llama2.c tokenizer.bin?)", path, (int)maxlen); goto done; }
    for (;;) {
        float score;
        int32_t len;
        size_t got = fread(&score, 1, 4, f);
        if (got == 0) break;
        if (got != 4 || fread(&len, 4, 1, f) != 1) { st = pl_fail(PL_ERR_FORMAT, "%s: token %zu: truncated entry", path, n); goto done; }
        if (len < 0 || len > maxlen) { st = pl_fail(PL_ERR_FORMAT, "%s: token %zu: length %d outside [0, %d]", path, n, (int)len, (int)maxlen); goto done; }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            char **nt = pl_realloc(toks, nc * sizeof *nt);
            if (nt) toks = nt;
            uint32_t *nl = pl_realloc(lens, nc * sizeof *nl);
            if (nl) lens = nl;
            float *ns = pl_realloc(scores, nc * sizeof *ns);
            if (ns) scores = ns;
            if (!nt || !nl || !ns) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
            cap = nc;
        }
        char *s = pl_alloc((size_t)len + 1, PL_MEM_WORKSPACE);
        if (!s) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        if (len && fread(s, 1, (size_t)len, f) != (size_t)len) { pl_free(s); st = pl_fail(PL_ERR_FORMAT, "%s: token %zu: truncated text (%d bytes announced)", path, n, (int)len); goto done; }
        s[len] = 0;
        toks[n] = s; lens[n] = (uint32_t)len; scores[n] = score;
        n++;
    }
    if (n < 259) { st = pl_fail(PL_ERR_FORMAT, "%s: only %zu tokens (llama2.c vocabularies hold <unk>, <s>, </s> and the 256 byte tokens <0x00>..<0xFF> that encoding falls back to)", path, n); goto done; }
    struct pl_tokenizer_spec sp;
    spec_defaults(&sp);
    sp.kind = PL_TOK_LLAMA2C;
    sp.n_vocab = (int32_t)n;
    sp.tokens = (const char *const *)toks; sp.token_lens = lens; sp.scores = scores;
    sp.types = NULL;                 /* inferred: <unk> unknown, <s> </s> control, <0xXX> byte */
    sp.unk = 0; sp.bos = 1; sp.eos = 2;
    sp.add_bos = 1; sp.add_space_prefix = 1;
    st = pl_tokenizer_new(out, &sp, path);
done:
    fclose(f);
    for (size_t i = 0; i < n; i++) pl_free(toks[i]);
    pl_free(toks); pl_free(lens); pl_free(scores);
    return st;
}

/* ------------------------------------------------------------------ HF tokenizer.json */

/* The pre-tokenizer name for a tokenizer.json "pre_tokenizer" we can reproduce, or NULL. */
static const char *hf_pre_name(const struct pl_json *pt)
{
    const char *type = pl_json_get_str(pt, "type");
    if (!type) return NULL;
    if (strcmp(type, "ByteLevel") == 0) {
        if (!pl_json_bool(pl_json_get(pt, "use_regex"), 1)) return NULL;
        return "gpt-2";
    }
    if (strcmp(type, "Sequence") != 0) return NULL;
    const struct pl_json *a = pl_json_get(pt, "pretokenizers");
    if (pl_json_len(a) != 2) return NULL;
    const struct pl_json *p0 = pl_json_at(a, 0), *p1 = pl_json_at(a, 1);
    const char *t0 = pl_json_get_str(p0, "type"), *t1 = pl_json_get_str(p1, "type");
    if (!t0 || !t1 || strcmp(t1, "ByteLevel") != 0) return NULL;
    if (strcmp(t0, "Digits") == 0 && pl_json_bool(pl_json_get(p0, "individual_digits"), 0) &&
        pl_json_bool(pl_json_get(p1, "use_regex"), 1))
        return "starcoder";
    if (strcmp(t0, "Split") == 0 && !pl_json_bool(pl_json_get(p1, "use_regex"), 1)) {
        const char *re = pl_json_get_str(pl_json_get(p0, "pattern"), "Regex");
        if (!re) return NULL;
        if (strcmp(re, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == 0)
            return "llama3";
        if (strcmp(re, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == 0)
            return "qwen2";
    }
    return NULL;
}

/* Llama-style tokenizer.json: BPE with byte_fallback over text where spaces are "\u2581" and
 * one "\u2581" is prepended — either the legacy normalizer Sequence[Prepend, Replace] (returns
 * 1: prefix every piece between special tokens, as llama.cpp's SPM) or a Metaspace
 * pre-tokenizer (returns 2 for prepend_scheme "first", 1 for "always"); -1 for a Metaspace that
 * splits words, 0 when not this style. */
static int hf_spm_style(const struct pl_json *j)
{
    static const char meta[] = "\xe2\x96\x81";
    const struct pl_json *model = pl_json_get(j, "model");
    if (!pl_json_bool(pl_json_get(model, "byte_fallback"), 0)) return 0;
    const struct pl_json *pt = pl_json_get(j, "pre_tokenizer");
    const char *ptt = pl_json_get_str(pt, "type");
    if (ptt && strcmp(ptt, "Metaspace") == 0) {
        const char *rep = pl_json_get_str(pt, "replacement");
        if (!rep || strcmp(rep, meta) != 0) return 0;
        if (pl_json_bool(pl_json_get(pt, "split"), 1)) return -1;
        const char *scheme = pl_json_get_str(pt, "prepend_scheme");
        if (scheme && strcmp(scheme, "first") == 0) return 2;
        if (scheme && strcmp(scheme, "never") == 0) return 0;
        return 1;
    }
    if (pt && pl_json_type(pt) != PL_JSON_NULL) return 0;
    const struct pl_json *nm = pl_json_get(j, "normalizer");
    const char *nt = pl_json_get_str(nm, "type");
    if (!nt || strcmp(nt, "Sequence") != 0) return 0;
    int prepend = 0, replace = 0;
    for (const struct pl_json *e = pl_json_first(pl_json_get(nm, "normalizers")); e; e = pl_json_next(e)) {
        const char *t = pl_json_get_str(e, "type");
        if (t && strcmp(t, "Prepend") == 0 && pl_json_get_str(e, "prepend") && strcmp(pl_json_get_str(e, "prepend"), meta) == 0) prepend = 1;
        else if (t && strcmp(t, "Replace") == 0 && pl_json_get_str(pl_json_get(e, "pattern"), "String") &&
                 strcmp(pl_json_get_str(pl_json_get(e, "pattern"), "String"), " ") == 0 &&
                 pl_json_get_str(e, "content") && strcmp(pl_json_get_str(e, "content"), meta) == 0) replace = 1;
        else return 0;
    }
    return prepend && replace ? 1 : 0;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static const char *hf_tok_str(const struct pl_json *cfg, const char *key)
{
    const struct pl_json *v = pl_json_get(cfg, key);
    if (!v) return NULL;
    if (pl_json_type(v) == PL_JSON_STRING) return pl_json_str(v);
    return pl_json_get_str(v, "content");
}

enum pl_status pl_tokenizer_load_hf(struct pl_tokenizer **out, const char *path)
{
    *out = NULL;
    struct pl_json *j = pl_json_parse_file(path), *cfg = NULL;
    if (!j) return pl_last_error()[0] ? PL_ERR_FORMAT : pl_fail(PL_ERR_FORMAT, "%s: cannot parse", path);
    enum pl_status st = PL_OK;
    const char **toks = NULL, **merges = NULL;
    char **merge_buf = NULL;
    int32_t *types = NULL;
    int32_t n = 0, nm = 0;
    const struct pl_json *model = pl_json_get(j, "model");
    const char *mtype = pl_json_get_str(model, "type");
    if (!model || !mtype) { st = pl_fail(PL_ERR_FORMAT, "%s: no \"model\" with a \"type\"", path); goto done; }
    if (strcmp(mtype, "BPE") != 0) { st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tokenizer model type '%s' is not supported (BPE is)", path, mtype); goto done; }
    int spm = hf_spm_style(j);
    const char *pre = NULL;
    if (spm < 0) { st = pl_fail(PL_ERR_UNSUPPORTED, "%s: Metaspace pre-tokenizer with split=true is not supported", path); goto done; }
    if (!spm && !(pre = hf_pre_name(pl_json_get(j, "pre_tokenizer")))) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: pre_tokenizer is not one this tokenizer reproduces (ByteLevel; Digits+ByteLevel; llama3/qwen2 Split+ByteLevel; Llama-style \u2581 + byte_fallback)", path);
        goto done;
    }
    const char *unk_name = pl_json_get_str(model, "unk_token");
    const struct pl_json *vocab = pl_json_get(model, "vocab");
    const struct pl_json *added = pl_json_get(j, "added_tokens");
    if (pl_json_type(vocab) != PL_JSON_OBJECT) { st = pl_fail(PL_ERR_FORMAT, "%s: model.vocab is not an object", path); goto done; }
    /* ids are integers below PL_TOKENIZER_MAX_VOCAB, and the vocabulary they span is dense:
     * at most PL_TOKENIZER_MAX_GAP ids more than there are entries (a hostile id must not size
     * the tables) */
    int64_t n_entries = 0, id;
    for (const struct pl_json *e = pl_json_first(vocab); e; e = pl_json_next(e), n_entries++) {
        if (pl_json_int(e, 0, PL_TOKENIZER_MAX_VOCAB - 1, -1, &id) != 1) { st = pl_fail(PL_ERR_FORMAT, "%s: vocab entry '%s' has a bad id (an integer in [0, %d) expected)", path, pl_json_key(e), PL_TOKENIZER_MAX_VOCAB); goto done; }
        if ((int32_t)id + 1 > n) n = (int32_t)id + 1;
    }
    for (const struct pl_json *e = pl_json_first(added); e; e = pl_json_next(e), n_entries++) {
        if (pl_json_get_int(e, "id", 0, PL_TOKENIZER_MAX_VOCAB - 1, -1, &id) != 1 || !pl_json_get_str(e, "content")) { st = pl_fail(PL_ERR_FORMAT, "%s: added_tokens entry without id/content (an integer id in [0, %d) expected)", path, PL_TOKENIZER_MAX_VOCAB); goto done; }
        if ((int32_t)id + 1 > n) n = (int32_t)id + 1;
    }
    if (n == 0) { st = pl_fail(PL_ERR_FORMAT, "%s: empty vocabulary", path); goto done; }
    if (n > n_entries + PL_TOKENIZER_MAX_GAP) {
        st = pl_fail(PL_ERR_FORMAT, "%s: token id %d but only %lld vocabulary entries (ids must be nearly dense)", path, n - 1, (long long)n_entries);
        goto done;
    }
    toks = pl_calloc((size_t)n, sizeof *toks, PL_MEM_WORKSPACE);
    types = pl_calloc((size_t)n, sizeof *types, PL_MEM_WORKSPACE);
    if (!toks || !types) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (const struct pl_json *e = pl_json_first(vocab); e; e = pl_json_next(e)) {
        int32_t id = (int32_t)pl_json_num(e, -1);
        toks[id] = pl_json_key(e); types[id] = PL_TOKT_NORMAL;
    }
    for (const struct pl_json *e = pl_json_first(added); e; e = pl_json_next(e)) {
        int32_t id = (int32_t)pl_json_get_num(e, "id", -1);
        toks[id] = pl_json_get_str(e, "content");
        types[id] = pl_json_bool(pl_json_get(e, "special"), 0) ? PL_TOKT_CONTROL : PL_TOKT_USER_DEFINED;
    }
    for (int32_t i = 0; i < n; i++) {
        if (!toks[i]) { toks[i] = ""; types[i] = PL_TOKT_UNUSED; continue; }
        if (!spm) continue;
        const char *s = toks[i];
        if (strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') types[i] = PL_TOKT_BYTE;
        if (unk_name && strcmp(s, unk_name) == 0) types[i] = PL_TOKT_UNKNOWN;
    }
    const struct pl_json *mj = pl_json_get(model, "merges");
    nm = pl_json_len(mj);
    merges = pl_calloc((size_t)(nm > 0 ? nm : 1), sizeof *merges, PL_MEM_WORKSPACE);
    merge_buf = pl_calloc((size_t)(nm > 0 ? nm : 1), sizeof *merge_buf, PL_MEM_WORKSPACE);
    if (!merges || !merge_buf) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (int32_t i = 0; i < nm; i++) {
        const struct pl_json *m = pl_json_at(mj, i);
        if (pl_json_type(m) == PL_JSON_STRING) { merges[i] = pl_json_str(m); continue; }
        /* newer files: ["left", "right"] */
        const char *a = pl_json_str(pl_json_at(m, 0)), *b = pl_json_str(pl_json_at(m, 1));
        if (!a || !b) { st = pl_fail(PL_ERR_FORMAT, "%s: model.merges[%d] is neither \"a b\" nor [a, b]", path, (int)i); goto done; }
        size_t la = strlen(a), lb = strlen(b);
        if (!(merge_buf[i] = pl_alloc(la + lb + 2, PL_MEM_WORKSPACE))) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
        memcpy(merge_buf[i], a, la); merge_buf[i][la] = ' '; memcpy(merge_buf[i] + la + 1, b, lb + 1);
        merges[i] = merge_buf[i];
    }
    struct pl_tokenizer_spec sp;
    spec_defaults(&sp);
    sp.kind = spm ? PL_TOK_SPM : PL_TOK_BPE;
    sp.n_vocab = n; sp.tokens = toks; sp.types = types;
    sp.n_merges = nm; sp.merges = merges; sp.pre = pre;
    sp.add_bos = 0; sp.add_space_prefix = spm ? 1 : 0;
    sp.prefix_first_only = spm == 2;
    if (spm && unk_name)
        for (int32_t i = 0; i < n; i++) if (strcmp(toks[i], unk_name) == 0) { sp.unk = i; break; }
    /* tokenizer_config.json in the same directory: BOS/EOS names and the chat template */
    {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
        char *cp = pl_alloc(dl + 32, PL_MEM_WORKSPACE);
        if (cp) {
            memcpy(cp, path, dl);
            strcpy(cp + dl, "tokenizer_config.json");
            FILE *f = fopen(cp, "rb");
            if (f) { fclose(f); cfg = pl_json_parse_file(cp); }
            pl_free(cp);
        }
    }
    if (cfg) {
        const char *b = hf_tok_str(cfg, "bos_token"), *e = hf_tok_str(cfg, "eos_token");
        const char *u = hf_tok_str(cfg, "unk_token"), *p = hf_tok_str(cfg, "pad_token");
        for (int32_t i = 0; i < n; i++) {
            if (b && sp.bos < 0 && strcmp(toks[i], b) == 0) sp.bos = i;
            if (e && sp.eos < 0 && strcmp(toks[i], e) == 0) sp.eos = i;
            if (u && sp.unk < 0 && strcmp(toks[i], u) == 0) sp.unk = i;
            if (p && sp.pad < 0 && strcmp(toks[i], p) == 0) sp.pad = i;
        }
        sp.add_bos = pl_json_bool(pl_json_get(cfg, "add_bos_token"), 0);
        sp.add_eos = pl_json_bool(pl_json_get(cfg, "add_eos_token"), 0);
        sp.chat_template = pl_json_get_str(cfg, "chat_template");
    } else {
        for (int32_t i = 0; i < n; i++)
            if (types[i] == PL_TOKT_CONTROL && (strcmp(toks[i], "<|endoftext|>") == 0 || strcmp(toks[i], "</s>") == 0) && sp.eos < 0)
                sp.eos = i;
    }
    st = pl_tokenizer_new(out, &sp, path);
done:
    if (merge_buf) for (int32_t i = 0; i < nm; i++) pl_free(merge_buf[i]);
    pl_free(merge_buf); pl_free(merges); pl_free(toks); pl_free(types);
    pl_json_free(cfg);
    pl_json_free(j);
    return st;
}

/* ------------------------------------------------------------------ dispatch */

enum pl_status pl_tokenizer_load(struct pl_tokenizer **out, const char *path)
{
    *out = NULL;
    if (!path) return pl_fail(PL_ERR_ARG, "tokenizer: no path");
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got >= 4 && memcmp(head, "GGUF", 4) == 0) return pl_tokenizer_load_gguf(out, path);
    size_t i = 0;
    while (i < got && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) i++;
    if (i < got && head[i] == '{') return pl_tokenizer_load_hf(out, path);
    return pl_tokenizer_load_llama2c(out, path);
}
