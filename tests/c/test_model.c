/* test_model.c — model loading, the forward pass against independent goldens, KV cache,
 * sampling and bad input. Owner: model.
 *
 * Goldens come from tests/ref/llama_ref.py (plain NumPy reading the GGUF with the `gguf`
 * package; see that script for how to regenerate). The SmolLM2 cases skip with a note when
 * models/SmolLM2-135M-Instruct.Q4_1.gguf is absent (`make model`).
 */
#include <math.h>
#include "pl_test.h"

#include "peftlua/alloc.h"
#include "peftlua/model.h"
#include "peftlua/safetensors.h"
#include "peftlua/gguf.h"
#include "peftlua/tokenizer.h"

#define STORIES_BIN PL_SHARED "/models/stories260K/stories260K.bin"
#define STORIES_TOK PL_SHARED "/models/stories260K/tok512.bin"
#define STORIES_GGUF PL_SHARED "/models/stories260K/stories260K.gguf"
#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static struct pl_model *load_or_die(const char *path, const char *tok)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { .tokenizer = tok };
    enum pl_status st = pl_model_load(&m, path, &o);
    if (st != PL_OK) fprintf(stderr, "load %s: %s\n", path, pl_last_error());
    assert_int_equal(st, PL_OK);
    return m;
}

static void expect_fail(const char *path, const char *tok, const char *needle);

/* ---- golden files (layout in tests/ref/llama_ref.py) ---- */
struct golden {
    int B, T, V, C;
    int32_t *tokens, *cols, *argmax;
    float *logits, *lse;
};

static void golden_read(struct golden *g, const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char magic[8];
    int32_t h[5];
    assert_int_equal(fread(magic, 1, 8, f), 8);
    assert_memory_equal(magic, "PLGOLDEN", 8);
    assert_int_equal(fread(h, 4, 5, f), 5);
    assert_int_equal(h[0], 1);
    g->B = h[1]; g->T = h[2]; g->V = h[3]; g->C = h[4];
    size_t BT = (size_t)g->B * g->T;
    g->tokens = malloc(BT * 4); g->cols = malloc((size_t)g->C * 4);
    g->logits = malloc(BT * g->C * 4); g->lse = malloc(BT * 4); g->argmax = malloc(BT * 4);
    assert_int_equal(fread(g->tokens, 4, BT, f), BT);
    assert_int_equal(fread(g->cols, 4, (size_t)g->C, f), (size_t)g->C);
    assert_int_equal(fread(g->logits, 4, BT * g->C, f), BT * g->C);
    assert_int_equal(fread(g->lse, 4, BT, f), BT);
    assert_int_equal(fread(g->argmax, 4, BT, f), BT);
    fclose(f);
}

static void golden_free(struct golden *g)
{
    free(g->tokens); free(g->cols); free(g->logits); free(g->lse); free(g->argmax);
}

/* Forward the golden batch and return max |logit - golden| over stored columns and the lse. */
static double golden_check(struct pl_model *m, const char *gpath, int flags)
{
    struct golden g;
    golden_read(&g, gpath);
    assert_int_equal(g.V, m->cfg.vocab_size);
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, g.B, g.T, flags);
    assert_non_null(c);
    enum pl_status st = pl_llama_forward(c, g.tokens, g.T, 0, 0);
    if (st) fprintf(stderr, "%s\n", pl_last_error());
    assert_int_equal(st, PL_OK);
    double worst = 0;
    int argmax_ok = 0;
    for (int r = 0; r < g.B * g.T; r++) {
        const float *z = c->logits + (size_t)r * g.V;
        for (int k = 0; k < g.C; k++) {
            double d = fabs((double)z[g.cols[k]] - g.logits[(size_t)r * g.C + k]);
            if (d > worst) worst = d;
        }
        double mx = z[0], se = 0;
        int am = 0;
        for (int j = 1; j < g.V; j++) if (z[j] > mx) { mx = z[j]; am = j; }
        for (int j = 0; j < g.V; j++) se += exp(z[j] - mx);
        double d = fabs(mx + log(se) - g.lse[r]);
        if (d > worst) worst = d;
        argmax_ok += am == g.argmax[r];
    }
    assert_int_equal(argmax_ok, g.B * g.T);
    pl_llama_ctx_free(c);
    golden_free(&g);
    return worst;
}

/* ---- stories260K ---- */

