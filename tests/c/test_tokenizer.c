/* test_tokenizer.c — tokenizers against independent references (owner: tokenizer).
 *
 *  - llama.cpp's tokenizer test vectors (../shared/tokenizer-tests/llamacpp/, files .inp/.out): every
 *    case of every vocabulary whose algorithm and pre-tokenizer we implement, plus the round
 *    trip decode(encode(s)) == s on the same inputs; prints the table of cases passed.
 *  - llama2.c tokenizer.bin (stories260K tok512, Llama 2 32k) vs run.c-style / sentencepiece
 *    goldens, SmolLM2's GGUF tokenizer vs the HF `tokenizers` package, a tiny HF tokenizer.json
 *    vs the same package (goldens by tests/ref/tokenizer/gen_tokenizer_ref.py).
 *  - special tokens, decode details, and bad input (missing/truncated files, no tokenizer).
 *  - chat templates: five families vs jinja2 renderings of their real templates
 *    (tests/ref/chat/gen_chat_ref.py), assistant spans, recognition, forcing.
 */
#include "pl_test.h"

#include "peftlua/alloc.h"
#include "peftlua/chat.h"
#include "peftlua/gguf.h"
#include "peftlua/json.h"
#include "peftlua/status.h"
#include "peftlua/tokenizer.h"

#define VEC_DIR PL_SHARED "/tokenizer-tests/llamacpp/"
#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"


/* WordPiece lowercases and drops accents: no round trip there */
static int no_round_trip(const char *name) { return strcmp(name, "bert-bge") == 0; }

struct vocab_result { const char *name; int passed, total, rt_passed, rt_total; };

/* Run one vocabulary's cases; returns into r. Encoding: no BOS/EOS, no special parsing
 * (llama.cpp's test-tokenizer-0). */
static void run_vocab(const char *name, struct vocab_result *r)
{
    char path[256], inp[300], outp[300];
    snprintf(path, sizeof path, VEC_DIR "ggml-vocab-%s.gguf", name);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    memset(r, 0, sizeof *r);
    r->name = name;
    struct pl_tokenizer *t = NULL;
    enum pl_status st = pl_tokenizer_load(&t, path);
    if (st) fprintf(stderr, "%s\n", pl_last_error());
    assert_int_equal(st, PL_OK);
    size_t ni, no;
    char *in = pl_test_read(inp, &ni), *out = pl_test_read(outp, &no);
    assert_non_null(in); assert_non_null(out);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    char *p = in, *q = out;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;                     /* text after the last separator is not a case */
        size_t len = (size_t)(e - p);
        char *qe = strchr(q, '\n');
        assert_non_null(qe);
        *qe = 0;
        /* expected ids */
        int32_t exp[4096]; size_t nexp = 0;
        for (char *s = q; *s;) {
            while (*s == ' ') s++;
            if (!*s) break;
            exp[nexp++] = (int32_t)strtol(s, &s, 10);
        }
        int32_t *ids; size_t n;
        assert_int_equal(pl_tokenizer_encode(t, p, len, 0, &ids, &n), PL_OK);
        int ok = n == nexp && memcmp(ids, exp, n * sizeof *ids) == 0;
        if (!ok) {
            fprintf(stderr, "%s case %d: '%.*s'\n  got:", name, r->total, (int)len, p);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  exp:");
            for (size_t i = 0; i < nexp; i++) fprintf(stderr, " %d", exp[i]);
            fprintf(stderr, "\n");
        }
        r->passed += ok;
        r->total++;
        char *txt; size_t tl;
        assert_int_equal(pl_tokenizer_decode(t, ids, n, 0, &txt, &tl), PL_OK);
        if (!no_round_trip(name)) {
            int rt = tl == len && memcmp(txt, p, len) == 0;
            if (!rt) fprintf(stderr, "%s case %d: round trip gives '%s'\n", name, r->total - 1, txt);
            r->rt_passed += rt;
            r->rt_total++;
        }
        pl_free(txt);
        pl_free(ids);
        p = e + sl;
        q = qe + 1;
    }
    free(in); free(out);
    pl_tokenizer_free(t);
}

static const char *const VOCABS[] = {
    "llama-spm", "phi-3", "gpt-2", "starcoder", "refact", "falcon", "deepseek-coder",
    "deepseek-llm", "mpt", "bert-bge",
};


