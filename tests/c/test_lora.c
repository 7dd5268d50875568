/* test_lora.c — LoRA adapters on random tensors: initialisation, the forward hook, the backward
 * against finite differences, dropout determinism, merging, PEFT save/load and its layout.
 *
 * Owner: train. Independent references are written out here as plain loops.
 * Run from the repository root (the PEFT fixture is tests/data/lora/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "peftlua/lora.h"

/* A small GQA shape: dim 24, 4 heads of 6, 2 kv heads, hidden 40, 3 layers. */
static struct pl_model_config small_cfg(void)
{
    struct pl_model_config c;
    memset(&c, 0, sizeof c);
    c.dim = 24; c.hidden_dim = 40; c.n_layers = 3; c.n_heads = 4; c.n_kv_heads = 2;
    c.head_dim = 6; c.vocab_size = 50; c.seq_len = 32;
    return c;
}

static uint64_t lcg = 12345;
static float frand(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void naive_lora(float *y, const float *x, const float *A, const float *B, float s,
                       int64_t n, int64_t in, int64_t out, int64_t r)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = 0;
            for (int64_t k = 0; k < r; k++) {
                double xa = 0;
                for (int64_t j = 0; j < in; j++) xa += (double)x[i * in + j] * A[k * in + j];
                acc += xa * B[o * r + k];
            }
            y[i * out + o] += (float)(s * acc);
        }
}

static void test_init_and_layout(void **state)
{
    (void)state;
    struct pl_model_config mc = small_cfg();
    struct pl_lora_cfg lc = pl_lora_defaults();
    lc.r = 4;
    lc.alpha = 8;
    lc.targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
    lc.n_layers_sel = 2;
    lc.layers[0] = 0;
    lc.layers[1] = 2;
    struct pl_lora *a;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 7), PL_OK);
    assert_int_equal(a->n, 6);
    assert_null(pl_lora_get(a, 1, PL_PROJ_Q));
    assert_null(pl_lora_get(a, 0, PL_PROJ_K));
    struct pl_lora_adapter *d = pl_lora_get(a, 2, PL_PROJ_DOWN);
    assert_non_null(d);
    assert_int_equal(d->in, 40);
    assert_int_equal(d->out, 24);
    assert_int_equal(pl_lora_get(a, 0, PL_PROJ_V)->out, 12);
    assert_true(fabsf(a->scale - 2.0f) < 1e-7f);
    int64_t total = 0;
    double sum = 0, sq = 0;
    int64_t cnt = 0;
    for (int i = 0; i < a->n; i++) {
        struct pl_lora_adapter *e = &a->ad[i];
        total += 4 * (e->in + e->out);
        float bound = 1.0f / sqrtf((float)e->in);
        for (int64_t k = 0; k < 4 * e->in; k++) {
            assert_true(fabsf(e->A[k]) <= bound);
            sum += e->A[k] / bound;
            sq += (double)(e->A[k] / bound) * (e->A[k] / bound);
            cnt++;
        }
        for (int64_t k = 0; k < 4 * e->out; k++) assert_true(e->B[k] == 0.0f);
    }
    assert_int_equal(total, a->n_params);
    /* U(-1, 1) after normalising: mean 0, variance 1/3 */
    assert_true(fabs(sum / cnt) < 0.05);
    assert_true(fabs(sq / cnt - 1.0 / 3.0) < 0.03);
    /* the same seed gives the same adapters; another seed does not */
    struct pl_lora *b, *c;
    assert_int_equal(pl_lora_new(&b, &mc, &lc, 7), PL_OK);
    assert_int_equal(pl_lora_new(&c, &mc, &lc, 8), PL_OK);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
    assert_true(memcmp(a->params, c->params, a->n_params * sizeof(float)) != 0);
    pl_lora_free(a); pl_lora_free(b); pl_lora_free(c);
    /* rsLoRA */
    lc.use_rslora = 1;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 7), PL_OK);
    assert_true(fabsf(a->scale - 4.0f) < 1e-6f);
    pl_lora_free(a);
}

static void test_bad_configs(void **state)
{
    (void)state;
    struct pl_model_config mc = small_cfg();
    struct pl_lora_cfg lc = pl_lora_defaults();
    struct pl_lora *a = NULL;
    lc.r = 0;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 1), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "rank"));
    lc = pl_lora_defaults();
    lc.dropout = 1.0f;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 1), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "dropout"));
    lc = pl_lora_defaults();
    lc.targets = 0;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 1), PL_ERR_ARG);
    lc = pl_lora_defaults();
    lc.n_layers_sel = 1;
    lc.layers[0] = 3;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 1), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "layer 3"));
    assert_null(a);
    assert_int_equal(pl_lora_target_from_name("gate_proj"), PL_PROJ_GATE);
    assert_int_equal(pl_lora_target_from_name("qkv"), -1);
}

