/* quant.c — element formats: the dtype table and conversion of rows to and from f32.
 *
 * Owner: formats (the GGUF/safetensors engineer). Implements include/peftlua/quant.h and the
 * dtype-table functions declared in include/peftlua/tensor.h (pl_dtype_info & co.).
 *
 * Block layouts are those of ggml/GGUF, byte for byte, so tensor data in a GGUF file is used
 * in place (all multi-byte fields little-endian; d/dmin/m are IEEE half floats):
 *   Q8_0  32 el, 34 B:  d | int8 q[32]                              x = d*q
 *   Q4_0  32 el, 18 B:  d | q[16] (lo nibble el j, hi el j+16)       x = d*(q-8)
 *   Q4_1  32 el, 20 B:  d | m | q[16]                               x = d*q + m
 *   Q5_0  32 el, 22 B:  d | qh[4] (bit j = 5th bit of el j) | q[16]  x = d*(q-16)
 *   Q5_1  32 el, 24 B:  d | m | qh[4] | q[16]                       x = d*q + m
 *   Q2_K 256 el, 84 B:  scales[16] (lo4 scale, hi4 min) | q[64] | d | dmin
 *                       x = d*sc*q - dmin*mn, 16 sub-blocks of 16, 2-bit q
 *   Q3_K 256 el,110 B:  hmask[32] | q[64] | scales[12] (16 6-bit, offset 32) | d
 *                       x = d*(sc-32)*(q - (hbit ? 0 : 4))
 *   Q4_K 256 el,144 B:  d | dmin | scales[12] (8 6-bit scales + 8 6-bit mins) | q[128]
 *                       x = d*sc*q - dmin*mn, 8 sub-blocks of 32
 *   Q5_K 256 el,176 B:  d | dmin | scales[12] | qh[32] | q[128]     as Q4_K with a 5th bit
 *   Q6_K 256 el,210 B:  ql[128] | qh[64] | int8 scales[16] | d      x = d*sc*(q-32)
 *   Q8_K 256 el,292 B:  f32 d | int8 q[256] | int16 bsums[16]       x = d*q
 *   NF4   64 el, 36 B:  f32 s | q[32] (lo nibble = even el)         x = s*NF4[q]
 *   NF4_32 32 el, 18 B: f16 s | q[16] (lo nibble = even el)         x = s*NF4[q]
 *   NF4_DQ 64 el, 33 B per block + 8 B per group of 256 blocks (double quantisation):
 *         a whole tensor is one unit: every block's int8 c | q[32] in order, then per group
 *         f32 g | f32 mu;  s = mu + g*c,  x = s*NF4[q]
 * NF4 is QLoRA's NormalFloat4 (Dettmers et al. 2023), the 16 code values of bitsandbytes.
 * The block scale s is chosen by the quantiser (pl_nf4_fit): the block's absmax, as
 * bitsandbytes does, or (the default) the scale among a small set that gives the least
 * squared error of the block; the dequantisation is the same either way.
 * NF4_DQ is the QLoRA paper's double quantisation: the per-block scales of the whole tensor,
 * in groups of 256 consecutive blocks (a group may span rows), less the group's mean, are
 * stored as int8 with one f32 step per group. Its "row" is the whole tensor
 * (pl_dtype_row_bytes(PL_NF4_DQ, numel) counts the blocks and the group table), and a part
 * of it is read with pl_dequant_part, which finds the table from the tensor's size.
 *
 * Dequantisation is the inner loop of QLoRA matmuls: each block is expanded with straight
 * loops over bytes that the compiler vectorises (no branches, no calls inside the loops).
 * Quantisation (every type) follows ggml's quantize_row_*_ref (same rounding, same
 * scale search), so a row quantised here matches what ggml's reference quantiser writes;
 * Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/F16/BF16 are checked byte for byte against gguf-py in the tests.
 */
#include <math.h>
#include <string.h>
#include <strings.h>
#include <float.h>

#if (defined(__F16C__) && defined(__AVX__)) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "peftlua/alloc.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"
#include "peftlua/status.h"

#define QK_K 256

/* ---------------------------------------------------------------- dtype table */

static const struct pl_dtype_info dtype_table[PL_DTYPE_COUNT] = {
    [PL_F32]  = { "f32",   1,   4,  0 },
    [PL_F16]  = { "f16",   1,   2,  1 },
    [PL_BF16] = { "bf16",  1,   2, 30 },
    [PL_I32]  = { "i32",   1,   4, 26 },
    [PL_I8]   = { "i8",    1,   1, 24 },
    [PL_Q8_0] = { "q8_0", 32,  34,  8 },
    [PL_Q4_0] = { "q4_0", 32,  18,  2 },
    [PL_Q4_1] = { "q4_1", 32,  20,  3 },
    [PL_Q5_0] = { "q5_0", 32,  22,  6 },
    [PL_Q5_1] = { "q5_1", 32,  24,  7 },
    [PL_Q2_K] = { "q2_k", QK_K,  84, 10 },
    [PL_Q3_K] = { "q3_k", QK_K, 110, 11 },
    [PL_Q4_K] = { "q4_k", QK_K, 144, 12 },
    [PL_Q5_K] = { "q5_k", QK_K, 176, 13 },
    [PL_Q6_K] = { "q6_k", QK_K, 210, 14 },
    [PL_Q8_K] = { "q8_k", QK_K, 292, 15 },
    [PL_NF4]  = { "nf4",  64,  36, -1 },
    [PL_NF4_32] = { "nf4_32", 32, 18, -1 },
    [PL_NF4_DQ] = { "nf4_dq", 64, 33, -1 },
};

const struct pl_dtype_info *pl_dtype_info(enum pl_dtype t)
{
    if ((int)t < 0 || t >= PL_DTYPE_COUNT) return NULL;
    return &dtype_table[t];
}

