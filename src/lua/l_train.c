/* l_train.c — peft.train: the trainer (include/peftlua/train.h) for Lua.
 * Owner: train. The run loop (config checking, data, evaluation, checkpoints, progress line,
 * metrics) is policy and lives in lua/peft/train.lua, which extends this module.
 *
 *   local tr <close> = peft.train.trainer(model, {method = "lora"|"dora"|"ia3"|"full", optimizer = "adamw"|"sgd"|"lion",
 *        batch_size, seq_len, grad_accum, learning_rate, weight_decay, beta1, beta2, eps,
 *        momentum, nesterov, schedule = "constant"|"linear"|"cosine", warmup, total_steps,
 *        min_lr_ratio, max_grad_norm, seed, lora_rank, lora_alpha, lora_dropout, rslora,
 *        targets = {"q_proj", ...}, layers = {0, 1, ...}, checkpointing = false|true|k,
 *        feedforward = {"down_proj"}  -- IA3: targets whose input is scaled (default: down_proj
 *                                        when targeted; IA3's default targets: k, v, down_proj)
 *        precision = "fp32"|"bf16"|"fp16", loss_scale = 65536, growth_interval = 2000,
 *        compute = "auto"|"f32"|"bf16" (bf16 products with f32 sums where the CPU has AVX512_BF16;
 *                    auto, the default: bf16 there, f32 elsewhere),
 *        planned_rows = batch_size   -- rows per forward to plan first (fewer: chunks)
 *        distributed = false         -- one of the MPI job's data-parallel replicas (dist.h):
 *                                       gradients summed over the ranks before each step)})
 *   peft.train.try_trainer(model, {...}) → trainer | nil, message, status   (as trainer(), an
 *                               engine failure returned: "nomem" when the plan does not fit)
 *   Step functions (micro, eval, grad, step) fail one way: out of memory or a file error is
 *   returned as nil, message, status ("nomem" | "io"); misuse, a bad state and an
 *   interruption raise.
 *   tr:micro(ids, targets)   → loss, count, stepped   (ids/targets: [B, T] i32 peft.Tensor or
 *                                                       lists of lists; -1 targets ignored;
 *                                                       B > planned_rows runs as chunks)
 *   tr:eval(ids, targets)    → loss sum, count       (no gradients, no dropout)
 *   tr:recover(status [, message]) → from, to | nil, message, status: after a step function
 *                               failed, the shrink-and-retry policy (train.h
 *                               pl_trainer_recover): the step rewound and, for "nomem", the
 *                               plan halved (retry the step), or why it cannot be retried
 *   tr:shrink()              → rows: re-plan at half the rows per forward (after an allocation
 *                               failure and tr:rewind()); raises when already at one row
 *   tr:replan(rows)          re-plan for exactly `rows` rows per forward (resuming a run that
 *                               had shrunk)
 *   tr:grad(ids, targets)    → loss                  (gradients of this batch only)
 *   tr:step()                → true                  (optimizer step over what accumulated)
 *   tr:rewind()              drop a partly accumulated step (after an interruption)
 *   tr:stats()               → {step, micro, lr, grad_norm, loss, tokens, params, method,
 *                               precision, loss_scale, skipped_steps, batch_size,
 *                               planned_rows, seq_len, grad_accum, ranks, checkpointing}
 *   tr:config()              → the resolved configuration, defaults filled in (method,
 *                               optimizer, learning_rate, schedule, lora_rank, targets, ...)
 *   tr:grad_of(name)         → list of numbers (the gradient of a named trained tensor)
 *   tr:save(dir [, blob]) / tr:load(dir) → blob | nil     (checkpoints, atomic)
 *   tr:save_adapter(dir [, base_name])    (PEFT layout)   tr:merge()   tr:adapters(on)
 *   tr:close()
 *   peft.train.export(model, path [, {format = "gguf"|"safetensors", dtype = "f32"|"f16"|"bf16"|"base"}])
 *   peft.train.export_gguf_adapter(tr, path [, opts]) | (model, adapter_dir, path [, opts])
 *        → path, modelfile | nil: a GGUF LoRA adapter for llama.cpp (--lora) and Ollama, and an
 *        Ollama Modelfile beside it; opts: dtype = "f32"|"f16", modelfile = true|false,
 *        base = the base GGUF for FROM (default: the model's file when it is a GGUF)
 *   peft.train.has_checkpoint(dir), peft.train.isatty(fd), peft.train.interrupted(),
 *   peft.train.clear_interrupt(), peft.train.catch_sigterm(on), peft.train.now()
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "peftlua/adapters.h"
#include "peftlua/alloc.h"
#include "peftlua/train.h"
#include "pl_lua.h"
#include "peftlua/dist.h"

#define TRAINER_MT "peft.Trainer"

struct l_trainer { struct pl_trainer *t; };

static struct pl_model *check_model(lua_State *L, int idx)
{
    struct pl_model *m = pl_lua_test_model(L, idx);
    if (!m) luaL_typeerror(L, idx, "peft.Model");
    return m;
}

static struct pl_trainer *check_trainer(lua_State *L, int idx)
{
    struct l_trainer *u = luaL_checkudata(L, idx, TRAINER_MT);
    if (!u->t) luaL_error(L, "peft.Trainer: the trainer is closed");
    return u->t;
}

static const char *status_name(enum pl_status st)
{
    switch (st) {
    case PL_ERR_IO: return "io";
    case PL_ERR_FORMAT: return "format";
    case PL_ERR_NOMEM: return "nomem";
    case PL_ERR_ARG: return "arg";
    case PL_ERR_UNSUPPORTED: return "unsupported";
    case PL_ERR_INTERRUPTED: return "interrupted";
    case PL_ERR_STATE: return "state";
    default: return "ok";
    }
}

/* nil, message, status: an engine failure handed to the caller instead of raised */
static int push_failure(lua_State *L, enum pl_status st)
{
    lua_pushnil(L);
    lua_pushstring(L, pl_last_error());
    lua_pushstring(L, status_name(st));
    return 3;
}