static struct pl_lora *random_lora(const struct pl_model_config *mc, float dropout, uint32_t targets)
{
    struct pl_lora_cfg lc = pl_lora_defaults();
    lc.r = 3;
    lc.alpha = 5;
    lc.dropout = dropout;
    lc.targets = targets;
    struct pl_lora *a;
    assert_int_equal(pl_lora_new(&a, mc, &lc, 99), PL_OK);
    for (int64_t i = 0; i < a->n_params; i++) a->params[i] = 0.5f * frand();
    return a;
}

static void test_hook_matches_naive(void **state)
{
    (void)state;
    struct pl_model_config mc = small_cfg();
    struct pl_lora *a = random_lora(&mc, 0, 1u << PL_PROJ_O);
    const int64_t n = 5, in = 24, out = 24;
    float x[5 * 24], y[5 * 24], want[5 * 24];
    for (int i = 0; i < n * in; i++) x[i] = frand();
    for (int i = 0; i < n * out; i++) y[i] = want[i] = frand();
    struct pl_lora_adapter *d = pl_lora_get(a, 1, PL_PROJ_O);
    naive_lora(want, x, d->A, d->B, a->scale, n, in, out, 3);
    assert_int_equal(pl_lora_hook(a, 1, PL_PROJ_O, y, x, n), PL_OK);
    for (int i = 0; i < n * out; i++) assert_true(fabsf(y[i] - want[i]) < 1e-5f);
    /* disabled adapters and untargeted projections leave y alone */
    float y2[5 * 24];
    memcpy(y2, y, sizeof y);
    a->enabled = 0;
    assert_int_equal(pl_lora_hook(a, 1, PL_PROJ_O, y2, x, n), PL_OK);
    assert_memory_equal(y2, y, sizeof y);
    a->enabled = 1;
    assert_int_equal(pl_lora_hook(a, 1, PL_PROJ_Q, y2, x, n), PL_OK);
    assert_memory_equal(y2, y, sizeof y);
    pl_lora_free(a);
}

/* L = Σ c ⊙ y(x, A, B); compare the analytic gradients with central differences. */
static double objective(struct pl_lora *a, int layer, enum pl_proj p, const float *x,
                        const float *c, int64_t n, int64_t out)
{
    float *y = calloc((size_t)(n * out), sizeof(float));
    a->training = 1;
    assert_int_equal(pl_lora_hook(a, layer, p, y, x, n), PL_OK);
    a->training = 0;
    double s = 0;
    for (int64_t i = 0; i < n * out; i++) s += (double)c[i] * y[i];
    free(y);
    return s;
}

static void check_backward(float dropout)
{
    struct pl_model_config mc = small_cfg();
    struct pl_lora *a = random_lora(&mc, dropout, 1u << PL_PROJ_GATE);
    const int layer = 2, n = 4;
    struct pl_lora_adapter *d = pl_lora_get(a, layer, PL_PROJ_GATE);
    const int64_t in = d->in, out = d->out;
    assert_int_equal(pl_lora_plan(a, n), PL_OK);
    a->dropout_step = 5;
    float *x = malloc(n * in * sizeof(float)), *c = malloc(n * out * sizeof(float));
    float *dx = calloc(n * in, sizeof(float));
    for (int i = 0; i < n * in; i++) x[i] = frand();
    for (int i = 0; i < n * out; i++) c[i] = frand();
    objective(a, layer, PL_PROJ_GATE, x, c, n, out);   /* saves xa */
    memset(a->grads, 0, a->n_params * sizeof(float));
    assert_int_equal(pl_lora_backward(a, layer, PL_PROJ_GATE, dx, c, x, n), PL_OK);
    const double h = 1e-2;
    double maxerr = 0;
    float *vecs[3] = { d->A, d->B, x };
    float *grads[3] = { d->dA, d->dB, dx };
    int64_t sizes[3] = { 3 * in, 3 * out, n * in };
    int zeros = 0;
    for (int v = 0; v < 3; v++)
        for (int64_t i = 0; i < sizes[v]; i += 7) {
            float keep = vecs[v][i];
            vecs[v][i] = keep + (float)h;
            double lp = objective(a, layer, PL_PROJ_GATE, x, c, n, out);
            vecs[v][i] = keep - (float)h;
            double lm = objective(a, layer, PL_PROJ_GATE, x, c, n, out);
            vecs[v][i] = keep;
            double fd = (lp - lm) / (2 * h);
            double err = fabs(fd - grads[v][i]) / (1e-2 + fabs(fd));
            if (v == 2 && grads[v][i] == 0.0f) zeros++;
            if (err > maxerr) maxerr = err;
        }
    if (maxerr > 2e-3) fail_msg("lora backward (dropout %.2f): max relative error %.3g", dropout, maxerr);
    if (dropout > 0) assert_true(zeros > 0);   /* dropped inputs get no gradient */
    free(x); free(c); free(dx);
    pl_lora_free(a);
}

