/* memmodel.c — predicted peak memory of a training run, by allocator category, and the
 * auto-sizer on top of it.
 *
 * Owner: memory. The activations of a step come from the functions that size the real
 * buffers (pl_trainer_plan_bytes → pl_llama_ctx_bytes / pl_ckpt_plan_bytes, over the block's
 * plan pl_llama_plan_of), and the optimizer state from the optimizer table (n_state), so they
 * cannot drift. The remaining formulas mirror an allocation the engine makes; the file and
 * function are named next to each so that a change there is easy to carry here:
 *   src/train/train_params.c  pl_train_setup_full (f32 master copy, gradients)
 *   src/adapt/lora.c     pl_lora_new, pl_lora_plan (gradients, saved x·Aᵀ, dropout workspace)
 *   src/tensor/kernels_linear.c  dequantisation panels (forward: threads × P × K, backward:
 *                  threads × P × KC, shapes as of its PANEL_MAX/MB/CHUNK_COLS/PANEL_BWD),
 *                  LoRA backward g [M, r]
 *   src/tensor/kernels_attn.c    attention backward blocks (threads × 64 × T); attn16.c in compute bf16 (kept)
 *   src/tensor/kernels.c  RoPE (cos, sin) table (T × head_dim)
 *   src/adapt/qlora.c    quantisation on load (projections re-stored, others cloned off a shared
 *                  llama2.c storage)
 * The test tests/c/test_memmodel.c checks these against pl_mem_peak() per category.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "peftlua/ckpt.h"
#include "peftlua/gemm16.h"
#include "peftlua/lora.h"
#include "peftlua/memmodel.h"
#include "peftlua/train.h"
#include "train_internal.h"

#define MM_PANEL_MAX 256              /* kernels_linear.c PANEL_MAX */
#define MM_PANEL_BYTES_MAX (4 << 20)  /* kernels_linear.c PANEL_BYTES_MAX */
#define MM_MB 512                     /* kernels_linear.c MB */
#define MM_CHUNK_COLS 256             /* kernels_linear.c CHUNK_COLS */
#define MM_PANEL_BWD 512              /* kernels_linear.c PANEL_BWD */
#define MM_ATT_QB 64                  /* kernels_attn.c QB */

struct pl_memmodel_cfg pl_memmodel_defaults(void)
{
    struct pl_memmodel_cfg c;
    memset(&c, 0, sizeof c);
    c.method = PL_MEMM_LORA;
    c.base_dtype = PL_F32;
    c.quant_dtype = PL_NF4;
    c.embd_dtype = PL_F32;
    c.loaded_heap_bytes = -1;
    c.loaded_mapped_bytes = -1;
    c.batch = 4;
    c.seq_len = 256;
    c.grad_accum = 1;
    c.lora_r = 8;
    c.lora_targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V);
    return c;
}

struct pl_model_config pl_memmodel_llama2_7b(void)
{
    struct pl_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = PL_ARCH_LLAMA;
    c.dim = 4096;
    c.hidden_dim = 11008;
    c.n_layers = 32;
    c.n_heads = 32;
    c.n_kv_heads = 32;
    c.head_dim = 128;
    c.n_rot = 128;
    c.vocab_size = 32000;
    c.seq_len = 4096;
    c.rope_base = 10000.0f;
    c.norm_eps = 1e-5f;
    c.rope_layout = PL_ROPE_LAYOUT_HALF;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

int pl_memm_method_from_name(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "lora")) return PL_MEMM_LORA;
    if (!strcmp(s, "qlora")) return PL_MEMM_QLORA;
    if (!strcmp(s, "full")) return PL_MEMM_FULL;
    return -1;
}

/* the trainer's names (pl_precision_from_name, the option table), plus the dtype spellings */
int pl_memm_precision_from_name(const char *s)
{
    if (s && !strcmp(s, "f32")) s = "fp32";
    if (s && !strcmp(s, "f16")) s = "fp16";
    return pl_precision_from_name(s);
}

