/* test_gemm16.c — bf16 products with f32 accumulation (include/peftlua/gemm16.h; owner: kernels).
 *
 * Bounds (u = 2^-8, bf16's unit roundoff; γ_K = K·2^-24/(1 − K·2^-24), f32 summation of K terms):
 * 1. Against the exact (f64) product of the bf16-rounded inputs — rounded here with
 *    pl_f32_to_bf16, independently of the kernel's vcvtneps2bf16 — every element within
 *    γ_K·Σ|â||ŵ| (+1e-30): checks the pairing, packing, padding and rounding mode exactly.
 * 2. Against the exact product of the unrounded inputs, every element within
 *    (2u + u² + γ_K(1+u)²)·Σ|a||w|: the bound stated in gemm16.h; and (so that the test can tell
 *    bf16 from f32 compute) the normwise error above 2^-12, far above f32's ~1e-7.
 * Shapes cover panel edges (rows 1, 7, 8, 9, 300; odd and even reductions; columns below, at
 * and above the 48-column panel and the 192-column chunk), beta 0 (C never read: filled with
 * NaN) and 1, weights f32, f16, bf16, Q8_0, Q4_1, Q4_K, NF4, NF4_DQ in both orientations.
 *    pl_gemm16_tn (C = AᵀB, both f32 activations: full fine-tuning's dW) to the same bounds.
 * 3. One and two threads give bit-identical results.
 * 4. The linear kernels in bf16 compute mode equal pl_gemm16 (forward, and dx += for backward).
 * 5. Bad dtype and row sizes fail with a status and a message.
 * 6. A stories260K step (LoRA r4 on every projection, and full fine-tuning), gradients with
 *    compute = bf16 against compute = f32 on the same weights and batch. Bound: every product
 *    in the forward and the input-gradient pass has a relative error of order u (gemm16.h:
 *    2u·Σ|a||w| per element, ~0.6u normwise measured on random data, above); a gradient
 *    is a sum of products of a few such factors per layer (5 layers, ~4 products deep each
 *    way), whose independent errors add in quadrature, so its relative L2 error is a small
 *    multiple of u: bound 5u = 1.95e-2, and the loss (one forward) within u relatively. Also
 *    not zero (> 1e-5): the bf16 path was taken. Full fine-tuning's weight gradients are bf16
 *    products too (pl_gemm16_tn), one more factor of the same size. Attention's products are
 *    bf16 too (attn16.c, T = 48 >= 16): LoRA 6.6e-3 -> 8.9e-3, full 7.1e-3 -> 7.7e-3 measured
 *    when they were added.
 * 7. Attention in compute bf16 against the f32 kernels, every element within a bound composed
 *    from bf16's rounding (test_attention, stated there); same bits for 1 and 2 threads, and
 *    generation (T < 16) the f32 path's bits (test_attention_bits).
 * Skipped where the CPU has no AVX512_BF16 (pl_gemm16_available()).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "peftlua/alloc.h"
#include "peftlua/gemm16.h"
#include "peftlua/kernels.h"
#include "peftlua/quant.h"
#include "peftlua/status.h"
#include "peftlua/rng.h"
#include "peftlua/model.h"
#include "peftlua/train.h"

#define MODEL PL_SHARED "/models/stories260K/stories260K.gguf"

static const double U = 1.0 / 256.0;

static float frand(struct pl_rng *r)
{
    return (float)((double)(pl_rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static double gam(int64_t K) { double k = (double)K * 0x1.0p-24; return k / (1.0 - k); }
static double bfr(float x) { return (double)pl_bf16_to_f32(pl_f32_to_bf16(x)); }

/* A weight of dtype t from f32 values w (n_rows rows of len); returns bytes and the dequantised
 * values in wd. */
static void *make_weight(enum pl_dtype t, const float *w, int64_t rows, int64_t len, float *wd)
{
    size_t total = t == PL_NF4_DQ ? pl_dtype_row_bytes(t, rows * len)
                                  : (size_t)rows * pl_dtype_row_bytes(t, len);
    uint8_t *q = malloc(total + 64);
    assert_non_null(q);
    if (t == PL_F32) { memcpy(q, w, (size_t)(rows * len) * 4); memcpy(wd, w, (size_t)(rows * len) * 4); return q; }
    if (t == PL_NF4_DQ) {
        assert_int_equal(pl_quant_row(t, w, q, rows * len), PL_OK);
        assert_int_equal(pl_dequant_part(t, q, rows * len, 0, wd, rows * len), PL_OK);
        return q;
    }
    size_t rb = pl_dtype_row_bytes(t, len);
    for (int64_t i = 0; i < rows; i++) {
        assert_int_equal(pl_quant_row(t, w + i * len, q + i * rb, len), PL_OK);
        assert_int_equal(pl_dequant_row(t, q + i * rb, wd + i * len, len), PL_OK);
    }
    return q;
}