static void test_backward_finite_differences(void **state)
{
    (void)state;
    check_backward(0.0f);
    check_backward(0.3f);
}

static void test_dropout_deterministic(void **state)
{
    (void)state;
    struct pl_model_config mc = small_cfg();
    struct pl_lora *a = random_lora(&mc, 0.5f, 1u << PL_PROJ_Q);
    assert_int_equal(pl_lora_plan(a, 8), PL_OK);
    float x[8 * 24], y1[8 * 24] = { 0 }, y2[8 * 24] = { 0 }, y3[8 * 24] = { 0 }, y0[8 * 24] = { 0 };
    for (int i = 0; i < 8 * 24; i++) x[i] = frand();
    a->training = 1;
    a->dropout_step = 3;
    pl_lora_hook(a, 0, PL_PROJ_Q, y1, x, 8);
    pl_lora_hook(a, 0, PL_PROJ_Q, y2, x, 8);
    a->dropout_step = 4;
    pl_lora_hook(a, 0, PL_PROJ_Q, y3, x, 8);
    a->training = 0;
    pl_lora_hook(a, 0, PL_PROJ_Q, y0, x, 8);
    assert_memory_equal(y1, y2, sizeof y1);
    assert_true(memcmp(y1, y3, sizeof y1) != 0);
    assert_true(memcmp(y1, y0, sizeof y1) != 0);   /* eval: no dropout */
    pl_lora_free(a);
}

static void test_merge_into(void **state)
{
    (void)state;
    const int64_t out = 7, in = 9, r = 3;
    float W[7 * 9], W0[7 * 9], A[3 * 9], B[7 * 3];
    for (int i = 0; i < out * in; i++) W[i] = W0[i] = frand();
    for (int i = 0; i < r * in; i++) A[i] = frand();
    for (int i = 0; i < out * r; i++) B[i] = frand();
    pl_lora_merge_into(W, A, B, 1.5f, out, in, r);
    /* merged W applied to x equals base + adapter */
    float x[9], y[7] = { 0 }, want[7] = { 0 };
    for (int i = 0; i < in; i++) x[i] = frand();
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) { y[o] += W[o * in + i] * x[i]; want[o] += W0[o * in + i] * x[i]; }
    naive_lora(want, x, A, B, 1.5f, 1, in, out, r);
    for (int o = 0; o < out; o++) assert_true(fabsf(y[o] - want[o]) < 1e-5f);
}


