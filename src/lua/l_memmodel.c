/* l_memmodel.c — peft.memmodel: the memory model (include/peftlua/memmodel.h) from Lua.
 *
 * Owner: memory. lua/peft/memory.lua re-exports these as peft.memory.estimate and
 * peft.memory.autosize. Both take one options table:
 *   model         a peft.Model (shape, dtypes and loaded bytes read from it), or
 *   preset        "llama2-7b", or the shape keys dim, hidden_dim, layers, heads, kv_heads,
 *                 head_dim (default dim/heads), vocab_size, tied_output
 *   method        "lora" | "qlora" | "full" (| "dora" | "ia3": lora with that adapter)  base   loaded projection dtype ("f32", "q4_1", ...)
 *   quant         "nf4" | "nf4_32" | "nf4_dq" | "q8_0" (QLoRA target)   embd   embedding/output dtype
 *   mapped        the base is used in place from a file mapping
 *   batch_size, seq_len, grad_accum, checkpointing (false | true | k layers),
 *   precision     "fp32" | "bf16" | "fp16"
 *   lora_rank, targets (list of PEFT names), lora_layers (count), lora_dropout,
 *   adapter       "lora" | "dora" | "ia3" (the adapter method, with method lora or qlora; IA3
 *                 defaults to targets k_proj v_proj down_proj), feedforward (IA3: the targets
 *                 whose input is scaled, default down_proj),
 *   optimizer     a name from the optimizer table (optim.h: "adamw" | "sgd" | "lion"),  threads
 *   compute       "auto" | "f32" | "bf16" (the trainer's compute option: bf16 counts its kernels' workspace)
 * autosize adds budget (bytes; default the hardware report's budget), effective_batch (the
 * batch to keep through accumulation, default batch_size or 8), max_seq_len / min_seq_len;
 * a batch_size or seq_len given is kept as is, one left nil is sized.
 * Results: a table of bytes per category (weights, adapters, gradients, optimizer,
 * activations, workspace, mapped) plus total, resident, setup, step, transient_workspace,
 * trained_params, and the batch_size / grad_accum / seq_len it is for.
 * quantize(model, dtype [, opts]) re-stores the model's projections (QLoRA base).
 */
#include <lua.h>
#include <lauxlib.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "peftlua/gemm16.h"
#include "peftlua/hw.h"
#include "peftlua/lora.h"
#include "peftlua/memmodel.h"
#include "peftlua/model.h"
#include "peftlua/optim.h"
#include "peftlua/qlora.h"
#include "pl_lua.h"


static const char *const opt_keys[] = {
    "model", "preset", "dim", "hidden_dim", "layers", "heads", "kv_heads", "head_dim",
    "vocab_size", "tied_output", "method", "base", "quant", "embd", "mapped", "batch_size",
    "seq_len", "grad_accum", "checkpointing", "precision", "lora_rank", "targets",
    "lora_layers", "lora_dropout", "adapter", "feedforward", "optimizer", "threads", "budget", "effective_batch", "compute",
    "max_seq_len", "min_seq_len", NULL
};

static enum pl_dtype opt_dtype(lua_State *L, const char *key, enum pl_dtype dflt)
{
    const char *s = pl_lua_opt_str(L, 1, key, NULL);
    if (!s) return dflt;
    int d = pl_dtype_from_name(s);
    if (d < 0) luaL_error(L, "peft.memory: %s: unknown dtype '%s'", key, s);
    return (enum pl_dtype)d;
}