int pl_dtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < PL_DTYPE_COUNT; i++)
        if (strcasecmp(name, dtype_table[i].name) == 0) return i;
    /* common long spellings (PyTorch / safetensors) */
    if (!strcasecmp(name, "float32")) return PL_F32;
    if (!strcasecmp(name, "float16") || !strcasecmp(name, "half")) return PL_F16;
    if (!strcasecmp(name, "bfloat16")) return PL_BF16;
    if (!strcasecmp(name, "int32")) return PL_I32;
    if (!strcasecmp(name, "int8")) return PL_I8;
    return -1;
}

int pl_dtype_from_gguf(int32_t ggml_type)
{
    if (ggml_type < 0) return -1;
    for (int i = 0; i < PL_DTYPE_COUNT; i++)
        if (dtype_table[i].gguf_type == ggml_type) return i;
    return -1;
}

int pl_dtype_is_quant(enum pl_dtype t)
{
    const struct pl_dtype_info *in = pl_dtype_info(t);
    return in && in->block > 1;
}

size_t pl_dtype_row_bytes(enum pl_dtype t, int64_t n)
{
    const struct pl_dtype_info *in = pl_dtype_info(t);
    if (!in || n < 0 || n % in->block) return 0;
    uint64_t nb = (uint64_t)(n / in->block);
    if (nb > (uint64_t)INT64_MAX / (uint64_t)in->block_bytes / 2) return 0;   /* absurd sizes */
    uint64_t bytes = nb * (uint64_t)in->block_bytes;
    if (t == PL_NF4_DQ) bytes += (nb + PL_NF4_DQ_GROUP - 1) / PL_NF4_DQ_GROUP * 8;   /* group table */
    return (size_t)bytes;
}

/* ---------------------------------------------------------------- half / bfloat16 */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half → single without branches: shift the half's exponent/mantissa into single
 * position and rescale by 2^-112 (fixes the exponent bias, also handles Inf/NaN because the
 * exponent saturates); subnormal halves are rebuilt as (0.5 + m*2^-24)... − 0.5 via a magic
 * float whose mantissa receives m. Selecting between the two is a compare, not a branch. */
static inline float h2f(uint16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normal = u2f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denorm = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t r = sign | (two_w < (1u << 27) ? f2u(denorm) : f2u(normal));
    return u2f(r);
}

/* single → half, round to nearest even: scale so that the float adder does the rounding at
 * the half's mantissa position (the bias term places the binary point), then read the bits. */
static inline uint16_t f2h(float f)
{
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f2u(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f2u(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mant_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mant_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float bf2f(uint16_t h) { return u2f((uint32_t)h << 16); }

static inline uint16_t f2bf(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float    pl_f16_to_f32(uint16_t h) { return h2f(h); }
uint16_t pl_f32_to_f16(float f)    { return f2h(f); }
float    pl_bf16_to_f32(uint16_t h) { return bf2f(h); }
uint16_t pl_f32_to_bf16(float f)    { return f2bf(f); }

static inline float rd_h(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return h2f(h); }
static inline void  wr_h(uint8_t *p, float f) { uint16_t h = f2h(f); memcpy(p, &h, 2); }

/* ---------------------------------------------------------------- NF4 code book */

/* bitsandbytes' NF4 values: quantiles of N(0,1) normalised to [-1, 1], with an exact 0. */
static const float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

/* ---------------------------------------------------------------- dequantisation */

static void dq_q8_0(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 34, y += 32) {
        const float d = rd_h(x);
        const int8_t *q = (const int8_t *)(x + 2);
        for (int j = 0; j < 32; j++) y[j] = d * (float)q[j];
    }
}

static void dq_q4_0(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 18, y += 32) {
        const float d = rd_h(x);
        const uint8_t *q = x + 2;
        for (int j = 0; j < 16; j++) {
            y[j]      = d * (float)((int)(q[j] & 0x0F) - 8);
            y[j + 16] = d * (float)((int)(q[j] >> 4) - 8);
        }
    }
}

static void dq_q4_1(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
#if defined(__AVX512F__)
    /* 16 nibbles a vector, d·q then + m as two roundings (the scalar loop's, no FMA): the
     * same bits at 13.7 instead of 6.1 Gelem/s (576-element rows; the compiler's vectorisation
     * of the loop below), and Q4_1 weights are dequantised on every bf16 product of the
     * quickstart. (pl_gemv's decoder in llama.c fuses the multiply-add: other bits.) */
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, x += 20, y += 32) {
        uint32_t dm;   /* d and m, half → single in hardware (exact, as h2f) */
        memcpy(&dm, x, 4);
        const __m128 dmf = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm));
        const __m512 d = _mm512_broadcastss_ps(dmf), m = _mm512_broadcastss_ps(_mm_movehdup_ps(dmf));
        const __m128i q = _mm_loadu_si128((const __m128i *)(x + 4));
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, lo4)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), lo4)));
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, lo), m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, hi), m));
    }
#else
    for (int64_t b = 0; b < nb; b++, x += 20, y += 32) {
        const float d = rd_h(x), m = rd_h(x + 2);
        const uint8_t *q = x + 4;
        for (int j = 0; j < 16; j++) {
            y[j]      = d * (float)(q[j] & 0x0F) + m;
            y[j + 16] = d * (float)(q[j] >> 4) + m;
        }
    }
#endif
}

static void dq_q5_0(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 22, y += 32) {
        const float d = rd_h(x);
        uint32_t qh; memcpy(&qh, x + 2, 4);
        const uint8_t *q = x + 6;
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j]      = d * (float)(((q[j] & 0x0F) | h0) - 16);
            y[j + 16] = d * (float)(((q[j] >> 4) | h1) - 16);
        }
    }
}

static void dq_q5_1(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 24, y += 32) {
        const float d = rd_h(x), m = rd_h(x + 2);
        uint32_t qh; memcpy(&qh, x + 4, 4);
        const uint8_t *q = x + 8;
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j]      = d * (float)((q[j] & 0x0F) | h0) + m;
            y[j + 16] = d * (float)((q[j] >> 4) | h1) + m;
        }
    }
}