static void test_llamacpp_vectors(void **state)
{
    (void)state;
    size_t nv = sizeof VOCABS / sizeof VOCABS[0];
    struct vocab_result res[16];
    int all = 1;
    for (size_t i = 0; i < nv; i++) {
        run_vocab(VOCABS[i], &res[i]);
        all &= res[i].passed == res[i].total && res[i].rt_passed == res[i].rt_total;
    }
    printf("| vocabulary | cases passed / total | round trip |\n|---|---|---|\n");
    for (size_t i = 0; i < nv; i++)
        if (res[i].rt_total) printf("| %s | %d / %d | %d / %d |\n", res[i].name, res[i].passed, res[i].total,
                                    res[i].rt_passed, res[i].rt_total);
        else printf("| %s | %d / %d | n/a (lowercases, drops accents) |\n", res[i].name, res[i].passed, res[i].total);
    for (size_t i = 0; i < nv; i++) assert_int_equal(res[i].total, 46);
    assert_true(all);
}

/* ------------------------------------------------------------------ goldens */

/* tests/ref/tokenizer/<file>.json: {"cases": [{"text": ..., "ids": [...], "bos": 0/1}]} */
static void check_goldens(struct pl_tokenizer *t, const char *golden, unsigned extra_flags, int check_rt)
{
    struct pl_json *j = pl_json_parse_file(golden);
    if (!j) fprintf(stderr, "%s\n", pl_last_error());
    assert_non_null(j);
    const struct pl_json *cases = pl_json_get(j, "cases");
    int nc = pl_json_len(cases), bad = 0;
    assert_true(nc >= 5);
    for (int c = 0; c < nc; c++) {
        const struct pl_json *cs = pl_json_at(cases, c);
        const char *text = pl_json_get_str(cs, "text");
        const struct pl_json *ids = pl_json_get(cs, "ids");
        unsigned fl = extra_flags | (pl_json_get_num(cs, "bos", 0) ? PL_TOK_ADD_BOS : 0);
        assert_non_null(text);
        int32_t *got; size_t n;
        assert_int_equal(pl_tokenizer_encode(t, text, strlen(text), fl, &got, &n), PL_OK);
        int ok = (int)n == pl_json_len(ids);
        for (size_t i = 0; ok && i < n; i++) ok = got[i] == (int32_t)pl_json_num(pl_json_at(ids, (int)i), -1);
        if (!ok) {
            bad++;
            fprintf(stderr, "%s case %d '%s':\n  got:", golden, c, text);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
        }
        if (check_rt) {
            char *s; size_t sl;
            assert_int_equal(pl_tokenizer_decode(t, got, n, 0, &s, &sl), PL_OK);
            if (strcmp(s, text) != 0) { bad++; fprintf(stderr, "%s case %d round trip: '%s'\n", golden, c, s); }
            pl_free(s);
        }
        pl_free(got);
    }
    pl_json_free(j);
    assert_int_equal(bad, 0);
}

static void test_llama2c_tok512(void **state)
{
    (void)state;
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, PL_SHARED "/models/stories260K/tok512.bin"), PL_OK);
    assert_int_equal(pl_tokenizer_n_vocab(t), 512);
    assert_int_equal(pl_tokenizer_kind(t), PL_TOK_LLAMA2C);
    assert_int_equal(pl_tokenizer_bos(t), 1);
    check_goldens(t, "tests/ref/tokenizer/tok512.json", 0, 1);
    pl_tokenizer_free(t);
}

static void test_llama2c_llama2(void **state)
{
    (void)state;
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, PL_SHARED "/tokenizers/llama2/tokenizer.bin"), PL_OK);
    assert_int_equal(pl_tokenizer_n_vocab(t), 32000);
    check_goldens(t, "tests/ref/tokenizer/llama2_sp.json", 0, 1);
    pl_tokenizer_free(t);
}