/* Options table at 1 → configuration. */
static void read_cfg(lua_State *L, struct pl_memmodel_cfg *c)
{
    *c = pl_memmodel_defaults();
    lua_getfield(L, 1, "model");
    if (!lua_isnil(L, -1)) {
        struct pl_model *m = pl_lua_test_model(L, -1);
        if (!m) luaL_error(L, "peft.memory: model must be a peft.Model");
        pl_memmodel_cfg_from_model(c, m);
    }
    lua_pop(L, 1);
    const char *preset = pl_lua_opt_str(L, 1, "preset", NULL);
    if (preset) {
        if (strcmp(preset, "llama2-7b")) luaL_error(L, "peft.memory: unknown preset '%s' (llama2-7b)", preset);
        c->shape = pl_memmodel_llama2_7b();
    }
    struct pl_model_config *s = &c->shape;
    s->dim = (int32_t)pl_lua_opt_int(L, 1, "dim", s->dim);
    s->hidden_dim = (int32_t)pl_lua_opt_int(L, 1, "hidden_dim", s->hidden_dim);
    s->n_layers = (int32_t)pl_lua_opt_int(L, 1, "layers", s->n_layers);
    s->n_heads = (int32_t)pl_lua_opt_int(L, 1, "heads", s->n_heads);
    s->n_kv_heads = (int32_t)pl_lua_opt_int(L, 1, "kv_heads", s->n_kv_heads ? s->n_kv_heads : s->n_heads);
    s->head_dim = (int32_t)pl_lua_opt_int(L, 1, "head_dim",
                                          s->head_dim ? s->head_dim : (s->n_heads ? s->dim / s->n_heads : 0));
    s->vocab_size = (int32_t)pl_lua_opt_int(L, 1, "vocab_size", s->vocab_size);
    s->tied_output = pl_lua_opt_bool(L, 1, "tied_output", s->tied_output);
    const char *meth = pl_lua_opt_str(L, 1, "method", "lora");
    /* method = "dora" | "ia3": LoRA-style training with that adapter */
    const char *meth_adapter = (!strcmp(meth, "dora") || !strcmp(meth, "ia3")) ? meth : NULL;
    if (meth_adapter) meth = "lora";
    int mt = pl_memm_method_from_name(meth);
    if (mt < 0) luaL_error(L, "peft.memory: method '%s' (lora, qlora or full)", meth);
    c->method = (enum pl_memm_method)mt;
    c->base_dtype = opt_dtype(L, "base", c->base_dtype);
    c->quant_dtype = opt_dtype(L, "quant", c->quant_dtype);
    c->embd_dtype = opt_dtype(L, "embd", c->embd_dtype);
    c->base_mapped = pl_lua_opt_bool(L, 1, "mapped", c->base_mapped);
    c->batch = (int32_t)pl_lua_opt_int(L, 1, "batch_size", c->batch);
    c->seq_len = (int32_t)pl_lua_opt_int(L, 1, "seq_len", c->seq_len);
    c->grad_accum = (int32_t)pl_lua_opt_int(L, 1, "grad_accum", c->grad_accum);
    lua_getfield(L, 1, "checkpointing");
    if (lua_isboolean(L, -1)) c->ckpt_every = lua_toboolean(L, -1);
    else if (lua_isinteger(L, -1)) c->ckpt_every = (int32_t)lua_tointeger(L, -1);
    else if (!lua_isnil(L, -1)) luaL_error(L, "peft.memory: checkpointing must be a boolean or a layer count");
    lua_pop(L, 1);
    const char *prec = pl_lua_opt_str(L, 1, "precision", "fp32");
    int pr = pl_memm_precision_from_name(prec);
    if (pr < 0) luaL_error(L, "peft.memory: precision '%s' (fp32, bf16 or fp16)", prec);
    c->precision = (enum pl_memm_precision)pr;
    c->lora_r = (int32_t)pl_lua_opt_int(L, 1, "lora_rank", c->lora_r);
    c->lora_n_layers = (int32_t)pl_lua_opt_int(L, 1, "lora_layers", 0);
    c->lora_dropout = (float)pl_lua_opt_num(L, 1, "lora_dropout", 0);
    lua_getfield(L, 1, "targets");
    if (lua_istable(L, -1)) {
        c->lora_targets = 0;
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            const char *t = lua_tostring(L, -1);
            int p = t ? pl_lora_target_from_name(t) : -1;
            if (p < 0) luaL_error(L, "peft.memory: unknown target module '%s'", t ? t : "?");
            c->lora_targets |= 1u << p;
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) luaL_error(L, "peft.memory: targets must be a list of module names");
    int targets_given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    const char *ad = pl_lua_opt_str(L, 1, "adapter", meth_adapter ? meth_adapter : "lora");
    if (!strcmp(ad, "lora")) c->adapter_kind = PL_ADAPTER_LORA;
    else if (!strcmp(ad, "dora")) c->adapter_kind = PL_ADAPTER_DORA;
    else if (!strcmp(ad, "ia3")) c->adapter_kind = PL_ADAPTER_IA3;
    else luaL_error(L, "peft.memory: adapter '%s' (lora, dora or ia3)", ad);
    if (c->adapter_kind == PL_ADAPTER_IA3) {
        if (!targets_given) c->lora_targets = (1u << PL_PROJ_K) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
        c->ia3_ff_targets = c->lora_targets & (1u << PL_PROJ_DOWN);
        lua_getfield(L, 1, "feedforward");
        if (lua_istable(L, -1)) {
            c->ia3_ff_targets = 0;
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_geti(L, -1, i);
                const char *t = lua_tostring(L, -1);
                int p = t ? pl_lora_target_from_name(t) : -1;
                if (p < 0) luaL_error(L, "peft.memory: unknown feedforward module '%s'", t ? t : "?");
                c->ia3_ff_targets |= 1u << p;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    const char *opt = pl_lua_opt_str(L, 1, "optimizer", "adamw");
    c->optim = pl_optimizer_find(opt);
    if (c->optim < 0) luaL_error(L, "peft.memory: unknown optimizer '%s'", opt);
    c->threads = (int32_t)pl_lua_opt_int(L, 1, "threads", 0);
    const char *cm = pl_lua_opt_str(L, 1, "compute", "auto");
    if (strcmp(cm, "f32") && strcmp(cm, "bf16") && strcmp(cm, "auto"))
        luaL_error(L, "peft.memory: compute '%s' (auto, f32 or bf16)", cm);
    c->compute = pl_compute_from_name(cm) == PL_COMPUTE_BF16;
}

static void push_estimate(lua_State *L, const struct pl_memmodel_cfg *c, const struct pl_mem_estimate *e)
{
    lua_createtable(L, 0, 16);
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        if (k == PL_MEM_DATA) continue;
        lua_pushinteger(L, e->peak[k]);
        lua_setfield(L, -2, pl_mem_cat_name((enum pl_mem_cat)k));
    }
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
    SETI("total", e->peak_total);
    SETI("resident", e->resident);
    SETI("setup", e->setup_total);
    SETI("step", e->step_total);
    SETI("transient_workspace", e->transient_workspace);
    SETI("trained_params", e->trained_params);
    SETI("batch_size", c->batch);
    SETI("grad_accum", c->grad_accum);
    SETI("seq_len", c->seq_len);
    SETI("checkpointing", c->ckpt_every);
#undef SETI
}

static int l_memmodel_estimate(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    pl_lua_check_options(L, 1, opt_keys, "peft.memory.estimate");
    struct pl_memmodel_cfg c;
    read_cfg(L, &c);
    struct pl_mem_estimate e;
    if (pl_memmodel_estimate(&c, &e) != PL_OK) return pl_lua_error(L);
    push_estimate(L, &c, &e);
    return 1;
}

/* Returns the sized estimate, or nil, message, estimate-at-the-smallest-size. */
static int l_memmodel_autosize(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    pl_lua_check_options(L, 1, opt_keys, "peft.memory.autosize");
    struct pl_memmodel_cfg c;
    read_cfg(L, &c);
    lua_getfield(L, 1, "batch_size");
    int fix_batch = !lua_isnil(L, -1);
    lua_getfield(L, 1, "seq_len");
    int fix_seq = !lua_isnil(L, -1);
    lua_pop(L, 2);
    int want_batch = (int)pl_lua_opt_int(L, 1, "effective_batch", fix_batch ? c.batch : 8);
    int want_seq = (int)pl_lua_opt_int(L, 1, "max_seq_len", fix_seq ? c.seq_len : 512);
    int min_seq = (int)pl_lua_opt_int(L, 1, "min_seq_len", 0);
    if (fix_batch) want_batch = c.batch;
    if (fix_seq) want_seq = c.seq_len;
    lua_Integer budget = pl_lua_opt_int(L, 1, "budget", 0);
    if (budget <= 0) {
        struct pl_hw hw;
        if (pl_hw_query(&hw) != PL_OK) return pl_lua_error(L);
        budget = pl_hw_default_budget(&hw);
    }
    struct pl_mem_estimate e;
    enum pl_status st = pl_memmodel_autosize(&c, (int64_t)budget, want_batch, want_seq, fix_batch,
                                             fix_seq, min_seq, &e);
    if (st == PL_ERR_NOMEM) {
        lua_pushnil(L);
        lua_pushstring(L, pl_last_error());
        push_estimate(L, &c, &e);
        return 3;
    }
    if (st != PL_OK) return pl_lua_error(L);
    push_estimate(L, &c, &e);
    lua_pushinteger(L, budget);
    lua_setfield(L, -2, "budget");
    return 1;
}

/* quantize(model, dtype [, opts]) → {converted=, kept=, bytes_before=, bytes_after=, dtype=,
 * rmse=, rel_rmse=, bits_per_weight=}: the QLoRA base (src/adapt/qlora.c), before a trainer is made;
 * the errors and bits are over the projections re-stored.
 * dtype: "nf4" | "nf4_32" | "nf4_dq" | "q8_0" | "bf16" | "f16" | "f32". opts: a list of target
 * module names and/or the keys block = 32 | 64 and double_quant = true (which NF4 layout
 * "nf4" means; default PL_LUA_NF4_DEFAULT), scale = "mse" (default) | "absmax". */
#define PL_LUA_NF4_DEFAULT PL_NF4_32
static int l_memmodel_quantize(lua_State *L)
{
    struct pl_model *model = pl_lua_test_model(L, 1);
    if (!model) return luaL_typeerror(L, 1, "peft.Model");
    const char *dn = luaL_checkstring(L, 2);
    int d = pl_dtype_from_name(dn);
    if (d < 0) return luaL_error(L, "peft.memory.quantize: unknown dtype '%s'", dn);
    uint32_t targets = 0;
    struct pl_qlora_opts o = { PL_NF4_SCALE_MSE };
    int block = 0, dq = 0;
    if (lua_istable(L, 3)) {
        lua_Integer n = luaL_len(L, 3);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 3, i);
            const char *t = lua_tostring(L, -1);
            int p = t ? pl_lora_target_from_name(t) : -1;
            if (p < 0) return luaL_error(L, "peft.memory.quantize: unknown target module '%s'", t ? t : "?");
            targets |= 1u << p;
            lua_pop(L, 1);
        }
        if (lua_getfield(L, 3, "block") != LUA_TNIL) {
            block = (int)lua_tointeger(L, -1);
            if (block != 32 && block != 64)
                return luaL_error(L, "peft.memory.quantize: nf4 block must be 32 or 64, not %s", luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "double_quant") != LUA_TNIL) dq = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "scale") != LUA_TNIL) {
            const char *sc = lua_tostring(L, -1);
            if (sc && !strcmp(sc, "mse")) o.nf4_scale = PL_NF4_SCALE_MSE;
            else if (sc && !strcmp(sc, "absmax")) o.nf4_scale = PL_NF4_SCALE_ABSMAX;
            else return luaL_error(L, "peft.memory.quantize: scale must be \"mse\" or \"absmax\", not %s", luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 3)) {
        return luaL_error(L, "peft.memory.quantize: the third argument must be a table (target module names, block=, double_quant=, scale=)");
    }
    if (d == PL_NF4 && !strcasecmp(dn, "nf4")) {   /* the name picks the family; opts the layout */
        if (dq && block == 32)
            return luaL_error(L, "peft.memory.quantize: double_quant uses 64-element nf4 blocks, not 32");
        d = dq ? PL_NF4_DQ : block == 64 ? PL_NF4 : block == 32 ? PL_NF4_32 : PL_LUA_NF4_DEFAULT;
    } else if ((block || dq) && d != PL_NF4_32 && d != PL_NF4_DQ) {
        return luaL_error(L, "peft.memory.quantize: block= and double_quant= apply to \"nf4\", not '%s'", dn);
    }
    struct pl_qlora_stats st;
    if (pl_qlora_quantize_opts(model, (enum pl_dtype)d, targets, &o, &st) != PL_OK) return pl_lua_error(L);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, st.converted); lua_setfield(L, -2, "converted");
    lua_pushinteger(L, st.kept); lua_setfield(L, -2, "kept");
    lua_pushinteger(L, st.bytes_before); lua_setfield(L, -2, "bytes_before");
    lua_pushinteger(L, st.bytes_after); lua_setfield(L, -2, "bytes_after");
    lua_pushstring(L, pl_dtype_info((enum pl_dtype)d)->name); lua_setfield(L, -2, "dtype");
    lua_pushnumber(L, st.elements ? sqrt(st.err2 / (double)st.elements) : 0.0); lua_setfield(L, -2, "rmse");
    lua_pushnumber(L, st.ref2 > 0 ? sqrt(st.err2 / st.ref2) : 0.0); lua_setfield(L, -2, "rel_rmse");
    lua_pushnumber(L, st.elements ? 8.0 * (double)st.bytes_after / (double)st.elements : 0.0);
    lua_setfield(L, -2, "bits_per_weight");
    return 1;
}

int luaopen_peft_memmodel(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "estimate", l_memmodel_estimate },
        { "autosize", l_memmodel_autosize },
        { "quantize", l_memmodel_quantize },
        { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