static void test_stories_bin_equals_gguf(void **state)
{
    (void)state;
    struct pl_model *a = load_or_die(STORIES_BIN, STORIES_TOK);
    struct pl_model *b = load_or_die(STORIES_GGUF, NULL);
    assert_int_equal(a->cfg.dim, 64);
    assert_int_equal(a->cfg.hidden_dim, 172);
    assert_int_equal(a->cfg.n_layers, 5);
    assert_int_equal(a->cfg.n_heads, 8);
    assert_int_equal(a->cfg.n_kv_heads, 4);
    assert_int_equal(a->cfg.vocab_size, 512);
    assert_int_equal(b->cfg.dim, 64);
    assert_int_equal(b->cfg.n_kv_heads, 4);
    /* The .bin shares the classifier, the GGUF stores output.weight: compare what both have,
     * then the GGUF's output against the .bin's (shared) embedding. */
    int na = pl_model_n_params(a), nb = pl_model_n_params(b);
    assert_int_equal(nb, na + 1);
    int compared = 0;
    for (int i = 0; i < na; i++) {
        char name[128];
        struct pl_tensor **ta = pl_model_param(a, i, name, sizeof name);
        struct pl_tensor **tb = pl_model_find_param(b, name);
        assert_non_null(tb);
        assert_int_equal((*ta)->dtype, PL_F32);
        assert_int_equal((*tb)->dtype, PL_F32);
        assert_true(pl_tensor_same_shape(*ta, *tb));
        assert_memory_equal(pl_tensor_data(*ta), pl_tensor_data(*tb), pl_tensor_nbytes(*ta));
        compared++;
    }
    assert_int_equal(compared, 1 + 5 * 9 + 1);
    assert_memory_equal(pl_tensor_data(a->output), pl_tensor_data(b->output),
                        pl_tensor_nbytes(a->output));
    /* 512*64 embedding + 5 * (2*64 + 64*64*2 + 32*64*2 + 3*172*64) + 64 */
    assert_int_equal(pl_model_param_count(a), 260032);
    pl_model_free(a);
    pl_model_free(b);
}

/* llama2.c's negative vocab_size: an unshared classifier follows the weights. Written here as
 * a copy of the embedding, so the logits must still match the reference. */
static void test_llama2c_unshared_classifier(void **state)
{
    (void)state;
    size_t sz;
    char *d = pl_test_read(STORIES_BIN, &sz);
    int32_t h[7];
    memcpy(h, d, sizeof h);
    assert_int_equal(h[5], 512);
    h[5] = -512;
    FILE *f = fopen(pl_test_tmp("unshared.bin"), "wb");
    assert_int_equal(fwrite(h, 4, 7, f), 7);
    assert_int_equal(fwrite(d + 28, 1, sz - 28, f), sz - 28);
    assert_int_equal(fwrite(d + 28, 4, 512 * 64, f), 512 * 64);   /* wcls = token embedding */
    fclose(f);
    free(d);
    struct pl_model *m = load_or_die(pl_test_tmp("unshared.bin"), STORIES_TOK);
    assert_int_equal(m->cfg.tied_output, 0);
    assert_int_equal(m->cfg.vocab_size, 512);
    assert_ptr_not_equal(m->output, m->tok_embd);
    assert_non_null(pl_model_find_param(m, "lm_head.weight"));
    double dd = golden_check(m, "tests/ref/golden/stories260K_logits.bin", 0);
    assert_true(dd <= 1e-4);
    pl_model_free(m);
}

static void test_stories_golden_logits(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    double d = golden_check(m, "tests/ref/golden/stories260K_logits.bin", 0);
    printf("stories260K gguf: max |logit - reference| = %.3g\n", d);
    assert_true(d <= 1e-4);
    d = golden_check(m, "tests/ref/golden/stories260K_logits.bin", PL_LLAMA_SAVE);
    assert_true(d <= 1e-4);
    pl_model_free(m);
    m = load_or_die(STORIES_BIN, STORIES_TOK);
    d = golden_check(m, "tests/ref/golden/stories260K_logits.bin", 0);
    printf("stories260K .bin: max |logit - reference| = %.3g\n", d);
    assert_true(d <= 1e-4);
    pl_model_free(m);
}

/* Incremental decoding with the KV cache gives the logits of the full forward. */
static void test_kv_cache_matches_full(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    int32_t ids[12] = { 1, 403, 395, 419, 414, 429, 269, 268, 426, 300, 17, 99 };
    struct pl_llama_ctx *full = pl_llama_ctx_new(m, 1, 12, 0);
    struct pl_llama_ctx *inc = pl_llama_ctx_new(m, 1, 12, 0);
    assert_int_equal(pl_llama_forward(full, ids, 12, 0, 0), PL_OK);
    assert_int_equal(pl_llama_forward(inc, ids, 5, 0, 1), PL_OK);
    double worst = 0;
    for (int t = 5; t < 12; t++) {
        assert_int_equal(pl_llama_forward(inc, ids + t, 1, t, 1), PL_OK);
        for (int j = 0; j < 512; j++) {
            double d = fabs(inc->logits[j] - full->logits[(size_t)t * 512 + j]);
            if (d > worst) worst = d;
        }
    }
    assert_true(worst < 1e-4);
    /* a position past the cache is refused */
    assert_int_equal(pl_llama_forward(inc, ids, 1, 13, 1), PL_ERR_ARG);
    int32_t bad = 9999;
    assert_int_equal(pl_llama_forward(full, &bad, 1, 0, 0), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "9999"));
    pl_llama_ctx_free(full);
    pl_llama_ctx_free(inc);
    pl_model_free(m);
}