static void test_stories_gguf_matches_bin(void **state)
{
    /* the stories260K GGUF (SPM, llama.cpp algorithm) and tok512.bin (run.c algorithm) agree
     * on plain text; both start with BOS when asked */
    (void)state;
    struct pl_tokenizer *a, *b;
    assert_int_equal(pl_tokenizer_load(&a, PL_SHARED "/models/stories260K/stories260K.gguf"), PL_OK);
    assert_int_equal(pl_tokenizer_load(&b, PL_SHARED "/models/stories260K/tok512.bin"), PL_OK);
    assert_int_equal(pl_tokenizer_kind(a), PL_TOK_SPM);
    const char *txt = "Once upon a time, there was a little girl named Lily.";
    int32_t *x, *y; size_t nx, ny;
    assert_int_equal(pl_tokenizer_encode(a, txt, strlen(txt), PL_TOK_ADD_BOS, &x, &nx), PL_OK);
    assert_int_equal(pl_tokenizer_encode(b, txt, strlen(txt), PL_TOK_ADD_BOS, &y, &ny), PL_OK);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx * sizeof *x);
    assert_int_equal(x[0], 1);
    pl_free(x); pl_free(y);
    /* and on a whole text file (run.c's merge order reproduced with a heap) */
    size_t fl;
    char *story = pl_test_read(PL_SHARED "/data/text/tinystories_sample.txt", &fl);
    assert_non_null(story);
    assert_int_equal(pl_tokenizer_encode(a, story, fl, PL_TOK_ADD_BOS, &x, &nx), PL_OK);
    assert_int_equal(pl_tokenizer_encode(b, story, fl, PL_TOK_ADD_BOS, &y, &ny), PL_OK);
    assert_int_equal(nx, 1883);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx * sizeof *x);
    char *d; size_t dl;
    assert_int_equal(pl_tokenizer_decode(b, y, ny, 0, &d, &dl), PL_OK);
    assert_int_equal(dl, fl);
    assert_memory_equal(d, story, fl);
    pl_free(d); pl_free(x); pl_free(y); free(story);
    pl_tokenizer_free(a); pl_tokenizer_free(b);
}

static void test_smollm2(void **state)
{
    (void)state;
    if (!pl_test_exists(SMOL)) { fprintf(stderr, "skip: %s missing (make model)\n", SMOL); skip(); }
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, SMOL), PL_OK);
    assert_int_equal(pl_tokenizer_kind(t), PL_TOK_BPE);
    assert_string_equal(pl_tokenizer_pre_name(t), "smollm");
    assert_int_equal(pl_tokenizer_n_vocab(t), 49152);
    assert_int_equal(pl_tokenizer_bos(t), 1);
    assert_int_equal(pl_tokenizer_eos(t), 2);
    assert_int_equal(pl_tokenizer_eot(t), 2);
    assert_int_equal(pl_tokenizer_add_bos(t), 0);
    assert_non_null(pl_tokenizer_chat_template(t));
    check_goldens(t, "tests/ref/tokenizer/smollm2.json", PL_TOK_PARSE_SPECIAL, 0);

    /* special tokens: parsed only when asked */
    const char *s = "<|im_start|>user\nHi<|im_end|>";
    int32_t *ids; size_t n;
    assert_int_equal(pl_tokenizer_encode(t, s, strlen(s), PL_TOK_PARSE_SPECIAL, &ids, &n), PL_OK);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    char *d; size_t dl;
    assert_int_equal(pl_tokenizer_decode(t, ids, n, PL_TOK_DECODE_SPECIAL, &d, &dl), PL_OK);
    assert_string_equal(d, s);
    pl_free(d);
    assert_int_equal(pl_tokenizer_decode(t, ids, n, 0, &d, &dl), PL_OK);
    assert_string_equal(d, "user\nHi");
    pl_free(d);
    pl_free(ids);
    assert_int_equal(pl_tokenizer_encode(t, s, strlen(s), 0, &ids, &n), PL_OK);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] != 1 && ids[i] != 2);
    assert_int_equal(pl_tokenizer_decode(t, ids, n, 0, &d, &dl), PL_OK);
    assert_string_equal(d, s);                      /* as plain text it round-trips */
    pl_free(d);
    pl_free(ids);
    size_t pl;
    assert_string_equal(pl_tokenizer_piece(t, 1, &pl), "<|im_start|>");
    assert_int_equal(pl_tokenizer_find(t, "<|im_end|>", 10), 2);
    pl_tokenizer_free(t);
}


/* The llama3 and qwen2 pre-tokenizers over SmolLM2's vocabulary, against `tokenizers` running
 * the real regexes (no llama.cpp vectors for these here). */
