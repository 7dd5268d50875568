/* gemm16.c — bf16 × bf16 → f32 matrix products on AVX512_BF16 (owner: kernels).
 * Math and numerics in include/peftlua/gemm16.h.
 *
 * Layout (Goto-style). vdpbf16ps multiplies pairs of bf16 along the reduction index r and adds
 * both products into one f32 lane, so both operands are packed as 32-bit words holding the
 * pair (r = 2p, 2p+1), low half first:
 *   A (activations) once per call, in panels of MR = 8 rows:   Ap[(mp·R2 + p)·MR + i]
 *   B (the weight)  per work item, in panels of NR = 48 columns: Bp[(np·R2 + p)·NR + j]
 * (R2 = ⌈R/2⌉; an odd R pads the last pair with 0, missing rows/columns are 0 too).
 * The micro-kernel keeps an 8 × 48 tile of C in 24 zmm accumulators; per pair it loads the
 * three B vectors and broadcasts each row's A word (24 vdpbf16ps for 11 loads). The reduction
 * is cut into blocks of KCP pairs (one B micro-panel is KCP·48·4 = 54 KiB, read from L2 with
 * the item's A panels while the kernel sweeps them); C is summed in f32 across blocks.
 *
 * Work items: (chunk of NC columns of C) × (block of MB rows), chunk-major; MB as large as
 * leaves two items per thread (the bits do not depend on MB). Each item packs its
 * chunk of the weight for the whole reduction — dequantising rows (forward, W [N,R]) or row
 * segments (input gradient, W [R,N]; NC is then a whole number of the dtype's blocks) straight
 * into bf16 words — and computes its C block. Each C element is summed by one micro-kernel
 * over the reduction blocks in order, which depends on the shape only: results do not depend
 * on the thread count (nor on how rows are grouped into items).
 */
#include "peftlua/gemm16.h"
#include "peftlua/alloc.h"
#include "peftlua/quant.h"
#include "kernels_internal.h"

#include <stdatomic.h>
#include <string.h>

static _Atomic int compute_mode = PL_COMPUTE_F32;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PL_GEMM16_X86 1
#include <immintrin.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

int pl_gemm16_available(void)
{
#ifdef PL_GEMM16_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

const char *pl_gemm16_isa(void) { return pl_gemm16_available() ? "avx512_bf16" : "none"; }

enum pl_compute pl_compute_set(enum pl_compute c)
{
    int want = c == PL_COMPUTE_BF16 && pl_gemm16_available() ? PL_COMPUTE_BF16 : PL_COMPUTE_F32;
    return (enum pl_compute)atomic_exchange(&compute_mode, want);
}

enum pl_compute pl_compute_get(void) { return (enum pl_compute)atomic_load(&compute_mode); }

enum pl_compute pl_compute_from_name(const char *name)
{
    if (name && !strcmp(name, "bf16")) return PL_COMPUTE_BF16;
    if (name && !strcmp(name, "auto")) return pl_gemm16_available() ? PL_COMPUTE_BF16 : PL_COMPUTE_F32;
    return PL_COMPUTE_F32;
}

#ifdef PL_GEMM16_X86

#define MR 8
#define NR 48
#define KCP 288       /* reduction pairs per block: a B micro-panel of 54 KiB, streamed from L2.
                       * Against 96 (18 KiB, L1-resident): the C tile goes to memory a third as
                       * often; bench_gemm16 688 rows, one layer's products + head, Q4_1, best of
                       * 5, three runs: 1 thread 435-440 -> 410-411 ms, 2 threads 222-247 ->
                       * 212-226 ms (128-768 tried: 128 430-433, 192 421, 384 411-416, 768 414-425) */
#define MB_MAX 1024   /* rows of C per item at most */
#define MSUB 256      /* rows of C swept per reduction block inside an item */
#define NC_BASE 192   /* columns of C per item (4 panels) */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The workspace (packed A + per-thread B panels) of one call is kept for the next one up to
 * PL_GEMM16_WS_KEEP bytes (pl_k_kept, kernels_internal.h): a training step makes hundreds
 * of these calls, and a fresh multi-MiB block each time cost page faults and page clearing (~4% of a SmolLM2 LoRA step, perf). One cached
 * block; a concurrent caller finding it busy allocates its own. It stays counted as
 * workspace while kept; pl_gemm16_release() frees it. */
static struct pl_k_kept ws_kept = PL_K_KEPT_INIT;

/* n f32 → bf16 (round to nearest even, as vcvtneps2bf16). */
TGT static void cvt_bf16(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + i));
        _mm256_mask_storeu_epi16(dst + i, k, h);
    }
}