/* Loss with an ignore mask equals the mean of log-sum-exp minus the target logit over the
 * kept rows; the adapter hook sees every projection and can change or abort the forward;
 * an interrupt request stops the forward between layers and leaves the context usable. */
static int hook_calls;
static enum pl_status hook_add(void *ctx, int layer, enum pl_proj p, float *y, const float *x,
                               int64_t n)
{
    (void)x;
    hook_calls++;
    if (ctx) return pl_fail(PL_ERR_STATE, "hook refused layer %d", layer);
    if (layer == 0 && p == PL_PROJ_V)
        for (int64_t i = 0; i < n * 32; i++) y[i] += 0.5f;
    return PL_OK;
}

static void test_loss_mask_hook_interrupt(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    int32_t ids[2][8] = { { 1, 403, 395, 419, 414, 429, 269, 268 }, { 1, 300, 17, 99, 45, 7, 400, 12 } };
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 2, 8, 0);
    assert_int_equal(pl_llama_forward(c, &ids[0][0], 8, 0, 0), PL_OK);
    int32_t tg[16];
    double want = 0;
    int kept = 0;
    for (int r = 0; r < 16; r++) {
        tg[r] = (r % 3 == 0) ? -1 : ids[r / 8][(r + 1) % 8];
        if (tg[r] < 0) continue;
        const float *z = c->logits + (size_t)r * 512;
        double mx = z[0], se = 0;
        for (int j = 1; j < 512; j++) if (z[j] > mx) mx = z[j];
        for (int j = 0; j < 512; j++) se += exp(z[j] - mx);
        want += mx + log(se) - z[tg[r]];
        kept++;
    }
    int64_t cnt = 0;
    double got = pl_llama_loss(c, tg, 8, &cnt);
    assert_int_equal(cnt, kept);
    assert_true(fabs(got - want / kept) < 1e-5);
    float before = c->logits[5];

    m->linear_hook = hook_add;
    m->linear_hook_ctx = NULL;
    hook_calls = 0;
    assert_int_equal(pl_llama_forward(c, &ids[0][0], 8, 0, 0), PL_OK);
    assert_int_equal(hook_calls, 5 * PL_PROJ_COUNT);
    assert_true(fabs(c->logits[5] - before) > 1e-4);
    m->linear_hook_ctx = (void *)1;
    assert_int_equal(pl_llama_forward(c, &ids[0][0], 8, 0, 0), PL_ERR_STATE);
    assert_non_null(strstr(pl_last_error(), "hook refused layer 0"));
    m->linear_hook = NULL;

    pl_interrupt_request();
    assert_int_equal(pl_llama_forward(c, &ids[0][0], 8, 0, 0), PL_ERR_INTERRUPTED);
    assert_int_equal(pl_llama_forward(c, &ids[0][0], 8, 0, 0), PL_OK);
    assert_true(fabs(c->logits[5] - before) < 1e-6);
    pl_llama_ctx_free(c);
    pl_model_free(m);
}

/* Strided scoring: every target is scored exactly once; one window equals a plain forward;
 * shorter windows lose context, so their loss is not lower. */
static void test_score_stream_windows(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_BIN, STORIES_TOK);
    const char *text = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park. One day, she saw a big, red ball.";
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(pl_tokenizer_encode(m->tok, text, strlen(text), PL_TOK_ADD_BOS, &ids, &n), PL_OK);
    assert_true(n > 30);
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, (int)n - 1, 0);
    assert_int_equal(pl_llama_forward(c, ids, (int)n - 1, 0, 0), PL_OK);
    int64_t cnt;
    double plain = pl_llama_loss(c, ids + 1, (int)n - 1, &cnt);
    pl_llama_ctx_free(c);
    double s1, s2, s3;
    int64_t c1, c2, c3;
    assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)n, 512, 512, &s1, &c1), PL_OK);
    assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)n, 16, 8, &s2, &c2), PL_OK);
    assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)n, 8, 8, &s3, &c3), PL_OK);
    assert_int_equal(c1, (int64_t)n - 1);
    assert_int_equal(c2, (int64_t)n - 1);
    assert_int_equal(c3, (int64_t)n - 1);
    assert_true(fabs(s1 / c1 - plain) < 1e-6);
    assert_true(s3 / c3 > s2 / c2 - 1e-3 && s2 / c2 > s1 / c1 - 1e-3);
    assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)n, 16, 17, &s2, &c2), PL_ERR_ARG);
    pl_free(ids);
    pl_model_free(m);
}

