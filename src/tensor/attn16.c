/* attn16.c — the attention products in bf16 with f32 sums, on AVX512_BF16 (owner: kernels).
 * Taken by pl_attention_fwd / pl_attention_bwd (kernels_attn.c) in compute mode bf16 for
 * T >= PL_GEMM16_MIN_ROWS new tokens; math, numerics and the workspace in gemm16.h.
 *
 * vdpbf16ps multiplies pairs of bf16 along the reduction index and adds both products into
 * one f32 lane. Every product here is C[rows, cols] (=|+=) Σ_p A(i, p) · B(p, cols) over
 * pair words (two bf16 of consecutive reduction indices in one 32-bit word, low half first):
 * A(i, p) is broadcast from a[i·sai + p·sap] (any strides, so a transposed operand needs no
 * transposing), B(p, ·) is 16-word vectors of a row-major buffer. The micro-kernel holds up to
 * 6 rows × 64 columns of C in 24 zmm accumulators for the whole reduction (at most a few
 * hundred pairs here), so each C element is one f32 sum in reduction order.
 *
 * Operand layouts (QB = 64 query rows a block, HW = ⌈HD/2⌉ words a head row):
 *   forward  S  = scale·Q·Kᵀ   A: Q rows in bf16 (Qw)      B: KT[p][j] = word p of key j
 *            O  = P·V          A: P rows in bf16 (Pw)      B: Vi[r][d] = (V[2r][d], V[2r+1][d])
 *   backward dV += Pᵀ·dO       A: Pi[r][j] = (P[2r][j], P[2r+1][j]) read transposed
 *                              B: dOi[r][d] = (dO[2r][d], dO[2r+1][d])
 *            dP = dO·Vᵀ        A: dO rows (dOw)            B: VT[p][j]
 *            dQ += dS·K        A: dS rows (dSw)            B: Ki[r][d]
 *            dK += dSᵀ·Q       A: dSi (as Pi)              B: Qi[r][d]
 * KT, VT, Vi, Ki are packed once per (b, kv head) and serve its NH/NKV query heads.
 * Causal skipping is per micro-tile: S and dP tiles stop at the last key their last row
 * sees (64-key column tiles, 16-key masks); the P·V and dS·K reductions stop at that key's
 * pair; the dV and dK reductions start at the first query pair that sees the tile's first key.
 * Masked probabilities are exact zeros, so what a tile includes beyond a row's limit adds 0.
 * Softmax and its backward are the f32 loops of kernels_attn.c.
 *
 * Threads over (b, kv head) both ways (each owns its dk/dv rows and its packed K/V); every
 * product's cut into tiles depends on the shapes alone: bits do not depend on the thread count.
 */
#include "peftlua/gemm16.h"
#include "peftlua/alloc.h"
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

#define QB 64        /* query rows per block (as kernels_attn.c) */
#define TM 6         /* rows of a micro-tile */
#define TN 64        /* columns of a micro-tile (4 vectors) */

static int64_t up16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* Per-thread workspace in 32-bit words (each buffer rounded to 16 words). */
struct lay { int64_t HW, HDP, TkP, KH, kt, vt, vi, ki, qw, pw, pi, dop, dsf, total; };

static void layout(struct lay *l, int bwd, int64_t Tk, int64_t HD)
{
    memset(l, 0, sizeof *l);
    l->HW = (HD + 1) / 2;
    l->HDP = up16(HD);
    l->TkP = up16(Tk);
    l->KH = (Tk + 1) / 2;
    int64_t KHP = up16(l->KH);
    l->kt = bwd ? 0 : l->HW * l->TkP;             /* KT (fwd)                       */
    l->vt = bwd ? l->HW * l->TkP : 0;             /* VT (bwd)                       */
    l->vi = up16((l->KH + 1) * l->HDP);           /* Vi (fwd) / Ki (bwd)            */
    l->qw = up16(QB * l->HW);                     /* Qw (fwd) / dOw (bwd)           */
    l->pw = QB * KHP;                             /* Pw (fwd) / dSw (bwd)           */
    l->pi = bwd ? 2 * (QB / 2) * l->TkP : 0;      /* Pi and dSi (bwd)               */
    l->dop = bwd ? 2 * (QB / 2) * l->HDP : 0;     /* dOi and Qi (bwd)               */
    l->dsf = bwd ? QB * l->TkP : 0;               /* dP / dS in f32 (bwd)           */
    l->total = l->kt + l->vt + l->vi + l->qw + l->pw + l->pi + l->dop + l->dsf;
}

