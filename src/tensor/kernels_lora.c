/* kernels_lora.c — the LoRA low-rank products as skinny AVX-512 f32 kernels (owner: kernels).
 * Math in include/peftlua/kernels.h (pl_lora_fwd / pl_lora_bwd); used by them in compute mode
 * bf16 (gemm16.h) for products of at least PL_GEMM16_MIN_ROWS rows, the f32 mode keeping
 * OpenBLAS (and its goldens) unchanged.
 *
 * Why: with rank r = 8 every LoRA product is [M x K] against [K x r]: two to six passes over an
 * activation for 2·M·K·r FLOPs. OpenBLAS's small-matrix and packing paths ran them at
 * 5-10 GFLOP/s, so on SmolLM2-135M (LoRA r8 on q, v, batch 4 x 256, bf16 compute) they took
 * ~12% of a step for ~1% of its FLOPs (perf). Here each product is one pass over the wide
 * operand with the rank-r side in L1:
 *   rowdots  out[m, j] = s · Σ_k X[m,k] · Y[j,k]                 (xa = x·Aᵀ,  g = s·dy·B)
 *   rowaxpy  Y[m, n] += Σ_j c[m,j] · Z[j,n]                      (y += s·xa·Bᵀ,  dx += g·A)
 *   colacc   D[j, n] += s · Σ_m C[m,j] · X[m,n]                   (dBᵀ, dA)
 * The forward fuses xa and y's update row by row. rowdots and rowaxpy split rows among
 * threads, colacc splits columns (each D element summed over m in order by one thread): the
 * results do not depend on the thread count. f32 sums throughout (not bf16): these products
 * are memory-bound, rounding them would save nothing.
 */
#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "kernels_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TGT __attribute__((target("avx512f")))

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* out[j] = s · Σ_k x[k] · Y[j·ldy + k], j < r: four rows of Y against x at a time. */
TGT static void rowdots1(float *out, const float *x, const float *Y, int64_t ldy, int64_t K,
                         int64_t r, float s)
{
    int64_t j = 0;
    for (; j + 4 <= r; j += 4) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *y0 = Y + j * ldy, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
        for (int64_t k = 0; k < K; k += 16) {
            __mmask16 mk = tail_mask(K - k);
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + k);
            a0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, y0 + k), a0);
            a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, y1 + k), a1);
            a2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, y2 + k), a2);
            a3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, y3 + k), a3);
        }
        out[j] = s * _mm512_reduce_add_ps(a0);
        out[j + 1] = s * _mm512_reduce_add_ps(a1);
        out[j + 2] = s * _mm512_reduce_add_ps(a2);
        out[j + 3] = s * _mm512_reduce_add_ps(a3);
    }
    for (; j < r; j++) {
        __m512 a0 = _mm512_setzero_ps();
        const float *y0 = Y + j * ldy;
        for (int64_t k = 0; k < K; k += 16) {
            __mmask16 mk = tail_mask(K - k);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + k), _mm512_maskz_loadu_ps(mk, y0 + k), a0);
        }
        out[j] = s * _mm512_reduce_add_ps(a0);
    }
}

/* y[n] += Σ_j c[j] · Z[j·ldz + n], n < N. */
TGT static void rowaxpy1(float *y, const float *c, const float *Z, int64_t ldz, int64_t N, int64_t r)
{
    int64_t n = 0;
    for (; n + 64 <= N; n += 64) {
        __m512 a0 = _mm512_loadu_ps(y + n), a1 = _mm512_loadu_ps(y + n + 16);
        __m512 a2 = _mm512_loadu_ps(y + n + 32), a3 = _mm512_loadu_ps(y + n + 48);
        for (int64_t j = 0; j < r; j++) {
            const float *z = Z + j * ldz + n;
            __m512 cj = _mm512_set1_ps(c[j]);
            a0 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(z), a0);
            a1 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(z + 16), a1);
            a2 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(z + 32), a2);
            a3 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(z + 48), a3);
        }
        _mm512_storeu_ps(y + n, a0);
        _mm512_storeu_ps(y + n + 16, a1);
        _mm512_storeu_ps(y + n + 32, a2);
        _mm512_storeu_ps(y + n + 48, a3);
    }
    for (; n < N; n += 16) {
        __mmask16 mk = tail_mask(N - n);
        __m512 a0 = _mm512_maskz_loadu_ps(mk, y + n);
        for (int64_t j = 0; j < r; j++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(c[j]), _mm512_maskz_loadu_ps(mk, Z + j * ldz + n), a0);
        _mm512_mask_storeu_ps(y + n, mk, a0);
    }
}