/* 16 columns of two reduction rows → 16 pair words (t0 low half, t1 high). */
TGT static inline __m512i pair16(const float *t0, const float *t1, __mmask16 k)
{
    __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, t0)));
    __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, t1)));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* C[mr, nr] (=|+=) A-panel · B-panel over kp pairs; first: C = beta·C + acc (beta 0: C = acc). */
TGT static void ukernel(const uint32_t *a, const uint32_t *b, int64_t kp, float *c, int64_t ldc,
                        int mr, int nr, int first, float beta)
{
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], ai, b2);
        }
        a += MR;
        b += NR;
    }
    const __m512 vb = _mm512_set1_ps(beta);
    if (mr == MR && nr == NR) {   /* whole tile: constant indices keep acc in registers */
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
#pragma GCC unroll 3
            for (int j = 0; j < 3; j++) {
                __m512 r = acc[i][j];
                if (!first) r = _mm512_add_ps(_mm512_loadu_ps(ci + 16 * j), r);
                else if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16 * j), r);
                _mm512_storeu_ps(ci + 16 * j, r);
            }
        }
        return;
    }
    __mmask16 km[3];
    for (int j = 0; j < 3; j++) {
        int v = nr - 16 * j;
        km[j] = v >= 16 ? (__mmask16)0xffff : v <= 0 ? 0 : (__mmask16)((1u << v) - 1);
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        for (int j = 0; j < 3; j++) {
            if (!km[j]) continue;
            __m512 r = acc[i][j];
            if (!first) r = _mm512_add_ps(_mm512_maskz_loadu_ps(km[j], ci + 16 * j), r);
            else if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(km[j], ci + 16 * j), r);
            _mm512_mask_storeu_ps(ci + 16 * j, km[j], r);
        }
    }
}

/* Pack rows [m0, m0 + rows) of A (f32, R values a row, row stride lda) into Ap panels (all R2 pairs). */
TGT static void pack_a(uint32_t *Ap, const float *A, int64_t lda, int64_t m0, int64_t rows, int64_t R,
                       int64_t R2, uint16_t *row)
{
    for (int64_t m = m0; m < m0 + rows; m++) {
        row[2 * R2 - 1] = 0;
        cvt_bf16(row, A + m * lda, R);
        uint32_t *dst = Ap + ((m / MR) * R2) * MR + m % MR;
        const uint32_t *w = (const uint32_t *)row;
        for (int64_t p = 0; p < R2; p++) dst[p * MR] = w[p];
    }
}

/* 8 x 8 transpose of 32-bit words. */
TGT static inline void tr8x8(__m256i v[8])
{
    __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    v[0] = _mm256_permute2x128_si256(u0, u4, 0x20); v[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    v[1] = _mm256_permute2x128_si256(u1, u5, 0x20); v[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    v[2] = _mm256_permute2x128_si256(u2, u6, 0x20); v[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    v[3] = _mm256_permute2x128_si256(u3, u7, 0x20); v[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* The first np (<= 8) of the transposed vectors, vector q at dst + q·stride words. A whole
 * group of 8 is stored with constant indices: a loop over a variable count kept v[] on the
 * stack, and GCC turned pack_a8's contiguous stores into a memcpy call per group (2.7% of a
 * quickstart step, perf). */
TGT static inline void store8(uint32_t *dst, int64_t stride, const __m256i v[8], int64_t np)
{
    if (np == 8) {
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) _mm256_storeu_si256((__m256i *)(dst + q * stride), v[q]);
        return;
    }
    for (int64_t q = 0; q < np; q++) _mm256_storeu_si256((__m256i *)(dst + q * stride), v[q]);
}

/* A whole panel of MR = 8 rows (R values each, row stride lda) into dst = its Ap panel: eight
 * pairs of the eight rows at a time, converted and transposed in registers. */
TGT static void pack_a8(uint32_t *dst, const float *A, int64_t lda, int64_t R, int64_t R2)
{
    for (int64_t p0 = 0; p0 < R2; p0 += 8) {
        int64_t nf = R - 2 * p0;
        __mmask16 k = (__mmask16)(nf >= 16 ? 0xffff : (1u << nf) - 1);
        __m256i v[8];
        for (int i = 0; i < 8; i++)
            v[i] = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, A + i * lda + 2 * p0));
        tr8x8(v);
        store8(dst + p0 * MR, MR, v, min64(8, R2 - p0));
    }
}

/* Pack rows [m0, m0 + rows) of op(A) = Aᵀ, A stored [R, M] (row stride lda): the pair words of
 * columns m0.. of A's rows 2p and 2p+1. */
TGT static void pack_a_t(uint32_t *Ap, const float *A, int64_t m0, int64_t rows, int64_t R,
                         int64_t lda, int64_t R2)
{
    const __mmask16 k = (__mmask16)((1u << rows) - 1);
    uint32_t *dst = Ap + (m0 / MR) * R2 * MR;
    for (int64_t p = 0; p < R2; p++) {
        const float *r0 = A + 2 * p * lda + m0;
        __m512i w;
        if (2 * p + 1 < R) {
            w = pair16(r0, r0 + lda, k);
        } else {
            __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, r0)));
            w = lo;
        }
        _mm256_storeu_si256((__m256i *)(dst + p * MR), _mm512_castsi512_si256(w));   /* rows past M: 0 */
    }
}