/* The one failure convention of the step functions (micro, eval, grad, step), as Lua's io
 * library: a failure of the environment — out of memory ("nomem"), a file ("io") — is
 * returned as nil, message, status, so that a caller can shrink and retry (tr:recover);
 * misuse, a bad state and an interruption raise. */
static int step_failure(lua_State *L, enum pl_status st)
{
    if (st == PL_ERR_NOMEM || st == PL_ERR_IO) return push_failure(L, st);
    return pl_lua_error(L);
}

static const char *const trainer_opts[] = {
    "method", "optimizer", "batch_size", "seq_len", "grad_accum", "learning_rate", "weight_decay",
    "beta1", "beta2", "eps", "momentum", "nesterov", "schedule", "warmup", "total_steps",
    "min_lr_ratio", "max_grad_norm", "seed", "lora_rank", "lora_alpha", "lora_dropout", "rslora",
    "targets", "layers", "checkpointing", "precision", "loss_scale", "growth_interval", "compute",
    "planned_rows", "feedforward", "distributed", NULL };

/* peft.train.trainer (raises) and peft.train.try_trainer (an engine failure is returned as
 * nil, message, status, so that peft.train.run can re-plan with fewer rows on "nomem"). */
static int new_trainer(lua_State *L, int try)
{
    struct pl_model *m = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    pl_lua_check_options(L, 2, trainer_opts, try ? "peft.train.try_trainer" : "peft.train.trainer");
    struct pl_train_cfg c = pl_train_defaults();
    const char *method = pl_lua_opt_str(L, 2, "method", "lora");
    if (strcmp(method, "lora") == 0) c.method = PL_TRAIN_LORA;
    else if (strcmp(method, "dora") == 0) { c.method = PL_TRAIN_LORA; c.lora.kind = PL_ADAPTER_DORA; }
    else if (strcmp(method, "ia3") == 0) {
        c.method = PL_TRAIN_LORA;
        c.lora.kind = PL_ADAPTER_IA3;
        c.lora.targets = (1u << PL_PROJ_K) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
    }
    else if (strcmp(method, "full") == 0) c.method = PL_TRAIN_FULL;
    else return luaL_error(L, "peft.train.trainer: method must be \"lora\", \"dora\", \"ia3\" or \"full\", not \"%s\"", method);
    const char *opt = pl_lua_opt_str(L, 2, "optimizer", "adamw");
    int optim = pl_optimizer_find(opt);
    if (optim < 0) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (int i = 0; i < pl_optimizer_count(); i++) {
            if (i) luaL_addstring(&b, i + 1 < pl_optimizer_count() ? ", " : " or ");
            lua_pushfstring(L, "\"%s\"", pl_optimizer_get(i)->name);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        return luaL_error(L, "peft.train.trainer: optimizer must be %s, not \"%s\"", lua_tostring(L, -1), opt);
    }
    c.optim = (enum pl_optim_kind)optim;
    lua_Integer bs = pl_lua_opt_int(L, 2, "batch_size", c.batch_size);
    lua_Integer sl = pl_lua_opt_int(L, 2, "seq_len", c.seq_len);
    lua_Integer ga = pl_lua_opt_int(L, 2, "grad_accum", c.grad_accum);
    if (bs < 1 || bs > 1 << 16) return luaL_error(L, "peft.train.trainer: batch_size must be in 1..65536");
    if (sl < 2 || sl > 1 << 20) return luaL_error(L, "peft.train.trainer: seq_len must be at least 2");
    if (ga < 1 || ga > 1 << 16) return luaL_error(L, "peft.train.trainer: grad_accum must be at least 1");
    c.batch_size = (int32_t)bs;
    c.seq_len = (int32_t)sl;
    c.grad_accum = (int32_t)ga;
    lua_Integer prows = pl_lua_opt_int(L, 2, "planned_rows", 0);
    if (prows < 0 || prows > bs) return luaL_error(L, "peft.train.trainer: planned_rows must be in 1..batch_size (0 or nil: batch_size)");
    c.plan_rows = (int32_t)prows;
    c.lr = pl_lua_opt_num(L, 2, "learning_rate", c.lr);
    c.weight_decay = pl_lua_opt_num(L, 2, "weight_decay", c.weight_decay);
    c.beta1 = pl_lua_opt_num(L, 2, "beta1", c.beta1);
    c.beta2 = pl_lua_opt_num(L, 2, "beta2", c.beta2);
    c.eps = pl_lua_opt_num(L, 2, "eps", c.eps);
    c.momentum = pl_lua_opt_num(L, 2, "momentum", c.momentum);
    c.nesterov = pl_lua_opt_bool(L, 2, "nesterov", 0);
    const char *sched = pl_lua_opt_str(L, 2, "schedule", "cosine");
    int s = pl_schedule_from_name(sched);
    if (s < 0) return luaL_error(L, "peft.train.trainer: schedule must be constant, linear or cosine, not \"%s\"", sched);
    c.schedule = (enum pl_schedule)s;
    c.warmup = pl_lua_opt_int(L, 2, "warmup", 0);
    c.total_steps = pl_lua_opt_int(L, 2, "total_steps", c.total_steps);
    c.min_lr_ratio = pl_lua_opt_num(L, 2, "min_lr_ratio", 0);
    c.max_grad_norm = pl_lua_opt_num(L, 2, "max_grad_norm", c.max_grad_norm);
    c.seed = (uint64_t)pl_lua_opt_int(L, 2, "seed", (lua_Integer)c.seed);
    if (c.warmup < 0 || c.total_steps < 1) return luaL_error(L, "peft.train.trainer: warmup must be >= 0 and total_steps >= 1");
    lua_Integer r = pl_lua_opt_int(L, 2, "lora_rank", c.lora.r);
    if (r < 1 || r > 1 << 16) return luaL_error(L, "peft.train.trainer: lora_rank must be at least 1");
    c.lora.r = (int32_t)r;
    c.lora.alpha = (float)pl_lua_opt_num(L, 2, "lora_alpha", 2.0 * (double)r);
    c.lora.dropout = (float)pl_lua_opt_num(L, 2, "lora_dropout", 0.0);
    c.lora.use_rslora = pl_lua_opt_bool(L, 2, "rslora", 0);
    /* checkpointing = false | true (every layer) | k (every k layers) */
    if (lua_getfield(L, 2, "checkpointing") == LUA_TBOOLEAN) c.ckpt_every = lua_toboolean(L, -1) ? 1 : 0;
    else if (!lua_isnil(L, -1)) {
        lua_Integer k = luaL_checkinteger(L, -1);
        if (k < 0) return luaL_error(L, "peft.train.trainer: checkpointing must be false, true or a layer count >= 1");
        c.ckpt_every = (int32_t)k;
    }
    lua_pop(L, 1);
    const char *prec = pl_lua_opt_str(L, 2, "precision", "fp32");
    int pr = pl_precision_from_name(prec);
    if (pr < 0)
        return luaL_error(L, "peft.train.trainer: unknown precision \"%s\" (use \"fp32\", \"bf16\" or \"fp16\")", prec);
    c.precision = (enum pl_precision)pr;
    const char *comp = pl_lua_opt_str(L, 2, "compute", "auto");
    if (strcmp(comp, "f32") != 0 && strcmp(comp, "bf16") != 0 && strcmp(comp, "auto") != 0)
        return luaL_error(L, "peft.train.trainer: unknown compute \"%s\" (use \"auto\", \"f32\" or \"bf16\")", comp);
    c.compute = pl_compute_from_name(comp);
    if (pr != PL_PREC_FP16) {
        lua_getfield(L, 2, "loss_scale");
        lua_getfield(L, 2, "growth_interval");
        if (!lua_isnil(L, -1) || !lua_isnil(L, -2))
            return luaL_error(L, "peft.train.trainer: loss_scale and growth_interval are for precision = \"fp16\"");
        lua_pop(L, 2);
    }
    c.loss_scale = pl_lua_opt_num(L, 2, "loss_scale", c.loss_scale);
    lua_Integer gi = pl_lua_opt_int(L, 2, "growth_interval", c.growth_interval);
    if (gi < 1 || gi > INT32_MAX) return luaL_error(L, "peft.train.trainer: growth_interval must be a positive integer");
    c.growth_interval = (int32_t)gi;
    lua_getfield(L, 2, "targets");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            /* "all" or one module name */
            const char *n = lua_tostring(L, -1);
            if (strcmp(n, "all") == 0) c.lora.targets = (1u << PL_PROJ_COUNT) - 1;
            else {
                int p = pl_lora_target_from_name(n);
                if (p < 0) return luaL_error(L, "peft.train.trainer: unknown target module \"%s\"", n);
                c.lora.targets = 1u << p;
            }
        } else {
            luaL_checktype(L, -1, LUA_TTABLE);
            c.lora.targets = 0;
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                const char *nm = lua_tostring(L, -1);
                int p = nm ? pl_lora_target_from_name(nm) : -1;
                if (p < 0)
                    return luaL_error(L, "peft.train.trainer: unknown target module \"%s\" (use q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                                      nm ? nm : "?");
                c.lora.targets |= 1u << p;
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "layers");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_Integer n = luaL_len(L, -1);
        if (n > PL_LORA_MAX_LAYERS) return luaL_error(L, "peft.train.trainer: too many layers");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok) return luaL_error(L, "peft.train.trainer: layers[%d] is not an integer", (int)i);
            c.lora.layers[i - 1] = (int32_t)v;
            lua_pop(L, 1);
        }
        c.lora.n_layers_sel = (int32_t)n;
    }
    lua_pop(L, 1);
    if (c.lora.kind == PL_ADAPTER_IA3) {
        c.lora.ff_targets = c.lora.targets & (1u << PL_PROJ_DOWN);
        if (lua_getfield(L, 2, "feedforward") != LUA_TNIL) {
            luaL_checktype(L, -1, LUA_TTABLE);
            c.lora.ff_targets = 0;
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                const char *nm = lua_tostring(L, -1);
                int p = nm ? pl_lora_target_from_name(nm) : -1;
                if (p < 0 || !(c.lora.targets & (1u << p)))
                    return luaL_error(L, "peft.train.trainer: feedforward module \"%s\" is not among the targets", nm ? nm : "?");
                c.lora.ff_targets |= 1u << p;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    } else {
        lua_getfield(L, 2, "feedforward");
        if (!lua_isnil(L, -1)) return luaL_error(L, "peft.train.trainer: feedforward is an IA3 option (method = \"ia3\")");
        lua_pop(L, 1);
    }

    struct l_trainer *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->t = NULL;
    luaL_setmetatable(L, TRAINER_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);   /* the model outlives the trainer */
    enum pl_status st = pl_trainer_new(&u->t, m, &c);
    if (st == PL_OK && pl_lua_opt_bool(L, 2, "distributed", 0)) st = pl_dist_trainer_attach(u->t);
    if (st == PL_OK) return 1;
    if (try) return push_failure(L, st);
    return pl_lua_error(L);
}