static void check_pre_style(const char *pre, const char *golden)
{
    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(SMOL, &g), PL_OK);
    uint64_t n, nm;
    const struct pl_gguf_str *tv = pl_gguf_str_array(g, "tokenizer.ggml.tokens", &n);
    const struct pl_gguf_str *mv = pl_gguf_str_array(g, "tokenizer.ggml.merges", &nm);
    assert_non_null(tv); assert_non_null(mv);
    const char **toks = malloc(n * sizeof *toks), **merges = malloc(nm * sizeof *merges);
    for (uint64_t i = 0; i < n; i++) toks[i] = tv[i].s;
    for (uint64_t i = 0; i < nm; i++) merges[i] = mv[i].s;
    struct pl_tokenizer_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = PL_TOK_BPE;
    sp.n_vocab = (int32_t)n; sp.tokens = toks;
    sp.n_merges = (int32_t)nm; sp.merges = merges;
    sp.pre = pre;
    sp.bos = sp.eos = sp.unk = sp.pad = -1;
    sp.add_bos = sp.add_eos = sp.add_space_prefix = -1;
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_new(&t, &sp, pre), PL_OK);
    assert_string_equal(pl_tokenizer_pre_name(t), pre);
    check_goldens(t, golden, 0, 1);
    pl_tokenizer_free(t);
    free(toks); free(merges);
    pl_gguf_close(g);
}

static void test_llama3_qwen2_pre(void **state)
{
    (void)state;
    if (!pl_test_exists(SMOL)) { fprintf(stderr, "skip: %s missing (make model)\n", SMOL); skip(); }
    check_pre_style("llama3", "tests/ref/tokenizer/llama3_style.json");
    check_pre_style("qwen2", "tests/ref/tokenizer/qwen2_style.json");
}

static void test_hf_json(void **state)
{
    (void)state;
    struct pl_tokenizer *t;
    enum pl_status st = pl_tokenizer_load(&t, "tests/ref/tokenizer/tiny_bpe/tokenizer.json");
    if (st) fprintf(stderr, "%s\n", pl_last_error());
    assert_int_equal(st, PL_OK);
    assert_int_equal(pl_tokenizer_kind(t), PL_TOK_BPE);
    check_goldens(t, "tests/ref/tokenizer/tiny_bpe.json", PL_TOK_PARSE_SPECIAL, 0);
    pl_tokenizer_free(t);
    /* Llama-style tokenizer.json (BPE + byte fallback over "▁" text), both layouts */
    static const char *const spm[][2] = {
        { "tests/ref/tokenizer/tiny_spm/tokenizer.json", "tests/ref/tokenizer/tiny_spm.json" },
        { "tests/ref/tokenizer/tiny_spm_metaspace/tokenizer.json", "tests/ref/tokenizer/tiny_spm_metaspace.json" },
    };
    for (int k = 0; k < 2; k++) {
        st = pl_tokenizer_load(&t, spm[k][0]);
        if (st) fprintf(stderr, "%s\n", pl_last_error());
        assert_int_equal(st, PL_OK);
        assert_int_equal(pl_tokenizer_kind(t), PL_TOK_SPM);
        assert_int_equal(pl_tokenizer_bos(t), 1);
        assert_int_equal(pl_tokenizer_eos(t), 2);
        check_goldens(t, spm[k][1], PL_TOK_PARSE_SPECIAL, 0);
        const char *txt = "caf\xc3\xa9 \xf0\x9f\x98\x80 speak";     /* byte fallback for the emoji */
        int32_t *ids; size_t n;
        assert_int_equal(pl_tokenizer_encode(t, txt, strlen(txt), 0, &ids, &n), PL_OK);
        char *d; size_t dl;
        assert_int_equal(pl_tokenizer_decode(t, ids, n, 0, &d, &dl), PL_OK);
        assert_string_equal(d, txt);
        pl_free(d); pl_free(ids);
        pl_tokenizer_free(t);
    }
}

/* ------------------------------------------------------------------ details and bad input */