/* Two whole panels (16 columns m0.. of A's rows, m0 a multiple of MR) of op(A) = Aᵀ at once:
 * full 16-float loads of rows 2p and 2p+1, their bf16 halves interleaved (unpack, then the
 * 128-bit lanes put in column order). The same words as pack_a_t, with half the strided loads
 * (dW's A is dyᵀ, read down columns: ~3% of a full fine-tuning step went to packing it). */
TGT static void pack_a_t16(uint32_t *Ap, const float *A, int64_t m0, int64_t R, int64_t lda,
                           int64_t R2)
{
    uint32_t *d0 = Ap + (m0 / MR) * R2 * MR, *d1 = d0 + R2 * MR;
    for (int64_t p = 0; p < R2; p++) {
        const float *r0 = A + 2 * p * lda + m0;
        __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r0));
        __m256i hi = 2 * p + 1 < R ? (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r0 + lda))
                                   : _mm256_setzero_si256();
        __m256i u0 = _mm256_unpacklo_epi16(lo, hi), u1 = _mm256_unpackhi_epi16(lo, hi);
        _mm256_storeu_si256((__m256i *)(d0 + p * MR), _mm256_permute2x128_si256(u0, u1, 0x20));
        _mm256_storeu_si256((__m256i *)(d1 + p * MR), _mm256_permute2x128_si256(u0, u1, 0x31));
    }
}

/* f32 (or exact bf16) values of n consecutive elements of W starting at element `start`
 * (a whole number of blocks in): into f, or — bf16 weights — directly as bf16 into h (returns 1). */
static int weight_part(const void *W, enum pl_dtype wt, int64_t total, int64_t start, int64_t n,
                       float *f, const uint16_t **h)
{
    if (wt == PL_BF16) { *h = (const uint16_t *)W + start; return 1; }
    if (wt == PL_F32) memcpy(f, (const float *)W + start, (size_t)n * sizeof(float));
    else if (wt == PL_NF4_DQ) pl_dequant_part(wt, W, total, start, f, n);
    else pl_dequant_row(wt, (const uint8_t *)W + pl_dtype_row_bytes(wt, start), f, n);
    return 0;
}

/* Pack columns [n0, n0 + nc) of B for every pair into Bp (panels of NR, zero-padded).
 * w_nr = 1: W [N, R], column n of B is row n of W;  w_nr = 0: W [R, N], B's rows being W's rows
 * r_off .. r_off + R - 1 (a slice of the reduction). total: W's element count. */
