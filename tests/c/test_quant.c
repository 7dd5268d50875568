/* test_quant.c — element formats: dequantisation of every ggml block type and NF4 against
 * goldens from gguf-py, bit-exact reference quantisers, f16/bf16 conversion, error bounds of
 * quantise→dequantise, and the dtype table; NF4_32 / NF4_DQ dequantisation against the
 * formulas written out in the test, and the NF4 scale rules (MSE search vs absmax).
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
    /* every dtype but f32/i32/i8 has a dequantisation golden (nf4_32 and nf4_dq are checked
     * against the reference formula in test_nf4_reference instead) */
    for (int t = 0; t < PL_DTYPE_COUNT; t++)
        if (t != PL_F32 && t != PL_I32 && t != PL_I8 && t != PL_NF4_32 && t != PL_NF4_DQ)
            assert_true(seen[t]);
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
        /* the nf4 golden is bitsandbytes' absmax scaling; pl_quant_row's default searches */
        if (t == PL_NF4)
            assert_int_equal(pl_quant_row_nf4(PL_NF4, r->val, out, r->n, PL_NF4_SCALE_ABSMAX), PL_OK);
        else
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
        { PL_Q2_K, 0.35 }, { PL_Q3_K, 0.20 }, { PL_NF4_32, 0.11 }, { PL_NF4_DQ, 0.12 },
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
        if (t == PL_Q8_0 || t == PL_Q4_0 || t == PL_Q4_1 || t == PL_NF4 || t == PL_NF4_32 || t == PL_F16 || t == PL_BF16) {
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

/* NF4 code values as bitsandbytes lists them (independent copy of quant.c's table). */
static const double NF4V[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
};

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Element i's code from packed pairs (low nibble = even element). */
static int nib(const uint8_t *q, int j) { return j % 2 ? q[j / 2] >> 4 : q[j / 2] & 15; }

/* Dequantisation of random nf4_32 and nf4_dq bytes against the formulas written out here:
 *   nf4_32  block b (18 bytes): s = f16(bytes 0-1), x[32b + j] = s · NF4[code j]
 *   nf4_dq  nb blocks of 33 bytes (int8 c, 32 code bytes), then per group of 256 blocks
 *           f32 g, f32 mu; s = mu + g·c, x[64b + j] = s · NF4[code j]
 * and pl_dequant_part on slices against the whole. */
static void test_nf4_reference(void **state)
{
    (void)state;
    enum { NB = 600 };                       /* nf4_dq: 3 groups, the last partial */
    const int64_t n = 64 * NB;
    size_t bytes = pl_dtype_row_bytes(PL_NF4_DQ, n);
    assert_int_equal(bytes, NB * 33 + 3 * 8);
    uint8_t *u = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) u[i] = (uint8_t)rnd32();
    for (int gi = 0; gi < 3; gi++) {         /* sane table values */
        float gm[2] = { 1e-4f * (float)(1 + gi), 0.02f + 0.01f * (float)gi };
        memcpy(u + NB * 33 + 8 * gi, gm, 8);
    }
    float *y = malloc((size_t)n * sizeof(float)), *z = malloc((size_t)n * sizeof(float));
    assert_int_equal(pl_dequant_row(PL_NF4_DQ, u, y, n), PL_OK);
    for (int64_t i = 0; i < n; i++) {
        int64_t b = i / 64, j = i % 64;
        float gm[2];
        memcpy(gm, u + NB * 33 + 8 * (b / 256), 8);
        double s = (double)gm[1] + (double)gm[0] * (int8_t)u[b * 33];
        double want = s * NF4V[nib(u + b * 33 + 1, (int)j)];
        assert_true(fabs(y[i] - want) <= 1e-6 * fabs(want) + 1e-12);
    }
    /* slices (the kernels' panels and column chunks) */
    const int64_t part[][2] = { { 0, 64 }, { 64 * 255, 128 }, { 64 * 300, 64 * 17 }, { n - 64, 64 } };
    for (int k = 0; k < 4; k++) {
        assert_int_equal(pl_dequant_part(PL_NF4_DQ, u, n, part[k][0], z, part[k][1]), PL_OK);
        assert_memory_equal(z, y + part[k][0], (size_t)part[k][1] * sizeof(float));
    }
    assert_int_equal(pl_dequant_part(PL_NF4_DQ, u, n, 32, z, 64), PL_ERR_ARG);
    assert_int_equal(pl_dequant_part(PL_NF4_DQ, u, n, n - 64, z, 128), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "nf4_dq"));
    /* a row-blocked type: pl_dequant_part is the row at its byte offset */
    assert_int_equal(pl_dequant_part(PL_NF4_32, u, 64 * 32, 64 * 3, z, 64), PL_OK);
    assert_int_equal(pl_dequant_row(PL_NF4_32, u + 18 * 6, y, 64), PL_OK);
    assert_memory_equal(z, y, 64 * sizeof(float));

    /* nf4_32 */
    for (int b = 0; b < 40; b++) {
        uint16_t h = (uint16_t)(0x2000 + rnd32() % 0x2000);   /* positive normal halves */
        memcpy(u + 18 * b, &h, 2);
    }
    assert_int_equal(pl_dequant_row(PL_NF4_32, u, y, 32 * 40), PL_OK);
    for (int i = 0; i < 32 * 40; i++) {
        uint16_t h;
        memcpy(&h, u + 18 * (i / 32), 2);
        /* half → double by its fields: 1.m · 2^(e-15) */
        double s = ldexp(1.0 + (h & 1023) / 1024.0, ((h >> 10) & 31) - 15);
        double want = s * NF4V[nib(u + 18 * (i / 32) + 2, i % 32)];
        assert_true(fabs(y[i] - want) <= 1e-6 * fabs(want) + 1e-12);
    }
    free(u); free(y); free(z);
}