/* One case: C[M,N] = beta·C0 + A[M,R]·B, B = Wᵀ (w_nr) with W [N,R], or W [R,N]. */
static void check_case(enum pl_dtype t, int w_nr, int64_t M, int64_t R, int64_t N, float beta,
                       uint64_t seed, int verbose)
{
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    int64_t wr = w_nr ? N : R, wl = w_nr ? R : N;
    float *A = malloc((size_t)(M * R) * 4), *w = malloc((size_t)(R * N) * 4), *wd = malloc((size_t)(R * N) * 4);
    float *C = malloc((size_t)(M * N) * 4), *C0 = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * R; i++) A[i] = frand(&rng);
    for (int64_t i = 0; i < R * N; i++) w[i] = 0.1f * frand(&rng);
    for (int64_t i = 0; i < M * N; i++) C0[i] = frand(&rng);
    void *W = make_weight(t, w, wr, wl, wd);
    for (int64_t i = 0; i < M * N; i++) C[i] = beta == 0.0f ? NAN : C0[i];
    assert_int_equal(pl_gemm16(C, A, W, t, w_nr, beta, M, R, N), PL_OK);
    double worst1 = 0, worst2 = 0, en = 0, rn = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double ex = 0, eb = 0, ax = 0, ab = 0;
            for (int64_t k = 0; k < R; k++) {
                float wv = w_nr ? wd[n * R + k] : wd[k * N + n];
                double a = A[m * R + k], b = wv, ar = bfr(A[m * R + k]), br = bfr(wv);
                ex += a * b; ax += fabs(a * b);
                eb += ar * br; ab += fabs(ar * br);
            }
            double base = beta == 0.0f ? 0.0 : (double)beta * C0[m * N + n];
            double c = C[m * N + n];
            /* the f32 sum also rounds the beta term in: one more unit of 2^-24 on |base| */
            double b1 = gam(R + 1) * (ab + fabs(base)) + 1e-30;
            double b2 = (2 * U + U * U + gam(R + 1) * (1 + U) * (1 + U)) * (ax + fabs(base)) + 1e-30;
            double e1 = fabs(c - (base + eb)), e2 = fabs(c - (base + ex));
            if (e1 > b1 || e2 > b2 || c != c)
                fail_msg("%s w_nr=%d M=%lld R=%lld N=%lld beta=%g: C[%lld,%lld]=%.9g, bf16-input ref %.9g (err %.3g > %.3g?), exact %.9g (err %.3g > %.3g?)",
                         pl_dtype_info(t)->name, w_nr, (long long)M, (long long)R, (long long)N, beta,
                         (long long)m, (long long)n, c, base + eb, e1, b1, base + ex, e2, b2);
            if (e1 / b1 > worst1) worst1 = e1 / b1;
            if (e2 / b2 > worst2) worst2 = e2 / b2;
            en += (c - base - ex) * (c - base - ex);
            rn += ex * ex;
        }
    double rel = sqrt(en / (rn > 0 ? rn : 1));
    if (verbose)
        printf("  %-6s %s M=%4lld R=%4lld N=%4lld beta=%g: worst err/bound %.3f (rounded inputs), %.3f (exact); normwise rel. err %.2e\n",
               pl_dtype_info(t)->name, w_nr ? "x·Wᵀ" : "dy·W", (long long)M, (long long)R, (long long)N,
               beta, worst1, worst2, rel);
    if (R >= 16 && M * N >= 64) assert_true(rel > 0x1.0p-12);   /* really bf16, not f32 */
    free(W); free(A); free(w); free(wd); free(C); free(C0);
}

static void skip_unless(void);

/* C[M,N] = beta·C0 + A[R,M]ᵀ·B[R,N] (pl_gemm16_tn), the same two bounds. */
static void check_tn(int64_t M, int64_t R, int64_t N, float beta, uint64_t seed)
{
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    float *A = malloc((size_t)(R * M) * 4), *Bm = malloc((size_t)(R * N) * 4);
    float *C = malloc((size_t)(M * N) * 4), *C0 = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < R * M; i++) A[i] = frand(&rng);
    for (int64_t i = 0; i < R * N; i++) Bm[i] = frand(&rng);
    for (int64_t i = 0; i < M * N; i++) C0[i] = frand(&rng);
    for (int64_t i = 0; i < M * N; i++) C[i] = beta == 0.0f ? NAN : C0[i];
    assert_int_equal(pl_gemm16_tn(C, A, Bm, beta, M, R, N), PL_OK);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double ex = 0, eb = 0, ax = 0, ab = 0;
            for (int64_t k = 0; k < R; k++) {
                double a = A[k * M + m], b = Bm[k * N + n], ar = bfr(A[k * M + m]), br = bfr(Bm[k * N + n]);
                ex += a * b; ax += fabs(a * b);
                eb += ar * br; ab += fabs(ar * br);
            }
            double base = beta == 0.0f ? 0.0 : (double)beta * C0[m * N + n], c = C[m * N + n];
            double b1 = gam(R + 1) * (ab + fabs(base)) + 1e-30;
            double b2 = (2 * U + U * U + gam(R + 1) * (1 + U) * (1 + U)) * (ax + fabs(base)) + 1e-30;
            if (fabs(c - (base + eb)) > b1 || fabs(c - (base + ex)) > b2 || c != c)
                fail_msg("tn M=%lld R=%lld N=%lld: C[%lld,%lld]=%.9g, bf16-input ref %.9g, exact %.9g",
                         (long long)M, (long long)R, (long long)N, (long long)m, (long long)n, c,
                         base + eb, base + ex);
        }
    free(A); free(Bm); free(C); free(C0);
}