TGT static void pack_b(uint32_t *Bp, const void *W, enum pl_dtype wt, int w_nr, int64_t R,
                       int64_t N, int64_t R2, int64_t n0, int64_t nc, int64_t total, int64_t r_off,
                       float *f0, float *f1, uint16_t *row)
{
    const int64_t npan = (nc + NR - 1) / NR;
    if (nc % NR) {                        /* zero the padding columns of the last panel */
        uint32_t *last = Bp + (npan - 1) * R2 * NR;
        for (int64_t p = 0; p < R2; p++)
            for (int64_t j = nc % NR; j < NR; j++) last[p * NR + j] = 0;
    }
    if (w_nr) {
        int64_t n = n0;
        if (wt != PL_BF16)   /* groups of 8 columns: 8 rows of W in f32, transposed in registers */
            for (; n + 8 <= n0 + nc; n += 8) {
                const float *rows[8];
                for (int i = 0; i < 8; i++) {
                    const uint16_t *h = NULL;
                    if (wt == PL_F32) rows[i] = (const float *)W + (n + i) * R;
                    else { weight_part(W, wt, total, (n + i) * R, R, f0 + i * R, &h); rows[i] = f0 + i * R; }
                }
                int64_t j = n - n0;
                uint32_t *dst = Bp + (j / NR) * R2 * NR + j % NR;
                for (int64_t p0 = 0; p0 < R2; p0 += 8) {
                    int64_t nf = R - 2 * p0;
                    __mmask16 k = (__mmask16)(nf >= 16 ? 0xffff : (1u << nf) - 1);
                    __m256i v[8];
                    for (int i = 0; i < 8; i++)
                        v[i] = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, rows[i] + 2 * p0));
                    tr8x8(v);
                    store8(dst + p0 * NR, NR, v, min64(8, R2 - p0));
                }
            }
        for (; n < n0 + nc; n++) {
            const uint16_t *h = NULL;
            row[2 * R2 - 1] = 0;
            if (weight_part(W, wt, total, n * R, R, f0, &h)) {
                memcpy(row, h, (size_t)R * sizeof(uint16_t));
            } else {
                cvt_bf16(row, f0, R);
            }
            const uint32_t *w = (const uint32_t *)row;
            int64_t j = n - n0;
            uint32_t *dst = Bp + (j / NR) * R2 * NR + j % NR;
            for (int64_t p = 0; p < R2; p++) dst[p * NR] = w[p];
        }
        return;
    }
    for (int64_t p = 0; p < R2; p++) {
        int64_t r0 = 2 * p, r1 = 2 * p + 1;
        const uint16_t *h0 = NULL, *h1 = NULL;
        int b16 = weight_part(W, wt, total, (r_off + r0) * N + n0, nc, f0, &h0);
        if (r1 < R) weight_part(W, wt, total, (r_off + r1) * N + n0, nc, f1, &h1);
        else if (b16) h1 = NULL;
        else memset(f1, 0, (size_t)nc * sizeof(float));
        for (int64_t j = 0; j < nc; j += 16) {
            int v = (int)min64(16, nc - j);
            __mmask16 k = (__mmask16)(v >= 16 ? 0xffff : (1u << v) - 1);
            __m512i w;
            if (b16) {
                __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, h0 + j));
                __m512i hi = h1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, h1 + j))
                                : _mm512_setzero_si512();
                w = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
            } else {
                w = pair16(f0 + j, f1 + j, k);
            }
            _mm512_mask_storeu_epi32(Bp + ((j / NR) * R2 + p) * NR + j % NR, k, w);
        }
    }
}

/* Bounds on one call's packed A (A_MAX bytes) and reduction slice (RCH pairs, a whole number
 * of KCP blocks). A product whose packed A would be larger is cut into row chunks (any rows:
 * C's rows are independent) and, where the weight is stored [R, N] (input gradients; full
 * fine-tuning's dW, whose "weight" is x), into reduction slices summed into C in order. The
 * slices end on reduction-block boundaries, and a later slice adds its f32 block sums into C
 * as a later block of one call would (C + acc), so the bits are those of an uncut call.
 * The 49,152-way head's input gradient needed a 100 MiB A and 19 MiB B panels per thread
 * before (fresh pages every step, B panels far out of L2: 150 instead of 195 GFLOP/s). */
#define A_MAX ((size_t)4 << 20)
#define RCH (KCP * 3)   /* 864 pairs: 1,024 rows of packed A stay under A_MAX */

/* The smallest column chunk: a panel, or for a weight stored [R, N] of block dtype a whole
 * number of its blocks and of panels (lcm(blk, NR)). */
static int64_t chunk_unit(enum pl_dtype wt, int w_nr)
{
    const int64_t blk = pl_dtype_info(wt)->block;
    if (w_nr) return NR;
    int64_t a = blk, b = NR;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return blk / a * NR;
}

/* Columns of C per item before any narrowing (plan_core): NC_BASE where it is a whole unit. */
static int64_t chunk_cols(enum pl_dtype wt, int w_nr)
{
    const int64_t blk = pl_dtype_info(wt)->block;
    return w_nr || NC_BASE % blk == 0 ? NC_BASE : chunk_unit(wt, w_nr);
}