static void dq_q2_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 84) {
        const uint8_t *sc = x, *q = x + 16;
        const float d = rd_h(x + 80), dmin = rd_h(x + 82);
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t s = sc[is++];
                    const float dl = d * (float)(s & 0x0F), ml = dmin * (float)(s >> 4);
                    const uint8_t *qq = q + 16 * half;
                    for (int l = 0; l < 16; l++) y[l] = dl * (float)((qq[l] >> shift) & 3) - ml;
                    y += 16;
                }
            }
        }
    }
}

/* Q3_K's 16 6-bit scales: low 4 bits in bytes 0..7 (two per byte), high 2 bits in bytes 8..11. */
static void q3k_scales(const uint8_t *s, int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
        const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

static void dq_q3_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 110) {
        const uint8_t *hm = x, *q = x + 32;
        const float d = rd_h(x + 108);
        int8_t sc[16];
        q3k_scales(x + 96, sc);
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d * (float)sc[is++];
                    const uint8_t *qq = q + 16 * half, *hh = hm + 16 * half;
                    for (int l = 0; l < 16; l++)
                        y[l] = dl * (float)((int)((qq[l] >> shift) & 3) - ((hh[l] & m) ? 0 : 4));
                    y += 16;
                }
            }
        }
    }
}

/* Q4_K/Q5_K: 8 6-bit scales and 8 6-bit mins packed in 12 bytes. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dq_q4_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 144) {
        const float d = rd_h(x), dmin = rd_h(x + 2);
        const uint8_t *scales = x + 4, *q = x + 16;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t s1, m1, s2, m2;
            scale_min_k4(2 * j, scales, &s1, &m1);
            scale_min_k4(2 * j + 1, scales, &s2, &m2);
            const float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0x0F) - n1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - n2;
            y += 64;
        }
    }
}

static void dq_q5_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 176) {
        const float d = rd_h(x), dmin = rd_h(x + 2);
        const uint8_t *scales = x + 4, *qh = x + 16, *q = x + 48;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t s1, m1, s2, m2;
            scale_min_k4(2 * j, scales, &s1, &m1);
            scale_min_k4(2 * j + 1, scales, &s2, &m2);
            const float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
            const int b1 = 2 * j, b2 = 2 * j + 1;
            for (int l = 0; l < 32; l++)
                y[l] = d1 * (float)((q[l] & 0x0F) | (((qh[l] >> b1) & 1) << 4)) - n1;
            for (int l = 0; l < 32; l++)
                y[32 + l] = d2 * (float)((q[l] >> 4) | (((qh[l] >> b2) & 1) << 4)) - n2;
            y += 64;
        }
    }
}

static void dq_q6_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 210) {
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        const float d = rd_h(x + 208);
        for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
            /* each 16-element run shares one scale: hoist the four scales per half */
            for (int h = 0; h < 2; h++) {
                const float s0 = d * sc[h], s1 = d * sc[h + 2], s2 = d * sc[h + 4], s3 = d * sc[h + 6];
                for (int l = 16 * h; l < 16 * h + 16; l++) {
                    const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l]      = s0 * (float)q1;
                    y[l + 32] = s1 * (float)q2;
                    y[l + 64] = s2 * (float)q3;
                    y[l + 96] = s3 * (float)q4;
                }
            }
        }
    }
}

static void dq_q8_k(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 292, y += QK_K) {
        float d; memcpy(&d, x, 4);
        const int8_t *q = (const int8_t *)(x + 4);
        for (int j = 0; j < QK_K; j++) y[j] = d * (float)q[j];
    }
}

#if !defined(__AVX2__)
/* NF4 codes come in pairs per byte: a 256-entry table of code pairs turns each byte into two
 * floats with one lookup (built once; the race on first use writes identical values). */
static float nf4_pairs[256][2];
static int nf4_pairs_ready;

static void nf4_init(void)
{
    if (__atomic_load_n(&nf4_pairs_ready, __ATOMIC_ACQUIRE)) return;
    for (int b = 0; b < 256; b++) {
        nf4_pairs[b][0] = nf4_code[b & 0x0F];
        nf4_pairs[b][1] = nf4_code[b >> 4];
    }
    __atomic_store_n(&nf4_pairs_ready, 1, __ATOMIC_RELEASE);
}
#endif

/* 16 bytes of NF4 code pairs → 32 floats y[j] = s * NF4[code j]. */
static inline void nf4_expand16(const uint8_t *restrict q, float s, float *restrict y)
{
#if defined(__AVX2__)
    /* AVX2: the 16 codes live in two 8-float registers; vpermps picks by the low 3 bits of
     * each index and a blend on bit 3 chooses the register. Nibbles are split and
     * interleaved (even element = low nibble) before widening to 32-bit indices. */
    const __m256 tlo = _mm256_loadu_ps(nf4_code), thi = _mm256_loadu_ps(nf4_code + 8);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256 va = _mm256_set1_ps(s);
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    const __m128i e[2] = { _mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi) };
    for (int k = 0; k < 4; k++) {
        const __m128i bytes = (k & 1) ? _mm_srli_si128(e[k >> 1], 8) : e[k >> 1];
        const __m256i idx = _mm256_cvtepu8_epi32(bytes);
        const __m256 c = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, idx),
                                          _mm256_permutevar8x32_ps(thi, idx),
                                          _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(va, c));
    }
#else
    for (int j = 0; j < 16; j++) {
        y[2 * j]     = s * nf4_pairs[q[j]][0];
        y[2 * j + 1] = s * nf4_pairs[q[j]][1];
    }
#endif
}

static void dq_nf4(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
#if !defined(__AVX2__)
    nf4_init();
#endif
    for (int64_t b = 0; b < nb; b++, x += 36, y += 64) {
        float a; memcpy(&a, x, 4);
        nf4_expand16(x + 4, a, y);
        nf4_expand16(x + 20, a, y + 32);
    }
}