int64_t pl_memmodel_weight_bytes(enum pl_dtype t, int64_t out, int64_t in)
{
    if (t == PL_NF4_DQ)   /* one unit per tensor: blocks, then its group table */
        return (int64_t)pl_dtype_row_bytes(t, out * in);
    return out * (int64_t)pl_dtype_row_bytes(t, in);
}

void pl_memmodel_cfg_from_model(struct pl_memmodel_cfg *c, const struct pl_model *m)
{
    c->shape = m->cfg;
    const struct pl_tensor *q = m->layers[0].w[PL_PROJ_Q];
    c->base_dtype = q->dtype;
    c->embd_dtype = m->tok_embd->dtype;
    int64_t heap = 0, mapped = 0;
    const struct pl_storage *seen_heap = NULL;
    int shared = 1, n_heap = 0;
    int np = pl_model_n_params(m);
    /* Storages are either one per tensor or one for the whole model (llama2.c); count each
     * storage once (a tied output shares tok_embd's slot and is not enumerated twice). */
    const struct pl_storage *prev[4] = {0};
    for (int i = 0; i < np; i++) {
        struct pl_tensor *t = *pl_model_param((struct pl_model *)m, i, NULL, 0);
        const struct pl_storage *s = t->storage;
        int dup = 0;
        for (int k = 0; k < 4; k++) if (prev[k] == s) dup = 1;
        if (s->release) {
            mapped += (int64_t)pl_tensor_nbytes(t);
        } else if (!dup) {
            heap += (int64_t)s->nbytes;
            n_heap++;
            if (seen_heap && seen_heap != s) shared = 0;
            seen_heap = s;
        }
        memmove(prev + 1, prev, sizeof prev - sizeof prev[0]);
        prev[0] = s;
    }
    c->base_mapped = mapped > 0 && heap < mapped;
    c->loaded_heap_bytes = heap;
    c->loaded_mapped_bytes = mapped;
    c->loaded_heap_shared = n_heap > 0 && shared && n_heap == 1;
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* kernels_linear.c pl_linear_fwd workspace for W [N, K] of dtype t over M rows: nth panels of
 * P rows (P <= 256 and <= 4 MiB of f32; narrow panels for M <= 64), threads capped by the
 * (panel x 512-row block) pieces. */
static int64_t ws_linear_fwd(enum pl_dtype t, int64_t M, int64_t K, int64_t N, int nth)
{
    if (t == PL_F32) return 0;
    int64_t P = MM_PANEL_BYTES_MAX / 4 / (K > 0 ? K : 1);
    P = imin(P, MM_PANEL_MAX);
    if (M <= 64) P = imin(P, (N + 15) / 16);
    P = P < 16 ? 16 : (P / 16) * 16;
    P = imin(P, N);
    int64_t nitem = ((N + P - 1) / P) * ((M + MM_MB - 1) / MM_MB);
    return imin(nth, nitem) * P * K * 4;
}

/* kernels_linear.c pl_linear_bwd input-gradient workspace: nth panels of min(512, N) rows x
 * KC columns (256 rounded up to whole blocks). */
static int64_t ws_linear_bwd(enum pl_dtype t, int64_t M, int64_t K, int64_t N, int nth)
{
    if (t == PL_F32) return 0;
    int64_t blk = pl_dtype_info(t)->block;
    int64_t KC = imin(((MM_CHUNK_COLS + blk - 1) / blk) * blk, K);
    int64_t nitem = ((K + KC - 1) / KC) * ((M + MM_MB - 1) / MM_MB);
    return imin(nth, nitem) * imin(MM_PANEL_BWD, N) * KC * 4;
}

/* A projection's [out x in] shape: the adapters' own (lora.h), not a copy. */
static void proj_shape(const struct pl_model_config *s, int p, int64_t *in, int64_t *out)
{
    pl_lora_proj_shape(s, (enum pl_proj)p, in, out);
}

enum pl_status pl_memmodel_estimate(const struct pl_memmodel_cfg *c, struct pl_mem_estimate *e)
{
    memset(e, 0, sizeof *e);
    const struct pl_model_config *s = &c->shape;
    if (s->dim <= 0 || s->hidden_dim <= 0 || s->n_layers <= 0 || s->n_heads <= 0 ||
        s->n_kv_heads <= 0 || s->head_dim <= 0 || s->vocab_size <= 0)
        return pl_fail(PL_ERR_ARG, "memory model: the model shape needs positive dim, hidden_dim, "
                       "n_layers, n_heads, n_kv_heads, head_dim and vocab_size");
    if (c->batch < 1 || c->seq_len < 1 || c->grad_accum < 1)
        return pl_fail(PL_ERR_ARG, "memory model: batch %d, seq_len %d and grad_accum %d must be >= 1",
                       c->batch, c->seq_len, c->grad_accum);
    if (c->ckpt_every < 0)
        return pl_fail(PL_ERR_ARG, "memory model: checkpoint every %d layers", c->ckpt_every);
    if (c->method != PL_MEMM_FULL && (c->lora_r < 1 || !(c->lora_targets & 0x7fu)))
        return pl_fail(PL_ERR_ARG, "memory model: LoRA needs a rank >= 1 and at least one target");
    if (c->method == PL_MEMM_QLORA && c->quant_dtype != PL_NF4 && c->quant_dtype != PL_NF4_32 &&
        c->quant_dtype != PL_NF4_DQ && c->quant_dtype != PL_Q8_0 && c->quant_dtype != c->base_dtype)
        return pl_fail(PL_ERR_ARG, "memory model: qlora re-stores the base as nf4, nf4_32, nf4_dq or q8_0, not %s",
                       pl_dtype_info(c->quant_dtype)->name);
    int nth = c->threads;
#ifdef _OPENMP
    if (nth <= 0) nth = omp_get_max_threads();
#endif
    if (nth <= 0) nth = 1;

    const int64_t L = s->n_layers, D = s->dim, F = s->hidden_dim, V = s->vocab_size;
    const int64_t Hd = (int64_t)s->n_heads * s->head_dim;
    const int64_t KV = (int64_t)s->n_kv_heads * s->head_dim;
    const int64_t B = c->batch, T = c->seq_len, BT = B * T;
    const int full = c->method == PL_MEMM_FULL;

    /* ---- weights as held for the step ---- */
    enum pl_dtype pd = c->base_dtype;   /* projections */
    enum pl_dtype ed = c->embd_dtype;
    int convert = 0;
    if (c->method == PL_MEMM_QLORA && c->quant_dtype != c->base_dtype) {
        pd = c->quant_dtype;
        convert = 1;
    }
    if (!full && c->precision != PL_MEMM_FP32 && pd == PL_F32) {
        pd = c->precision == PL_MEMM_BF16 ? PL_BF16 : PL_F16;
        convert = 1;
    }
    const int64_t pblk = pl_dtype_info(pd)->block;
    int64_t conv_bytes = 0, kept_bytes = 0, conv_largest = 0, other_f32, n_scalars = 0, n_tensors;
    int64_t loaded_proj_bytes = 0;
    for (int p = 0; p < PL_PROJ_COUNT; p++) {
        int64_t in, out;
        proj_shape(s, p, &in, &out);
        int64_t lb = pl_memmodel_weight_bytes(c->base_dtype, out, in);
        loaded_proj_bytes += L * lb;
        if (convert && in % pblk == 0) {
            int64_t cb = pl_memmodel_weight_bytes(pd, out, in);
            conv_bytes += L * cb;
            conv_largest = imax(conv_largest, cb);
        } else {
            kept_bytes += L * lb;   /* src/adapt/qlora.c keeps rows that are not whole blocks */
        }
        n_scalars += L * in * out;
    }
    n_tensors = L * PL_PROJ_COUNT + 2 * L + 2 + (s->tied_output ? 0 : 1);
    other_f32 = (2 * L + 1) * D;                          /* norms */
    if (s->qkv_bias) { other_f32 += L * (Hd + 2 * KV); n_tensors += 3 * L; }
    n_scalars += other_f32 + V * D * (s->tied_output ? 1 : 2);
    int64_t embd_bytes = (s->tied_output ? 1 : 2) * V * (int64_t)pl_dtype_row_bytes(ed, D);
    /* QLoRA with embed_set: the embedding and head re-stored after the projections */
    const int conv_e = c->method == PL_MEMM_QLORA && c->embed_set && c->embed_dtype != ed;
    if (conv_e) {
        if (c->embed_dtype != PL_Q8_0 && c->embed_dtype != PL_BF16 && c->embed_dtype != PL_F16 &&
            c->embed_dtype != PL_F32)
            return pl_fail(PL_ERR_ARG, "memory model: qlora re-stores the embedding and head as q8_0, bf16, f16 or f32, not %s",
                           pl_dtype_info(c->embed_dtype)->name);
        if (D % pl_dtype_info(c->embed_dtype)->block)
            return pl_fail(PL_ERR_ARG, "memory model: dim %lld is not a whole number of %s blocks",
                           (long long)D, pl_dtype_info(c->embed_dtype)->name);
    }
    const int64_t e1_new = conv_e ? V * (int64_t)pl_dtype_row_bytes(c->embed_dtype, D) : 0;
    int64_t loaded_all = loaded_proj_bytes + embd_bytes + other_f32 * 4;
    int64_t loaded_heap = c->loaded_heap_bytes >= 0 ? c->loaded_heap_bytes
                                                    : (c->base_mapped ? 0 : loaded_all);
    int64_t mapped = c->loaded_mapped_bytes >= 0 ? c->loaded_mapped_bytes
                                                 : (c->base_mapped ? loaded_all : 0);

    int64_t w_setup = loaded_heap, w_step = loaded_heap;
    int64_t ws_setup = 0;
    if (convert || conv_e) {
        /* src/adapt/qlora.c: projections re-stored in pd (heap); on a shared heap storage
         * (llama2.c) everything else is copied to its own storage, then the storage goes. */
        int shared = c->loaded_heap_shared && loaded_heap > 0;
        int64_t rest_heap = shared ? embd_bytes + other_f32 * 4
                                   : imax(0, loaded_heap - (c->base_mapped ? 0 : loaded_proj_bytes));
        int64_t kept_heap = (shared || !c->base_mapped) ? kept_bytes : 0;
        w_step = conv_bytes + kept_heap + rest_heap;
        w_setup = shared ? loaded_heap + conv_bytes + kept_bytes + rest_heap
                         : imax(loaded_heap, w_step) + conv_largest;
        /* two rows per thread (the source row and the re-stored one read back for the
         * error sums); nf4_dq also holds every block scale of the largest projection */
        ws_setup = nth * imax(imax(D, F), Hd) * 2 * 4;
        if (conv_e) {
            /* the embedding, then the head, each beside the weights held so far; a shared
             * storage stays until the end (rest_heap then holds the new tensors) */
            const int64_t ne = s->tied_output ? 1 : 2, e1_old = embd_bytes / ne;
            const int64_t e1_heap = (shared || !c->base_mapped) ? e1_old : 0;
            if (shared) {
                w_step += ne * (e1_new - e1_old);
                w_setup += ne * (e1_new - e1_old);
            } else {
                int64_t held = w_step;   /* projections done, embeddings as loaded */
                w_setup = imax(w_setup, held + e1_new);
                if (ne == 2) w_setup = imax(w_setup, held - e1_heap + e1_new + e1_new);
                w_step = held + ne * (e1_new - e1_heap);
            }
        }
        if (convert && pd == PL_NF4_DQ) {
            int64_t nbmax = 0;
            for (int p = 0; p < PL_PROJ_COUNT; p++) {
                int64_t in, out;
                proj_shape(s, p, &in, &out);
                if (in % 64 == 0) nbmax = imax(nbmax, in * out / 64);
            }
            ws_setup += nbmax * 4;
        }
    }

    /* ---- trained parameters ---- */
    int64_t adapters = 0, grads = 0, optim = (int64_t)sizeof(struct pl_trainer), n_ad = 0;
    int64_t trained = 0, lora_wide_in = 0, dora_w0 = 0;
    int64_t act = 0, ws_persist = 0;
    if (full) {
        trained = n_scalars;
        int64_t np = n_tensors;
        w_setup = loaded_heap + trained * 4;     /* setup_full: master copy next to the loaded one */
        w_step = trained * 4;
        grads = trained * 4 + np * (int64_t)sizeof(struct pl_trainer_param);
    } else {
        int64_t nl = c->lora_n_layers > 0 && c->lora_n_layers < L ? c->lora_n_layers : L;
        const int kind = c->adapter_kind;
        int64_t ys_cols = 0, ad_wide = 0, wnorm = 0, ff_in = 0;
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            if (!(c->lora_targets & (1u << p))) continue;
            int64_t in, out;
            proj_shape(s, p, &in, &out);
            int ff = kind == PL_ADAPTER_IA3 && (c->ia3_ff_targets & (1u << p));
            if (kind == PL_ADAPTER_IA3) trained += nl * (ff ? in : out);   /* ia3_l */
            else trained += nl * (c->lora_r * (in + out) + (kind == PL_ADAPTER_DORA ? out : 0));
            if (kind == PL_ADAPTER_DORA) {
                wnorm += nl * out * 4;                         /* cached ‖W0 + s·BA‖ */
                dora_w0 = imax(dora_w0, in * out * 4);        /* W0 read as f32 for the norms */
            }
            if (kind != PL_ADAPTER_LORA && !ff) ys_cols += nl * out;
            if (ff) ff_in = imax(ff_in, in);
            n_ad += nl;
            lora_wide_in = imax(lora_wide_in, in);
            ad_wide = imax(ad_wide, imax(in, out));
        }
        adapters = (int64_t)sizeof(struct pl_lora) + L * PL_PROJ_COUNT * 4 +
                   L * PL_PROJ_COUNT * (int64_t)sizeof(struct pl_lora_adapter) + trained * 4 + wnorm;
        grads = trained * 4;
        if (kind != PL_ADAPTER_IA3) act += BT * c->lora_r * n_ad * 4;   /* pl_lora_plan xa_mem */
        act += BT * ys_cols * 4;                              /* DoRA / IA3 saved outputs */
        if (kind != PL_ADAPTER_LORA) ws_persist += BT * ad_wide * 4;   /* dy_work */
        if (ff_in) ws_persist += BT * ff_in * 4;              /* IA3 scaled input (xs) */
        if (c->lora_dropout > 0) ws_persist += BT * lora_wide_in * 2 * 4;
    }
    {   /* the optimizer table's state vectors (pl_train_ensure_optim) */
        const struct pl_optimizer *o = pl_optimizer_get(c->optim_sgd ? PL_OPTIM_SGD : c->optim);
        optim += (o ? o->n_state : 2) * trained * 4;
    }

    /* ---- activations: the trainer's per-step plan, from the functions that size it
     * (pl_trainer_plan_bytes: pl_llama_ctx_new's saving context + logits + the backward
     * buffers, or src/train/ckpt.c's plan when checkpointing) ---- */
    const enum pl_precision prec = c->precision == PL_MEMM_BF16 ? PL_PREC_BF16
                                 : c->precision == PL_MEMM_FP16 ? PL_PREC_FP16 : PL_PREC_FP32;
    act += pl_trainer_plan_bytes(s, (int)B, (int)T, c->ckpt_every, prec);

    /* ---- the largest one-kernel workspace in a step ----
     * compute bf16 (where the CPU runs it): every product of >= 16 rows is a pl_gemm16 call;
     * the kernel keeps its largest workspace up to PL_GEMM16_WS_KEEP for the next call (held
     * while the trainer lives: persistent), a larger one is allocated per call (transient). */
    const int b16 = c->compute == 1 && pl_gemm16_available() && BT >= PL_GEMM16_MIN_ROWS;
    int64_t tw = 0, g16 = 0;
    enum pl_dtype od = full ? PL_F32 : conv_e ? c->embed_dtype : ed;
    for (int p = 0; p <= PL_PROJ_COUNT; p++) {   /* the projections, then the head */
        int64_t in = D, out = V;
        enum pl_dtype kd = od;
        if (p < PL_PROJ_COUNT) {
            proj_shape(s, p, &in, &out);
            kd = full ? PL_F32 : (convert && in % pblk == 0) ? pd : c->base_dtype;
        }
        if (!b16) {
            tw = imax(tw, ws_linear_fwd(kd, BT, in, out, nth));
            tw = imax(tw, ws_linear_bwd(kd, BT, in, out, nth));
            continue;
        }
        int64_t w[3] = { pl_gemm16_ws_bytes(kd, 1, BT, in, out, nth),           /* y = x·Wᵀ    */
                         pl_gemm16_ws_bytes(kd, 0, BT, out, in, nth),           /* dx += dy·W  */
                         full ? pl_gemm16_ws_bytes(PL_F32, 0, out, BT, in, nth) : 0 };   /* dW */
        for (int i = 0; i < 3; i++) {
            if (w[i] <= PL_GEMM16_WS_KEEP) g16 = imax(g16, w[i]);
            else tw = imax(tw, w[i]);
        }
    }
    ws_persist += g16;
    /* attention backward: compute bf16 keeps attn16.c's workspace (the backward's, the larger)
     * for the next call like gemm16's; f32 allocates its row blocks per call */
    const int64_t a16 = c->compute == 1 ? pl_attn16_ws_bytes(1, B, T, 0, s->n_kv_heads, s->head_dim, nth) : 0;
    if (a16 > 0 && a16 <= PL_GEMM16_WS_KEEP) ws_persist += a16;
    else tw = imax(tw, a16 > 0 ? a16 : imin(nth, B * s->n_kv_heads) * MM_ATT_QB * T * 4);
    ws_persist += T * (s->head_dim / 2) * 2 * 4;                       /* RoPE table, kept over a batch */
    if (!full) tw = imax(tw, BT * c->lora_r * 4);                      /* LoRA backward g */
    tw = imax(tw, dora_w0);                                            /* DoRA norms */

    e->peak[PL_MEM_WEIGHTS] = imax(w_setup, w_step);
    e->peak[PL_MEM_ADAPTERS] = adapters;
    e->peak[PL_MEM_GRADS] = grads;
    e->peak[PL_MEM_OPTIM] = optim;
    e->peak[PL_MEM_ACTIVATIONS] = act;
    e->peak[PL_MEM_WORKSPACE] = imax(ws_persist + tw, ws_setup);
    e->peak[PL_MEM_MAPPED] = mapped;
    /* setup: weights being converted (full: plus its gradients, made in the same function) */
    e->setup_total = w_setup + ws_setup + (full ? grads : 0);
    e->step_total = w_step + adapters + grads + optim + act + ws_persist + tw;
    e->peak_total = imax(e->setup_total, e->step_total);
    /* A mapped base re-stored on load is read once; its pages are file-backed and reclaimable,
     * so only a base used in place counts toward what stays resident. */
    e->resident = e->peak_total + (convert ? 0 : mapped);
    e->transient_workspace = tw;
    e->trained_params = trained;
    return PL_OK;
}