static void test_spm_details(void **state)
{
    (void)state;
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, VEC_DIR "ggml-vocab-llama-spm.gguf"), PL_OK);
    int32_t *ids; size_t n;
    /* BOS/EOS on request, as the vocabulary says by default */
    assert_int_equal(pl_tokenizer_encode(t, "Hello", 5, PL_TOK_DEFAULT_SPECIAL, &ids, &n), PL_OK);
    assert_int_equal(n, 2); assert_int_equal(ids[0], 1); assert_int_equal(ids[1], 15043);  /* ▁Hello */
    pl_free(ids);
    assert_int_equal(pl_tokenizer_encode(t, "Hello", 5, PL_TOK_ADD_BOS | PL_TOK_ADD_EOS, &ids, &n), PL_OK);
    assert_int_equal(n, 3); assert_int_equal(ids[2], 2);
    char *d; size_t dl;
    assert_int_equal(pl_tokenizer_decode(t, ids, n, 0, &d, &dl), PL_OK);
    assert_string_equal(d, "Hello");
    pl_free(d);
    assert_int_equal(pl_tokenizer_decode(t, ids, n, PL_TOK_DECODE_SPECIAL | PL_TOK_DECODE_KEEP_PREFIX, &d, &dl), PL_OK);
    assert_string_equal(d, "<s> Hello</s>");
    pl_free(d);
    pl_free(ids);
    /* byte fallback: a code point without a piece becomes its UTF-8 bytes */
    char buf[8];
    int32_t b = pl_tokenizer_find(t, "<0xF0>", 6);
    assert_true(b > 0);
    assert_int_equal(pl_tokenizer_token_bytes(t, b, 0, buf, sizeof buf), 1);
    assert_int_equal((unsigned char)buf[0], 0xF0);
    assert_int_equal(pl_tokenizer_type(t, b), PL_TOKT_BYTE);
    /* "<s>" in text: a control token only with PARSE_SPECIAL */
    assert_int_equal(pl_tokenizer_encode(t, "<s>x", 4, PL_TOK_PARSE_SPECIAL, &ids, &n), PL_OK);
    assert_int_equal(ids[0], 1);
    pl_free(ids);
    assert_int_equal(pl_tokenizer_encode(t, "<s>x", 4, 0, &ids, &n), PL_OK);
    assert_true(ids[0] != 1);
    pl_free(ids);
    /* out of range ids are an error, not a crash */
    int32_t bad[2] = { 5, 32000 };
    assert_int_equal(pl_tokenizer_decode(t, bad, 2, 0, &d, &dl), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "32000"));
    assert_null(pl_tokenizer_piece(t, -1, NULL));
    pl_tokenizer_free(t);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct pl_tokenizer *t = (struct pl_tokenizer *)1;
    assert_int_equal(pl_tokenizer_load(&t, "no/such/tokenizer.bin"), PL_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(pl_last_error(), "no/such/tokenizer.bin"));

    /* a truncated tokenizer.bin: the first 1000 bytes of tok512.bin */
    size_t n;
    char *full = pl_test_read(PL_SHARED "/models/stories260K/tok512.bin", &n);
    assert_non_null(full);
    const char *tmp = pl_test_tmp("trunc.bin");
    pl_test_write(tmp, full, 1000);
    assert_int_equal(pl_tokenizer_load(&t, tmp), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), tmp));
    assert_non_null(strstr(pl_last_error(), "truncated"));
    /* a bogus length field */
    int32_t hdr[3] = { 27, 0, 1000 };
    pl_test_write(tmp, hdr, sizeof hdr);
    assert_int_equal(pl_tokenizer_load(&t, tmp), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "length 1000"));
    remove(tmp);
    free(full);

    /* a truncated vocabulary GGUF, and a file that is none of the formats */
    {
        size_t gl;
        char *gb = pl_test_read(VEC_DIR "ggml-vocab-gpt-2.gguf", &gl);
        assert_non_null(gb);
        const char *tg = pl_test_tmp("trunc.gguf");
        pl_test_write(tg, gb, gl / 2);
        enum pl_status st = pl_tokenizer_load(&t, tg);
        assert_true(st == PL_ERR_FORMAT || st == PL_ERR_IO);
        assert_null(t);
        assert_non_null(strstr(pl_last_error(), tg));
        const char *junk = "hello, I am not a tokenizer\n";
        pl_test_write(tg, junk, strlen(junk));
        assert_int_equal(pl_tokenizer_load(&t, tg), PL_ERR_FORMAT);
        assert_non_null(strstr(pl_last_error(), tg));
        remove(tg);
        free(gb);
    }

    /* a GGUF without tokenizer metadata */
    const char *g = pl_test_tmp("notok.gguf");
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(pl_gguf_set_str(w, "general.architecture", "llama"), PL_OK);
    assert_int_equal(pl_gguf_writer_write(w, g), PL_OK);
    pl_gguf_writer_free(w);
    assert_int_equal(pl_tokenizer_load(&t, g), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "no tokenizer"));
    /* an unknown pre-tokenizer is refused rather than tokenized differently */
    w = pl_gguf_writer_new();
    const char *toks[3] = { "a", "b", "ab" }, *merges[1] = { "a b" };
    pl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    pl_gguf_set_str(w, "tokenizer.ggml.pre", "made-up");
    pl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    pl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    assert_int_equal(pl_gguf_writer_write(w, g), PL_OK);
    pl_gguf_writer_free(w);
    assert_int_equal(pl_tokenizer_load(&t, g), PL_ERR_UNSUPPORTED);
    assert_non_null(strstr(pl_last_error(), "made-up"));
    /* and with a known one it works: "abab" -> ab ab */
    w = pl_gguf_writer_new();
    pl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    pl_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    pl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    pl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    assert_int_equal(pl_gguf_writer_write(w, g), PL_OK);
    pl_gguf_writer_free(w);
    assert_int_equal(pl_tokenizer_load(&t, g), PL_OK);
    int32_t *ids; size_t ni;
    assert_int_equal(pl_tokenizer_encode(t, "abab", 4, 0, &ids, &ni), PL_OK);
    assert_int_equal(ni, 2);     /* one word "abab": a b a b -> ab a b -> ab ab */
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 2);
    pl_free(ids);
    pl_tokenizer_free(t);
    remove(g);
}