static inline int use16(int64_t T, int64_t HD)
{
    return T >= PL_GEMM16_MIN_ROWS && HD >= 2 && pl_compute_get() == PL_COMPUTE_BF16;
}

static inline int nthreads(int64_t B, int64_t NKV)
{
    int nth = pl_k_max_threads();
    if (nth > B * NKV) nth = (int)(B * NKV);
    return nth < 1 ? 1 : nth;
}

/* The workspace is kept for the next call (up to PL_GEMM16_WS_KEEP bytes, counted as
 * workspace while kept; pl_gemm16_release frees it with gemm16's): a step makes two calls a
 * layer, and a fresh block each time (a few hundred KiB, above glibc's mmap threshold) cost
 * page faults across the step (perf: the kernel's page clearing 7.5% -> 18.5% of a SmolLM2
 * LoRA step). A concurrent caller finding it busy allocates its own (pl_k_kept,
 * kernels_internal.h). */
static struct pl_k_kept ws_kept = PL_K_KEPT_INIT;

void pl_attn16_release(void)
{
    pl_k_kept_release(&ws_kept);
}

int64_t pl_attn16_ws_bytes(int bwd, int64_t B, int64_t T, int64_t past, int64_t NKV, int64_t HD,
                           int nth)
{
    if (!pl_gemm16_available() || T < PL_GEMM16_MIN_ROWS || HD < 2) return 0;
    struct lay l;
    layout(&l, bwd, past + T, HD);
    if (nth > B * NKV) nth = (int)(B * NKV);
    if (nth < 1) nth = 1;
    return (int64_t)nth * l.total * 4;
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static __mmask16 lastmask(int64_t nc) { int64_t r = nc - 16 * ((nc - 1) / 16); return (__mmask16)((1u << r) - 1); }

/* C[mr, 16·nv] (=alpha· | +=) Σ_{p<kp} A(i,p)·B(p,·); the last vector's stores masked by km. */
TGT static inline __attribute__((always_inline)) void
mk(float *c, int64_t ldc, const uint32_t *a, int64_t sai, int64_t sap, const uint32_t *b,
   int64_t ldb, int64_t kp, __mmask16 km, int add, float alpha, const int mr, const int nv)
{
    __m512 acc[TM][4];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++) {
        __m512bh bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * ldb + 16 * v);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * sai + p * sap]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            float *ci = c + i * ldc + 16 * v;
            __mmask16 k = v == nv - 1 ? km : (__mmask16)0xffff;
            __m512 r = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(k, ci), acc[i][v])
                           : _mm512_mul_ps(va, acc[i][v]);
            _mm512_mask_storeu_ps(ci, k, r);
        }
}

typedef void (*mk_fn)(float *, int64_t, const uint32_t *, int64_t, int64_t, const uint32_t *,
                      int64_t, int64_t, __mmask16, int, float);
#define MKF(M, V)                                                                                \
    TGT static void mk_##M##_##V(float *c, int64_t ldc, const uint32_t *a, int64_t sai,          \
                                 int64_t sap, const uint32_t *b, int64_t ldb, int64_t kp,        \
                                 __mmask16 km, int add, float alpha)                             \
    { mk(c, ldc, a, sai, sap, b, ldb, kp, km, add, alpha, M, V); }
#define MKROW(M) MKF(M, 1) MKF(M, 2) MKF(M, 3) MKF(M, 4)
MKROW(1) MKROW(2) MKROW(3) MKROW(4) MKROW(5) MKROW(6)
#define MKT(M) { mk_##M##_1, mk_##M##_2, mk_##M##_3, mk_##M##_4 }
static const mk_fn mkt[TM][4] = { MKT(1), MKT(2), MKT(3), MKT(4), MKT(5), MKT(6) };

/* C[rows, ncols] over kp pairs, tiles of TM rows × TN columns. */
static void tiles(float *c, int64_t ldc, const uint32_t *a, int64_t sai, int64_t sap,
                  const uint32_t *b, int64_t ldb, int64_t kp, int64_t mr, int64_t ncols, int add,
                  float alpha)
{
    for (int64_t j0 = 0; j0 < ncols; j0 += TN) {
        int64_t nc = ncols - j0 < TN ? ncols - j0 : TN;
        mkt[mr - 1][(nc + 15) / 16 - 1](c + j0, ldc, a, sai, sap, b + j0, ldb, kp, lastmask(nc),
                                       add, alpha);
    }
}