static void test_tn(void **state)
{
    (void)state;
    skip_unless();
    static const int64_t Ms[] = {1, 7, 8, 9, 100}, Rs[] = {1, 3, 64, 65, 300}, Ns[] = {1, 47, 49, 200};
    uint64_t seed = 300;
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 4; c++, seed++)
                check_tn(Ms[a], Rs[b], Ns[c], (seed & 1) ? 1.0f : 0.0f, seed);
}

static void skip_unless(void)
{
    if (!pl_gemm16_available()) {
        printf("  (no AVX512_BF16 on this CPU: skipped)\n");
        skip();
    }
}

static void test_f32_shapes(void **state)
{
    (void)state;
    skip_unless();
    static const int64_t Ms[] = {1, 7, 8, 9, 300};
    static const int64_t Rs[] = {1, 3, 64, 65, 577};
    static const int64_t Ns[] = {1, 47, 48, 49, 200, 450};
    uint64_t seed = 1;
    for (int w_nr = 0; w_nr <= 1; w_nr++)
        for (size_t a = 0; a < 5; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 6; c++) {
                    if (Ms[a] * Rs[b] * Ns[c] > 300 * 577 * 48 && !(a == 4 && b == 4 && c == 5)) continue;
                    check_case(PL_F32, w_nr, Ms[a], Rs[b], Ns[c], (seed & 1) ? 1.0f : 0.0f, seed, 0);
                    seed++;
                }
    check_case(PL_F32, 1, 300, 577, 450, 0.0f, 99, 1);
    check_case(PL_F32, 0, 300, 577, 450, 1.0f, 98, 1);
    check_case(PL_F32, 1, 64, 1536, 200, 0.0f, 97, 1);
}

static void test_weight_types(void **state)
{
    (void)state;
    skip_unless();
    static const enum pl_dtype ts[] = {PL_F16, PL_BF16, PL_Q8_0, PL_Q4_1, PL_Q4_K, PL_NF4, PL_NF4_DQ};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        int64_t blk = pl_dtype_info(ts[i])->block;
        int64_t len = blk >= 256 ? 512 : 192;   /* a whole number of blocks per weight row */
        check_case(ts[i], 1, 70, len, 100, 0.0f, 10 + i, 1);                 /* W [100, len] */
        check_case(ts[i], 0, 70, 100, blk >= 256 ? 1024 : 384, 1.0f, 20 + i, 1);  /* W [100, N] */
    }
}

/* A Q4_1 weight gives the bits of the same weight dequantised to f32 first (pack_b rounds
 * d·q + m to f32, then to bf16, whatever the dequantisation's vectorisation).
 * Shapes: whole and partial panels, 8-column groups and the fallback (N % 8), an odd reduction
 * for W [R, N], the head's width, 1 and 2 threads. */
static void test_block_bits(void **state)
{
    (void)state;
    skip_unless();
    static const int64_t cases[][4] = {   /* w_nr, M, R, N */
        {1, 100, 576, 576}, {1, 37, 1536, 200}, {1, 64, 96, 100}, {1, 50, 576, 8},
        {0, 100, 576, 576}, {0, 37, 1535, 192}, {0, 64, 3, 4096}, {0, 9, 576, 1536},
    };
    struct pl_rng rng;
    pl_rng_seed(&rng, 77);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int w_nr = (int)cases[c][0];
        const int64_t M = cases[c][1], R = cases[c][2], N = cases[c][3];
        float *A = malloc((size_t)(M * R) * 4), *w = malloc((size_t)(R * N) * 4);
        float *wd = malloc((size_t)(R * N) * 4);
        float *c1 = malloc((size_t)(M * N) * 4), *c2 = malloc((size_t)(M * N) * 4);
        for (int64_t i = 0; i < M * R; i++) A[i] = frand(&rng);
        for (int64_t i = 0; i < R * N; i++) w[i] = 0.1f * frand(&rng);
        void *Q = make_weight(PL_Q4_1, w, w_nr ? N : R, w_nr ? R : N, wd);
#ifdef _OPENMP
        int old = omp_get_max_threads();
        omp_set_num_threads(1 + (int)(c % 2));
#endif
        assert_int_equal(pl_gemm16(c1, A, Q, PL_Q4_1, w_nr, 0.0f, M, R, N), PL_OK);
        assert_int_equal(pl_gemm16(c2, A, wd, PL_F32, w_nr, 0.0f, M, R, N), PL_OK);
#ifdef _OPENMP
        omp_set_num_threads(old);
#endif
        for (int64_t i = 0; i < M * N; i++)
            if (memcmp(&c1[i], &c2[i], 4))
                fail_msg("q4_1 w_nr=%d M=%lld R=%lld N=%lld: C[%lld] %.9g from the blocks, %.9g from f32",
                         w_nr, (long long)M, (long long)R, (long long)N, (long long)i, c1[i], c2[i]);
        free(Q); free(A); free(w); free(wd); free(c1); free(c2);
    }
}