/* ------------------------------------------------------------------ chat templates */

static void load_conv(const struct pl_json *conv, struct pl_chat_msg *m, size_t *n)
{
    *n = (size_t)pl_json_len(conv);
    for (size_t i = 0; i < *n; i++) {
        m[i].role = pl_json_get_str(pl_json_at(conv, (int)i), "role");
        m[i].content = pl_json_get_str(pl_json_at(conv, (int)i), "content");
    }
}

static void test_chat_goldens(void **state)
{
    (void)state;
    struct pl_json *j = pl_json_parse_file("tests/ref/chat/chat_ref.json");
    assert_non_null(j);
    const struct pl_json *convs = pl_json_get(j, "conversations"), *fams = pl_json_get(j, "families");
    int checked = 0, nfam = 0;
    static const char *const turn_end[] = { "", "<|im_end|>", " </s>", "<|eot_id|>", "</s>", "</s>" };
    for (const struct pl_json *f = pl_json_first(fams); f; f = pl_json_next(f), nfam++) {
        const char *name = pl_json_key(f);
        struct pl_chat_opts o = {0};
        o.template_str = pl_json_get_str(f, "template");
        o.bos = pl_json_get_str(f, "bos");
        o.eos = pl_json_get_str(f, "eos");
        /* recognised from the real template string */
        assert_string_equal(pl_chat_family_name(pl_chat_detect(o.template_str)), name);
        const struct pl_json *cases = pl_json_get(f, "cases");
        for (int c = 0; c < pl_json_len(cases); c++) {
            const struct pl_json *cs = pl_json_at(cases, c);
            struct pl_chat_msg m[16]; size_t n;
            load_conv(pl_json_at(convs, (int)pl_json_get_num(cs, "conv", -1)), m, &n);
            o.add_generation_prompt = pl_json_bool(pl_json_get(cs, "add_generation_prompt"), 0);
            struct pl_chat_result r;
            enum pl_status st = pl_chat_render(&o, m, n, &r);
            const char *err = pl_json_get_str(cs, "error");
            if (err) {
                assert_int_equal(st, PL_ERR_ARG);
                assert_non_null(strstr(pl_last_error(), err));
                checked++;
                continue;
            }
            assert_int_equal(st, PL_OK);
            const char *exp = pl_json_get_str(cs, "text");
            if (strcmp(r.text, exp) != 0) fprintf(stderr, "%s case %d:\n got: [%s]\n exp: [%s]\n", name, c, r.text, exp);
            assert_string_equal(r.text, exp);
            assert_int_equal(r.len, strlen(exp));
            /* spans: one per assistant message, holding its (template-stripped) content and
             * ending the turn with the family's marker */
            size_t na = 0;
            for (size_t i = 0; i < n; i++) na += strcmp(m[i].role, "assistant") == 0;
            assert_int_equal(r.n_spans, na);
            int fam = pl_chat_family_from_name(name);
            for (size_t k = 0; k < r.n_spans; k++) {
                const struct pl_chat_span *s = &r.spans[k];
                const char *content = m[s->msg].content;
                assert_string_equal(m[s->msg].role, "assistant");
                assert_true(s->start <= s->end && s->end <= s->turn_end && s->turn_end <= r.len);
                if (fam == PL_CHAT_LLAMA2 || fam == PL_CHAT_LLAMA3) {
                    while (*content == ' ' || *content == '\n' || *content == '\t') content++;
                    size_t cl = strlen(content);
                    while (cl && (content[cl - 1] == ' ' || content[cl - 1] == '\n' || content[cl - 1] == '\t')) cl--;
                    assert_int_equal(s->end - s->start, cl);
                    assert_memory_equal(r.text + s->start, content, cl);
                } else {
                    assert_int_equal(s->end - s->start, strlen(content));
                    assert_memory_equal(r.text + s->start, content, strlen(content));
                }
                assert_int_equal(s->turn_end - s->end, strlen(turn_end[fam]));
                assert_memory_equal(r.text + s->end, turn_end[fam], strlen(turn_end[fam]));
            }
            pl_chat_result_free(&r);
            checked++;
        }
    }
    assert_int_equal(nfam, 5);
    assert_int_equal(checked, 5 * 6);
    pl_json_free(j);

    /* forcing and refusing */
    struct pl_chat_msg m[1] = { { "user", "hi" } };
    struct pl_chat_opts o = {0};
    struct pl_chat_result r;
    o.template_str = "{{ messages }}";
    assert_int_equal(pl_chat_render(&o, m, 1, &r), PL_ERR_UNSUPPORTED);
    o.family = PL_CHAT_LLAMA3;
    o.add_generation_prompt = 1;
    assert_int_equal(pl_chat_render(&o, m, 1, &r), PL_OK);
    assert_string_equal(r.text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    pl_chat_result_free(&r);
    assert_int_equal(pl_chat_family_from_name("vicuna"), -1);
    assert_int_equal(pl_chat_family_from_name("zephyr"), PL_CHAT_ZEPHYR);
}

static void test_chat_smollm2(void **state)
{
    (void)state;
    if (!pl_test_exists(SMOL)) { fprintf(stderr, "skip: %s missing (make model)\n", SMOL); skip(); }
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, SMOL), PL_OK);
    struct pl_chat_msg m[2] = { { "user", "What is the capital of France?" },
                                { "assistant", "The capital of France is Paris." } };
    struct pl_chat_result r;
    assert_int_equal(pl_chat_render_tok(t, NULL, m, 1, 1, &r), PL_OK);
    assert_string_equal(r.text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                                "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    assert_int_equal(r.n_spans, 0);
    /* the rendering tokenizes with the control tokens as single ids */
    int32_t *ids; size_t n;
    assert_int_equal(pl_tokenizer_encode(t, r.text, r.len, PL_TOK_PARSE_SPECIAL, &ids, &n), PL_OK);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 198);    /* "\n" (Ċ) after "assistant" */
    pl_free(ids);
    pl_chat_result_free(&r);
    assert_int_equal(pl_chat_render_tok(t, "mistral", m, 2, 0, &r), PL_OK);
    assert_string_equal(r.text, "<|im_start|>[INST] What is the capital of France? [/INST]The capital of France is Paris.<|im_end|> ");
    pl_chat_result_free(&r);
    assert_int_equal(pl_chat_render_tok(t, "nope", m, 2, 0, &r), PL_ERR_ARG);
    pl_tokenizer_free(t);
}

