/* test_quant.c — element formats: dequantisation of every ggml block type and NF4 against
 * goldens from gguf-py, bit-exact reference quantisers, f16/bf16 conversion, error bounds of
 * quantise→dequantise, and the dtype table.
 *
 * Owner: formats. Goldens: tests/ref/quant/goldens.bin from tests/ref/quant/make_goldens.py.
 * Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "peftlua/quant.h"
#include "peftlua/tensor.h"
#include "peftlua/status.h"

#define GOLDEN "tests/ref/quant/goldens.bin"

struct rec { char type[9]; uint32_t kind, n, nraw; uint8_t *raw; float *val; };
static struct rec recs[64];
static int nrecs;

static int load(void **state)
{
    (void)state;
    FILE *f = fopen(GOLDEN, "rb");
    assert_non_null(f);
    char magic[4];
    uint32_t hdr[2];
    assert_int_equal(fread(magic, 1, 4, f), 4);
    assert_memory_equal(magic, "PLQG", 4);
    assert_int_equal(fread(hdr, 4, 2, f), 2);
    assert_int_equal(hdr[0], 1);
    assert_true(hdr[1] <= 64);
    nrecs = (int)hdr[1];
    for (int i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        memset(r->type, 0, sizeof r->type);
        assert_int_equal(fread(r->type, 1, 8, f), 8);
        uint32_t h[3];
        assert_int_equal(fread(h, 4, 3, f), 3);
        r->kind = h[0]; r->n = h[1]; r->nraw = h[2];
        r->raw = malloc(r->nraw);
        r->val = malloc(r->n * sizeof(float));
        assert_int_equal(fread(r->raw, 1, r->nraw, f), r->nraw);
        assert_int_equal(fread(r->val, 4, r->n, f), r->n);
    }
    fclose(f);
    return 0;
}

static int unload(void **state)
{
    (void)state;
    for (int i = 0; i < nrecs; i++) { free(recs[i].raw); free(recs[i].val); }
    return 0;
}

static int same_float(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    return fabsf(a - b) <= 1e-6f * fmaxf(1.0f, fabsf(b));
}

static void test_dequant_goldens(void **state)
{
    (void)state;
    int seen[PL_DTYPE_COUNT] = {0};
    for (int i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        if (r->kind != 0) continue;
        int t = pl_dtype_from_name(r->type);
        assert_true(t >= 0);
        assert_int_equal(pl_dtype_row_bytes((enum pl_dtype)t, r->n), r->nraw);
        float *out = malloc(r->n * sizeof(float));
        assert_int_equal(pl_dequant_row((enum pl_dtype)t, r->raw, out, r->n), PL_OK);
        int bad = 0;
        for (uint32_t j = 0; j < r->n; j++)
            if (!same_float(out[j], r->val[j])) {
                if (bad++ < 3) print_message("%s[%u]: got %.9g want %.9g\n", r->type, j, out[j], r->val[j]);
            }
        assert_int_equal(bad, 0);
        free(out);
        seen[t] = 1;
    }
    /* every dtype but f32/i32/i8 has a dequantisation golden */
    for (int t = 0; t < PL_DTYPE_COUNT; t++)
        if (t != PL_F32 && t != PL_I32 && t != PL_I8) assert_true(seen[t]);
}