static void test_threads(void **state)
{
    (void)state;
    skip_unless();
#ifdef _OPENMP
    int64_t M = 600, R = 384, N = 500;
    struct pl_rng rng;
    pl_rng_seed(&rng, 5);
    float *A = malloc((size_t)(M * R) * 4), *W = malloc((size_t)(R * N) * 4);
    float *c1 = malloc((size_t)(M * N) * 4), *c2 = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * R; i++) A[i] = frand(&rng);
    for (int64_t i = 0; i < R * N; i++) W[i] = frand(&rng);
    int old = omp_get_max_threads();
    for (int w_nr = 0; w_nr <= 1; w_nr++) {
        omp_set_num_threads(1);
        assert_int_equal(pl_gemm16(c1, A, W, PL_F32, w_nr, 0.0f, M, R, N), PL_OK);
        omp_set_num_threads(2);
        assert_int_equal(pl_gemm16(c2, A, W, PL_F32, w_nr, 0.0f, M, R, N), PL_OK);
        assert_memory_equal(c1, c2, (size_t)(M * N) * 4);
    }
    /* Few output columns (k_proj's 192): two threads split them into narrower chunks than one
     * thread does (gemm16.c plan_core); for W [R, N] of a block dtype the chunks stay whole
     * blocks. Same bits. */
    const int64_t Nk = 192, Rk = 384;
    float *w = malloc((size_t)(Rk * Nk) * 4), *wd = malloc((size_t)(Rk * Nk) * 4);
    for (int64_t i = 0; i < Rk * Nk; i++) w[i] = 0.1f * frand(&rng);
    for (int w_nr = 0; w_nr <= 1; w_nr++) {
        void *Q = make_weight(PL_Q4_1, w, w_nr ? Nk : Rk, w_nr ? Rk : Nk, wd);
        omp_set_num_threads(1);
        assert_int_equal(pl_gemm16(c1, A, Q, PL_Q4_1, w_nr, 0.0f, M, Rk, Nk), PL_OK);
        omp_set_num_threads(2);
        assert_int_equal(pl_gemm16(c2, A, Q, PL_Q4_1, w_nr, 0.0f, M, Rk, Nk), PL_OK);
        assert_memory_equal(c1, c2, (size_t)(M * Nk) * 4);
        free(Q);
    }
    free(w); free(wd);
    omp_set_num_threads(old);
    free(A); free(W); free(c1); free(c2);
#endif
}

/* Large products are cut into row chunks and (weights stored [R, N]) reduction slices summed
 * into C in order (gemm16.c, A_MAX and RCH): the same bounds across the cuts (odd last slice,
 * block weights whose slices start mid-tensor, NF4_DQ's trailing scale table), and the same
 * bits for 1 and 2 threads. */
static void test_chunks(void **state)
{
    (void)state;
    skip_unless();
    check_case(PL_F32, 0, 20, 4001, 100, 1.0f, 40, 1);      /* slices 1920 + 1920 + 161 */
    check_case(PL_Q4_1, 0, 24, 4000, 96, 0.0f, 41, 1);
    check_case(PL_NF4_DQ, 0, 16, 3900, 128, 1.0f, 42, 1);
    check_case(PL_Q4_K, 0, 9, 2100, 256, 0.0f, 43, 1);
    check_case(PL_F32, 1, 1100, 2100, 24, 0.0f, 44, 1);     /* row chunks of 1024 */
    check_tn(1200, 2000, 20, 1.0f, 45);                      /* row chunks and slices */
    check_tn(1100, 64, 30, 0.0f, 46);
#ifdef _OPENMP
    int64_t M = 64, R = 4000, N = 200;
    struct pl_rng rng;
    pl_rng_seed(&rng, 47);
    float *A = malloc((size_t)(M * R) * 4), *W = malloc((size_t)(R * N) * 4);
    float *c1 = malloc((size_t)(M * N) * 4), *c2 = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * R; i++) A[i] = frand(&rng);
    for (int64_t i = 0; i < R * N; i++) W[i] = frand(&rng);
    int old = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(pl_gemm16(c1, A, W, PL_F32, 0, 0.0f, M, R, N), PL_OK);
    omp_set_num_threads(2);
    assert_int_equal(pl_gemm16(c2, A, W, PL_F32, 0, 0.0f, M, R, N), PL_OK);
    assert_memory_equal(c1, c2, (size_t)(M * N) * 4);
    omp_set_num_threads(old);
    free(A); free(W); free(c1); free(c2);
#endif
}