static void test_stories_greedy_generation(void **state)
{
    (void)state;
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park.";
    const char *paths[2] = { STORIES_BIN, STORIES_GGUF };
    for (int k = 0; k < 2; k++) {
        struct pl_model *m = load_or_die(paths[k], k == 0 ? STORIES_TOK : NULL);
        struct pl_generate_opts o;
        memset(&o, 0, sizeof o);
        o.max_tokens = 200;
        pl_sampler_init(&o.sampler, 0);
        o.sampler.greedy = 1;
        int32_t bos = 1;
        char *text = NULL;
        int n = 0;
        enum pl_status st = pl_generate(m, &bos, 1, &o, &text, NULL, &n);
        if (st) fprintf(stderr, "%s\n", pl_last_error());
        assert_int_equal(st, PL_OK);
        printf("stories260K greedy (%s, %d tokens): %.160s...\n", k ? "gguf" : "bin", n, text);
        const char *p = text;
        while (*p == ' ') p++;   /* run.c prints the first piece without its leading space */
        assert_memory_equal(p, want, strlen(want));
        pl_free(text);
        pl_model_free(m);
    }
}

/* Mean CE over the sample text as run.c would see each story: the stories (separated by
 * "<|endoftext|>", surrounding newlines trimmed) are encoded one by one with BOS, then the
 * SentencePiece pieces with llama2.c's dummy-prefix space, and scored as separate sequences. */
static void test_stories_cross_entropy(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_BIN, STORIES_TOK);
    char *text = pl_test_read(PL_SHARED "/data/text/tinystories_sample.txt", NULL);
    double sum = 0;
    int64_t count = 0;
    int stories = 0;
    for (char *p = text; p;) {
        char *e = strstr(p, "<|endoftext|>");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == '\n' || *p == ' ')) { p++; len--; }
        while (len && (p[len - 1] == '\n' || p[len - 1] == ' ')) len--;
        if (len) {
            int32_t *ids = NULL;
            size_t nids = 0;
            assert_int_equal(pl_tokenizer_encode(m->tok, p, len, PL_TOK_ADD_BOS, &ids, &nids), PL_OK);
            assert_int_equal(ids[0], 1);
            double s = 0;
            int64_t c = 0;
            assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)nids, m->cfg.seq_len,
                                                   m->cfg.seq_len, &s, &c), PL_OK);
            assert_int_equal(c, (int64_t)nids - 1);
            sum += s;
            count += c;
            stories++;
            pl_free(ids);
        }
        p = e ? e + strlen("<|endoftext|>") : NULL;
    }
    double ce = sum / (double)count;
    printf("stories260K CE on tinystories_sample.txt: %.4f nats/token over %lld tokens in %d stories "
           "(ppl %.3f)\n", ce, (long long)count, stories, exp(ce));
    assert_int_equal(stories, 5);
    assert_true(fabs(ce - 1.266) < 0.002);
    free(text);
    pl_model_free(m);
}

/* An HF-layout checkpoint made from stories260K: safetensors with HF names, Q/K rows put back
 * in HF's half-split RoPE order (undoing the GGUF converter's permutation), config.json. The
 * loader must pick the half RoPE layout and reproduce the same logits. */
static struct pl_tensor *unpermute_rows(const struct pl_tensor *w, int n_head)
{
    int64_t rows = w->shape[0], cols = w->shape[1], hd = rows / n_head, half = hd / 2;
    struct pl_tensor *o = pl_tensor_new(PL_F32, 2, w->shape, PL_MEM_WEIGHTS);
    const float *src = pl_tensor_data(w);
    float *dst = pl_tensor_data(o);
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (h * hd + j * half + i) * cols, src + (h * hd + 2 * i + j) * cols,
                       (size_t)cols * sizeof(float));
    return o;
}

