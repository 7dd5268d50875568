/* kernels_linear.c — linear (y = x·Wᵀ + b) over weights of any dtype, and the LoRA helper
 * (owner: kernels). Math in include/peftlua/kernels.h.
 *
 * f32 weights go straight to pl_sgemm (which splits the product among threads itself).
 *
 * Other dtypes (f16, bf16, GGUF blocks, NF4) are never expanded to a whole f32 copy. The
 * weight is cut into panels of rows (at most 256 rows and 4 MiB of f32), every OpenMP thread
 * dequantises a panel into its own workspace and multiplies it with one sgemm:
 *   forward  y[rows, panel]   = x[rows] · Wpanelᵀ       (disjoint blocks of y)
 *   backward dx[rows, chunk] += Σ_panels dy[rows, panel] · Wpanel[:, chunk]
 *            (an item owns a block of dx: fixed K-column chunks, a whole number of blocks
 *             wide, times row blocks; it walks the panels of N in order, so no two threads
 *             write the same dx element and the summation order is fixed)
 * NF4_DQ weights are one unit (their scale table follows all blocks): their rows are read
 * through pl_dequant_part, which knows where the table is from N·K.
 * Inside those parallel regions each pl_sgemm is one single-threaded BLAS call (blas.h: one
 * thread pool). Because the panel and chunk boundaries do not depend on the thread count,
 * the result is bit-identical for any number of threads.
 *
 * Compute mode bf16 (gemm16.h, pl_compute_set): products of at least PL_GEMM16_MIN_ROWS rows
 * — the forward, the input gradient and an f32 weight's gradient — go to pl_gemm16 instead,
 * which dequantises the weight straight into bf16 panels and rounds x (or dy) to bf16
 * (pl_gemm16_tn for dW: dy and x rounded, f32 sums added into dW).
 */
#include "peftlua/kernels.h"
#include "peftlua/blas.h"
#include "peftlua/gemm16.h"
#include "peftlua/quant.h"
#include "kernels_internal.h"

#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Work pieces (shape-only, so results do not depend on the thread count):
 *   forward  (panel of P rows of W) x (block of MB rows of x)
 *   backward (chunk of KC columns of dx) x (block of MB rows of dy), walking panels of PB rows
 * Each sgemm repacks its operands, costing about 1/P + 1/MB (forward) or 1/KC + 1/MB
 * (backward) of the arithmetic: 256/512-sized pieces keep that under 1%, while redoing the
 * dequantisation once per row block costs ~1.5% per pass at 1024 tokens (it runs at
 * 8-20 Gelem/s against ~60 GMAC/s for the product). */
#define PANEL_MAX 256                    /* forward panel rows */
#define PANEL_BYTES_MAX (4 << 20)        /* ... and at most 4 MiB of f32 per panel */
#define MB 512                           /* rows of x / dy per piece */
#define CHUNK_COLS 256                   /* backward K-column chunk (rounded up to whole blocks) */
#define PANEL_BWD 512                    /* backward panel rows */

static enum pl_status check_weight(const char *who, enum pl_dtype wtype, int64_t K, size_t *rb)
{
    if ((int)wtype < 0 || (int)wtype >= PL_DTYPE_COUNT || wtype == PL_I32 || wtype == PL_I8)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: weight dtype %d is not a float or block format",
                       who, (int)wtype);
    *rb = pl_dtype_row_bytes(wtype, K);
    if (*rb == 0)
        return pl_fail(PL_ERR_ARG, "%s: weight rows of %lld elements are not a whole number of %s blocks (%d)",
                       who, (long long)K, pl_dtype_info(wtype)->name, (int)pl_dtype_info(wtype)->block);
    return PL_OK;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