static void test_linear_mode(void **state)
{
    (void)state;
    skip_unless();
    int64_t M = 100, K = 192, N = 150;
    struct pl_rng rng;
    pl_rng_seed(&rng, 6);
    float *x = malloc((size_t)(M * K) * 4), *w = malloc((size_t)(N * K) * 4), *wd = malloc((size_t)(N * K) * 4);
    float *y1 = malloc((size_t)(M * N) * 4), *y2 = malloc((size_t)(M * N) * 4);
    float *dx1 = malloc((size_t)(M * K) * 4), *dx2 = malloc((size_t)(M * K) * 4), *dy = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * K; i++) x[i] = frand(&rng);
    for (int64_t i = 0; i < N * K; i++) w[i] = frand(&rng);
    for (int64_t i = 0; i < M * N; i++) dy[i] = frand(&rng);
    static const enum pl_dtype ts[] = {PL_F32, PL_Q4_1, PL_NF4};
    for (size_t i = 0; i < 3; i++) {
        void *W = make_weight(ts[i], w, N, K, wd);
        assert_int_equal(pl_compute_set(PL_COMPUTE_BF16), PL_COMPUTE_F32);
        assert_int_equal(pl_compute_get(), PL_COMPUTE_BF16);
        assert_int_equal(pl_linear_fwd(y1, x, W, ts[i], NULL, M, K, N), PL_OK);
        for (int64_t j = 0; j < M * K; j++) dx1[j] = dx2[j] = 0.5f;
        assert_int_equal(pl_linear_bwd(dx1, NULL, NULL, dy, x, W, ts[i], M, K, N), PL_OK);
        assert_int_equal(pl_compute_set(PL_COMPUTE_F32), PL_COMPUTE_BF16);
        assert_int_equal(pl_gemm16(y2, x, W, ts[i], 1, 0.0f, M, K, N), PL_OK);
        assert_memory_equal(y1, y2, (size_t)(M * N) * 4);
        assert_int_equal(pl_gemm16(dx2, dy, W, ts[i], 0, 1.0f, M, N, K), PL_OK);
        assert_memory_equal(dx1, dx2, (size_t)(M * K) * 4);
        if (ts[i] == PL_F32) {   /* the weight gradient: dW += dyᵀ·x */
            float *g1 = malloc((size_t)(N * K) * 4), *g2 = malloc((size_t)(N * K) * 4);
            for (int64_t j = 0; j < N * K; j++) g1[j] = g2[j] = 0.25f;
            assert_int_equal(pl_compute_set(PL_COMPUTE_BF16), PL_COMPUTE_F32);
            assert_int_equal(pl_linear_bwd(NULL, g1, NULL, dy, x, W, PL_F32, M, K, N), PL_OK);
            assert_int_equal(pl_compute_set(PL_COMPUTE_F32), PL_COMPUTE_BF16);
            assert_int_equal(pl_gemm16_tn(g2, dy, x, 1.0f, N, M, K), PL_OK);
            assert_memory_equal(g1, g2, (size_t)(N * K) * 4);
            free(g1); free(g2);
        }
        /* and f32 mode is the f32 path again: differs from the bf16 result */
        assert_int_equal(pl_linear_fwd(y2, x, W, ts[i], NULL, M, K, N), PL_OK);
        assert_true(memcmp(y1, y2, (size_t)(M * N) * 4) != 0);
        free(W);
    }
    free(x); free(w); free(wd); free(y1); free(y2); free(dx1); free(dx2); free(dy);
}

static void test_errors(void **state)
{
    (void)state;
    float a[64] = {0}, c[64];
    uint8_t w[256] = {0};
    if (!pl_gemm16_available()) {
        assert_int_equal(pl_gemm16(c, a, w, PL_F32, 1, 0.0f, 2, 4, 4), PL_ERR_UNSUPPORTED);
        assert_int_equal(pl_compute_set(PL_COMPUTE_BF16), PL_COMPUTE_F32);
        assert_int_equal(pl_compute_get(), PL_COMPUTE_F32);   /* bf16 not available: stays f32 */
        return;
    }
    assert_int_equal(pl_gemm16(c, a, w, PL_I32, 1, 0.0f, 2, 4, 4), PL_ERR_UNSUPPORTED);
    assert_non_null(strstr(pl_last_error(), "dtype"));
    assert_int_equal(pl_gemm16(c, a, w, PL_Q8_0, 1, 0.0f, 2, 40, 1), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "q8_0"));
    assert_int_equal(pl_gemm16(c, a, w, PL_Q4_K, 0, 0.0f, 1, 1, 32), PL_ERR_ARG);
}

/* ------------------------------------------------------------------ attention in compute bf16
 * pl_attention_fwd/bwd in compute mode bf16 (src/tensor/attn16.c) against the same kernels in
 * f32 (the OpenBLAS path), every element within the bound derived from bf16 rounding
 * (gemm16.h), with c_K = 2u + u² + γ_K(1+u)² per product of K-term reductions and, for the f32
 * reference's own rounding, g_K = γ_K + 64·2^-24 of the same magnitudes:
 *   scores   e_t = max_j (c_HD + g_HD)·scale·Σ_d |q_td||k_jd|,  ρ_t = e^{2 e_t} − 1 + (Tk+8)·2^-22
 *   probs    |p̂ − p| ≤ ρ_t·p                                      (softmax of perturbed scores)
 *   out      |ô − o| ≤ (c_nk(1+ρ_t) + ρ_t + g_nk)·Σ_j p_tj |v_jd|
 * The backward is given the same probs and inputs in both modes:
 *   dv       |dv̂ − dv| ≤ (c_n + g_n)·Σ_{h,t} p|dO|                 (n: the terms summed)
 *   dP       δP_tj = (c_HD + g_HD)·Σ_d |dO_td||v_jd|
 *   dS       δS_tj = scale·p_tj·(δP_tj + Σ_l p_tl δP_tl) + (f32 rounding) 2^-20·scale·p_tj(|dP_tj| + Σ_l p_tl|dP_tl|)
 *   dq       |dq̂ − dq| ≤ (c_nk + g_nk)·Σ_j (|dS_tj| + δS_tj)|k_jd| + Σ_j δS_tj|k_jd|
 *   dk       the same over (h, t) with q.
 * The magnitudes are computed in f64 from the f32 inputs. Also: the bf16 path was taken (the
 * worst error relative to its bound above 1/64 somewhere: f32 would be ~1e-4 of it), 1 and 2
 * threads give the same bits, T < PL_GEMM16_MIN_ROWS (generation) stays the f32 path's bits. */