#define CA_COLS 32   /* colacc: columns per work item (two vectors) */
#define CA_RANK 8    /* colacc: rank rows per pass (2 x 8 accumulators) */

/* D[j·ldd + n] += s · Σ_m Cp[m·rp + j] · X[m·ldx + n] for j < r, n < N. Cp: C packed [M, rp]
 * with rp = r rounded up to CA_RANK, zero-padded (so the inner loop has no rank tail). */
TGT static void colacc(float *D, int64_t ldd, const float *Cp, int64_t rp, const float *X,
                       int64_t ldx, int64_t M, int64_t N, int64_t r, float s)
{
    const int64_t nch = (N + CA_COLS - 1) / CA_COLS;
    #pragma omp parallel for schedule(static) if(PL_K_PAR(M * N * r))
    for (int64_t ch = 0; ch < nch; ch++) {
        const int64_t n0 = ch * CA_COLS;
        const __mmask16 k0 = tail_mask(N - n0), k1 = tail_mask(N - n0 - 16 < 0 ? 0 : N - n0 - 16);
        for (int64_t j0 = 0; j0 < r; j0 += CA_RANK) {
            __m512 acc[CA_RANK][2];
            for (int i = 0; i < CA_RANK; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
            for (int64_t m = 0; m < M; m++) {
                const float *xm = X + m * ldx + n0;
                __m512 x0 = _mm512_maskz_loadu_ps(k0, xm), x1 = _mm512_maskz_loadu_ps(k1, xm + 16);
                const float *cm = Cp + m * rp + j0;
#pragma GCC unroll 8
                for (int i = 0; i < CA_RANK; i++) {
                    __m512 c = _mm512_set1_ps(cm[i]);
                    acc[i][0] = _mm512_fmadd_ps(c, x0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(c, x1, acc[i][1]);
                }
            }
            const __m512 vs = _mm512_set1_ps(s);
            for (int i = 0; i < CA_RANK && j0 + i < r; i++) {
                float *d = D + (j0 + i) * ldd + n0;
                _mm512_mask_storeu_ps(d, k0, _mm512_fmadd_ps(vs, acc[i][0], _mm512_maskz_loadu_ps(k0, d)));
                if (k1) _mm512_mask_storeu_ps(d + 16, k1, _mm512_fmadd_ps(vs, acc[i][1], _mm512_maskz_loadu_ps(k1, d + 16)));
            }
        }
    }
}

/* C [M, r] → Cp [M, rp] zero-padded. */
static void pack_c(float *Cp, const float *C, int64_t M, int64_t r, int64_t rp)
{
    for (int64_t m = 0; m < M; m++) {
        memcpy(Cp + m * rp, C + m * r, (size_t)r * sizeof(float));
        for (int64_t j = r; j < rp; j++) Cp[m * rp + j] = 0.0f;
    }
}

/* Bt[j, n] = B[n, j]: B [N, r] → [r, N]. */
static void transpose_b(float *Bt, const float *B, int64_t N, int64_t r)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < r; j++) Bt[j * N + n] = B[n * r + j];
}

enum pl_status pl_lora_skinny_fwd(float *y, float *xa, const float *x, const float *A,
                                  const float *B, float scale, int64_t M, int64_t K, int64_t N,
                                  int64_t r)
{
    float *Bt = pl_alloc((size_t)(r * N) * sizeof(float), PL_MEM_WORKSPACE);
    if (!Bt) return pl_fail(PL_ERR_NOMEM, "lora: cannot allocate a %lld x %lld workspace",
                            (long long)r, (long long)N);
    transpose_b(Bt, B, N, r);
    #pragma omp parallel for schedule(static) if(PL_K_PAR(M * (K + N) * r))
    for (int64_t m = 0; m < M; m++) {
        float c[256];
        rowdots1(xa + m * r, x + m * K, A, K, K, r, 1.0f);          /* xa = x · Aᵀ        */
        for (int64_t j0 = 0; j0 < r; j0 += 256) {                 /* y += s · xa · Bᵀ   */
            int64_t nj = min64(256, r - j0);
            for (int64_t j = 0; j < nj; j++) c[j] = scale * xa[m * r + j0 + j];
            rowaxpy1(y + m * N, c, Bt + j0 * N, N, N, nj);
        }
    }
    pl_free(Bt);
    return PL_OK;
}