static int l_train_trainer(lua_State *L) { return new_trainer(L, 0); }
static int l_train_try_trainer(lua_State *L) { return new_trainer(L, 1); }

static int l_trainer_close(lua_State *L)
{
    struct l_trainer *u = luaL_checkudata(L, 1, TRAINER_MT);
    pl_trainer_free(u->t);
    u->t = NULL;
    return 0;
}

/* ids/targets at idx: an i32 peft.Tensor [B, T] or a list of equal-length lists (or one list).
 * The copy lives in a userdata pushed on the stack (collected by Lua, so a raise leaks
 * nothing). *B, *T set. Raises on bad shapes. */
static int32_t *grid_arg(lua_State *L, int idx, int *B, int *T, const char *what)
{
    struct pl_tensor *t = pl_lua_test_tensor(L, idx);
    if (t) {
        if (t->ndim != 2 && t->ndim != 1) luaL_error(L, "%s must be [batch, seq]", what);
        int64_t b = t->ndim == 2 ? t->shape[0] : 1, n = t->shape[t->ndim - 1];
        if (b < 1 || n < 1 || b > 1 << 20 || n > 1 << 24) luaL_error(L, "%s is empty or too large", what);
        float *f = lua_newuserdatauv(L, (size_t)(b * n) * sizeof(float), 0);
        if (pl_tensor_read_f32(t, f) != PL_OK) luaL_error(L, "%s: cannot read the tensor", what);
        int32_t *v = lua_newuserdatauv(L, (size_t)(b * n) * sizeof(int32_t), 0);
        for (int64_t i = 0; i < b * n; i++) v[i] = (int32_t)f[i];
        lua_remove(L, -2);
        *B = (int)b; *T = (int)n;
        return v;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer b = luaL_len(L, idx);
    if (b < 1) luaL_error(L, "%s is empty", what);
    lua_rawgeti(L, idx, 1);
    int nested = lua_istable(L, -1);
    lua_Integer n = nested ? luaL_len(L, -1) : b;
    lua_pop(L, 1);
    if (!nested) b = 1;
    if (n < 1 || b > 1 << 20 || n > 1 << 24) luaL_error(L, "%s is empty or too large", what);
    int32_t *v = lua_newuserdatauv(L, (size_t)(b * n) * sizeof(int32_t), 0);
    for (lua_Integer r = 0; r < b; r++) {
        if (nested) {
            lua_rawgeti(L, idx, r + 1);
            if (!lua_istable(L, -1) || luaL_len(L, -1) != n)
                luaL_error(L, "%s: row %d must be a list of %d ids", what, (int)r + 1, (int)n);
        } else {
            lua_pushvalue(L, idx);
        }
        for (lua_Integer i = 0; i < n; i++) {
            lua_rawgeti(L, -1, i + 1);
            int ok;
            lua_Integer x = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok) luaL_error(L, "%s[%d][%d] is not an integer", what, (int)r + 1, (int)i + 1);
            v[r * n + i] = (int32_t)x;
        }
        lua_pop(L, 1);
    }
    *B = (int)b; *T = (int)n;
    return v;
}