enum pl_status pl_linear_fwd(float *y, const float *x, const void *W, enum pl_dtype wtype,
                             const float *bias, int64_t M, int64_t K, int64_t N)
{
    size_t rb;
    enum pl_status st = check_weight("linear", wtype, K, &rb);
    if (st != PL_OK) return st;
    if (M <= 0 || N <= 0) return PL_OK;

    if (M >= PL_GEMM16_MIN_ROWS && pl_compute_get() == PL_COMPUTE_BF16) {
        if ((st = pl_gemm16(y, x, W, wtype, 1, 0.0f, M, K, N)) != PL_OK) return st;
    } else if (wtype == PL_F32) {
        pl_sgemm(0, 1, M, N, K, 1.0f, x, K, (const float *)W, K, 0.0f, y, N);
    } else {
        int64_t P = PANEL_BYTES_MAX / 4 / (K > 0 ? K : 1);
        P = P > PANEL_MAX ? PANEL_MAX : P;
        if (M <= 64) {                   /* decode-sized: GEMV-bound, want many panels */
            int64_t q = (N + 15) / 16;
            P = q < P ? q : P;
        }
        P = P < 16 ? 16 : (P / 16) * 16;
        P = min64(P, N);
        int64_t npanel = (N + P - 1) / P, nmb = (M + MB - 1) / MB, nitem = npanel * nmb;
        int nth = pl_k_max_threads();
        if (nth > nitem) nth = (int)nitem;
        float *ws = pl_alloc((size_t)nth * (size_t)P * (size_t)K * sizeof(float), PL_MEM_WORKSPACE);
        if (!ws) return pl_fail(PL_ERR_NOMEM, "linear: cannot allocate %d dequantisation panels of %lld x %lld",
                                nth, (long long)P, (long long)K);
        /* Validate the format once outside the parallel region (errors cannot leave it). */
        st = pl_dequant_part(wtype, W, N * K, 0, ws, K);
        if (st != PL_OK) { pl_free(ws); return st; }
        const uint8_t *w8 = W;
        const int dq = wtype == PL_NF4_DQ;
        /* Items panel-major: one thread's consecutive items usually share a panel, but each
         * item dequantises its own, so the result never depends on who ran what. */
        #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(M * N * K))
        for (int64_t it = 0; it < nitem; it++) {
            float *buf = ws + (size_t)pl_k_thread_id() * (size_t)P * (size_t)K;
            int64_t p = it / nmb, mb = it % nmb;
            int64_t n0 = p * P, np = min64(P, N - n0);
            int64_t m0 = mb * MB, nm = min64(MB, M - m0);
            for (int64_t r = 0; r < np; r++) {
                if (dq) pl_dequant_part(wtype, W, N * K, (n0 + r) * K, buf + r * K, K);
                else pl_dequant_row(wtype, w8 + (size_t)(n0 + r) * rb, buf + r * K, K);
            }
            pl_sgemm(0, 1, nm, np, K, 1.0f, x + m0 * K, K, buf, K, 0.0f, y + m0 * N + n0, N);
        }
        pl_free(ws);
    }
    if (bias) {
        #pragma omp parallel for schedule(static) if(PL_K_PAR(M * N))
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * N + n] += bias[n];
    }
    return PL_OK;
}