static void dq_nf4_32(const uint8_t *restrict x, float *restrict y, int64_t nb)
{
#if !defined(__AVX2__)
    nf4_init();
#endif
    for (int64_t b = 0; b < nb; b++, x += 18, y += 32) nf4_expand16(x + 2, rd_h(x), y);
}

/* NF4_DQ blocks b0 .. b0+nb-1 of a unit whose group table is `tab`: s = mu + g*c. */
static void dq_nf4_dq(const uint8_t *restrict x, const uint8_t *restrict tab, int64_t b0,
                      float *restrict y, int64_t nb)
{
#if !defined(__AVX2__)
    nf4_init();
#endif
    for (int64_t b = 0; b < nb; b++, x += 33, y += 64) {
        float gm[2];
        memcpy(gm, tab + (size_t)((b0 + b) / PL_NF4_DQ_GROUP) * 8, 8);
        const float s = gm[1] + gm[0] * (float)(int8_t)x[0];
        nf4_expand16(x + 1, s, y);
        nf4_expand16(x + 17, s, y + 32);
    }
}

static enum pl_status check_n(enum pl_dtype t, int64_t n, const char *what)
{
    const struct pl_dtype_info *in = pl_dtype_info(t);
    if (!in) return pl_fail(PL_ERR_ARG, "%s: unknown dtype %d", what, (int)t);
    if (n < 0 || n % in->block)
        return pl_fail(PL_ERR_ARG, "%s: %lld elements is not a multiple of the %s block size %d",
                       what, (long long)n, in->name, in->block);
    return PL_OK;
}

enum pl_status pl_dequant_row(enum pl_dtype t, const void *src, float *dst, int64_t n)
{
    enum pl_status st = check_n(t, n, "dequantise");
    if (st) return st;
    const uint8_t *x = src;
    const int64_t nb = n / dtype_table[t].block;
    switch (t) {
    case PL_F32: if (n) memmove(dst, src, (size_t)n * 4); break;
    case PL_F16: {
        int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
        for (; i + 8 <= n; i += 8)   /* hardware half → single, 8 at a time */
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + 2 * i))));
#endif
        for (; i < n; i++) { uint16_t h; memcpy(&h, x + 2 * i, 2); dst[i] = h2f(h); }
    } break;
    case PL_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, x + 2 * i, 2); dst[i] = bf2f(h); }
        break;
    case PL_I32:
        for (int64_t i = 0; i < n; i++) { int32_t v; memcpy(&v, x + 4 * i, 4); dst[i] = (float)v; }
        break;
    case PL_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)x[i]; break;
    case PL_Q8_0: dq_q8_0(x, dst, nb); break;
    case PL_Q4_0: dq_q4_0(x, dst, nb); break;
    case PL_Q4_1: dq_q4_1(x, dst, nb); break;
    case PL_Q5_0: dq_q5_0(x, dst, nb); break;
    case PL_Q5_1: dq_q5_1(x, dst, nb); break;
    case PL_Q2_K: dq_q2_k(x, dst, nb); break;
    case PL_Q3_K: dq_q3_k(x, dst, nb); break;
    case PL_Q4_K: dq_q4_k(x, dst, nb); break;
    case PL_Q5_K: dq_q5_k(x, dst, nb); break;
    case PL_Q6_K: dq_q6_k(x, dst, nb); break;
    case PL_Q8_K: dq_q8_k(x, dst, nb); break;
    case PL_NF4:  dq_nf4(x, dst, nb); break;
    case PL_NF4_32: dq_nf4_32(x, dst, nb); break;
    case PL_NF4_DQ: dq_nf4_dq(x, x + (size_t)nb * 33, 0, dst, nb); break;
    default: return pl_fail(PL_ERR_UNSUPPORTED, "dequantise: dtype %d", (int)t);
    }
    return PL_OK;
}

enum pl_status pl_dequant_part(enum pl_dtype t, const void *base, int64_t total, int64_t start,
                               float *dst, int64_t n)
{
    enum pl_status st = check_n(t, total, "dequantise");
    if (st) return st;
    const int64_t blk = dtype_table[t].block;
    if (start < 0 || n < 0 || start % blk || n % blk || start > total - n)
        return pl_fail(PL_ERR_ARG, "dequantise: elements [%lld, %lld) of %lld are not whole %s blocks inside the tensor",
                       (long long)start, (long long)(start + n), (long long)total, dtype_table[t].name);
    const uint8_t *x = base;
    if (t == PL_NF4_DQ) {
#if !defined(__AVX2__)
        nf4_init();
#endif
        dq_nf4_dq(x + (size_t)(start / 64) * 33, x + (size_t)(total / 64) * 33, start / 64, dst, n / 64);
        return PL_OK;
    }
    return pl_dequant_row(t, x + pl_dtype_row_bytes(t, start), dst, n);
}

/* ---------------------------------------------------------------- quantisation */

/* round half to even, as ggml's nearest_int (magic-number trick) does */
static inline int nearest_int(float f) { return (int)lrintf(f); }

#define MINI(a, b) ((a) < (b) ? (a) : (b))
#define MAXI(a, b) ((a) > (b) ? (a) : (b))
#define GROUP_MAX_EPS 1e-15f

/* The element of largest magnitude with its sign (the first on ties); *amax = its |x|. */
static inline float signed_absmax(const float *restrict x, int n, float *amax)
{
    float a = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > a) { a = fabsf(x[j]); max = x[j]; }
    *amax = a;
    return max;
}

/* Q2_K/Q3_K: four 2-bit levels per byte, L[j+l], L[j+l+32], L[j+l+64], L[j+l+96] from the low
 * bits up, for each 128-element half of the super-block. */