/* Random byte strings (fixed LCG seed): encoding never fails and SPM / llama2.c round-trip any
 * bytes (byte fallback; SPM: valid UTF-8) except U+2581 "▁" itself, which SentencePiece vocabularies use for the
 * space and so decode as " "; BPE round-trips any valid UTF-8. Run under ASan by `make asan`. */
static uint32_t lcg(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s >> 8; }

static void random_round_trips(const char *path, int any_bytes)
{
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, path), PL_OK);
    uint32_t seed = 12345;
    static const char *const frag[] = { " ", "  ", "\n", "\t", "'s", "'LL", "3", "42", "é", "ü", "中文", "🦙",
                                        "<s>", "<|im_start|>", "[CLS]", "abc", "Hello", ".", "!!" };
    for (int it = 0; it < 300; it++) {
        char buf[256];
        size_t n = 0, want = lcg(&seed) % 60;
        while (n < want) {
            if (any_bytes && lcg(&seed) % 4 == 0) { buf[n++] = (char)(lcg(&seed) & 0xFF); continue; }
            const char *f = frag[lcg(&seed) % (sizeof frag / sizeof frag[0])];
            size_t l = strlen(f);
            if (n + l >= sizeof buf) break;
            memcpy(buf + n, f, l); n += l;
        }
        int32_t *ids; size_t ni;
        assert_int_equal(pl_tokenizer_encode(t, buf, n, (it & 1) ? PL_TOK_PARSE_SPECIAL : 0, &ids, &ni), PL_OK);
        char *d; size_t dl;
        unsigned df = (it & 1) ? PL_TOK_DECODE_SPECIAL : 0;
        assert_int_equal(pl_tokenizer_decode(t, ids, ni, df, &d, &dl), PL_OK);
        if (!(it & 1) || pl_tokenizer_kind(t) == PL_TOK_BPE) {
            if (dl != n || memcmp(d, buf, n) != 0) {
                fprintf(stderr, "%s: round trip failed for case %d:\n in :", path, it);
                for (size_t q = 0; q < n; q++) fprintf(stderr, " %02x", (unsigned char)buf[q]);
                fprintf(stderr, "\n out:");
                for (size_t q = 0; q < dl; q++) fprintf(stderr, " %02x", (unsigned char)d[q]);
                fprintf(stderr, "\n ids:");
                for (size_t q = 0; q < ni; q++) fprintf(stderr, " %d", ids[q]);
                fprintf(stderr, "\n");
            }
            assert_int_equal(dl, n);
            assert_memory_equal(d, buf, n);
        }
        pl_free(d); pl_free(ids);
    }
    pl_tokenizer_free(t);
}