enum pl_status pl_linear_bwd(float *dx, float *dW, float *dbias, const float *dy,
                             const float *x, const void *W, enum pl_dtype wtype,
                             int64_t M, int64_t K, int64_t N)
{
    size_t rb;
    enum pl_status st = check_weight("linear backward", wtype, K, &rb);
    if (st != PL_OK) return st;
    if (dW && wtype != PL_F32)
        return pl_fail(PL_ERR_ARG, "linear backward: a weight gradient needs an f32 weight, not %s",
                       pl_dtype_info(wtype)->name);
    if (M <= 0 || N <= 0) return PL_OK;

    if (dbias) {
        /* Columns in fixed chunks, rows in order: deterministic for any thread count. */
        int64_t nch = (N + 63) / 64;
        #pragma omp parallel for schedule(static) if(PL_K_PAR(M * N))
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t n0 = ch * 64, n1 = min64(n0 + 64, N);
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = n0; n < n1; n++) dbias[n] += dy[m * N + n];
        }
    }
    const int b16 = M >= PL_GEMM16_MIN_ROWS && pl_compute_get() == PL_COMPUTE_BF16;
    if (dW && b16) {   /* dW[N,K] += dyᵀ[N,M] · x[M,K], bf16 inputs, f32 sums */
        if ((st = pl_gemm16_tn(dW, dy, x, 1.0f, N, M, K)) != PL_OK) return st;
    } else if (dW) {
        pl_sgemm(1, 0, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, K);
    }
    if (!dx || K <= 0) return PL_OK;

    if (b16) return pl_gemm16(dx, dy, W, wtype, 0, 1.0f, M, N, K);
    if (wtype == PL_F32) {   /* dx[M,K] += dy[M,N] · W[N,K] */
        pl_sgemm(0, 0, M, K, N, 1.0f, dy, N, (const float *)W, K, 1.0f, dx, K);
        return PL_OK;
    }
    int64_t blk = pl_dtype_info(wtype)->block;
    int64_t KC = ((CHUNK_COLS + blk - 1) / blk) * blk;
    KC = min64(KC, K);
    int64_t nchunk = (K + KC - 1) / KC, nmb = (M + MB - 1) / MB, nitem = nchunk * nmb;
    int64_t P = min64(PANEL_BWD, N);
    int nth = pl_k_max_threads();
    if (nth > nitem) nth = (int)nitem;
    float *ws = pl_alloc((size_t)nth * (size_t)P * (size_t)KC * sizeof(float), PL_MEM_WORKSPACE);
    if (!ws) return pl_fail(PL_ERR_NOMEM, "linear backward: cannot allocate %d panels of %lld x %lld",
                            nth, (long long)P, (long long)KC);
    st = pl_dequant_part(wtype, W, N * K, 0, ws, KC);
    if (st != PL_OK) { pl_free(ws); return st; }
    const uint8_t *w8 = W;
    const int dq = wtype == PL_NF4_DQ;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(M * N * K))
    for (int64_t it = 0; it < nitem; it++) {
        float *buf = ws + (size_t)pl_k_thread_id() * (size_t)P * (size_t)KC;
        int64_t ch = it / nmb, mb = it % nmb;
        int64_t k0 = ch * KC, kc = min64(KC, K - k0);
        int64_t m0 = mb * MB, nm = min64(MB, M - m0);
        size_t off = pl_dtype_row_bytes(wtype, k0);   /* k0 is a whole number of blocks */
        for (int64_t n0 = 0; n0 < N; n0 += P) {         /* panels in order: fixed sum order */
            int64_t np = min64(P, N - n0);
            for (int64_t r = 0; r < np; r++) {
                if (dq) pl_dequant_part(wtype, W, N * K, (n0 + r) * K + k0, buf + r * kc, kc);
                else pl_dequant_row(wtype, w8 + (size_t)(n0 + r) * rb + off, buf + r * kc, kc);
            }
            pl_sgemm(0, 0, nm, kc, np, 1.0f, dy + m0 * N + n0, N, buf, kc, 1.0f,
                     dx + m0 * K + k0, K);
        }
    }
    pl_free(ws);
    return PL_OK;
}

/* ------------------------------------------------------------------------ LoRA */

void pl_lora_fwd(float *y, float *xa, const float *x, const float *A, const float *B,
                 float scale, int64_t M, int64_t K, int64_t N, int64_t r)
{
    pl_sgemm(0, 1, M, r, K, 1.0f, x, K, A, K, 0.0f, xa, r);       /* xa = x · Aᵀ        */
    pl_sgemm(0, 1, M, N, r, scale, xa, r, B, r, 1.0f, y, N);      /* y += s · xa · Bᵀ   */
}

/* dx[M,K] += ((g[M,r] · A[r,K]) ⊙ keep) · inv: per element the r products summed in order
 * from g[m,0]·A[0,k] (separate multiply and add), then scaled by inv or 0, then added. */