static inline void pack_2bit(uint8_t *restrict q, const uint8_t *restrict L)
{
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            q[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Q8_0: d = amax/127, q = round(x/d). */
static void q_q8_0(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        wr_h(y, d);
        for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* Q4_0: d = (signed value of largest magnitude)/-8, q = clamp(trunc(x/d + 8.5), 15). */
static void q_q4_0(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        wr_h(y, d);
        for (int j = 0; j < 16; j++) {
            const int a = MINI(15, (int)(int8_t)(x[j] * id + 8.5f));
            const int c = MINI(15, (int)(int8_t)(x[j + 16] * id + 8.5f));
            y[2 + j] = (uint8_t)(a | (c << 4));
        }
    }
}

/* Q4_1: d = (max-min)/15, m = min, q = clamp(trunc((x-min)/d + 0.5), 15). */
static void q_q4_1(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 20) {
        float mn = FLT_MAX, mx = -FLT_MAX;
        for (int j = 0; j < 32; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
        const float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
        wr_h(y, d);
        wr_h(y + 2, mn);
        for (int j = 0; j < 16; j++) {
            const int a = MINI(15, (int)(int8_t)((x[j] - mn) * id + 0.5f));
            const int c = MINI(15, (int)(int8_t)((x[j + 16] - mn) * id + 0.5f));
            y[4 + j] = (uint8_t)(a | (c << 4));
        }
    }
}

/* Q5_0: d = max/-16, q = clamp(trunc(x/d + 16.5), 31), 5th bits gathered into qh. */
static void q_q5_0(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16.0f, id = d ? 1.0f / d : 0.0f;
        wr_h(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int a = MINI(31, (int)(int8_t)(x[j] * id + 16.5f));
            const int c = MINI(31, (int)(int8_t)(x[j + 16] * id + 16.5f));
            y[6 + j] = (uint8_t)((a & 0x0F) | ((c & 0x0F) << 4));
            qh |= (uint32_t)((a & 0x10) >> 4) << j;
            qh |= (uint32_t)((c & 0x10) >> 4) << (j + 16);
        }
        memcpy(y + 2, &qh, 4);
    }
}

/* Q5_1: d = (max-min)/31, m = min, q = trunc((x-min)/d + 0.5). */
static void q_q5_1(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 24) {
        float mn = FLT_MAX, mx = -FLT_MAX;
        for (int j = 0; j < 32; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
        const float d = (mx - mn) / 31.0f, id = d ? 1.0f / d : 0.0f;
        wr_h(y, d);
        wr_h(y + 2, mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int a = (int)(uint8_t)((x[j] - mn) * id + 0.5f);
            const int c = (int)(uint8_t)((x[j + 16] - mn) * id + 0.5f);
            y[8 + j] = (uint8_t)((a & 0x0F) | ((c & 0x0F) << 4));
            qh |= (uint32_t)((a & 0x10) >> 4) << j;
            qh |= (uint32_t)((c & 0x10) >> 4) << (j + 16);
        }
        memcpy(y + 4, &qh, 4);
    }
}

/* ggml's make_qkx2_quants: fit x ≈ scale*L - min (L in 0..nmax) minimising the weighted
 * squared (use_mad: absolute) error, trying nstep+1 trial inverse scales around nmax/(max-min) and refining each
 * by weighted least squares. Returns scale; *the_min receives -min (≥ 0). */
static float make_qkx2_quants(int n, int nmax, const float *restrict x, const float *restrict w,
                              uint8_t *restrict L, float *restrict the_min, uint8_t *restrict Laux,
                              float rmin, float rdelta, int nstep, int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        const float diff = scale * L[i] + min - x[i];
        best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Q4_K and Q5_K alike: each of the 8 sub-blocks of 32 is fitted by make_qkx2_quants (levels
 * 0..nmax, weights rms(x) + |x|); the 8 scales and 8 mins become 6-bit numbers relative to
 * the fp16 super-scales d = max scale / 63 and dmin = max min / 63, packed into y[4..16) as
 * scale_min_k4 reads them, d and dmin at y[0..4); then x is requantised with the packed
 * (rounded) scales into the levels L[0..256). */
static void qk_scales_mins(const float *restrict x, uint8_t *restrict y, uint8_t *restrict L, int nmax,
                           float rmin, int nstep)
{
    uint8_t Laux[32];
    float w[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *sc = y + 4;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = (uint8_t)MINI(63, nearest_int(inv_scale * scales[j]));
        const uint8_t lm = (uint8_t)MINI(63, nearest_int(inv_min * mins[j]));
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0x0F) | ((lm & 0x0F) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    wr_h(y, max_scale / 63.0f);
    wr_h(y + 2, max_min / 63.0f);
    const float d_all = rd_h(y), dmin_all = rd_h(y + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        scale_min_k4(j, sc, &s, &m);
        const float d = d_all * s;
        if (!d) continue;
        const float dm = dmin_all * m;
        for (int i = 0; i < 32; i++) {
            const int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)MAXI(0, MINI(nmax, l));
        }
    }
}

/* Q4_K: 4-bit levels (nmax 15, trial scales from -1 in 21 steps); sub-blocks 2j and 2j+1
 * share the low and high nibbles of 32 bytes. */
static void q_q4_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 144) {
        qk_scales_mins(x, y, L, 15, -1.0f, 20);
        uint8_t *q = y + 16;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* Q5_K: as Q4_K with 5-bit levels (nmax 31, trial scales from -0.5 in 16 steps); the 5th bits
 * of sub-block pair (2j, 2j+1) go to bits 2j and 2j+1 of qh[0..31]. */
static void q_q5_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 176) {
        qk_scales_mins(x, y, L, 31, -0.5f, 15);
        uint8_t *qh = y + 16, *ql = y + 48;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < QK_K; n += 64, ql += 32, m1 = (uint8_t)(m1 << 2), m2 = (uint8_t)(m2 << 2)) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

/* Q2_K: 16 sub-blocks of 16, 2-bit levels fitted by make_qkx2_quants on |x| weights with the
 * absolute-error criterion; 4-bit scales and mins relative to d and dmin. */
static void q_q2_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    uint8_t L[QK_K], Laux[16];
    float w[16], mins[16], scales[16];
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 84) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        uint8_t *sc = y, *q = y + 16;
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
            wr_h(y + 80, max_scale / 15.0f);
        } else {
            memset(sc, 0, 16);
            wr_h(y + 80, 0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            wr_h(y + 82, max_min / 15.0f);
        } else {
            wr_h(y + 82, 0.0f);
        }
        const float d_all = rd_h(y + 80), dmin_all = rd_h(y + 82);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * (sc[j] & 0x0F);
            if (!d) continue;
            const float dm = dmin_all * (sc[j] >> 4);
            for (int i = 0; i < 16; i++) {
                const int l = nearest_int((x[16 * j + i] + dm) / d);
                L[16 * j + i] = (uint8_t)MAXI(0, MINI(3, l));
            }
        }
        pack_2bit(q, L);
    }
}