static void batch_args(lua_State *L, int32_t **ids, int32_t **tg, int *B, int *T)
{
    int B2, T2;
    *ids = grid_arg(L, 2, B, T, "ids");
    *tg = grid_arg(L, 3, &B2, &T2, "targets");
    if (B2 != *B || T2 != *T)
        luaL_error(L, "targets are [%d, %d] but ids are [%d, %d]", B2, T2, *B, *T);
}

static int l_trainer_micro(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    int32_t *ids, *tg;
    int B, T;
    batch_args(L, &ids, &tg, &B, &T);
    double loss = 0;
    int64_t cnt = 0;
    int stepped = 0;
    enum pl_status st = pl_trainer_micro(t, ids, tg, B, T, &loss, &cnt, &stepped);
    if (st != PL_OK) return step_failure(L, st);
    lua_pushnumber(L, loss);
    lua_pushinteger(L, cnt);
    lua_pushboolean(L, stepped);
    return 3;
}

/* tr:recover(status, message) after a step function returned nil, message, status: the one
 * shrink-and-retry policy (pl_trainer_recover). → from, to (rewound and re-planned: retry) |
 * nil, message, status (rewound, not to be retried). */
static int l_trainer_recover(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const char *status = luaL_checkstring(L, 2);
    const char *why = luaL_optstring(L, 3, NULL);
    enum pl_status st = strcmp(status, "nomem") == 0 ? PL_ERR_NOMEM
                      : strcmp(status, "io") == 0 ? PL_ERR_IO : PL_ERR_STATE;
    int from = 0, to = 0;
    if ((st = pl_trainer_recover(t, st, why, pl_trainer_state(t).step, &from, &to)) != PL_OK)
        return push_failure(L, st);
    lua_pushinteger(L, from);
    lua_pushinteger(L, to);
    return 2;
}