/* n f32 → bf16 (round to nearest even), then zeros up to n_pad. */
TGT static void cvt_row(uint16_t *dst, const float *src, int64_t n, int64_t n_pad)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, k, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + i)));
    }
    for (i = n; i < n_pad; i++) dst[i] = 0;
}

/* dst[r][j] = (bf16 X[2r][j], bf16 X[2r+1][j]) for r < ⌈rows/2⌉, j < up16(cols) (0 outside). */
TGT static void interleave(uint32_t *dst, int64_t ldd, const float *x, int64_t ldx, int64_t rows,
                           int64_t cols)
{
    for (int64_t r = 0; 2 * r < rows; r++) {
        const float *x0 = x + 2 * r * ldx, *x1 = 2 * r + 1 < rows ? x0 + ldx : NULL;
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 k = cols - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - j)) - 1);
            __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x0 + j)));
            __m512i w = lo;
            if (x1) {
                __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x1 + j)));
                w = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
            }
            _mm512_storeu_si512(dst + r * ldd + j, w);
        }
    }
}

/* dst[p][j] = word p of row j in bf16 (pairs along the row), j < rows; columns rows..ldd-1 zero. */
static void pack_t(uint32_t *dst, int64_t ldd, const float *x, int64_t ldx, int64_t rows,
                   int64_t HD, int64_t HW)
{
    uint16_t tmp[2 * 512];
    uint32_t w[512];
    for (int64_t p = 0; p < HW; p++) memset(dst + p * ldd + rows, 0, (size_t)(ldd - rows) * 4);
    for (int64_t j = 0; j < rows; j++) {
        cvt_row(tmp, x + j * ldx, HD, 2 * HW);
        memcpy(w, tmp, (size_t)HW * 4);
        for (int64_t p = 0; p < HW; p++) dst[p * ldd + j] = w[p];
    }
}

/* nt rows of HD values (stride lds) → bf16 rows of HW words (stride HW). */
static void rows_w(uint32_t *dst, const float *x, int64_t ldx, int64_t nt, int64_t HD, int64_t HW)
{
    for (int64_t i = 0; i < nt; i++) cvt_row((uint16_t *)(dst + i * HW), x + i * ldx, HD, 2 * HW);
}

static __mmask16 cnt_mask(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* e^x on 16 lanes: pl_k_expf's reduction and polynomial (kernels_internal.h), 2^n by scalef;
 * NaN stays NaN (max/min return their second operand when one is NaN). */
TGT static inline __m512 vexp(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(e, n);
}

/* One probability row's softmax in place over keys 0..lim (f32; whole masked vectors, no
 * scalar tails), zeros up to Tk; the normalising pass also writes the row in bf16 to pw (nk
 * keys, zeros to a multiple of 16: the P·V operand). */
TGT static void softmax_row(float *pr, int64_t lim, int64_t Tk, int64_t nk, uint16_t *pw)
{
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j <= lim; j += 16) {
        __mmask16 m = cnt_mask(lim + 1 - j);
        vm = _mm512_mask_max_ps(vm, m, vm, _mm512_maskz_loadu_ps(m, pr + j));
    }
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512 vs = _mm512_setzero_ps();
    for (int64_t j = 0; j <= lim; j += 16) {
        __mmask16 m = cnt_mask(lim + 1 - j);
        __m512 e = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, pr + j), vmx));
        _mm512_mask_storeu_ps(pr + j, m, e);
        vs = _mm512_mask_add_ps(vs, m, vs, e);
    }
    const float sum = _mm512_reduce_add_ps(vs);
    const __m512 inv = _mm512_set1_ps(1.0f / sum);
    for (int64_t j = 0; j < nk; j += 16) {
        __mmask16 m = cnt_mask(lim + 1 - j);
        __m512 x = _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(m, pr + j), inv);
        _mm512_mask_storeu_ps(pr + j, cnt_mask(Tk - j), x);
        _mm256_storeu_si256((__m256i *)(pw + j), (__m256i)_mm512_cvtneps_pbh(x));
    }
    for (int64_t j = nk; j < Tk; j++) pr[j] = 0.0f;
}