/* ggml's make_q3_quants (rmse variant): symmetric levels -nmax..nmax-1 starting from
 * round(-nmax/max * x), then up to 5 passes of coordinate descent on the x^2-weighted fit
 * (a level changes only if it raises sum(w x l)^2 / sum(w l^2)). Levels returned + nmax. */
static float make_q3_quants(int n, int nmax, const float *restrict x, int8_t *restrict L)
{
    float amax;
    const float max = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = nearest_int(x[i] * sl2 / slx);
                nl = MAXI(-nmax, MINI(nmax - 1, nl));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (offset 32) relative to d; levels -4..3
 * stored as 2 low bits in q and the third bit in hmask (set = non-negative level). */
static void q_q3_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    int8_t L[QK_K];
    float scales[16];
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 110) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max_scale = scales[j]; }
        }
        uint8_t *hmask = y, *q = y + 32, *sc = y + 96;
        memset(sc, 0, 12);
        if (max_scale) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = nearest_int(iscale * scales[j]);
                l = MAXI(-32, MINI(31, l)) + 32;
                if (j < 8) sc[j] = (uint8_t)(l & 0x0F);
                else sc[j - 8] |= (uint8_t)((l & 0x0F) << 4);
                sc[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            wr_h(y + 108, 1 / iscale);
        } else {
            wr_h(y + 108, 0.0f);
        }
        int8_t s[16];
        q3k_scales(sc, s);
        const float d_all = rd_h(y + 108);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * s[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                l = MAXI(-4, MINI(3, l));
                L[16 * j + i] = (int8_t)(l + 4);
            }
        }
        memset(hmask, 0, 32);
        for (int j = 0; j < QK_K; j++)
            if (L[j] > 3) {
                hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] -= 4;
            }
        pack_2bit(q, (const uint8_t *)L);
    }
}

/* ggml's make_qx_quants with rmse_type 1 (weights x^2): symmetric fit x ≈ scale*(L - nmax),
 * searching 19 inverse scales around -nmax/max. */
static float make_qx_quants(int n, int nmax, const float *restrict x, int8_t *restrict L)
{
    float amax;
    const float max = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void q_q6_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            const float s = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = s;
            if (fabsf(s) > max_abs_scale) { max_abs_scale = fabsf(s); max_scale = s; }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, 210);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        wr_h(y + 208, 1 / iscale);
        int8_t *sc = (int8_t *)(y + 192);
        for (int ib = 0; ib < QK_K / 16; ib++) sc[ib] = (int8_t)MINI(127, nearest_int(iscale * scales[ib]));
        const float dd = rd_h(y + 208);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = dd * sc[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                l = MAXI(-32, MINI(31, l));
                L[16 * j + i] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0x0F, q2 = L[j + l + 32] & 0x0F;
                const uint8_t q3 = L[j + l + 64] & 0x0F, q4 = L[j + l + 96] & 0x0F;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

/* Q8_K: d = max/-127 of the signed extreme, q = round(x/d) clamped to 127, bsums = sums of 16. */
static void q_q8_k(const float *restrict x, uint8_t *restrict y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK_K, y += 292) {
        float amax;
        const float max = signed_absmax(x, QK_K, &amax);
        if (!amax) { memset(y, 0, 292); continue; }
        const float iscale = -127.0f / max;
        int8_t *q = (int8_t *)(y + 4);
        for (int j = 0; j < QK_K; j++) q[j] = (int8_t)MINI(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += q[16 * j + i];
            const int16_t s16 = (int16_t)sum;
            memcpy(y + 260 + 2 * j, &s16, 2);
        }
        const float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

/* ---------------------------------------------------------------- NF4 quantisation */

/* Decision thresholds: the midpoints between neighbouring code values, in float. */
static const float nf4_mid[15] = {
    -0.848096371f, -0.610632896f, -0.45999527f, -0.33967942f, -0.234607399f, -0.137911737f,
    -0.0455250181f, 0.0397901498f, 0.120255247f, 0.203521252f, 0.292013764f, 0.389312536f,
    0.501663446f, 0.64278692f, 0.861478448f,
};

/* The code whose value is nearest v (a value already divided by the block scale): the number
 * of midpoints <= v, found by a 4-step binary search (a tie goes up; NaN gives code 0). */
static inline int nf4_nearest(float v)
{
    int k = v >= nf4_mid[7] ? 8 : 0;
    k += v >= nf4_mid[k + 3] ? 4 : 0;
    k += v >= nf4_mid[k + 1] ? 2 : 0;
    k += v >= nf4_mid[k] ? 1 : 0;
    return k;
}

/* For n elements (n a multiple of 8) represented as s·q with q = NF4[nearest(x/s)]:
 * the squared error Σ(x - s·q)², and Σx·q, Σq² (for the least-squares scale). s = 0 means
 * every code is the zero code. AVX2: eight elements at a time, the code index as the count of
 * midpoints <= x/s (compare masks are -1), the code value picked from two 8-float registers. */
static float nf4_eval(const float *restrict x, int n, float s, float *sxq, float *sqq)
{
    if (s == 0.0f) {
        float e = 0.0f;
        for (int j = 0; j < n; j++) e += x[j] * x[j];
        *sxq = *sqq = 0.0f;
        return e;
    }
    const float is = 1.0f / s;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 tlo = _mm256_loadu_ps(nf4_code), thi = _mm256_loadu_ps(nf4_code + 8);
    const __m256 vs = _mm256_set1_ps(s), vis = _mm256_set1_ps(is);
    __m256 ae = _mm256_setzero_ps(), axq = _mm256_setzero_ps(), aqq = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        const __m256 xv = _mm256_loadu_ps(x + j), v = _mm256_mul_ps(xv, vis);
        __m256i k = _mm256_setzero_si256();
        for (int i = 0; i < 15; i++)
            k = _mm256_sub_epi32(k, _mm256_castps_si256(
                    _mm256_cmp_ps(v, _mm256_set1_ps(nf4_mid[i]), _CMP_GE_OQ)));
        const __m256 q = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, k), _mm256_permutevar8x32_ps(thi, k),
                                          _mm256_castsi256_ps(_mm256_slli_epi32(k, 28)));
        const __m256 d = _mm256_fnmadd_ps(vs, q, xv);
        ae = _mm256_fmadd_ps(d, d, ae);
        axq = _mm256_fmadd_ps(xv, q, axq);
        aqq = _mm256_fmadd_ps(q, q, aqq);
    }
    float t[3][8];
    _mm256_storeu_ps(t[0], ae);
    _mm256_storeu_ps(t[1], axq);
    _mm256_storeu_ps(t[2], aqq);
    float e = 0.0f, xq = 0.0f, qq = 0.0f;
    for (int l = 0; l < 8; l++) { e += t[0][l]; xq += t[1][l]; qq += t[2][l]; }