/* The work split and workspace of one chunk (gemm16_core), from its shape and thread count. */
struct plan {
    int64_t R2, MB, nmb, nitem, mpan, flen, NC;
    size_t per, abytes, bbytes, need;
    int nth;
};

static void plan_core(struct plan *p, enum pl_dtype wt, int w_nr, int64_t M, int64_t R, int64_t N,
                      int nth)
{
    const int64_t R2 = (R + 1) / 2, unit = chunk_unit(wt, w_nr);
    int64_t NC = chunk_cols(wt, w_nr);
    /* Narrower chunks (whole units: panels, and for W [R, N] of a block dtype whole blocks)
     * where N has fewer chunks than the items wanted: more items over the columns instead of
     * over the rows, so that each chunk of the weight is dequantised and packed once per call
     * rather than once per row block (2 threads: k_proj's 192 columns were packed 4 times).
     * The bits do not change: each C element is still summed by one micro-kernel over the
     * same reduction blocks in order. */
    const int64_t want = nth > 1 ? 2 * nth : 1;
    if ((N + NC - 1) / NC < want) {
        int64_t nc = (((N + want - 1) / want + unit - 1) / unit) * unit;
        if (nc < NC) NC = nc;
    }
    /* Rows per item: all of them (the weight chunk is packed once) unless that leaves fewer
     * than two items per thread (one thread: one item per chunk); at most MB_MAX, so that an A block of one reduction block
     * (MB·KCP·4 bytes) stays in L2. Any MB gives the same bits — each C element is still
     * summed by one micro-kernel over the same reduction blocks in the same order — so it may
     * depend on the thread count. Packing a chunk costs ~1/MB of its products (measured: with
     * 3 row blocks instead of 1, 1024 x 1536 x 576 ran at 147 instead of ~175 GFLOP/s). */
    const int64_t nch = (N + NC - 1) / NC;
    int64_t nmb = (want + nch - 1) / nch, mtiles = (M + MR - 1) / MR;
    if (nmb < (M + MB_MAX - 1) / MB_MAX) nmb = (M + MB_MAX - 1) / MB_MAX;
    if (nmb > mtiles) nmb = mtiles;
    const int64_t MB = ((mtiles + nmb - 1) / nmb) * MR;
    nmb = (M + MB - 1) / MB;
    const int64_t nitem = nch * nmb;
    if (nth > nitem) nth = (int)nitem;
    p->NC = NC;
    p->R2 = R2; p->MB = MB; p->nmb = nmb; p->nitem = nitem; p->mpan = (M + MR - 1) / MR;
    p->flen = w_nr ? 8 * R : NC;                                    /* f32 row buffers */
    p->bbytes = (size_t)((NC + NR - 1) / NR) * NR * R2 * 4;
    /* per thread: B panels, two f32 rows, one bf16 row (pack_a and pack_b find them at these offsets) */
    p->per = p->bbytes + (size_t)p->flen * 8 + (size_t)R2 * 4 + 64;
    p->abytes = (size_t)p->mpan * MR * R2 * 4;
    p->need = p->abytes + (size_t)nth * p->per;
    p->nth = nth;
}

/* One chunk: C[M,N] (row stride N) = beta·C + op(A)[M,R] · B, B = rows r_off.. of W [.., N]
 * (w_nr = 0) or W [N, R] (w_nr = 1, r_off 0). A: [M, R] row stride lda, or (a_t) [R, M]. */