static void test_random_round_trips(void **state)
{
    (void)state;
    /* llama.cpp's SPM cuts symbols by the lead byte's announced length, so an invalid lead byte
     * can swallow part of a following "▁" and those bytes come back raw: valid UTF-8 only */
    random_round_trips(VEC_DIR "ggml-vocab-llama-spm.gguf", 0);
    random_round_trips(PL_SHARED "/tokenizers/llama2/tokenizer.bin", 1);
    random_round_trips(VEC_DIR "ggml-vocab-gpt-2.gguf", 0);
    random_round_trips(VEC_DIR "ggml-vocab-deepseek-llm.gguf", 0);
    random_round_trips(VEC_DIR "ggml-vocab-falcon.gguf", 0);
    /* BERT: only that it never fails */
    struct pl_tokenizer *t;
    assert_int_equal(pl_tokenizer_load(&t, VEC_DIR "ggml-vocab-bert-bge.gguf"), PL_OK);
    const char junk[] = "\xff\xfe\x00 abc \xe4\xb8 [SEP]\x80";
    int32_t *ids; size_t ni;
    assert_int_equal(pl_tokenizer_encode(t, junk, sizeof junk - 1, PL_TOK_PARSE_SPECIAL, &ids, &ni), PL_OK);
    assert_true(ni >= 2);
    pl_free(ids);
    pl_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamacpp_vectors),
        cmocka_unit_test(test_llama2c_tok512),
        cmocka_unit_test(test_llama2c_llama2),
        cmocka_unit_test(test_stories_gguf_matches_bin),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_llama3_qwen2_pre),
        cmocka_unit_test(test_hf_json),
        cmocka_unit_test(test_spm_details),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_chat_goldens),
        cmocka_unit_test(test_chat_smollm2),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