#else
    float e = 0.0f, xq = 0.0f, qq = 0.0f;
    for (int j = 0; j < n; j++) {
        const float q = nf4_code[nf4_nearest(x[j] * is)];
        const float d = x[j] - s * q;
        e += d * d;
        xq += x[j] * q;
        qq += q * q;
    }
#endif
    *sxq = xq;
    *sqq = qq;
    return e;
}

/* The scale as stored: f32 as is, or rounded to f16 (kept finite). */
static inline float nf4_store(float s, int f16)
{
    if (!f16) return s;
    if (s > 65504.0f) s = 65504.0f;
    return h2f(f2h(s));
}

float pl_nf4_fit(const float *x, int n, enum pl_nf4_scale how, int f16)
{
    float a = 0.0f;
    for (int j = 0; j < n; j++) a = fmaxf(a, fabsf(x[j]));
    float best = nf4_store(a, f16);
    if (how == PL_NF4_SCALE_ABSMAX || a == 0.0f || !isfinite(a) || n % 8) return best;
    float bxq, bqq, xq, qq;
    float be = nf4_eval(x, n, best, &bxq, &bqq);
    /* a·f for f = 0.98, 0.96 .. 0.86 (clipping the largest elements to ±1 buys finer steps
     * for the rest), and a / 0.7229568, a / 0.6961928 (the largest element on the second
     * code from either end: a block already on an NF4 grid is reproduced exactly) */
    float cand[9];
    int nc = 0;
    for (int i = 1; i <= 7; i++) cand[nc++] = a * (1.0f - 0.02f * (float)i);
    cand[nc++] = a / 0.7229568362236023f;
    cand[nc++] = a / 0.6961928009986877f;
    for (int i = 0; i < nc; i++) {
        const float s = nf4_store(cand[i], f16);
        const float e = nf4_eval(x, n, s, &xq, &qq);
        if (e < be) { be = e; best = s; bxq = xq; bqq = qq; }
    }
    /* two least-squares refinements: with the codes fixed, s = Σ x·q / Σ q² */
    for (int it = 0; it < 2; it++) {
        if (!(bqq > 0.0f)) break;
        float s = bxq / bqq;
        s = fminf(fmaxf(s, 0.85f * a), a / 0.6961928009986877f);
        s = nf4_store(s, f16);
        const float e = nf4_eval(x, n, s, &xq, &qq);
        if (!(e < be)) break;
        be = e; best = s; bxq = xq; bqq = qq;
    }
    return best;
}

/* Codes of n elements for the stored scale s, packed two per byte (low nibble = even). */
static void nf4_codes(const float *restrict x, int n, float s, uint8_t *restrict q)
{
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int j = 0; j < n; j += 2) {
        const int c0 = s != 0.0f ? nf4_nearest(x[j] * is) : 7;
        const int c1 = s != 0.0f ? nf4_nearest(x[j + 1] * is) : 7;
        q[j / 2] = (uint8_t)(c0 | (c1 << 4));
    }
}

static void q_nf4(const float *restrict x, uint8_t *restrict y, int64_t nb, enum pl_nf4_scale how)
{
    for (int64_t b = 0; b < nb; b++, x += 64, y += 36) {
        const float s = pl_nf4_fit(x, 64, how, 0);
        memcpy(y, &s, 4);
        nf4_codes(x, 64, s, y + 4);
    }
}

static void q_nf4_32(const float *restrict x, uint8_t *restrict y, int64_t nb, enum pl_nf4_scale how)
{
    for (int64_t b = 0; b < nb; b++, x += 32, y += 18) {
        const float s = pl_nf4_fit(x, 32, how, 1);
        wr_h(y, s);
        nf4_codes(x, 32, s, y + 2);
    }
}