static enum pl_status gemm16_core(float *C, const float *A, int64_t lda, int a_t, const void *W,
                                  enum pl_dtype wt, int w_nr, int64_t total, int64_t r_off,
                                  float beta, int64_t M, int64_t R, int64_t N)
{
    struct plan pl;
    int nth = pl_k_max_threads();
#ifdef _OPENMP
    if (omp_get_level() > 0) nth = 1;
#endif
    plan_core(&pl, wt, w_nr, M, R, N, nth);
    const int64_t NC = pl.NC, R2 = pl.R2, MB = pl.MB, nmb = pl.nmb, nitem = pl.nitem, mpan = pl.mpan, flen = pl.flen;
    const size_t per = pl.per, abytes = pl.abytes, need = pl.need;
    nth = pl.nth;
    uint8_t *ws = pl_k_kept_get(&ws_kept, need, PL_GEMM16_WS_KEEP);
    if (!ws) return pl_fail(PL_ERR_NOMEM, "gemm16: cannot allocate %.1f MiB of bf16 panels",
                            (double)need / 1048576.0);
    uint32_t *Ap = (uint32_t *)ws;
    const size_t bbytes = pl.bbytes;
    if (M % MR) memset(Ap + (M / MR) * MR * R2, 0, (size_t)MR * R2 * 4);   /* padded rows */
    #pragma omp parallel for schedule(static) num_threads(nth) if(PL_K_PAR(M * R))
    for (int64_t mp = 0; mp < mpan; mp++) {
        uint8_t *mine = ws + abytes + (size_t)pl_k_thread_id() * per;
        uint16_t *row = (uint16_t *)(mine + per - (size_t)R2 * 4 - 64);
        if (a_t) {
            if (mp % 2 == 0 && M - mp * MR >= 2 * MR) pack_a_t16(Ap, A, mp * MR, R, lda, R2);
            else if (mp % 2 == 0 || M - (mp - 1) * MR < 2 * MR)   /* not done by the pair before */
                pack_a_t(Ap, A, mp * MR, min64(MR, M - mp * MR), R, lda, R2);
        }
        else if (M - mp * MR >= MR) pack_a8(Ap + mp * R2 * MR, A + mp * MR * lda, lda, R, R2);
        else pack_a(Ap, A, lda, mp * MR, M - mp * MR, R, R2, row);
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(M * N * R))
    for (int64_t it = 0; it < nitem; it++) {
        uint8_t *mine = ws + abytes + (size_t)pl_k_thread_id() * per;
        uint32_t *Bp = (uint32_t *)mine;
        float *f0 = (float *)(mine + bbytes);
        float *f1 = f0 + flen;
        uint16_t *row = (uint16_t *)(f1 + flen);
        const int64_t ch = it / nmb, mb = it % nmb;
        const int64_t n0 = ch * NC, nc = min64(NC, N - n0);
        const int64_t m0 = mb * MB, mm = min64(MB, M - m0);
        pack_b(Bp, W, wt, w_nr, R, N, R2, n0, nc, total, r_off, f0, f1, row);
        const int64_t npan = (nc + NR - 1) / NR;
        /* rows in sub-blocks of MSUB, so that their C block (MSUB x NC f32) stays in L2
         * across the reduction blocks */
        for (int64_t s0 = m0; s0 < m0 + mm; s0 += MSUB) {
            const int64_t s1 = min64(s0 + MSUB, m0 + mm);
            for (int64_t p0 = 0; p0 < R2; p0 += KCP) {
                const int64_t kp = min64(KCP, R2 - p0);
                for (int64_t np = 0; np < npan; np++) {
                    const uint32_t *b = Bp + (np * R2 + p0) * NR;
                    const int nr = (int)min64(NR, nc - np * NR);
                    for (int64_t m = s0; m < s1; m += MR) {
                        const uint32_t *a = Ap + ((m / MR) * R2 + p0) * MR;
                        ukernel(a, b, kp, C + m * N + n0 + np * NR, N, (int)min64(MR, M - m), nr,
                                p0 == 0, beta);
                    }
                }
            }
        }
    }
    pl_k_kept_put(&ws_kept, ws);
    return PL_OK;
}

/* Reduction slices (weights stored [R, N] only) and row chunks that keep A under A_MAX. */
static void cuts(int w_nr, int64_t R, int64_t *rc, int64_t *mc)
{
    *rc = w_nr ? R : min64(R, 2 * RCH);
    const int64_t r2c = (*rc + 1) / 2;
    *mc = (int64_t)(A_MAX / ((size_t)r2c * 4 * MR)) * MR;
    if (*mc < MB_MAX) *mc = MB_MAX;
}

int64_t pl_gemm16_ws_bytes(enum pl_dtype wt, int w_nr, int64_t M, int64_t R, int64_t N, int nth)
{
    if (M <= 0 || N <= 0 || R <= 0 || (int)wt < 0 || (int)wt >= PL_DTYPE_COUNT) return 0;
    int64_t rc, mc;
    cuts(w_nr, R, &rc, &mc);
    struct plan p;   /* the first chunk is the largest in both directions */
    plan_core(&p, wt, w_nr, min64(mc, M), min64(rc, R), N, nth < 1 ? 1 : nth);
    return (int64_t)p.need;
}