static void test_safetensors_hf_layout(void **state)
{
    (void)state;
    assert_int_equal(mkdir(pl_test_tmp("hf"), 0755), 0);
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    struct pl_safetensors_writer *w = pl_safetensors_writer_new();
    assert_non_null(w);
    int np = pl_model_n_params(m);
    for (int i = 0; i < np; i++) {
        char name[128];
        struct pl_tensor *t = *pl_model_param(m, i, name, sizeof name);
        struct pl_tensor *u = NULL;
        if (strstr(name, "q_proj")) u = unpermute_rows(t, m->cfg.n_heads);
        else if (strstr(name, "k_proj")) u = unpermute_rows(t, m->cfg.n_kv_heads);
        assert_int_equal(pl_safetensors_add_tensor(w, name, u ? u : t), PL_OK);
        pl_tensor_release(u);
    }
    assert_int_equal(pl_safetensors_writer_write(w, pl_test_tmp("hf/model.safetensors")), PL_OK);
    pl_safetensors_writer_free(w);
    FILE *f = fopen(pl_test_tmp("hf/config.json"), "w");
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 172,"
               " \"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"num_key_value_heads\": 4,"
               " \"vocab_size\": 512, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,"
               " \"max_position_embeddings\": 512, \"tie_word_embeddings\": false}\n");
    fclose(f);
    pl_model_free(m);
    const char *paths[2] = { pl_test_tmp("hf"), pl_test_tmp("hf/model.safetensors") };
    for (int k = 0; k < 2; k++) {
        struct pl_model *h = NULL;
        assert_int_equal(pl_model_load(&h, paths[k], &(struct pl_model_load_opts){ .no_tokenizer = 1 }),
                         PL_OK);
        assert_int_equal(h->format, PL_FORMAT_SAFETENSORS);
        assert_int_equal(h->cfg.rope_layout, PL_ROPE_LAYOUT_HALF);
        assert_int_equal(h->cfg.tied_output, 0);
        double d = golden_check(h, "tests/ref/golden/stories260K_logits.bin", 0);
        printf("stories260K as HF safetensors: max |logit - reference| = %.3g\n", d);
        assert_true(d <= 1e-4);
        pl_model_free(h);
    }
    /* without a tokenizer.json the default load fails naming what is missing */
    expect_fail(pl_test_tmp("hf"), NULL, "tokenizer.json");
    /* an unknown model_type */
    f = fopen(pl_test_tmp("hf/config.json"), "w");
    fprintf(f, "{\"model_type\": \"gpt2\", \"hidden_size\": 64}\n");
    fclose(f);
    expect_fail(pl_test_tmp("hf"), NULL, "gpt2");
}

/* A qwen2-architecture GGUF made from stories260K: Q/K rows in the half-split order qwen2
 * GGUFs use (NEOX RoPE), zero q/k/v biases; the logits must equal the reference. A non-zero
 * q bias must change them (the bias is applied). */
static void write_qwen2(const char *path, float qbias)
{
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(pl_gguf_set_str(w, "general.architecture", "qwen2"), PL_OK);
    pl_gguf_set_u32(w, "qwen2.block_count", 5);
    pl_gguf_set_u32(w, "qwen2.embedding_length", 64);
    pl_gguf_set_u32(w, "qwen2.feed_forward_length", 172);
    pl_gguf_set_u32(w, "qwen2.attention.head_count", 8);
    pl_gguf_set_u32(w, "qwen2.attention.head_count_kv", 4);
    pl_gguf_set_u32(w, "qwen2.context_length", 512);
    pl_gguf_set_f32(w, "qwen2.rope.freq_base", 10000.0f);
    pl_gguf_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-5f);
    static const char *const gn[PL_PROJ_COUNT] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down" };
    char name[96];
    pl_gguf_add_tensor(w, "token_embd.weight", m->tok_embd);
    pl_gguf_add_tensor(w, "output_norm.weight", m->out_norm);
    pl_gguf_add_tensor(w, "output.weight", m->output);
    for (int l = 0; l < 5; l++) {
        struct pl_layer *ly = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        pl_gguf_add_tensor(w, name, ly->attn_norm);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        pl_gguf_add_tensor(w, name, ly->ffn_norm);
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            struct pl_tensor *t = ly->w[p], *u = NULL;
            if (p == PL_PROJ_Q) t = u = unpermute_rows(ly->w[p], 8);
            if (p == PL_PROJ_K) t = u = unpermute_rows(ly->w[p], 4);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, gn[p]);
            assert_int_equal(pl_gguf_add_tensor(w, name, t), PL_OK);
            pl_tensor_release(u);
            if (p <= PL_PROJ_V) {
                int64_t n = t->shape[0];
                struct pl_tensor *b = pl_tensor_new(PL_F32, 1, &n, PL_MEM_WEIGHTS);
                if (p == PL_PROJ_Q) pl_tensor_fill(b, qbias);
                snprintf(name, sizeof name, "blk.%d.%s.bias", l, gn[p]);
                assert_int_equal(pl_gguf_add_tensor(w, name, b), PL_OK);
                pl_tensor_release(b);
            }
        }
    }
    assert_int_equal(pl_gguf_writer_write(w, path), PL_OK);
    pl_gguf_writer_free(w);
    pl_model_free(m);
}