/* Row pairs (2r, 2r+1) of one block in the backward: from P and dP (in dS, f32, row stride
 * lds) the f32 softmax backward ds = P ⊙ (dP − Σ_j P dP)·scale (zero past each row's limit),
 * written as bf16 rows (dSw, the dS·K operand), as pair words dSi[r][j] (the dSᵀ·Q operand), and
 * P as pair words Pi[r][j] (the Pᵀ·dO operand); one pass over P and dP. */
TGT static void softmax_bwd_pairs(const float *P, int64_t Tk, float *dS, int64_t lds, int64_t nt,
                                  int64_t lim0, int64_t nk, float scale, uint32_t *Pi,
                                  uint32_t *dSi, int64_t ldi, uint16_t *dSw, int64_t ldw)
{
    for (int64_t r = 0; 2 * r < nt; r++) {
        int two = 2 * r + 1 < nt;
        float pdp[2] = {0.0f, 0.0f};
        for (int s = 0; s <= two; s++) {
            const float *pr = P + (2 * r + s) * Tk, *dp = dS + (2 * r + s) * lds;
            int64_t lim = lim0 + 2 * r + s;
            __m512 a = _mm512_setzero_ps();
            for (int64_t j = 0; j <= lim; j += 16) {
                __mmask16 m = cnt_mask(lim + 1 - j);
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pr + j), _mm512_maskz_loadu_ps(m, dp + j), a);
            }
            pdp[s] = _mm512_reduce_add_ps(a);
        }
        const float *p0 = P + 2 * r * Tk, *p1 = p0 + Tk;
        const float *d0 = dS + 2 * r * lds, *d1 = d0 + lds;
        uint16_t *w0 = dSw + 2 * r * ldw, *w1 = w0 + ldw;
        const __m512 vs = _mm512_set1_ps(scale), q0 = _mm512_set1_ps(pdp[0]), q1 = _mm512_set1_ps(pdp[1]);
        for (int64_t j = 0; j < nk; j += 16) {
            __mmask16 m0 = cnt_mask(lim0 + 2 * r + 1 - j), m1 = two ? cnt_mask(lim0 + 2 * r + 2 - j) : 0;
            __m512 a0 = _mm512_maskz_loadu_ps(m0, p0 + j), a1 = _mm512_maskz_loadu_ps(m1, p1 + j);
            __m512 s0 = _mm512_maskz_mul_ps(m0, _mm512_mul_ps(a0, _mm512_sub_ps(_mm512_maskz_loadu_ps(m0, d0 + j), q0)), vs);
            __m512 s1 = _mm512_maskz_mul_ps(m1, _mm512_mul_ps(a1, _mm512_sub_ps(_mm512_maskz_loadu_ps(m1, d1 + j), q1)), vs);
            __m256i b0 = (__m256i)_mm512_cvtneps_pbh(s0), b1 = (__m256i)_mm512_cvtneps_pbh(s1);
            _mm256_storeu_si256((__m256i *)(w0 + j), b0);
            if (two) _mm256_storeu_si256((__m256i *)(w1 + j), b1);
            _mm512_storeu_si512(dSi + r * ldi + j, _mm512_or_si512(_mm512_cvtepu16_epi32(b0),
                                _mm512_slli_epi32(_mm512_cvtepu16_epi32(b1), 16)));
            __m512i c0 = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a0));
            __m512i c1 = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a1));
            _mm512_storeu_si512(Pi + r * ldi + j, _mm512_or_si512(c0, _mm512_slli_epi32(c1, 16)));
        }
    }
}