static enum pl_status gemm16(float *C, const float *A, int a_t, const void *W, enum pl_dtype wt,
                             int w_nr, float beta, int64_t M, int64_t R, int64_t N)
{
    if (!pl_gemm16_available())
        return pl_fail(PL_ERR_UNSUPPORTED, "gemm16: this CPU has no AVX512_BF16");
    if ((int)wt < 0 || (int)wt >= PL_DTYPE_COUNT || wt == PL_I32 || wt == PL_I8)
        return pl_fail(PL_ERR_UNSUPPORTED, "gemm16: weight dtype %d is not a float or block format", (int)wt);
    const int64_t blk = pl_dtype_info(wt)->block;
    if (pl_dtype_row_bytes(wt, w_nr ? R : N) == 0)
        return pl_fail(PL_ERR_ARG, "gemm16: weight rows of %lld elements are not a whole number of %s blocks (%d)",
                       (long long)(w_nr ? R : N), pl_dtype_info(wt)->name, (int)blk);
    if (M <= 0 || N <= 0) return PL_OK;
    if (R <= 0) {
        for (int64_t i = 0; i < M * N; i++) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
        return PL_OK;
    }
    /* Check the weight's blocks once outside the parallel regions (errors cannot leave them). */
    if (wt != PL_BF16 && wt != PL_F32) {
        int64_t n = w_nr ? R : min64(chunk_cols(wt, w_nr), N);
        float *f = pl_alloc((size_t)n * sizeof(float), PL_MEM_WORKSPACE);
        if (!f) return pl_fail(PL_ERR_NOMEM, "gemm16: cannot allocate %lld floats", (long long)n);
        enum pl_status st = wt == PL_NF4_DQ ? pl_dequant_part(wt, W, R * N, 0, f, n)
                                            : pl_dequant_row(wt, W, f, n);
        pl_free(f);
        if (st != PL_OK) return st;
    }
    int64_t rc, mc;
    cuts(w_nr, R, &rc, &mc);
    const int64_t lda = a_t ? M : R;
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t mm = min64(mc, M - m0);
        for (int64_t r0 = 0; r0 < R; r0 += rc) {
            const float *Ap = a_t ? A + r0 * lda + m0 : A + m0 * lda + r0;
            enum pl_status st = gemm16_core(C + m0 * N, Ap, lda, a_t, W, wt, w_nr, R * N, r0,
                                            r0 == 0 ? beta : 1.0f, mm, min64(rc, R - r0), N);
            if (st != PL_OK) return st;
        }
    }
    return PL_OK;
}

enum pl_status pl_gemm16(float *C, const float *A, const void *W, enum pl_dtype wt, int w_nr,
                         float beta, int64_t M, int64_t R, int64_t N)
{
    return gemm16(C, A, 0, W, wt, w_nr, beta, M, R, N);
}

enum pl_status pl_gemm16_tn(float *C, const float *A, const float *B, float beta, int64_t M,
                            int64_t R, int64_t N)
{
    return gemm16(C, A, 1, B, PL_F32, 0, beta, M, R, N);
}

void pl_gemm16_release(void)
{
    pl_k_kept_release(&ws_kept);
    pl_attn16_release();   /* attention's kept workspace (attn16.c) */
}

#else   /* no x86 intrinsics: never available */

int64_t pl_gemm16_ws_bytes(enum pl_dtype wt, int w_nr, int64_t M, int64_t R, int64_t N, int nth)
{
    (void)wt; (void)w_nr; (void)M; (void)R; (void)N; (void)nth;
    return 0;
}

void pl_gemm16_release(void) {}

enum pl_status pl_gemm16_tn(float *C, const float *A, const float *B, float beta, int64_t M,
                            int64_t R, int64_t N)
{
    (void)C; (void)A; (void)B; (void)beta; (void)M; (void)R; (void)N;
    return pl_fail(PL_ERR_UNSUPPORTED, "gemm16: bf16 products are not built for this CPU");
}

enum pl_status pl_gemm16(float *C, const float *A, const void *W, enum pl_dtype wt, int w_nr,
                         float beta, int64_t M, int64_t R, int64_t N)
{
    (void)C; (void)A; (void)W; (void)wt; (void)w_nr; (void)beta; (void)M; (void)R; (void)N;
    return pl_fail(PL_ERR_UNSUPPORTED, "gemm16: bf16 products are not built for this CPU");
}

#endif
