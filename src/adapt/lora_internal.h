/* lora_internal.h — shared between src/adapt/lora.c (adapter table, hooks, files) and the method
 * math in src/adapt/dora.c and src/adapt/ia3.c only. Owner: train. */
#ifndef PEFTLUA_LORA_INTERNAL_H
#define PEFTLUA_LORA_INTERNAL_H

#include "peftlua/lora.h"

/* DoRA (src/adapt/dora.c). w: the frozen base weight, b: its bias or NULL. */
enum pl_status pl_dora_init(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w);
enum pl_status pl_dora_fwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                           const struct pl_tensor *b, float *y, const float *x, int64_t n);
enum pl_status pl_dora_bwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                           float *dx, const float *dy, const float *x, int64_t n);
/* W (f32 [out, in], the base) becomes m ⊙ (W + s·BA) / ‖W + s·BA‖_row. */
void pl_dora_merge_into(const struct pl_lora *a, const struct pl_lora_adapter *d, float *W);

/* IA3 (src/adapt/ia3.c). */
const float *pl_ia3_in(struct pl_lora *a, struct pl_lora_adapter *d, const float *x, int64_t n);
enum pl_status pl_ia3_out_fwd(struct pl_lora *a, struct pl_lora_adapter *d, float *y, int64_t n);
enum pl_status pl_ia3_bwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                          float *dx, const float *dy, const float *x, int64_t n);
/* W (f32 [out, in]) and bias (f32 [out] or NULL): rows (outputs) or columns (feedforward
 * inputs) scaled by l; the bias only for output scaling (PEFT's IA3 merge). */
void pl_ia3_merge_into(const struct pl_lora_adapter *d, float *W, float *bias);

#endif