int pl_attn16_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                  int64_t B, int64_t T, int64_t past, int64_t Tcap, int64_t NH, int64_t NKV,
                  int64_t HD)
{
    if (!use16(T, HD) || HD > 1024) return 0;
    const int64_t Tk = past + T, grp = NH / NKV;
    const int64_t ldq = NH * HD, ldk = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    struct lay l;
    layout(&l, 0, Tk, HD);
    const int64_t HW = l.HW, HDP = l.HDP, TkP = l.TkP, KH = l.KH, KHP = up16(KH);
    int nth = nthreads(B, NKV);
    uint32_t *ws = pl_k_kept_get(&ws_kept, (size_t)nth * (size_t)l.total * 4, PL_GEMM16_WS_KEEP);
    if (!ws) return 0;                            /* the f32 path needs no workspace */
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(B * NH * T * Tk * HD))
    for (int64_t bg = 0; bg < B * NKV; bg++) {
        int64_t b = bg / NKV, g = bg % NKV;
        uint32_t *KT = ws + (size_t)pl_k_thread_id() * (size_t)l.total;
        uint32_t *Vi = KT + l.kt, *Qw = Vi + l.vi, *Pw = Qw + l.qw;
        const float *Kg = k + (b * Tcap * NKV + g) * HD;
        const float *Vg = v + (b * Tcap * NKV + g) * HD;
        pack_t(KT, TkP, Kg, ldk, Tk, HD, HW);
        interleave(Vi, HDP, Vg, ldk, Tk, HD);
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            const float *Q = q + (b * T * NH + h) * HD;
            float *O = out + (b * T * NH + h) * HD;
            float *P = probs + (b * NH + h) * T * Tk;
            for (int64_t t0 = 0; t0 < T; t0 += QB) {
                int64_t nt = T - t0 < QB ? T - t0 : QB;
                int64_t nk = past + t0 + nt;
                float *Pb = P + t0 * Tk;
                rows_w(Qw, Q + t0 * ldq, ldq, nt, HD, HW);
                /* S = scale · Q_blk · Kᵀ, each row tile up to the last key it sees */
                for (int64_t i0 = 0; i0 < nt; i0 += TM) {
                    int64_t mr = nt - i0 < TM ? nt - i0 : TM;
                    tiles(Pb + i0 * Tk, Tk, Qw + i0 * HW, HW, 1, KT, TkP, HW, mr,
                          past + t0 + i0 + mr, 0, scale);
                }
                for (int64_t i = 0; i < nt; i++)
                    softmax_row(Pb + i * Tk, past + t0 + i, Tk, nk, (uint16_t *)(Pw + i * KHP));
                /* O_blk = P_blk · V, each row tile's reduction up to its last key's pair */
                for (int64_t i0 = 0; i0 < nt; i0 += TM) {
                    int64_t mr = nt - i0 < TM ? nt - i0 : TM;
                    int64_t kp = (past + t0 + i0 + mr + 1) / 2;
                    tiles(O + (t0 + i0) * ldq, ldq, Pw + i0 * KHP, KHP, 1, Vi, HDP, kp, mr, HD, 0, 1.0f);
                }
            }
        }
    }
    pl_k_kept_put(&ws_kept, ws);
    return 1;
}