/* NF4 scale choice: per block the MSE rule's squared error is never above absmax's; on
 * Gaussian data it is lower; nf4_dq's scales stay within half a step of the f32 ones and its
 * error stays within 1% of nf4's; the all-zero block stays zero. */
static void test_nf4_scales(void **state)
{
    (void)state;
    enum { N = 64 * 512 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(pl_dtype_row_bytes(PL_NF4, N) + 64);   /* the largest of the three */
    for (int i = 0; i < N; i++) x[i] = randn();
    double e[2][2] = { { 0 } };   /* [nf4, nf4_32][mse, absmax] */
    const enum pl_dtype ts[2] = { PL_NF4, PL_NF4_32 };
    const int blk[2] = { 64, 32 };
    for (int t = 0; t < 2; t++) {
        float *y2 = malloc(N * sizeof(float));
        assert_int_equal(pl_quant_row_nf4(ts[t], x, q, N, PL_NF4_SCALE_MSE), PL_OK);
        assert_int_equal(pl_dequant_row(ts[t], q, y, N), PL_OK);
        assert_int_equal(pl_quant_row_nf4(ts[t], x, q, N, PL_NF4_SCALE_ABSMAX), PL_OK);
        assert_int_equal(pl_dequant_row(ts[t], q, y2, N), PL_OK);
        for (int b = 0; b < N / blk[t]; b++) {
            double em = 0, ea = 0;
            for (int j = b * blk[t]; j < (b + 1) * blk[t]; j++) {
                em += (double)(y[j] - x[j]) * (y[j] - x[j]);
                ea += (double)(y2[j] - x[j]) * (y2[j] - x[j]);
            }
            assert_true(em <= ea * (1 + 1e-5) + 1e-12);
            e[t][0] += em;
            e[t][1] += ea;
        }
        free(y2);
        print_message("%-6s squared error: mse %.2f, absmax %.2f\n", pl_dtype_info(ts[t])->name, e[t][0], e[t][1]);
        assert_true(e[t][0] < 0.95 * e[t][1]);
    }
    assert_true(e[1][0] < e[0][0]);          /* 32-element blocks fit better */
    /* nf4_dq: scales as stored against the f32 fit */
    assert_int_equal(pl_quant_row(PL_NF4_DQ, x, q, N), PL_OK);
    assert_int_equal(pl_dequant_row(PL_NF4_DQ, q, y, N), PL_OK);
    double edq = 0;
    for (int i = 0; i < N; i++) edq += (double)(y[i] - x[i]) * (y[i] - x[i]);
    print_message("nf4_dq squared error %.2f (nf4 %.2f)\n", edq, e[0][0]);
    assert_true(edq < 1.01 * e[0][0]);
    assert_true(edq != e[0][0]);
    for (int g = 0; g < 2; g++) {
        float gm[2];
        memcpy(gm, q + 512 * 33 + 8 * g, 8);
        for (int b = 256 * g; b < 256 * (g + 1); b++) {
            float s = pl_nf4_fit(x + 64 * b, 64, PL_NF4_SCALE_MSE, 0);
            float sq = gm[1] + gm[0] * (float)(int8_t)q[33 * b];
            assert_true(fabsf(sq - s) <= 0.5f * gm[0] * 1.0001f);
        }
    }
    /* zeros stay zeros for every nf4 layout and rule */
    memset(x, 0, N * sizeof(float));
    const enum pl_dtype all[3] = { PL_NF4, PL_NF4_32, PL_NF4_DQ };
    for (int t = 0; t < 3; t++)
        for (int how = 0; how < 2; how++) {
            assert_int_equal(pl_quant_row_nf4(all[t], x, q, N, (enum pl_nf4_scale)how), PL_OK);
            assert_int_equal(pl_dequant_row(all[t], q, y, N), PL_OK);
            for (int i = 0; i < N; i++) assert_true(y[i] == 0.0f);
        }
    assert_int_equal(pl_quant_row_nf4(PL_Q4_0, x, q, 64, PL_NF4_SCALE_MSE), PL_ERR_ARG);
    assert_int_equal(pl_quant_row_nf4(PL_NF4, x, q, 64, (enum pl_nf4_scale)7), PL_ERR_ARG);
    free(x); free(y); free(q);
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
    assert_int_equal(pl_dtype_row_bytes(PL_NF4_32, 128), 72);
    assert_int_equal(pl_dtype_row_bytes(PL_NF4_32, 48), 0);
    /* nf4_dq: 33 bytes per block, 8 per started group of 256 blocks */
    assert_int_equal(pl_dtype_row_bytes(PL_NF4_DQ, 64), 33 + 8);
    assert_int_equal(pl_dtype_row_bytes(PL_NF4_DQ, 64 * 256), 256 * 33 + 8);
    assert_int_equal(pl_dtype_row_bytes(PL_NF4_DQ, 64 * 257), 257 * 33 + 16);
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
        cmocka_unit_test(test_nf4_reference),
        cmocka_unit_test(test_nf4_scales),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