enum pl_status pl_lora_skinny_bwd(float *dx, float *dA, float *dB, const float *dy,
                                  const float *xa, const float *x, const float *A, const float *B,
                                  float scale, int64_t M, int64_t K, int64_t N, int64_t r)
{
    const int64_t rp = (r + CA_RANK - 1) / CA_RANK * CA_RANK;
    const int64_t wide = N > K ? N : K;
    /* Bt [r, N] | T [r, max(N, K)] | Cp [M, rp] | g [M, r] */
    size_t nf = (size_t)(r * N + r * wide + M * rp + M * r);
    float *ws = pl_alloc(nf * sizeof(float), PL_MEM_WORKSPACE);
    if (!ws) return pl_fail(PL_ERR_NOMEM, "lora backward: cannot allocate %.1f MiB of workspace",
                            (double)nf * 4 / 1048576.0);
    float *Bt = ws, *T = Bt + r * N, *Cp = T + r * wide, *g = Cp + M * rp;
    if (dB) {   /* dB[N,r] += s · dyᵀ · xa:  T = Σ_m xa[m,:]ᵀ dy[m,:], then dB[n,j] += s · T[j,n] */
        memset(T, 0, (size_t)(r * N) * sizeof(float));
        pack_c(Cp, xa, M, r, rp);
        colacc(T, N, Cp, rp, dy, N, M, N, r, 1.0f);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < r; j++) dB[n * r + j] += scale * T[j * N + n];
    }
    if (dA || dx) {
        transpose_b(Bt, B, N, r);
        #pragma omp parallel for schedule(static) if(PL_K_PAR(M * N * r))
        for (int64_t m = 0; m < M; m++)                            /* g = s · dy · B */
            rowdots1(g + m * r, dy + m * N, Bt, N, N, r, scale);
        if (dA) {                                                  /* dA += gᵀ · x   */
            pack_c(Cp, g, M, r, rp);
            colacc(dA, K, Cp, rp, x, K, M, K, r, 1.0f);
        }
        if (dx) {                                                  /* dx += g · A    */
            #pragma omp parallel for schedule(static) if(PL_K_PAR(M * K * r))
            for (int64_t m = 0; m < M; m++)
                for (int64_t j0 = 0; j0 < r; j0 += 256)
                    rowaxpy1(dx + m * K, g + m * r + j0, A + j0 * K, K, K, min64(256, r - j0));
        }
    }
    pl_free(ws);
    return PL_OK;
}

int pl_lora_skinny_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#else

int pl_lora_skinny_available(void) { return 0; }

enum pl_status pl_lora_skinny_fwd(float *y, float *xa, const float *x, const float *A,
                                  const float *B, float scale, int64_t M, int64_t K, int64_t N,
                                  int64_t r)
{
    (void)y; (void)xa; (void)x; (void)A; (void)B; (void)scale; (void)M; (void)K; (void)N; (void)r;
    return pl_fail(PL_ERR_UNSUPPORTED, "lora: skinny kernels are not built for this CPU");
}

enum pl_status pl_lora_skinny_bwd(float *dx, float *dA, float *dB, const float *dy,
                                  const float *xa, const float *x, const float *A, const float *B,
                                  float scale, int64_t M, int64_t K, int64_t N, int64_t r)
{
    (void)dx; (void)dA; (void)dB; (void)dy; (void)xa; (void)x; (void)A; (void)B; (void)scale;
    (void)M; (void)K; (void)N; (void)r;
    return pl_fail(PL_ERR_UNSUPPORTED, "lora: skinny kernels are not built for this CPU");
}

#endif