int pl_attn16_bwd(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                  const float *q, const float *k, const float *v, int64_t B, int64_t T,
                  int64_t past, int64_t Tcap, int64_t NH, int64_t NKV, int64_t HD)
{
    if (!use16(T, HD) || HD > 1024) return 0;
    const int64_t Tk = past + T, grp = NH / NKV;
    const int64_t ldq = NH * HD, ldk = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    struct lay l;
    layout(&l, 1, Tk, HD);
    const int64_t HW = l.HW, HDP = l.HDP, TkP = l.TkP, KH = l.KH, KHP = up16(KH);
    int nth = nthreads(B, NKV);
    uint32_t *ws = pl_k_kept_get(&ws_kept, (size_t)nth * (size_t)l.total * 4, PL_GEMM16_WS_KEEP);
    if (!ws) return 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(B * NH * T * Tk * HD))
    for (int64_t bg = 0; bg < B * NKV; bg++) {
        int64_t b = bg / NKV, g = bg % NKV;
        uint32_t *VT = ws + (size_t)pl_k_thread_id() * (size_t)l.total;
        uint32_t *Ki = VT + l.vt, *dOw = Ki + l.vi, *dSw = dOw + l.qw, *Pi = dSw + l.pw;
        uint32_t *dSi = Pi + l.pi / 2, *dOi = Pi + l.pi, *Qi = dOi + l.dop / 2;
        float *dS = (float *)(dOi + l.dop);
        const float *Kg = k + (b * Tcap * NKV + g) * HD;
        const float *Vg = v + (b * Tcap * NKV + g) * HD;
        float *dKg = dk ? dk + (b * Tcap * NKV + g) * HD : NULL;
        float *dVg = dv ? dv + (b * Tcap * NKV + g) * HD : NULL;
        if (dq || dKg) {
            pack_t(VT, TkP, Vg, ldk, Tk, HD, HW);
            interleave(Ki, HDP, Kg, ldk, Tk, HD);
        }
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            const float *Q = q + (b * T * NH + h) * HD;
            const float *dO = dout + (b * T * NH + h) * HD;
            float *dQ = dq ? dq + (b * T * NH + h) * HD : NULL;
            const float *P = probs + (b * NH + h) * T * Tk;
            for (int64_t t0 = 0; t0 < T; t0 += QB) {
                int64_t nt = T - t0 < QB ? T - t0 : QB;
                int64_t nk = past + t0 + nt, np = (nt + 1) / 2;
                const float *Pb = P + t0 * Tk;
                if (dVg || dKg) interleave(dOi, HDP, dO + t0 * ldq, ldq, nt, HD);
                if (dQ || dKg) {
                    /* dP = dO_blk · Vᵀ;  dS = P ⊙ (dP − Σ_j P dP) · scale (f32), with Pi, dSi, dSw */
                    rows_w(dOw, dO + t0 * ldq, ldq, nt, HD, HW);
                    for (int64_t i0 = 0; i0 < nt; i0 += TM) {
                        int64_t mr = nt - i0 < TM ? nt - i0 : TM;
                        tiles(dS + i0 * TkP, TkP, dOw + i0 * HW, HW, 1, VT, TkP, HW, mr,
                              past + t0 + i0 + mr, 0, 1.0f);
                    }
                    softmax_bwd_pairs(Pb, Tk, dS, TkP, nt, past + t0, nk, scale, Pi, dSi, TkP,
                                      (uint16_t *)dSw, 2 * KHP);
                } else if (dVg) {
                    interleave(Pi, TkP, Pb, Tk, nt, nk);
                }
                /* dV[0:nk] += P_blkᵀ · dO_blk: key rows j0.. start at the first query pair that sees j0 */
                if (dVg)
                    for (int64_t j0 = 0; j0 < nk; j0 += TM) {
                        int64_t mr = nk - j0 < TM ? nk - j0 : TM;
                        int64_t rs = (j0 - past - t0 > 0 ? j0 - past - t0 : 0) / 2;
                        tiles(dVg + j0 * ldk, ldk, Pi + rs * TkP + j0, 1, TkP, dOi + rs * HDP, HDP,
                              np - rs, mr, HD, 1, 1.0f);
                    }
                /* dQ_blk += dS · K, reductions up to each row tile's last key pair */
                if (dQ)
                    for (int64_t i0 = 0; i0 < nt; i0 += TM) {
                        int64_t mr = nt - i0 < TM ? nt - i0 : TM;
                        int64_t kp = (past + t0 + i0 + mr + 1) / 2;
                        tiles(dQ + (t0 + i0) * ldq, ldq, dSw + i0 * KHP, KHP, 1, Ki, HDP, kp, mr, HD, 1, 1.0f);
                    }
                /* dK[0:nk] += dSᵀ · Q_blk */
                if (dKg) {
                    interleave(Qi, HDP, Q + t0 * ldq, ldq, nt, HD);
                    for (int64_t j0 = 0; j0 < nk; j0 += TM) {
                        int64_t mr = nk - j0 < TM ? nk - j0 : TM;
                        int64_t rs = (j0 - past - t0 > 0 ? j0 - past - t0 : 0) / 2;
                        tiles(dKg + j0 * ldk, ldk, dSi + rs * TkP + j0, 1, TkP, Qi + rs * HDP, HDP,
                              np - rs, mr, HD, 1, 1.0f);
                    }
                }
            }
        }
    }
    pl_k_kept_put(&ws_kept, ws);
    return 1;
}

#else

int pl_attn16_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                  int64_t B, int64_t T, int64_t past, int64_t Tcap, int64_t NH, int64_t NKV,
                  int64_t HD)
{
    (void)out; (void)probs; (void)q; (void)k; (void)v; (void)B; (void)T; (void)past; (void)Tcap;
    (void)NH; (void)NKV; (void)HD;
    return 0;
}

int pl_attn16_bwd(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                  const float *q, const float *k, const float *v, int64_t B, int64_t T,
                  int64_t past, int64_t Tcap, int64_t NH, int64_t NKV, int64_t HD)
{
    (void)dq; (void)dk; (void)dv; (void)dout; (void)probs; (void)q; (void)k; (void)v; (void)B;
    (void)T; (void)past; (void)Tcap; (void)NH; (void)NKV; (void)HD;
    return 0;
}

#endif