static double cK(int64_t K) { return 2 * U + U * U + gam(K) * (1 + U) * (1 + U); }
static double gK(int64_t K) { return gam(K) + 64 * 0x1.0p-24; }

struct attn_case { int64_t B, T, past, Tcap, NH, NKV, HD; };

static void attn_run(const struct attn_case *c, enum pl_compute mode, const float *q, const float *k,
                     const float *v, const float *dout, const float *probs_in, float *out,
                     float *probs, float *dq, float *dk, float *dv)
{
    int64_t nq = c->B * c->T * c->NH * c->HD, nk = c->B * c->Tcap * c->NKV * c->HD;
    assert_int_equal(pl_compute_set(mode), PL_COMPUTE_F32);
    pl_attention_fwd(out, probs, q, k, v, c->B, c->T, c->past, c->Tcap, c->NH, c->NKV, c->HD);
    for (int64_t i = 0; i < nq; i++) dq[i] = 0.125f;
    for (int64_t i = 0; i < nk; i++) dk[i] = dv[i] = -0.25f;
    assert_int_equal(pl_attention_bwd(dq, dk, dv, dout, probs_in ? probs_in : probs, q, k, v, c->B,
                                      c->T, c->past, c->Tcap, c->NH, c->NKV, c->HD), PL_OK);
    pl_compute_set(PL_COMPUTE_F32);
}