static const char *mib(int64_t b, char *buf, size_t n)
{
    if (b >= ((int64_t)1 << 30)) snprintf(buf, n, "%.2f GiB", (double)b / 1073741824.0);
    else if (b >= ((int64_t)1 << 20)) snprintf(buf, n, "%.1f MiB", (double)b / 1048576.0);
    else if (b >= 1024) snprintf(buf, n, "%.1f KiB", (double)b / 1024.0);
    else snprintf(buf, n, "%lld bytes", (long long)b);
    return buf;
}

enum pl_status pl_memmodel_autosize(struct pl_memmodel_cfg *c, int64_t budget, int want_batch,
                                    int want_seq, int fix_batch, int fix_seq, int min_seq,
                                    struct pl_mem_estimate *e)
{
    if (budget <= 0) return pl_fail(PL_ERR_ARG, "autosize: budget %lld bytes must be positive",
                                    (long long)budget);
    if (want_batch < 1 || want_seq < 1)
        return pl_fail(PL_ERR_ARG, "autosize: batch %d and sequence %d must be >= 1", want_batch,
                       want_seq);
    if (min_seq < 1) min_seq = want_seq < 64 ? want_seq : 64;
    if (min_seq > want_seq) min_seq = want_seq;
    enum pl_status st;
    struct pl_memmodel_cfg t = *c;
    /* Sequence first kept, batch halved (effective batch kept by accumulation); then the
     * sequence halved and the batch tried again from the top. */
    for (int seq = want_seq; seq >= min_seq; seq = fix_seq ? 0 : seq / 2) {
        for (int b = want_batch; b >= 1; b = fix_batch ? 0 : b / 2) {
            t.batch = b;
            t.seq_len = seq;
            t.grad_accum = (want_batch + b - 1) / b;
            if ((st = pl_memmodel_estimate(&t, e)) != PL_OK) return st;
            if (e->resident <= budget) {
                *c = t;
                return PL_OK;
            }
            if (fix_batch) break;
        }
        if (fix_seq || seq == min_seq) break;
        if (seq / 2 < min_seq) seq = min_seq * 2;   /* so the next is exactly min_seq */
    }
    /* Nothing fits: say what the smallest size needs and what would help. */
    t.batch = fix_batch ? want_batch : 1;
    t.seq_len = fix_seq ? want_seq : min_seq;
    t.grad_accum = (want_batch + t.batch - 1) / t.batch;
    struct pl_mem_estimate small;
    if ((st = pl_memmodel_estimate(&t, &small)) != PL_OK) return st;
    char need[32], have[32], hint[512];
    size_t h = 0;
    hint[0] = 0;
    if (t.method == PL_MEMM_FULL || t.method == PL_MEMM_LORA) {
        struct pl_memmodel_cfg q = t;
        q.method = PL_MEMM_QLORA;
        q.base_dtype = q.quant_dtype = PL_NF4;     /* an nf4 base as held, however it came */
        q.base_mapped = 0;
        q.loaded_heap_bytes = q.loaded_mapped_bytes = -1;
        q.loaded_heap_shared = 0;
        q.ckpt_every = q.ckpt_every ? q.ckpt_every : 1;
        struct pl_mem_estimate qe;
        if (pl_memmodel_estimate(&q, &qe) == PL_OK) {
            char b1[32];
            h += (size_t)snprintf(hint + h, sizeof hint - h, "; QLoRA (nf4) with checkpointing (method = \"qlora\", checkpointing = true) needs %s",
                                  mib(qe.resident, b1, sizeof b1));
        }
    }
    if (!t.ckpt_every && h < sizeof hint) {   /* LoRA, QLoRA and full are all checkpointed */
        struct pl_memmodel_cfg k = t;
        k.ckpt_every = 1;
        struct pl_mem_estimate ke;
        if (pl_memmodel_estimate(&k, &ke) == PL_OK) {
            char b1[32];
            h += (size_t)snprintf(hint + h, sizeof hint - h, "; gradient checkpointing (checkpointing = true) needs %s",
                                  mib(ke.resident, b1, sizeof b1));
        }
    }
    if (t.seq_len > 64 && h < sizeof hint) {
        struct pl_memmodel_cfg k = t;
        k.seq_len = t.seq_len / 4 > 0 ? t.seq_len / 4 : 1;
        struct pl_mem_estimate ke;
        if (pl_memmodel_estimate(&k, &ke) == PL_OK) {
            char b1[32];
            snprintf(hint + h, sizeof hint - h, "; sequences of %d tokens (max_seq_len = %d) need %s", k.seq_len, k.seq_len,
                     mib(ke.resident, b1, sizeof b1));
        }
    }
    *e = small;
    return pl_fail(PL_ERR_NOMEM, "memory: %s training at batch %d x %d tokens needs %s (%lld bytes) but the budget is %s%s",
                   t.method == PL_MEMM_FULL ? "full" : t.method == PL_MEMM_QLORA ? "QLoRA" : "LoRA",
                   t.batch, t.seq_len, mib(small.resident, need, sizeof need),
                   (long long)small.resident, mib(budget, have, sizeof have), hint);
}