static void test_qwen2_gguf(void **state)
{
    (void)state;
    write_qwen2(pl_test_tmp("qwen2.gguf"), 0.0f);
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { .no_tokenizer = 1 };
    assert_int_equal(pl_model_load(&m, pl_test_tmp("qwen2.gguf"), &o), PL_OK);
    assert_int_equal(m->cfg.arch, PL_ARCH_QWEN2);
    assert_int_equal(m->cfg.rope_layout, PL_ROPE_LAYOUT_HALF);
    assert_int_equal(pl_model_n_params(m), 1 + 5 * 12 + 2);
    assert_non_null(pl_model_find_param(m, "model.layers.4.self_attn.v_proj.bias"));
    double d = golden_check(m, "tests/ref/golden/stories260K_logits.bin", 0);
    printf("stories260K as qwen2 GGUF: max |logit - reference| = %.3g\n", d);
    assert_true(d <= 1e-4);
    struct pl_model_card card;
    pl_model_card(m, &card);
    assert_string_equal(card.arch, "qwen2");
    pl_model_free(m);
    /* a non-zero q bias is applied: the logits move */
    write_qwen2(pl_test_tmp("qwen2b.gguf"), 0.5f);
    assert_int_equal(pl_model_load(&m, pl_test_tmp("qwen2b.gguf"), &o), PL_OK);
    int32_t ids[4] = { 1, 403, 395, 419 };
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, 4, 0);
    assert_int_equal(pl_llama_forward(c, ids, 4, 0, 0), PL_OK);
    struct pl_model *m0 = NULL;
    assert_int_equal(pl_model_load(&m0, pl_test_tmp("qwen2.gguf"), &o), PL_OK);
    struct pl_llama_ctx *c0 = pl_llama_ctx_new(m0, 1, 4, 0);
    assert_int_equal(pl_llama_forward(c0, ids, 4, 0, 0), PL_OK);
    double diff = 0;
    for (int i = 512; i < 4 * 512; i++) diff = fmax(diff, fabs(c->logits[i] - c0->logits[i]));
    assert_true(diff > 1e-3);
    pl_llama_ctx_free(c);
    pl_llama_ctx_free(c0);
    pl_model_free(m);
    pl_model_free(m0);
}

/* ---- SmolLM2-135M ---- */

static void test_smollm2_golden_logits(void **state)
{
    (void)state;
    if (!pl_test_exists(SMOL)) {
        printf("SKIP smollm2: %s absent (make model)\n", SMOL);
        skip();
    }
    struct pl_model *m = load_or_die(SMOL, NULL);
    assert_int_equal(m->cfg.n_layers, 30);
    assert_int_equal(m->cfg.dim, 576);
    assert_int_equal(m->cfg.n_kv_heads, 3);
    assert_true(m->cfg.tied_output);
    assert_int_equal(m->tok_embd->dtype, PL_Q8_0);
    assert_int_equal(m->layers[0].w[PL_PROJ_Q]->dtype, PL_Q4_1);
    double d = golden_check(m, "tests/ref/golden/smollm2_logits.bin", 0);
    printf("SmolLM2-135M: max |logit - reference| = %.3g\n", d);
    assert_true(d <= 1e-3);
    /* KV-cached decoding (the few-row projection path) against the same reference rows */
    struct golden g;
    golden_read(&g, "tests/ref/golden/smollm2_logits.bin");
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, g.T, 0);
    assert_int_equal(pl_llama_forward(c, g.tokens, 8, 0, 1), PL_OK);
    double worst = 0;
    for (int t = 7; t < g.T; t++) {
        if (t > 7) assert_int_equal(pl_llama_forward(c, g.tokens + t, 1, t, 1), PL_OK);
        for (int k = 0; k < g.C; k++) {
            double dd = fabs((double)c->logits[g.cols[k]] - g.logits[(size_t)t * g.C + k]);
            if (dd > worst) worst = dd;
        }
    }
    printf("SmolLM2-135M KV-cached decoding: max |logit - reference| = %.3g\n", worst);
    assert_true(worst <= 1e-3);
    pl_llama_ctx_free(c);
    golden_free(&g);
    struct pl_model_card card;
    pl_model_card(m, &card);
    assert_int_equal(card.n_params, 134515008);
    assert_int_equal(card.dtype_count[PL_Q4_1], 210);
    assert_int_equal(card.dtype_count[PL_Q8_0], 1);
    assert_int_equal(card.dtype_count[PL_F32], 61);
    assert_string_equal(card.chat_family, "chatml");
    pl_model_free(m);
}

/* ---- sampling ---- */