static void attn_check(const struct attn_case *c, uint64_t seed)
{
    const int64_t B = c->B, T = c->T, past = c->past, Tcap = c->Tcap, NH = c->NH, NKV = c->NKV, HD = c->HD;
    const int64_t Tk = past + T, grp = NH / NKV;
    int64_t nq = B * T * NH * HD, nk = B * Tcap * NKV * HD, np = B * NH * T * Tk;
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    float *q = malloc((size_t)nq * 4), *k = malloc((size_t)nk * 4), *v = malloc((size_t)nk * 4);
    float *dout = malloc((size_t)nq * 4);
    for (int64_t i = 0; i < nq; i++) { q[i] = 2 * frand(&rng); dout[i] = frand(&rng); }
    for (int64_t i = 0; i < nk; i++) { k[i] = 2 * frand(&rng); v[i] = frand(&rng); }
    for (int64_t b = 0; b < B; b++)   /* cache rows past Tk are never read: poison them */
        for (int64_t j = Tk; j < Tcap; j++)
            for (int64_t i = 0; i < NKV * HD; i++) k[(b * Tcap + j) * NKV * HD + i] = v[(b * Tcap + j) * NKV * HD + i] = NAN;
    float *r[2][5];
    for (int m = 0; m < 2; m++) {
        r[m][0] = malloc((size_t)nq * 4); r[m][1] = malloc((size_t)np * 4); r[m][2] = malloc((size_t)nq * 4);
        r[m][3] = malloc((size_t)nk * 4); r[m][4] = malloc((size_t)nk * 4);
    }
    /* [0] f32; [1] bf16 forward, bf16 backward on the f32 probs */
    attn_run(c, PL_COMPUTE_F32, q, k, v, dout, NULL, r[0][0], r[0][1], r[0][2], r[0][3], r[0][4]);
    attn_run(c, PL_COMPUTE_BF16, q, k, v, dout, r[0][1], r[1][0], r[1][1], r[1][2], r[1][3], r[1][4]);
    const double sc = 1.0 / sqrt((double)HD);
    double worst[5] = {0, 0, 0, 0, 0};   /* error / bound */
    double *bdk = calloc((size_t)nk, sizeof(double)), *bdv = calloc((size_t)nk, sizeof(double));
    double *dP = malloc((size_t)Tk * 8), *eP = malloc((size_t)Tk * 8), *dS = malloc((size_t)Tk * 8), *eS = malloc((size_t)Tk * 8);
#define CHECK(idx, err, bnd, what) do { double e_ = (err), b_ = (bnd); \
        if (!(e_ <= b_)) fail_msg("%s: error %.3e above its bound %.3e (b %lld h %lld t %lld, T %lld HD %lld)", what, e_, b_, \
                                  (long long)b, (long long)h, (long long)t, (long long)T, (long long)HD); \
        if (b_ > 0 && e_ / b_ > worst[idx]) worst[idx] = e_ / b_; } while (0)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            int64_t g = h / grp;
            for (int64_t t = 0; t < T; t++) {
                const float *qr = q + ((b * T + t) * NH + h) * HD, *dor = dout + ((b * T + t) * NH + h) * HD;
                const float *p = r[0][1] + ((b * NH + h) * T + t) * Tk, *pb = r[1][1] + ((b * NH + h) * T + t) * Tk;
                int64_t lim = past + t, nkb = past + (t / 64) * 64 + (T - (t / 64) * 64 < 64 ? T - (t / 64) * 64 : 64);
                double et = 0;
                for (int64_t j = 0; j <= lim; j++) {
                    const float *kr = k + ((b * Tcap + j) * NKV + g) * HD;
                    double s = 0;
                    for (int64_t d = 0; d < HD; d++) s += fabs((double)qr[d] * kr[d]);
                    et = fmax(et, (cK(HD) + gK(HD)) * sc * s);
                }
                double rho = expm1(2 * et) + (double)(Tk + 8) * 0x1.0p-22;
                for (int64_t j = 0; j < Tk; j++) CHECK(1, fabs((double)pb[j] - p[j]), rho * p[j], "probs");
                for (int64_t d = 0; d < HD; d++) {
                    double m = 0;
                    for (int64_t j = 0; j <= lim; j++) m += p[j] * fabs((double)v[((b * Tcap + j) * NKV + g) * HD + d]);
                    int64_t i = ((b * T + t) * NH + h) * HD + d;
                    CHECK(0, fabs((double)r[1][0][i] - r[0][0][i]), (cK(nkb + 2) * (1 + rho) + rho + gK(nkb + 2)) * m, "out");
                }
                /* backward magnitudes, on the f32 probs both runs were given */
                double pdp = 0, pdpa = 0, peP = 0;
                for (int64_t j = 0; j <= lim; j++) {
                    const float *vr = v + ((b * Tcap + j) * NKV + g) * HD;
                    double s = 0, a = 0;
                    for (int64_t d = 0; d < HD; d++) { s += (double)dor[d] * vr[d]; a += fabs((double)dor[d] * vr[d]); }
                    dP[j] = s; eP[j] = (cK(HD) + gK(HD)) * a;
                    pdp += p[j] * s; pdpa += p[j] * fabs(s); peP += p[j] * eP[j];
                }
                for (int64_t j = 0; j <= lim; j++) {
                    dS[j] = sc * p[j] * (dP[j] - pdp);
                    eS[j] = sc * p[j] * (eP[j] + peP) + 0x1.0p-20 * sc * p[j] * (fabs(dP[j]) + pdpa);
                }
                for (int64_t d = 0; d < HD; d++) {
                    double m = 0, m2 = 0;
                    for (int64_t j = 0; j <= lim; j++) {
                        double kv = fabs((double)k[((b * Tcap + j) * NKV + g) * HD + d]);
                        m += (fabs(dS[j]) + eS[j]) * kv; m2 += eS[j] * kv;
                    }
                    int64_t i = ((b * T + t) * NH + h) * HD + d;
                    CHECK(2, fabs((double)r[1][2][i] - r[0][2][i]), (cK(nkb + 2) + gK(nkb + 2)) * m + m2, "dq");
                }
                for (int64_t j = 0; j <= lim; j++)
                    for (int64_t d = 0; d < HD; d++) {
                        int64_t i = ((b * Tcap + j) * NKV + g) * HD + d;
                        bdv[i] += p[j] * fabs((double)dor[d]);
                        bdk[i] += (fabs(dS[j]) + eS[j]) * fabs((double)qr[d]) + eS[j] * fabs((double)qr[d]) / (cK(grp * T + 2) + gK(grp * T + 2));
                    }
            }
        }
    double cn = cK(grp * T + 2) + gK(grp * T + 2);
    int64_t h = -1, t = -1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < Tcap; j++)
            for (int64_t i = ((b * Tcap + j) * NKV) * HD; i < ((b * Tcap + j + 1) * NKV) * HD; i++) {
                if (j >= Tk) {   /* untouched */
                    assert_true(r[1][3][i] == -0.25f && r[1][4][i] == -0.25f);
                    continue;
                }
                CHECK(3, fabs((double)r[1][3][i] - r[0][3][i]), cn * bdk[i], "dk");
                CHECK(4, fabs((double)r[1][4][i] - r[0][4][i]), cn * bdv[i], "dv");
            }
    printf("  attention B %lld T %lld past %lld NH %lld NKV %lld HD %lld: worst error / bound: out %.3f probs %.3f dq %.3f dk %.3f dv %.3f\n",
           (long long)B, (long long)T, (long long)past, (long long)NH, (long long)NKV, (long long)HD,
           worst[0], worst[1], worst[2], worst[3], worst[4]);
    for (int i = 0; i < 5; i++) assert_true(worst[i] > 1.0 / 64);   /* the bf16 path ran */
#undef CHECK
    for (int m = 0; m < 2; m++) for (int i = 0; i < 5; i++) free(r[m][i]);
    free(q); free(k); free(v); free(dout); free(bdk); free(bdv); free(dP); free(eP); free(dS); free(eS);
}

static void test_attention(void **state)
{
    (void)state;
    skip_unless();
    static const struct attn_case cs[] = {
        {2, 150, 20, 175, 4, 2, 16},   /* a KV cache offset, a last block of 22 rows */
        {1, 17, 0, 17, 2, 1, 8},       /* stories260K's head dim, odd T */
        {1, 40, 3, 45, 3, 3, 24},      /* head dim not a multiple of 16, odd Tk */
        {1, 33, 0, 33, 2, 2, 7},       /* odd head dim */
        {2, 256, 0, 256, 9, 3, 64},    /* SmolLM2-135M's attention */
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) attn_check(&cs[i], 100 + i);
}

/* Bits: the same for 1 and 2 threads in compute bf16; generation (T < PL_GEMM16_MIN_ROWS)
 * gives the f32 path's bits in either mode. */
