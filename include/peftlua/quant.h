/* quant.h — scalar and block-quantised element formats: conversion to and from f32.
 *
 * Block layouts follow ggml/GGUF bit for bit (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q8_K) so a
 * GGUF file's tensor data is used in place. NF4, NF4_32 and NF4_DQ are peftlua's QLoRA formats
 * (layouts in src/tensor/quant.c).
 * n is a count of elements and must be a multiple of the type's block size.
 */
#ifndef PEFTLUA_QUANT_H
#define PEFTLUA_QUANT_H

#include <stdint.h>
#include "peftlua/tensor.h"

float    pl_f16_to_f32(uint16_t h);
uint16_t pl_f32_to_f16(float f);          /* round to nearest even */
float    pl_bf16_to_f32(uint16_t h);
uint16_t pl_f32_to_bf16(float f);         /* round to nearest even */

/* Convert n elements of type t at src to f32. */
enum pl_status pl_dequant_row(enum pl_dtype t, const void *src, float *dst, int64_t n);
/* Quantise n f32 elements into type t at dst (reference rounding as ggml's quantize_row_*_ref;
 * NF4 types: the MSE scale rule below; NF4_DQ: the n elements are one whole unit). */
enum pl_status pl_quant_row(enum pl_dtype t, const float *src, void *dst, int64_t n);

/* Elements [start, start + n) of a tensor of `total` elements of type t whose data begins at
 * base (start, n: whole blocks; for row-blocked types this is base + row_bytes(start); for
 * NF4_DQ, whose scales sit in a table after all blocks, the table is found from total). */
enum pl_status pl_dequant_part(enum pl_dtype t, const void *base, int64_t total, int64_t start,
                               float *dst, int64_t n);

/* NF4 block scales. MSE (pl_quant_row's choice): among the block's absmax a, a·0.98 .. a·0.86
 * (steps of 0.02), a/0.723 and a/0.696, then two least-squares refinements (s = Σx·q/Σq² for
 * the codes q of the best so far, kept within [0.85a, a/0.696]), the stored scale giving the
 * least squared error of the block (n a multiple of 8; otherwise absmax).
 * ABSMAX: s = a (bitsandbytes). Dequantisation is the same either way. */
enum pl_nf4_scale { PL_NF4_SCALE_MSE = 0, PL_NF4_SCALE_ABSMAX = 1 };
/* The stored scale for n values (f16: rounded to half precision, as NF4_32 stores it). */
float pl_nf4_fit(const float *x, int n, enum pl_nf4_scale how, int f16);
/* pl_quant_row for PL_NF4 / PL_NF4_32 / PL_NF4_DQ with a chosen scale rule. */
enum pl_status pl_quant_row_nf4(enum pl_dtype t, const float *src, void *dst, int64_t n,
                                enum pl_nf4_scale how);
/* NF4_DQ made piecewise (a tensor converted row by row, never all in f32): the scales of all
 * nb blocks of the unit (pl_nf4_fit over each 64 values), then pl_nf4dq_pack_scales writes
 * each block's int8 scale code and the group table (per 256 blocks: f32 step g, f32 mean mu;
 * code c = round((s - mu) / g)), then pl_nf4dq_codes writes the codes of the blocks b0 ..
 * b0 + n/64 - 1 from their n values against the scales as stored (mu + g·c). */
void pl_nf4dq_pack_scales(const float *scales, int64_t nb, void *unit);
void pl_nf4dq_codes(const float *x, int64_t n, void *unit, int64_t nb_total, int64_t b0);

#endif
