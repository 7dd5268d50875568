/* quant.h — scalar and block-quantised element formats: conversion to and from f32.
 *
 * Block layouts follow ggml/GGUF bit for bit (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q8_K) so a
 * GGUF file's tensor data is used in place. NF4 is peftlua's QLoRA format.
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
/* Quantise n f32 elements into type t at dst (reference rounding as ggml's quantize_row_*_ref). */
enum pl_status pl_quant_row(enum pl_dtype t, const float *src, void *dst, int64_t n);

#endif