static void test_save_load_peft_layout(void **state)
{
    (void)state;
    struct pl_model_config mc = small_cfg();
    struct pl_lora_cfg lc = pl_lora_defaults();
    lc.r = 2;
    lc.alpha = 4;
    lc.dropout = 0.05f;
    lc.targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V) | (1u << PL_PROJ_UP);
    lc.n_layers_sel = 1;
    lc.layers[0] = 1;
    struct pl_lora *a;
    assert_int_equal(pl_lora_new(&a, &mc, &lc, 3), PL_OK);
    for (int64_t i = 0; i < a->n_params; i++) a->params[i] = frand();
    char dir[] = "/tmp/pl_test_lora_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pl_lora_save(a, dir, "tiny-llama"), PL_OK);

    /* layout: the header names and shapes follow the committed fixture exactly */
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint64_t hl = 0;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    assert_int_equal(hl % 8, 0);
    char *hdr = calloc(hl + 1, 1);
    assert_int_equal(fread(hdr, 1, hl, f), hl);
    fclose(f);
    struct pl_json *h = pl_json_parse(hdr, hl, path);
    assert_non_null(h);
    struct pl_json *want = pl_json_parse_file("tests/data/lora/expected_tensors.json");
    assert_non_null(want);
    assert_int_equal(pl_json_len(h) - 1, pl_json_len(want));   /* + __metadata__ */
    for (struct pl_json *e = pl_json_first(want); e; e = pl_json_next(e)) {
        struct pl_json *t = pl_json_get(h, pl_json_key(e));
        if (!t) fail_msg("saved adapter lacks %s", pl_json_key(e));
        assert_string_equal(pl_json_get_str(t, "dtype"), "F32");
        struct pl_json *sh = pl_json_get(t, "shape");
        assert_int_equal(pl_json_len(sh), 2);
        assert_int_equal((int)pl_json_num(pl_json_at(sh, 0), -1), (int)pl_json_num(pl_json_at(e, 0), -2));
        assert_int_equal((int)pl_json_num(pl_json_at(sh, 1), -1), (int)pl_json_num(pl_json_at(e, 1), -2));
    }
    assert_string_equal(pl_json_get_str(pl_json_get(h, "__metadata__"), "format"), "pt");
    pl_json_free(want);
    pl_json_free(h);
    free(hdr);

    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    struct pl_json *c = pl_json_parse_file(path);
    assert_non_null(c);
    assert_string_equal(pl_json_get_str(c, "peft_type"), "LORA");
    assert_string_equal(pl_json_get_str(c, "task_type"), "CAUSAL_LM");
    assert_string_equal(pl_json_get_str(c, "bias"), "none");
    assert_string_equal(pl_json_get_str(c, "base_model_name_or_path"), "tiny-llama");
    assert_int_equal((int)pl_json_get_num(c, "r", 0), 2);
    assert_true(fabs(pl_json_get_num(c, "lora_alpha", 0) - 4) < 1e-9);
    assert_true(fabs(pl_json_get_num(c, "lora_dropout", 0) - 0.05) < 1e-6);
    assert_int_equal(pl_json_bool(pl_json_get(c, "use_rslora"), 1), 0);
    struct pl_json *tm = pl_json_get(c, "target_modules");
    assert_int_equal(pl_json_len(tm), 3);
    assert_string_equal(pl_json_str(pl_json_at(tm, 0)), "q_proj");
    assert_string_equal(pl_json_str(pl_json_at(tm, 2)), "up_proj");
    assert_int_equal((int)pl_json_num(pl_json_at(pl_json_get(c, "layers_to_transform"), 0), -1), 1);
    pl_json_free(c);

    struct pl_lora *b;
    assert_int_equal(pl_lora_load(&b, dir, &mc), PL_OK);
    assert_int_equal(b->n, a->n);
    assert_int_equal(b->n_params, a->n_params);
    assert_memory_equal(b->params, a->params, a->n_params * sizeof(float));
    assert_true(b->scale == a->scale);
    assert_true(b->cfg.targets == a->cfg.targets);

    /* a model of another shape is refused, naming the tensor */
    struct pl_model_config other = mc;
    other.dim = 32;
    struct pl_lora *bad = NULL;
    assert_int_not_equal(pl_lora_load(&bad, dir, &other), PL_OK);
    assert_non_null(strstr(pl_last_error(), "lora_A.weight"));
    assert_null(bad);
    /* a truncated file is an error, not a crash */
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    assert_int_equal(truncate(path, 40), 0);
    assert_int_not_equal(pl_lora_load(&bad, dir, &mc), PL_OK);
    assert_non_null(strstr(pl_last_error(), "adapter_model.safetensors"));
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);
    pl_lora_free(a);
    pl_lora_free(b);
}

static void test_load_fixture(void **state)
{
    (void)state;
    /* tests/data/lora/peft_fixture: an adapter in PEFT's file layout (see its README) */
    struct pl_model_config mc = small_cfg();
    struct pl_lora *a;
    if (pl_lora_load(&a, "tests/data/lora/peft_fixture", &mc) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(a->cfg.r, 2);
    assert_int_equal(a->n, 2 * 3);
    struct pl_lora_adapter *d = pl_lora_get(a, 2, PL_PROJ_V);
    assert_non_null(d);
    /* the fixture's values are k/100 for element k of each tensor in file order */
    assert_true(fabsf(d->A[1] - 0.01f) < 1e-7f);
    assert_true(fabsf(d->B[3] - 0.03f) < 1e-7f);
    pl_lora_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_layout),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_hook_matches_naive),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_dropout_deterministic),
        cmocka_unit_test(test_merge_into),
        cmocka_unit_test(test_save_load_peft_layout),
        cmocka_unit_test(test_load_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