static void test_rng_and_sampler(void **state)
{
    (void)state;
    struct pl_rng r;
    pl_rng_seed(&r, 42);
    /* xoshiro256** seeded by splitmix64(42), computed independently in Python. */
    assert_true(pl_rng_next(&r) == 0x15780b2e0c2ec716ULL);
    assert_true(pl_rng_next(&r) == 0x6104d9866d113a7eULL);
    assert_true(pl_rng_next(&r) == 0xae17533239e499a1ULL);

    float base[8] = { 0.1f, 2.0f, -1.0f, 1.9f, 0.5f, 3.0f, -2.0f, 2.9f };
    float z[8], work[16];
    struct pl_sampler s;
    pl_sampler_init(&s, 7);
    s.greedy = 1;
    memcpy(z, base, sizeof z);
    assert_int_equal(pl_sampler_sample(&s, z, 8, NULL, 0, work), 5);
    /* repetition penalty 2 halves token 5's logit (3.0 → 1.5): 7 wins */
    int32_t prev[2] = { 5, 5 };
    s.repetition_penalty = 2.0f;
    memcpy(z, base, sizeof z);
    assert_int_equal(pl_sampler_sample(&s, z, 8, prev, 2, work), 7);
    assert_true(z[5] == 1.5f);
    /* top_k = 2 only ever draws 5 or 7; counts follow softmax of (3.0, 2.9) */
    pl_sampler_init(&s, 123);
    s.top_k = 2;
    int hits[8] = { 0 };
    for (int i = 0; i < 2000; i++) {
        memcpy(z, base, sizeof z);
        hits[pl_sampler_sample(&s, z, 8, NULL, 0, work)]++;
    }
    assert_int_equal(hits[5] + hits[7], 2000);
    double p5 = 1.0 / (1.0 + exp(-0.1));
    assert_true(fabs(hits[5] / 2000.0 - p5) < 0.05);
    /* top_p = 0.3 keeps only the most likely token here (its mass is ~0.36) */
    pl_sampler_init(&s, 5);
    s.top_p = 0.3f;
    for (int i = 0; i < 200; i++) {
        memcpy(z, base, sizeof z);
        assert_int_equal(pl_sampler_sample(&s, z, 8, NULL, 0, work), 5);
    }
    /* top_k selection over a larger vocabulary: only the k largest are ever drawn */
    {
        enum { NV = 5000 };
        static float big[NV], zz[NV], wk[2 * NV];
        for (int i = 0; i < NV; i++) big[i] = (float)((i * 7919) % NV) / 500.0f;  /* a permutation */
        pl_sampler_init(&s, 11);
        s.top_k = 5;
        s.top_p = 1.0f;
        s.temperature = 5.0f;
        int seen[5] = { 0 };
        for (int it = 0; it < 500; it++) {
            memcpy(zz, big, sizeof zz);
            int32_t id = pl_sampler_sample(&s, zz, NV, NULL, 0, wk);
            int rank = NV - 1 - (id * 7919) % NV;   /* 0 = largest logit */
            assert_true(rank >= 0 && rank < 5);
            seen[rank]++;
        }
        for (int r = 0; r < 5; r++) assert_true(seen[r] > 50);
    }
    /* same seed, same draws */
    struct pl_sampler a, b;
    pl_sampler_init(&a, 99);
    pl_sampler_init(&b, 99);
    for (int i = 0; i < 100; i++) {
        float za[8], zb[8];
        memcpy(za, base, sizeof za);
        memcpy(zb, base, sizeof zb);
        assert_int_equal(pl_sampler_sample(&a, za, 8, NULL, 0, work),
                         pl_sampler_sample(&b, zb, 8, NULL, 0, work));
    }
}

static void test_generate_seeded_and_stop(void **state)
{
    (void)state;
    struct pl_model *m = load_or_die(STORIES_GGUF, NULL);
    struct pl_generate_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 40;
    pl_sampler_init(&o.sampler, 1234);
    o.sampler.temperature = 0.8f;
    o.sampler.top_p = 0.9f;
    int32_t bos = 1;
    char *t1, *t2;
    assert_int_equal(pl_generate(m, &bos, 1, &o, &t1, NULL, NULL), PL_OK);
    assert_int_equal(pl_generate(m, &bos, 1, &o, &t2, NULL, NULL), PL_OK);
    assert_string_equal(t1, t2);
    pl_free(t2);
    /* greedy with a stop string: the text ends right before it */
    o.sampler.greedy = 1;
    const char *stop[] = { "Lily", NULL };
    o.stop = stop;
    assert_int_equal(pl_generate(m, &bos, 1, &o, &t2, NULL, NULL), PL_OK);
    assert_non_null(strstr(t2, "little girl named"));
    assert_null(strstr(t2, "Lily"));
    pl_free(t1);
    pl_free(t2);
    pl_model_free(m);
}

/* ---- bad input ---- */