void pl_nf4dq_pack_scales(const float *scales, int64_t nb, void *unit)
{
    uint8_t *u = unit, *tab = u + (size_t)nb * 33;
    for (int64_t g0 = 0; g0 < nb; g0 += PL_NF4_DQ_GROUP) {
        const int64_t ng = nb - g0 < PL_NF4_DQ_GROUP ? nb - g0 : PL_NF4_DQ_GROUP;
        double sum = 0.0;
        for (int64_t i = 0; i < ng; i++) sum += scales[g0 + i];
        const float mu = (float)(sum / (double)ng);
        float dev = 0.0f;
        for (int64_t i = 0; i < ng; i++) dev = fmaxf(dev, fabsf(scales[g0 + i] - mu));
        const float g = dev / 127.0f, ig = g > 0.0f ? 1.0f / g : 0.0f;
        for (int64_t i = 0; i < ng; i++) {
            int c = nearest_int((scales[g0 + i] - mu) * ig);
            c = MAXI(-127, MINI(127, c));
            u[(size_t)(g0 + i) * 33] = (uint8_t)(int8_t)c;
        }
        const float gm[2] = { g, mu };
        memcpy(tab + (size_t)(g0 / PL_NF4_DQ_GROUP) * 8, gm, 8);
    }
}

void pl_nf4dq_codes(const float *x, int64_t n, void *unit, int64_t nb_total, int64_t b0)
{
    uint8_t *u = unit;
    const uint8_t *tab = u + (size_t)nb_total * 33;
    for (int64_t b = 0; b < n / 64; b++) {
        uint8_t *blk = u + (size_t)(b0 + b) * 33;
        float gm[2];
        memcpy(gm, tab + (size_t)((b0 + b) / PL_NF4_DQ_GROUP) * 8, 8);
        const float s = gm[1] + gm[0] * (float)(int8_t)blk[0];   /* as dq_nf4_dq reads it */
        nf4_codes(x + 64 * b, 64, s, blk + 1);
    }
}

/* A whole NF4_DQ unit of nb blocks from n = 64·nb values: scales, their double quantisation,
 * then the codes against the scales as stored. */
static enum pl_status q_nf4_dq(const float *restrict x, uint8_t *restrict y, int64_t nb, enum pl_nf4_scale how)
{
    float *sc = pl_alloc((size_t)(nb ? nb : 1) * sizeof(float), PL_MEM_WORKSPACE);
    if (!sc) return pl_fail(PL_ERR_NOMEM, "quantise: no memory for %lld nf4_dq scales", (long long)nb);
    for (int64_t b = 0; b < nb; b++) sc[b] = pl_nf4_fit(x + 64 * b, 64, how, 0);
    pl_nf4dq_pack_scales(sc, nb, y);
    pl_nf4dq_codes(x, 64 * nb, y, nb, 0);
    pl_free(sc);
    return PL_OK;
}

enum pl_status pl_quant_row_nf4(enum pl_dtype t, const float *src, void *dst, int64_t n,
                                enum pl_nf4_scale how)
{
    enum pl_status st = check_n(t, n, "quantise");
    if (st) return st;
    if (how != PL_NF4_SCALE_MSE && how != PL_NF4_SCALE_ABSMAX)
        return pl_fail(PL_ERR_ARG, "quantise: unknown nf4 scale choice %d", (int)how);
    const int64_t nb = n / dtype_table[t].block;
    switch (t) {
    case PL_NF4: q_nf4(src, dst, nb, how); return PL_OK;
    case PL_NF4_32: q_nf4_32(src, dst, nb, how); return PL_OK;
    case PL_NF4_DQ: return q_nf4_dq(src, dst, nb, how);
    default:
        return pl_fail(PL_ERR_ARG, "quantise: %s is not an nf4 format", dtype_table[t].name);
    }
}

enum pl_status pl_quant_row(enum pl_dtype t, const float *src, void *dst, int64_t n)
{
    enum pl_status st = check_n(t, n, "quantise");
    if (st) return st;
    uint8_t *y = dst;
    const int64_t nb = n / dtype_table[t].block;
    switch (t) {
    case PL_F32: if (n) memmove(dst, src, (size_t)n * 4); break;
    case PL_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = f2h(src[i]); memcpy(y + 2 * i, &h, 2); }
        break;
    case PL_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = f2bf(src[i]); memcpy(y + 2 * i, &h, 2); }
        break;
    case PL_I32:
        for (int64_t i = 0; i < n; i++) {
            const float v = src[i];
            int32_t q = v != v ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483648.0f ? INT32_MIN
                      : (int32_t)lrintf(v);
            memcpy(y + 4 * i, &q, 4);
        }
        break;
    case PL_I8:
        for (int64_t i = 0; i < n; i++) {
            const float v = src[i];
            y[i] = (uint8_t)(int8_t)(v != v ? 0 : v >= 127.0f ? 127 : v <= -128.0f ? -128 : (int)lrintf(v));
        }
        break;
    case PL_Q8_0: q_q8_0(src, y, nb); break;
    case PL_Q4_0: q_q4_0(src, y, nb); break;
    case PL_Q4_1: q_q4_1(src, y, nb); break;
    case PL_Q5_0: q_q5_0(src, y, nb); break;
    case PL_Q5_1: q_q5_1(src, y, nb); break;
    case PL_Q2_K: q_q2_k(src, y, nb); break;
    case PL_Q3_K: q_q3_k(src, y, nb); break;
    case PL_Q4_K: q_q4_k(src, y, nb); break;
    case PL_Q5_K: q_q5_k(src, y, nb); break;
    case PL_Q6_K: q_q6_k(src, y, nb); break;
    case PL_Q8_K: q_q8_k(src, y, nb); break;
    case PL_NF4: case PL_NF4_32: case PL_NF4_DQ:
        return pl_quant_row_nf4(t, src, dst, n, PL_NF4_SCALE_MSE);
    default: return pl_fail(PL_ERR_UNSUPPORTED, "quantise: dtype %d", (int)t);
    }
    return PL_OK;
}