static void test_quant_goldens(void **state)
{
    (void)state;
    int n = 0;
    for (int i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        if (r->kind != 1) continue;
        int t = pl_dtype_from_name(r->type);
        assert_true(t >= 0);
        assert_int_equal(pl_dtype_row_bytes((enum pl_dtype)t, r->n), r->nraw);
        uint8_t *out = calloc(1, r->nraw);
        assert_int_equal(pl_quant_row((enum pl_dtype)t, r->val, out, r->n), PL_OK);
        for (uint32_t j = 0; j < r->nraw; j++)
            if (out[j] != r->raw[j]) {
                print_message("%s: byte %u got 0x%02x want 0x%02x\n", r->type, j, out[j], r->raw[j]);
                fail();
            }
        free(out);
        n++;
    }
    assert_int_equal(n, 8);
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pl_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
            assert_true(isnan(pl_f16_to_f32(pl_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(pl_f32_to_f16(f), h);
    }
    /* round to nearest even at a tie: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
    assert_int_equal(pl_f32_to_f16(1.0f + 0x1.0p-11f), 0x3c00);
    assert_int_equal(pl_f32_to_f16(1.0f + 3 * 0x1.0p-11f), 0x3c02);
    assert_int_equal(pl_f32_to_f16(1e6f), 0x7c00);       /* overflow → +inf */
    assert_int_equal(pl_f32_to_f16(-1e-10f), 0x8000);    /* underflow → -0 */
    /* bf16 */
    assert_int_equal(pl_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(pl_f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);            /* tie → even */
    assert_int_equal(pl_f32_to_bf16(1.0f + 3 * 0x1.0p-8f), 0x3f82);
    assert_true(isnan(pl_bf16_to_f32(pl_f32_to_bf16(NAN))));
    assert_true(pl_bf16_to_f32(0xc0a0) == -5.0f);
}

static uint64_t rng_state = 88172645463325252ull;
static float randn(void)
{
    /* xorshift64 + Box-Muller */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
        u[i] = ((rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* quantise N(0,1) data and dequantise: relative RMS error below a per-format bound (the
 * bounds are ~1.3-1.5x what these formats achieve on Gaussian data), and dequant∘quant∘dequant
 * reproduces the dequantised values (a fixed point: requantising a grid value is exact for
 * the simple formats). */
static void test_roundtrip_error(void **state)
{
    (void)state;
    const struct { enum pl_dtype t; double bound; } cases[] = {
        { PL_F16, 3e-4 }, { PL_BF16, 2.5e-3 }, { PL_Q8_0, 0.008 }, { PL_Q4_0, 0.12 },
        { PL_Q4_1, 0.11 }, { PL_Q5_0, 0.06 }, { PL_Q5_1, 0.055 }, { PL_Q4_K, 0.10 },
        { PL_Q6_K, 0.026 }, { PL_Q8_K, 0.01 }, { PL_NF4, 0.12 }, { PL_Q5_K, 0.05 },
        { PL_Q2_K, 0.35 }, { PL_Q3_K, 0.20 },
    };
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *z = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4), *q2 = malloc(N * 4);
    for (int i = 0; i < N; i++) x[i] = randn();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        enum pl_dtype t = cases[c].t;
        assert_int_equal(pl_quant_row(t, x, q, N), PL_OK);
        assert_int_equal(pl_dequant_row(t, q, y, N), PL_OK);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) { se += (double)(x[i] - y[i]) * (x[i] - y[i]); sx += (double)x[i] * x[i]; }
        double rel = sqrt(se / sx);
        print_message("%-5s rel rms error %.5f (bound %.4f)\n", pl_dtype_info(t)->name, rel, cases[c].bound);
        assert_true(rel < cases[c].bound);
        assert_true(rel > 0 || t == PL_F16);
        if (t == PL_Q8_0 || t == PL_Q4_0 || t == PL_Q4_1 || t == PL_NF4 || t == PL_F16 || t == PL_BF16) {
            assert_int_equal(pl_quant_row(t, y, q2, N), PL_OK);
            assert_int_equal(pl_dequant_row(t, q2, z, N), PL_OK);
            double md = 0;
            for (int i = 0; i < N; i++) md = fmax(md, fabs(z[i] - y[i]));
            assert_true(md <= 1e-6 * 4);
        }
    }
    /* all-zero input gives zeros, never NaN */
    memset(x, 0, N * sizeof(float));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        assert_int_equal(pl_quant_row(cases[c].t, x, q, N), PL_OK);
        assert_int_equal(pl_dequant_row(cases[c].t, q, y, N), PL_OK);
        for (int i = 0; i < N; i++) assert_true(y[i] == 0.0f);
    }
    free(x); free(y); free(z); free(q); free(q2);
}

static void test_dtype_table(void **state)
{
    (void)state;
    assert_int_equal(pl_dtype_from_name("q4_k"), PL_Q4_K);
    assert_int_equal(pl_dtype_from_name("Q6_K"), PL_Q6_K);
    assert_int_equal(pl_dtype_from_name("bfloat16"), PL_BF16);
    assert_int_equal(pl_dtype_from_name("nope"), -1);
    assert_int_equal(pl_dtype_from_gguf(3), PL_Q4_1);
    assert_int_equal(pl_dtype_from_gguf(30), PL_BF16);
    assert_int_equal(pl_dtype_from_gguf(16), -1);     /* iq2_xxs */
    assert_int_equal(pl_dtype_from_gguf(-1), -1);
    assert_int_equal(pl_dtype_row_bytes(PL_Q4_K, 512), 288);
    assert_int_equal(pl_dtype_row_bytes(PL_Q4_K, 500), 0);
    assert_int_equal(pl_dtype_row_bytes(PL_NF4, 128), 72);
    assert_int_equal(pl_dtype_row_bytes(PL_F16, 7), 14);
    assert_int_equal(pl_dtype_row_bytes(PL_Q8_0, INT64_MAX - 31), 0);  /* overflow */
    assert_true(pl_dtype_is_quant(PL_Q8_0));
    assert_false(pl_dtype_is_quant(PL_BF16));
    assert_null(pl_dtype_info(PL_DTYPE_COUNT));
    for (int t = 0; t < PL_DTYPE_COUNT; t++) {
        const struct pl_dtype_info *in = pl_dtype_info((enum pl_dtype)t);
        assert_int_equal(pl_dtype_from_name(in->name), t);
        if (in->gguf_type >= 0) assert_int_equal(pl_dtype_from_gguf(in->gguf_type), t);
    }
    float x[40] = {0};
    uint8_t q[64];
    assert_int_equal(pl_quant_row(PL_Q8_0, x, q, 40), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "multiple"));
    assert_int_equal(pl_dequant_row(PL_Q4_0, q, x, 33), PL_ERR_ARG);
    assert_int_equal(pl_quant_row(PL_DTYPE_COUNT, x, q, 0), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "unknown dtype"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_goldens),
        cmocka_unit_test(test_quant_goldens),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_roundtrip_error),
        cmocka_unit_test(test_dtype_table),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