static void write_prefix(const char *src, const char *dst, size_t n, const char *patch_from,
                         const char *patch_to)
{
    size_t sz;
    char *d = pl_test_read(src, &sz);
    if (n == 0 || n > sz) n = sz;
    if (patch_from) {
        for (size_t i = 0; i + strlen(patch_from) <= n; i++)
            if (memcmp(d + i, patch_from, strlen(patch_from)) == 0) {
                memcpy(d + i, patch_to, strlen(patch_to));
                break;
            }
    }
    pl_test_write(dst, d, n);
    free(d);
}

static void expect_fail(const char *path, const char *tok, const char *needle)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { .tokenizer = tok };
    enum pl_status st = pl_model_load(&m, path, &o);
    assert_int_not_equal(st, PL_OK);
    assert_null(m);
    const char *e = pl_last_error();
    printf("expected failure: %s\n", e);
    assert_non_null(strstr(e, path));
    assert_non_null(strstr(e, needle));
    assert_null(strchr(e, '\n'));
}

static void test_bad_input(void **state)
{
    (void)state;
    write_prefix(STORIES_BIN, pl_test_tmp("trunc.bin"), 5000, NULL, NULL);
    expect_fail(pl_test_tmp("trunc.bin"), STORIES_TOK, "truncated");
    write_prefix(STORIES_BIN, pl_test_tmp("hdr.bin"), 20, NULL, NULL);
    expect_fail(pl_test_tmp("hdr.bin"), STORIES_TOK, "truncated");
    write_prefix(STORIES_GGUF, pl_test_tmp("trunc.gguf"), 100000, NULL, NULL);
    expect_fail(pl_test_tmp("trunc.gguf"), NULL, "");
    write_prefix(STORIES_GGUF, pl_test_tmp("magic.gguf"), 0, "GGUF", "GGUX");
    expect_fail(pl_test_tmp("magic.gguf"), NULL, "magic");
    {
        /* the architecture value is the string "llama" right after general.architecture */
        size_t sz;
        char *d = pl_test_read(STORIES_GGUF, &sz);
        const char *key = "general.architecture";
        for (size_t i = 0; i + 40 < sz; i++)
            if (memcmp(d + i, key, strlen(key)) == 0) {
                char *v = d + i + strlen(key) + 4 + 8;   /* type u32, length u64 */
                assert_memory_equal(v, "llama", 5);
                memcpy(v, "mamba", 5);
                break;
            }
        pl_test_write(pl_test_tmp("arch.gguf"), d, sz);
        free(d);
    }
    expect_fail(pl_test_tmp("arch.gguf"), NULL, "mamba");
    {
        /* tensor info of output_norm.weight: name, u32 n_dims (1), u64 ne[0], u32 ggml type */
        size_t sz;
        char *d = pl_test_read(STORIES_GGUF, &sz);
        const char *key = "output_norm.weight";
        int patched = 0;
        for (size_t i = 0; i + 64 < sz && !patched; i++)
            if (memcmp(d + i, key, strlen(key)) == 0 && d[i + strlen(key)] == 1) {
                uint32_t bad = 77;
                memcpy(d + i + strlen(key) + 4 + 8, &bad, 4);
                patched = 1;
            }
        assert_true(patched);
        pl_test_write(pl_test_tmp("type.gguf"), d, sz);
        free(d);
        expect_fail(pl_test_tmp("type.gguf"), NULL, "output_norm.weight");
    }
    /* a .bin alone in a directory has no tokenizer */
    write_prefix(STORIES_BIN, pl_test_tmp("alone.bin"), 0, NULL, NULL);
    expect_fail(pl_test_tmp("alone.bin"), NULL, "tokenizer");
    expect_fail(pl_test_tmp("does-not-exist.gguf"), NULL, "does-not-exist");
    write_prefix(STORIES_TOK, pl_test_tmp("notamodel.xyz"), 0, NULL, NULL);
    expect_fail(pl_test_tmp("notamodel.xyz"), NULL, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_bin_equals_gguf),
        cmocka_unit_test(test_stories_golden_logits),
        cmocka_unit_test(test_llama2c_unshared_classifier),
        cmocka_unit_test(test_kv_cache_matches_full),
        cmocka_unit_test(test_loss_mask_hook_interrupt),
        cmocka_unit_test(test_score_stream_windows),
        cmocka_unit_test(test_stories_greedy_generation),
        cmocka_unit_test(test_stories_cross_entropy),
        cmocka_unit_test(test_safetensors_hf_layout),
        cmocka_unit_test(test_qwen2_gguf),
        cmocka_unit_test(test_smollm2_golden_logits),
        cmocka_unit_test(test_rng_and_sampler),
        cmocka_unit_test(test_generate_seeded_and_stop),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