static void masked_rank_add(float *dx, const float *g, const float *A, const uint16_t *keep,
                            float inv, int64_t M, int64_t K, int64_t r)
{
    #pragma omp parallel for schedule(static) if(PL_K_PAR(M * K * r))
    for (int64_t m = 0; m < M; m++) {
        const float *gm = g + m * r;
        float *dm = dx + m * K;
        int64_t k = 0;
#if defined(__AVX512F__)
        if (K % 16 == 0) {
            const __m512 vinv = _mm512_set1_ps(inv);
            for (; k < K; k += 16) {
                __m512 acc = _mm512_mul_ps(_mm512_set1_ps(gm[0]), _mm512_loadu_ps(A + k));
                for (int64_t j = 1; j < r; j++)
                    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(gm[j]), _mm512_loadu_ps(A + j * K + k)));
                const __m512 f = _mm512_maskz_mov_ps((__mmask16)keep[(m * K + k) / 16], vinv);
                _mm512_storeu_ps(dm + k, _mm512_add_ps(_mm512_loadu_ps(dm + k), _mm512_mul_ps(acc, f)));
            }
        }
#endif
        for (; k < K; k++) {
            float acc = gm[0] * A[k];
            for (int64_t j = 1; j < r; j++) acc = acc + gm[j] * A[j * K + k];
            const int64_t e = m * K + k;
            const float f = (keep[e / 16] >> (e % 16)) & 1 ? inv : 0.0f;
            dm[k] = dm[k] + acc * f;
        }
    }
}

static enum pl_status lora_bwd(float *dx, float *dA, float *dB, const float *dy, const float *xa,
                               const float *x, const uint16_t *keep, float inv, const float *A,
                               const float *B, float scale, int64_t M, int64_t K, int64_t N,
                               int64_t r)
{
    if (M <= 0 || r <= 0) return PL_OK;
    if (dB)   /* dB[N,r] += s · dyᵀ · xa */
        pl_sgemm(1, 0, N, r, M, scale, dy, N, xa, r, 1.0f, dB, r);
    if (!dA && !dx) return PL_OK;
    float *g = pl_alloc((size_t)M * (size_t)r * sizeof(float), PL_MEM_WORKSPACE);
    if (!g) return pl_fail(PL_ERR_NOMEM, "lora backward: cannot allocate a %lld x %lld workspace",
                           (long long)M, (long long)r);
    pl_sgemm(0, 0, M, r, N, scale, dy, N, B, r, 0.0f, g, r);      /* g = s · dy · B     */
    if (dA) pl_sgemm(1, 0, r, K, M, 1.0f, g, r, x, K, 1.0f, dA, K);   /* dA += gᵀ · x */
    if (dx && keep) masked_rank_add(dx, g, A, keep, inv, M, K, r);   /* dx += (g·A)⊙keep·inv */
    else if (dx) pl_sgemm(0, 0, M, K, r, 1.0f, g, r, A, K, 1.0f, dx, K);   /* dx += g · A  */
    pl_free(g);
    return PL_OK;
}

enum pl_status pl_lora_bwd(float *dx, float *dA, float *dB, const float *dy, const float *xa,
                           const float *x, const float *A, const float *B, float scale,
                           int64_t M, int64_t K, int64_t N, int64_t r)
{
    return lora_bwd(dx, dA, dB, dy, xa, x, NULL, 1.0f, A, B, scale, M, K, N, r);
}

enum pl_status pl_lora_bwd_dropout(float *dx, float *dA, float *dB, const float *dy,
                                   const float *xa, const float *x, const uint16_t *keep,
                                   float inv_keep, const float *A, const float *B, float scale,
                                   int64_t M, int64_t K, int64_t N, int64_t r)
{
    return lora_bwd(dx, dA, dB, dy, xa, x, keep, inv_keep, A, B, scale, M, K, N, r);
}