static int l_trainer_shrink(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    int rows = 0;
    if (pl_trainer_shrink(t, &rows) != PL_OK) return pl_lua_error(L);
    lua_pushinteger(L, rows);
    return 1;
}

static int l_trainer_replan(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    lua_Integer rows = luaL_checkinteger(L, 2);
    luaL_argcheck(L, rows >= 1 && rows <= 1 << 16, 2, "rows must be in 1..65536");
    if (pl_trainer_replan(t, (int)rows) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_trainer_eval(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    int32_t *ids, *tg;
    int B, T;
    batch_args(L, &ids, &tg, &B, &T);
    double sum = 0;
    int64_t cnt = 0;
    enum pl_status st = pl_trainer_eval(t, ids, tg, B, T, &sum, &cnt);
    if (st != PL_OK) return step_failure(L, st);
    lua_pushnumber(L, sum);
    lua_pushinteger(L, cnt);
    return 2;
}

static int l_trainer_grad(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    int32_t *ids, *tg;
    int B, T;
    batch_args(L, &ids, &tg, &B, &T);
    double loss = 0;
    enum pl_status st = pl_trainer_grad(t, ids, tg, B, T, &loss);
    if (st != PL_OK) return step_failure(L, st);
    lua_pushnumber(L, loss);
    return 1;
}

static int l_trainer_step(lua_State *L)
{
    enum pl_status st = pl_trainer_step(check_trainer(L, 1));
    if (st != PL_OK) return step_failure(L, st);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_trainer_rewind(lua_State *L)
{
    pl_trainer_rewind(check_trainer(L, 1));
    return 0;
}

#define SETN(k, v) (lua_pushnumber(L, (v)), lua_setfield(L, -2, (k)))
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, (k)))

static int l_trainer_stats(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const struct pl_trainer_state S = pl_trainer_state(t);
    const struct pl_train_cfg *C = pl_trainer_cfg(t);
    lua_createtable(L, 0, 20);
    SETI("step", S.step);
    SETI("micro", S.micro);
    SETN("lr", S.last_lr);
    SETN("grad_norm", S.last_grad_norm);
    SETN("loss", S.last_loss);
    SETI("tokens", S.tokens_seen);
    SETI("params", pl_trainer_n_params(t));
    SETI("batch_size", C->batch_size);
    SETI("planned_rows", S.plan_rows);
    SETI("seq_len", C->seq_len);
    SETI("grad_accum", C->grad_accum);
    SETI("ranks", S.world);
    SETI("checkpointing", C->ckpt_every);
    lua_pushstring(L, C->method == PL_TRAIN_LORA ? pl_adapter_kind_name(C->lora.kind) : "full");
    lua_setfield(L, -2, "method");
    lua_pushstring(L, pl_precision_name(C->precision));
    lua_setfield(L, -2, "precision");
    SETN("loss_scale", S.loss_scale);
    SETI("skipped_steps", S.skipped_steps);
    SETN("next_lr", pl_lr_at(C->schedule, C->lr, S.step - S.skipped_steps, C->warmup, C->total_steps,
                             C->min_lr_ratio));
    return 1;
}

/* The trainer's resolved configuration, defaults filled in (the run record's "trainer"). */
static int l_trainer_config(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const struct pl_train_cfg *c = pl_trainer_cfg(t);
    lua_createtable(L, 0, 30);
    lua_pushstring(L, c->method == PL_TRAIN_LORA ? pl_adapter_kind_name(c->lora.kind) : "full"); lua_setfield(L, -2, "method");
    lua_pushstring(L, pl_optimizer_get(c->optim)->name); lua_setfield(L, -2, "optimizer");
    SETI("batch_size", c->batch_size); SETI("seq_len", c->seq_len); SETI("grad_accum", c->grad_accum);
    SETN("learning_rate", c->lr); SETN("weight_decay", c->weight_decay);
    if (c->optim == PL_OPTIM_SGD) {
        SETN("momentum", c->momentum);
        lua_pushboolean(L, c->nesterov); lua_setfield(L, -2, "nesterov");
    } else {
        SETN("beta1", c->beta1); SETN("beta2", c->beta2); SETN("eps", c->eps);
    }
    lua_pushstring(L, pl_schedule_name(c->schedule)); lua_setfield(L, -2, "schedule");
    SETI("warmup", c->warmup); SETI("total_steps", c->total_steps); SETN("min_lr_ratio", c->min_lr_ratio);
    SETN("max_grad_norm", c->max_grad_norm); SETI("seed", c->seed);
    SETI("checkpointing", c->ckpt_every);
    lua_pushstring(L, pl_precision_name(c->precision)); lua_setfield(L, -2, "precision");
    /* what the products really use: bf16 only where asked and the CPU has it */
    lua_pushstring(L, c->compute == PL_COMPUTE_BF16 && pl_gemm16_available() ? "bf16" : "f32");
    lua_setfield(L, -2, "compute");
    if (c->precision == PL_PREC_FP16) { SETN("loss_scale", c->loss_scale); SETI("growth_interval", c->growth_interval); }
    if (c->method == PL_TRAIN_LORA) {
        SETI("lora_rank", c->lora.r); SETN("lora_alpha", c->lora.alpha); SETN("lora_dropout", c->lora.dropout);
        lua_pushboolean(L, c->lora.use_rslora); lua_setfield(L, -2, "rslora");
        lua_newtable(L);
        int k = 0;
        for (int p = 0; p < PL_PROJ_COUNT; p++)
            if (c->lora.targets & (1u << p)) { lua_pushstring(L, pl_proj_names[p]); lua_rawseti(L, -2, ++k); }
        lua_setfield(L, -2, "targets");
        if (c->lora.n_layers_sel > 0) {
            lua_createtable(L, c->lora.n_layers_sel, 0);
            for (int i = 0; i < c->lora.n_layers_sel; i++) { lua_pushinteger(L, c->lora.layers[i]); lua_rawseti(L, -2, i + 1); }
            lua_setfield(L, -2, "layers");
        }
    }
    return 1;
}

static int l_trainer_grad_of(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int64_t n = 0;
    float *g = pl_trainer_find_grad(t, name, &n);
    if (!g) return luaL_error(L, "peft.Trainer: no trained tensor named \"%s\"", name);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) { lua_pushnumber(L, g[i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

static int l_trainer_save(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    size_t n = 0;
    const char *blob = luaL_optlstring(L, 3, "", &n);
    if (pl_trainer_save(t, dir, blob, n) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_trainer_load(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    void *blob = NULL;
    size_t n = 0;
    if (pl_trainer_load(t, dir, &blob, &n) != PL_OK) return pl_lua_error(L);
    lua_pushlstring(L, blob ? blob : "", n);
    pl_free(blob);
    return 1;
}

static int l_trainer_save_adapter(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    const char *base = luaL_optstring(L, 3, pl_trainer_model(t)->name);
    if (!pl_trainer_lora(t)) return luaL_error(L, "peft.Trainer: save_adapter needs method \"lora\", \"dora\" or \"ia3\"");
    if (pl_lora_save(pl_trainer_lora(t), dir, base) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_trainer_merge(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    if (!pl_trainer_lora(t)) return 0;   /* full fine-tuning: the model already holds the weights */
    if (!pl_trainer_lora(t)->attached) return luaL_error(L, "peft.Trainer: the adapters were already merged");
    if (pl_lora_merge(pl_trainer_lora(t), pl_trainer_model(t)) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_trainer_adapters(lua_State *L)
{
    struct pl_trainer *t = check_trainer(L, 1);
    if (!pl_trainer_lora(t)) return luaL_error(L, "peft.Trainer: adapters() needs method \"lora\"");
    pl_trainer_lora(t)->enabled = lua_toboolean(L, 2);
    return 0;
}

static int l_trainer_tostring(lua_State *L)
{
    struct l_trainer *u = luaL_checkudata(L, 1, TRAINER_MT);
    if (!u->t) lua_pushliteral(L, "peft.Trainer (closed)");
    else lua_pushfstring(L, "peft.Trainer (%s, step %d, %d parameters)",
                         pl_trainer_cfg(u->t)->method == PL_TRAIN_LORA ? pl_adapter_kind_name(pl_trainer_cfg(u->t)->lora.kind) : "full", (int)pl_trainer_state(u->t).step,
                         (int)pl_trainer_n_params(u->t));
    return 1;
}

/* peft.train.export(model, path [, {format = "gguf"|"safetensors", dtype = "f32"|"f16"|"bf16"|"base"}]) */
static int l_train_export(lua_State *L)
{
    struct pl_model *m = check_model(L, 1);
    const char *path = luaL_checkstring(L, 2);
    static const char *const allowed[] = { "format", "dtype", NULL };
    pl_lua_check_options(L, 3, allowed, "peft.train.export");
    const char *fmt = pl_lua_opt_str(L, 3, "format", NULL);
    if (!fmt) {
        size_t n = strlen(path);
        fmt = n > 5 && strcmp(path + n - 5, ".gguf") == 0 ? "gguf" : "safetensors";
    }
    const char *dtype = pl_lua_opt_str(L, 3, "dtype", NULL);
    if (pl_train_export(m, path, fmt, dtype) != PL_OK) return pl_lua_error(L);
    return 0;
}

/* peft.train.export_gguf_adapter: see the header comment. */
static int l_train_export_gguf_adapter(lua_State *L)
{
    int is_tr = luaL_testudata(L, 1, TRAINER_MT) != NULL;
    struct pl_trainer *t = is_tr ? check_trainer(L, 1) : NULL;
    struct pl_model *m = is_tr ? pl_trainer_model(t) : check_model(L, 1);
    const char *dir = is_tr ? NULL : luaL_checkstring(L, 2);
    int pi = is_tr ? 2 : 3;
    const char *path = luaL_checkstring(L, pi);
    static const char *const allowed[] = { "dtype", "modelfile", "base", NULL };
    pl_lua_check_options(L, pi + 1, allowed, "export_gguf_adapter");
    const char *dtype = pl_lua_opt_str(L, pi + 1, "dtype", "f32");
    const char *base = pl_lua_opt_str(L, pi + 1, "base", NULL);
    int want_mf = pl_lua_opt_bool(L, pi + 1, "modelfile", -1);
    if (is_tr && !pl_trainer_lora(t)) return luaL_error(L, "export_gguf_adapter: the trainer's method is not \"lora\"");
    if (!base && m->format == PL_FORMAT_GGUF) base = m->path;
    if (want_mf == 1 && !base)
        return luaL_error(L, "export_gguf_adapter: a Modelfile needs the base GGUF: give {base = 'model.gguf'} "
                          "(%s is not a GGUF)", m->path);
    const char *slash = strrchr(path, '/');
    if (slash) lua_pushfstring(L, "%s/Modelfile", lua_pushlstring(L, path, (size_t)(slash - path)));
    else lua_pushliteral(L, "Modelfile");
    const char *mf = lua_tostring(L, -1);   /* stays on the stack */
    struct pl_lora *a = is_tr ? pl_trainer_lora(t) : NULL, *owned = NULL;
    if (!is_tr) {
        if (pl_adapter_open(&owned, dir, &m->cfg) != PL_OK) return pl_lua_error(L);
        a = owned;
    }
    enum pl_status st = pl_lora_export_gguf(a, m, path, dtype);
    pl_lora_free(owned);
    if (st != PL_OK) return pl_lua_error(L);
    if (want_mf != 0 && base && pl_ollama_modelfile_write(mf, base, path) != PL_OK) return pl_lua_error(L);
    lua_pushstring(L, path);
    if (want_mf != 0 && base) lua_pushstring(L, mf); else lua_pushnil(L);
    return 2;
}

/* ---- module functions ---- */

static int l_train_has_checkpoint(lua_State *L)
{
    lua_pushboolean(L, pl_trainer_has_checkpoint(luaL_checkstring(L, 1)));
    return 1;
}

/* peft.train.lock(dir [, wait_s]) -> lock: <dir>/peftlua.lock with this process's pid (fileio.h); a
 * second run on the same output directory raises "<dir>: output directory is in use by another
 * run (pid N ...)". Released by lock:release(), a to-be-closed variable, or the GC. */
#define LOCK_MT "peft.train.lock"
static int l_lock_release(lua_State *L)
{
    struct pl_dir_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    pl_dir_unlock(lk);
    return 0;
}

static int l_train_lock(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const lua_Number wait_s = luaL_optnumber(L, 2, 0);
    struct pl_dir_lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
    lk->path = NULL;
    luaL_setmetatable(L, LOCK_MT);
    if (pl_dir_lock_wait(dir, lk, wait_s > 0 ? (int)(wait_s < 3600 ? wait_s * 1000 : 3600000) : 0) != PL_OK)
        return pl_lua_error(L);
    return 1;
}

static int l_train_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 2)));
    return 1;
}

static int l_train_interrupted(lua_State *L)
{
    lua_pushboolean(L, pl_interrupt_pending());
    return 1;
}

static int l_train_clear_interrupt(lua_State *L)
{
    (void)L;
    pl_interrupt_clear();
    return 0;
}

static void on_sigterm(int sig)
{
    (void)sig;
    pl_interrupt_request();
}

static int l_train_catch_sigterm(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = lua_toboolean(L, 1) ? on_sigterm : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

static int l_train_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

int luaopen_peft_train(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "micro", l_trainer_micro }, { "eval", l_trainer_eval }, { "grad", l_trainer_grad },
        { "step", l_trainer_step }, { "rewind", l_trainer_rewind }, { "stats", l_trainer_stats },
        { "config", l_trainer_config },
        { "grad_of", l_trainer_grad_of }, { "save", l_trainer_save }, { "load", l_trainer_load },
        { "save_adapter", l_trainer_save_adapter }, { "merge", l_trainer_merge },
        { "adapters", l_trainer_adapters }, { "close", l_trainer_close },
        { "recover", l_trainer_recover },
        { "shrink", l_trainer_shrink }, { "replan", l_trainer_replan }, { NULL, NULL }
    };
    static const luaL_Reg funcs[] = {
        { "trainer", l_train_trainer }, { "try_trainer", l_train_try_trainer },
        { "has_checkpoint", l_train_has_checkpoint },
        { "isatty", l_train_isatty }, { "interrupted", l_train_interrupted },
        { "clear_interrupt", l_train_clear_interrupt }, { "catch_sigterm", l_train_catch_sigterm },
        { "now", l_train_now }, { "export", l_train_export }, { "lock", l_train_lock },
        { "export_gguf_adapter", l_train_export_gguf_adapter }, { NULL, NULL }
    };
    pl_lua_new_class(L, TRAINER_MT, methods, l_trainer_close, l_trainer_tostring);
    lua_pop(L, 1);
    static const luaL_Reg lock_methods[] = { { "release", l_lock_release }, { NULL, NULL } };
    pl_lua_new_class(L, LOCK_MT, lock_methods, l_lock_release, NULL);
    lua_pushcfunction(L, l_lock_release);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    pl_lua_push_options(L);   /* the option table (options.h) for lua/peft/train_options.lua */
    lua_setfield(L, -2, "_options");
    return 1;
}