static void test_attention_bits(void **state)
{
    (void)state;
    skip_unless();
    for (int gen = 0; gen < 2; gen++) {
        struct attn_case c = gen ? (struct attn_case){2, 5, 30, 40, 4, 2, 16}
                                 : (struct attn_case){3, 130, 0, 130, 6, 2, 32};
        int64_t nq = c.B * c.T * c.NH * c.HD, nk = c.B * c.Tcap * c.NKV * c.HD;
        int64_t np = c.B * c.NH * c.T * (c.past + c.T);
        struct pl_rng rng;
        pl_rng_seed(&rng, 77);
        float *q = malloc((size_t)nq * 4), *k = malloc((size_t)nk * 4), *v = malloc((size_t)nk * 4), *dout = malloc((size_t)nq * 4);
        for (int64_t i = 0; i < nq; i++) { q[i] = frand(&rng); dout[i] = frand(&rng); }
        for (int64_t i = 0; i < nk; i++) { k[i] = frand(&rng); v[i] = frand(&rng); }
        float *r[2][5];
        int64_t sz[5] = {nq, np, nq, nk, nk};
        for (int run = 0; run < 2; run++) {
            for (int i = 0; i < 5; i++) r[run][i] = malloc((size_t)sz[i] * 4);
#ifdef _OPENMP
            int old = omp_get_max_threads();
            omp_set_num_threads(gen ? 2 : run + 1);
#endif
            attn_run(&c, gen && run == 0 ? PL_COMPUTE_F32 : PL_COMPUTE_BF16, q, k, v, dout, NULL,
                     r[run][0], r[run][1], r[run][2], r[run][3], r[run][4]);
#ifdef _OPENMP
            omp_set_num_threads(old);
#endif
        }
        for (int i = 0; i < 5; i++) {
            assert_memory_equal(r[0][i], r[1][i], (size_t)sz[i] * 4);
            free(r[0][i]); free(r[1][i]);
        }
        free(q); free(k); free(v); free(dout);
    }
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float *step_grads(enum pl_train_method method, enum pl_compute comp, int64_t *n, double *loss)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&m, MODEL, &o) != PL_OK) fail_msg("%s", pl_last_error());
    const int B = 4, T = 48;
    struct pl_train_cfg c = pl_train_defaults();
    c.method = method;
    c.compute = comp;
    c.batch_size = B;
    c.seq_len = T;
    c.lora.targets = 0x7Fu;
    c.lora.r = 4;
    c.lora.alpha = 8.0f;
    struct pl_trainer *t = NULL;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    struct pl_rng r;
    if (method == PL_TRAIN_LORA) {   /* non-zero B so that dA is not zero */
        pl_rng_seed(&r, 11);
        for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = frand(&r) * 0.05f;
    }
    int32_t ids[B * T], tg[B * T];
    pl_rng_seed(&r, 21);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)m->cfg.vocab_size);
    for (int i = 0; i < B * T; i++) tg[i] = (i % T == T - 1) ? -1 : ids[i + 1];
    if (pl_trainer_grad(t, ids, tg, B, T, loss) != PL_OK) fail_msg("%s", pl_last_error());
    *n = pl_trainer_n_params(t);
    float *g = malloc((size_t)*n * sizeof(float));
    memcpy(g, pl_trainer_grads(t, NULL), (size_t)*n * sizeof(float));
    pl_trainer_free(t);
    pl_model_free(m);
    return g;
}

static void test_train_grads(void **state)
{
    (void)state;
    skip_unless();
    for (int method = 0; method < 2; method++) {
        enum pl_train_method me = method ? PL_TRAIN_FULL : PL_TRAIN_LORA;
        int64_t n;
        double l32, lb, lb2;
        float *g32 = step_grads(me, PL_COMPUTE_F32, &n, &l32);
        float *gb = step_grads(me, PL_COMPUTE_BF16, &n, &lb);
        float *gb2 = step_grads(me, PL_COMPUTE_BF16, &n, &lb2);
        double e = rel_err(gb, g32, n);
        printf("  %s gradients (%lld): compute bf16 vs f32 rel. L2 error %.3e (bound 5u = %.3e); loss %.7f vs %.7f (rel. %.2e, bound u)\n",
               method ? "full" : "LoRA", (long long)n, e, 5 * U, lb, l32, fabs(lb - l32) / l32);
        assert_true(e < 5 * U);
        assert_true(e > 1e-5);
        assert_true(fabs(lb - l32) <= U * fabs(l32));
        assert_true(lb == lb2);                        /* deterministic */
        assert_memory_equal(gb, gb2, (size_t)n * 4);
        assert_int_equal(pl_compute_get(), PL_COMPUTE_F32);   /* the trainer put it back */
        free(g32); free(gb); free(gb2);
    }
}

int main(void)
{
    printf("gemm16: %s\n", pl_gemm16_isa());
    if (getenv("PL_TEST_FILTER")) cmocka_set_test_filter(getenv("PL_TEST_FILTER"));   /* e.g. test_chunks */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_shapes),
        cmocka_unit_test(test_weight_types),
        cmocka_unit_test(test_tn),
        cmocka_unit_test(test_block_bits),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_linear_mode),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_bits),
        cmocka_unit_test(test_train_grads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
