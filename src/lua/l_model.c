/* l_model.c — peft.model: load models, print their card, forward, loss, perplexity, generate.
 * Owner: model.
 *
 *   local m <close> = peft.model.load(path [, {tokenizer = path, no_tokenizer = bool}])
 *   m:card()                       → { arch, format, path, name, params, weight_bytes, dtypes = {q4_1 = 210, ...},
 *                                      context_length, vocab_size, layers, dim, hidden_dim, heads,
 *                                      kv_heads, rope_base, norm_eps, tied_output, chat_template }
 *   m:config()                     → the numeric configuration as a table
 *   m:params()                     → list of parameter names (HF naming)
 *   m:forward(ids [, {last = bool}]) → logits peft.Tensor [B, T, vocab] (ids: a list or a list of
 *                                      equal-length lists); last = true: [B, vocab] of the last rows
 *   m:loss(text | ids)             → mean cross-entropy (nats/token), scored token count
 *   m:perplexity(path [, {format = "text"|"jsonl", field = "text", max_seq_len, stride, limit,
 *                          separator = "<|endoftext|>"}]) → perplexity, mean loss, token count
 *                                    text: documents split at the separator, each its own sequence;
 *                                    jsonl: each line's field its own sequence (limit: first n lines)
 *   m:generate(prompt [, {max_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop,
 *                         greedy, ignore_eos, on_token, special}]) → text, n_tokens
 *                                    on_token(text, id): streamed text (stop strings withheld);
 *                                    return true to stop
 *   m:encode(text [, {bos = bool, special = bool}]) → ids;  m:decode(ids) → text
 *   m:tokenizer()                  → a peft.Tokenizer loaded from the model's tokenizer file
 *   m:chat(messages [, generate options]) → reply (lua/peft/model.lua: the model's chat template)
 *   m:load_adapter(path [, {name =, scale = 1}]) → name   a PEFT/peftlua adapter directory (or its
 *                                    adapter_model.safetensors) or a GGUF LoRA adapter; several may be
 *                                    loaded; name defaults to the directory's/file's base name
 *   m:unload_adapter([name])       that adapter, or all of them
 *   m:adapters()                   → list of {name, path, method (lora/dora/ia3), r, alpha, rslora, scale, targets, ...}
 *   forward, loss (3rd argument), perplexity, generate and chat take {adapter = name | false}:
 *   the adapter to run with; absent: the last loaded (none loaded: the model as it is); false:
 *   the base model alone
 *   m:close()                      (also __gc / __close)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "peftlua/adapters.h"
#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "peftlua/model.h"
#include "peftlua/tokenizer.h"
#include "pl_lua.h"

#define PL_MODEL_MT "peft.Model"

struct l_model {
    struct pl_model *m;
    struct pl_adapter_set *ads;   /* m:load_adapter's adapters (NULL until the first) */
};

/* For other bindings (pl_lua.h): the model at idx, NULL if the value is not a peft.Model. */
struct pl_model *pl_lua_test_model(lua_State *L, int idx)
{
    struct l_model *u = luaL_testudata(L, idx, PL_MODEL_MT);
    if (!u) return NULL;
    if (!u->m) luaL_error(L, "peft.Model: the model is closed");
    return u->m;
}

static struct pl_model *l_model_check(lua_State *L, int idx)
{
    luaL_checkudata(L, idx, PL_MODEL_MT);   /* raises naming the expected type */
    return pl_lua_test_model(L, idx);       /* raises if closed */
}

static struct pl_tokenizer *l_model_tok(lua_State *L, struct pl_model *m)
{
    if (!m->tok) luaL_error(L, "%s: the model has no tokenizer", m->path);
    return m->tok;
}

static struct pl_lora *l_model_pick(lua_State *L, int opt, int *change);

static int l_model_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    static const char *const allowed[] = { "tokenizer", "no_tokenizer", NULL };
    pl_lua_check_options(L, 2, allowed, "peft.model.load");
    struct pl_model_load_opts o = { 0 };
    o.tokenizer = pl_lua_opt_str(L, 2, "tokenizer", NULL);
    o.no_tokenizer = pl_lua_opt_bool(L, 2, "no_tokenizer", 0);
    struct l_model *u = lua_newuserdatauv(L, sizeof *u, 0);   /* closed until loaded */
    u->m = NULL;
    u->ads = NULL;
    luaL_setmetatable(L, PL_MODEL_MT);
    if (pl_model_load(&u->m, path, &o) != PL_OK) return pl_lua_error(L);
    return 1;
}

static int l_model_close(lua_State *L)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    pl_adapter_set_free(u->ads, u->m);
    u->ads = NULL;
    pl_model_free(u->m);
    u->m = NULL;
    return 0;
}

static int l_model_tostring(lua_State *L)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    if (!u->m) lua_pushliteral(L, "peft.Model (closed)");
    else lua_pushfstring(L, "peft.Model (%s, %s)", u->m->name, u->m->path);
    return 1;
}

#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))
#define SETS(k, v) (lua_pushstring(L, v), lua_setfield(L, -2, k))
#define SETB(k, v) (lua_pushboolean(L, v), lua_setfield(L, -2, k))

static int l_model_card(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    struct pl_model_card c;
    pl_model_card(m, &c);
    lua_newtable(L);
    SETS("arch", c.arch);
    SETS("format", c.format);
    SETS("path", c.path);
    SETS("name", c.name);
    if (m->source_id) SETS("source", m->source_id);
    SETI("params", c.n_params);
    SETI("weight_bytes", c.weight_bytes);
    lua_newtable(L);
    for (int t = 0; t < PL_DTYPE_COUNT; t++)
        if (c.dtype_count[t]) SETI(pl_dtype_info(t)->name, c.dtype_count[t]);
    lua_setfield(L, -2, "dtypes");
    SETI("context_length", c.context_length);
    SETI("vocab_size", c.vocab_size);
    SETI("layers", c.n_layers);
    SETI("dim", c.dim);
    SETI("hidden_dim", c.hidden_dim);
    SETI("heads", c.n_heads);
    SETI("kv_heads", c.n_kv_heads);
    SETN("rope_base", c.rope_base);
    SETN("norm_eps", c.norm_eps);
    SETB("tied_output", c.tied_output);
    SETS("chat_template", c.chat_family);
    SETB("tokenizer", m->tok != NULL);
    if (c.tokenizer_path) SETS("tokenizer_path", c.tokenizer_path);
    return 1;
}

static int l_model_config(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    const struct pl_model_config *c = &m->cfg;
    lua_newtable(L);
    SETS("arch", c->arch == PL_ARCH_QWEN2 ? "qwen2" : "llama");
    SETI("dim", c->dim);
    SETI("hidden_dim", c->hidden_dim);
    SETI("n_layers", c->n_layers);
    SETI("n_heads", c->n_heads);
    SETI("n_kv_heads", c->n_kv_heads);
    SETI("head_dim", c->head_dim);
    SETI("vocab_size", c->vocab_size);
    SETI("seq_len", c->seq_len);
    SETN("rope_base", c->rope_base);
    SETN("norm_eps", c->norm_eps);
    SETS("rope_layout", c->rope_layout == PL_ROPE_LAYOUT_HALF ? "half" : "interleaved");
    SETB("tied_output", c->tied_output);
    SETB("qkv_bias", c->qkv_bias);
    SETI("bos_id", c->bos_id);
    SETI("eos_id", c->eos_id);
    return 1;
}

static int l_model_params(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    int n = pl_model_n_params(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        char name[128];
        pl_model_param(m, i, name, sizeof name);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* Read a list of ids (or a list of equal-length lists) at idx into a new array (pl_free it). */
static int32_t *l_model_ids(lua_State *L, int idx, int *B, int *T)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n < 1) luaL_error(L, "ids: empty list");
    int nested = lua_rawgeti(L, idx, 1) == LUA_TTABLE;
    lua_Integer t = nested ? luaL_len(L, -1) : n;
    lua_pop(L, 1);
    lua_Integer b = nested ? n : 1;
    if (t < 1 || b * t > (1 << 28)) luaL_error(L, "ids: bad shape %d x %d", (int)b, (int)t);
    /* validate first (luaL_error must not leak), then copy */
    for (lua_Integer i = 1; i <= b; i++) {
        if (nested) {
            if (lua_rawgeti(L, idx, i) != LUA_TTABLE) luaL_error(L, "ids: row %d is not a list", (int)i);
            if (luaL_len(L, -1) != t) luaL_error(L, "ids: row %d has %d ids, row 1 has %d", (int)i,
                                                 (int)luaL_len(L, -1), (int)t);
        } else lua_pushvalue(L, idx);
        for (lua_Integer j = 1; j <= t; j++) {
            int isint = 0;
            lua_rawgeti(L, -1, j);
            (void)lua_tointegerx(L, -1, &isint);
            if (!isint) luaL_error(L, "ids: element %d of row %d is not an integer", (int)j, (int)i);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    int32_t *ids = pl_alloc((size_t)(b * t) * sizeof(int32_t), PL_MEM_WORKSPACE);
    if (!ids) luaL_error(L, "ids: out of memory");
    for (lua_Integer i = 1; i <= b; i++) {
        if (nested) lua_rawgeti(L, idx, i); else lua_pushvalue(L, idx);
        for (lua_Integer j = 1; j <= t; j++) {
            lua_rawgeti(L, -1, j);
            ids[(i - 1) * t + (j - 1)] = (int32_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    *B = (int)b;
    *T = (int)t;
    return ids;
}

static int l_model_forward(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    static const char *const allowed[] = { "last", "adapter", NULL };
    pl_lua_check_options(L, 3, allowed, "forward");
    int last = pl_lua_opt_bool(L, 3, "last", 0);
    int change;
    struct pl_lora *ad = l_model_pick(L, 3, &change);
    int B, T;
    int32_t *ids = l_model_ids(L, 2, &B, &T);
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, B, T, 0);
    if (!c) { pl_free(ids); return pl_lua_error(L); }
    struct pl_hook_state h = { 0 };
    if (change) h = pl_adapter_use(m, ad);
    enum pl_status st = pl_llama_forward(c, ids, T, 0, last);
    if (change) pl_adapter_restore(m, h);
    pl_free(ids);
    if (st != PL_OK) { pl_llama_ctx_free(c); return pl_lua_error(L); }
    int64_t V = m->cfg.vocab_size;
    int64_t shape3[3] = { B, T, V }, shape2[2] = { B, V };
    struct pl_tensor *t = last ? pl_tensor_new(PL_F32, 2, shape2, PL_MEM_ACTIVATIONS)
                               : pl_tensor_new(PL_F32, 3, shape3, PL_MEM_ACTIVATIONS);
    if (!t) { pl_llama_ctx_free(c); return pl_lua_error(L); }
    memcpy(pl_tensor_data(t), c->logits, (size_t)pl_tensor_numel(t) * sizeof(float));
    pl_llama_ctx_free(c);
    pl_lua_push_tensor(L, t);
    return 1;
}

/* Encode the string at idx; flags for the model's defaults (BOS where the vocabulary adds it). */
static int32_t *l_model_encode_str(lua_State *L, struct pl_model *m, int idx, unsigned flags,
                                   size_t *n)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    int32_t *ids = NULL;
    if (pl_tokenizer_encode(l_model_tok(L, m), s, len, flags, &ids, n) != PL_OK) pl_lua_error(L);
    return ids;
}

static int l_model_loss(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    static const char *const allowed[] = { "adapter", NULL };
    pl_lua_check_options(L, 3, allowed, "loss");
    int change;
    struct pl_lora *ad = l_model_pick(L, 3, &change);
    int32_t *ids;
    size_t n;
    if (lua_type(L, 2) == LUA_TSTRING) {
        ids = l_model_encode_str(L, m, 2, PL_TOK_DEFAULT_SPECIAL, &n);
    } else {
        int B, T;
        ids = l_model_ids(L, 2, &B, &T);
        if (B != 1) { pl_free(ids); return luaL_error(L, "loss: one sequence of ids expected"); }
        n = (size_t)T;
    }
    double sum = 0;
    int64_t count = 0;
    int ctx = m->cfg.seq_len;
    struct pl_hook_state h = { 0 };
    if (change) h = pl_adapter_use(m, ad);
    enum pl_status st = pl_llama_score_stream(m, ids, (int64_t)n, ctx, ctx, &sum, &count);
    if (change) pl_adapter_restore(m, h);
    pl_free(ids);
    if (st != PL_OK) return pl_lua_error(L);
    lua_pushnumber(L, count ? sum / (double)count : NAN);
    lua_pushinteger(L, count);
    return 2;
}

static int l_model_perplexity(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    static const char *const allowed[] = { "format", "field", "max_seq_len", "stride", "limit",
                                           "separator", "adapter", NULL };
    pl_lua_check_options(L, 3, allowed, "perplexity");
    int change;
    struct pl_lora *ad = l_model_pick(L, 3, &change);
    const char *fmt = pl_lua_opt_str(L, 3, "format", NULL);
    const char *field = pl_lua_opt_str(L, 3, "field", "text");
    const char *sep = pl_lua_opt_str(L, 3, "separator", "<|endoftext|>");
    lua_Integer max_len = pl_lua_opt_int(L, 3, "max_seq_len", m->cfg.seq_len < 512 ? m->cfg.seq_len : 512);
    lua_Integer stride = pl_lua_opt_int(L, 3, "stride", max_len);
    lua_Integer limit = pl_lua_opt_int(L, 3, "limit", 0);
    if (max_len < 2 || max_len > m->cfg.seq_len)
        return luaL_error(L, "perplexity: max_seq_len %d must be in 2..%d", (int)max_len, m->cfg.seq_len);
    if (!fmt) {
        size_t pn = strlen(path);
        fmt = (pn > 6 && strcmp(path + pn - 6, ".jsonl") == 0) ? "jsonl" : "text";
    }
    int jsonl = strcmp(fmt, "jsonl") == 0;
    if (!jsonl && strcmp(fmt, "text") != 0)
        return luaL_error(L, "perplexity: format must be 'text' or 'jsonl', got '%s'", fmt);
    l_model_tok(L, m);
    struct pl_ppl_opts po = { jsonl, field, sep, (int)max_len, (int)stride, (int)limit };
    double sum = 0;
    int64_t count = 0;
    struct pl_hook_state h = { 0 };
    if (change) h = pl_adapter_use(m, ad);
    enum pl_status st = pl_model_perplexity_file(m, path, &po, &sum, &count);
    if (change) pl_adapter_restore(m, h);
    if (st != PL_OK) return pl_lua_error(L);
    double mean = count ? sum / (double)count : NAN;
    lua_pushnumber(L, exp(mean));
    lua_pushnumber(L, mean);
    lua_pushinteger(L, count);
    return 3;
}

struct l_gen_cb { lua_State *L; int fn; int err; };

static int l_model_on_token(void *ud, int32_t id, const char *piece)
{
    struct l_gen_cb *cb = ud;
    lua_State *L = cb->L;
    if (cb->err) return 1;   /* an earlier call raised: its error stays on top of the stack */
    lua_pushvalue(L, cb->fn);
    lua_pushstring(L, piece);
    lua_pushinteger(L, id);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) { cb->err = 1; return 1; }   /* error stays on the stack */
    int stop = lua_toboolean(L, -1) && lua_type(L, -1) == LUA_TBOOLEAN;  /* return true: stop */
    lua_pop(L, 1);
    return stop;
}

static int l_model_generate(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    static const char *const allowed[] = { "max_tokens", "temperature", "top_k", "top_p",
                                           "repetition_penalty", "seed", "stop", "greedy",
                                           "ignore_eos", "on_token", "special", "adapter", NULL };
    pl_lua_check_options(L, 3, allowed, "generate");
    int change;
    struct pl_lora *ad = l_model_pick(L, 3, &change);
    struct pl_generate_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = (int32_t)pl_lua_opt_int(L, 3, "max_tokens", 128);
    pl_sampler_init(&o.sampler, (uint64_t)pl_lua_opt_int(L, 3, "seed", 0));
    o.sampler.temperature = (float)pl_lua_opt_num(L, 3, "temperature", 0.8);
    o.sampler.top_k = (int32_t)pl_lua_opt_int(L, 3, "top_k", 0);
    o.sampler.top_p = (float)pl_lua_opt_num(L, 3, "top_p", 0.95);
    o.sampler.repetition_penalty = (float)pl_lua_opt_num(L, 3, "repetition_penalty", 1.0);
    o.sampler.greedy = pl_lua_opt_bool(L, 3, "greedy", 0);
    o.ignore_eos = pl_lua_opt_bool(L, 3, "ignore_eos", 0);
    int special = pl_lua_opt_bool(L, 3, "special", 1);
    if (o.max_tokens < 1) return luaL_error(L, "generate: max_tokens must be at least 1");
    if (o.sampler.top_k < 0) return luaL_error(L, "generate: top_k must be >= 0");
    if (!(o.sampler.top_p > 0 && o.sampler.top_p <= 1))
        return luaL_error(L, "generate: top_p must be in (0, 1]");
    if (!(o.sampler.repetition_penalty > 0))
        return luaL_error(L, "generate: repetition_penalty must be positive");
    /* stop strings: a string or a list of strings, kept alive on the stack */
    const char *stops[17] = { 0 };
    if (!lua_isnoneornil(L, 3)) {
        int t = lua_getfield(L, 3, "stop");
        if (t == LUA_TSTRING) stops[0] = lua_tostring(L, -1);
        else if (t == LUA_TTABLE) {
            lua_Integer ns = luaL_len(L, -1);
            if (ns > 16) return luaL_error(L, "generate: at most 16 stop strings");
            for (lua_Integer i = 1; i <= ns; i++) {
                if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                    return luaL_error(L, "generate: stop strings must be strings");
                stops[i - 1] = lua_tostring(L, -1);
                lua_pop(L, 1);   /* the table keeps the string alive */
            }
        } else if (t != LUA_TNIL) return luaL_error(L, "option 'stop' must be a string or a list");
        /* leave the stop value on the stack */
        o.stop = stops;
        t = lua_getfield(L, 3, "on_token");
        if (t == LUA_TFUNCTION) {
            o.on_token = l_model_on_token;
        } else if (t != LUA_TNIL) return luaL_error(L, "option 'on_token' must be a function");
    }
    struct l_gen_cb cb = { L, lua_gettop(L), 0 };
    o.ud = &cb;
    int32_t *ids;
    size_t n;
    if (lua_type(L, 2) == LUA_TSTRING) {
        ids = l_model_encode_str(L, m, 2,
                                 PL_TOK_DEFAULT_SPECIAL | (special ? PL_TOK_PARSE_SPECIAL : 0), &n);
    } else {
        int B, T;
        ids = l_model_ids(L, 2, &B, &T);
        if (B != 1) { pl_free(ids); return luaL_error(L, "generate: one prompt expected"); }
        n = (size_t)T;
    }
    if (n == 0) {
        pl_free(ids);
        int32_t bos = m->cfg.bos_id >= 0 ? m->cfg.bos_id : 0;
        ids = pl_alloc(sizeof(int32_t), PL_MEM_WORKSPACE);
        if (!ids) return luaL_error(L, "generate: out of memory");
        ids[0] = bos;
        n = 1;
    }
    char *text = NULL;
    int ngen = 0;
    l_model_tok(L, m);
    struct pl_hook_state h = { 0 };
    if (change) h = pl_adapter_use(m, ad);
    enum pl_status st = pl_generate(m, ids, (int)n, &o, &text, NULL, &ngen);
    if (change) pl_adapter_restore(m, h);
    pl_free(ids);
    if (cb.err) { pl_free(text); return lua_error(L); }   /* the callback's error */
    if (st != PL_OK) return pl_lua_error(L);
    lua_pushstring(L, text);
    pl_free(text);
    lua_pushinteger(L, ngen);
    return 2;
}

static int l_model_encode(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    static const char *const allowed[] = { "bos", "special", NULL };
    pl_lua_check_options(L, 3, allowed, "encode");
    unsigned flags = 0;
    int has_bos = 0;
    if (!lua_isnoneornil(L, 3)) { has_bos = lua_getfield(L, 3, "bos") != LUA_TNIL; lua_pop(L, 1); }
    if (has_bos) flags |= pl_lua_opt_bool(L, 3, "bos", 0) ? PL_TOK_ADD_BOS : 0;
    else flags |= PL_TOK_DEFAULT_SPECIAL;
    if (pl_lua_opt_bool(L, 3, "special", 1)) flags |= PL_TOK_PARSE_SPECIAL;
    size_t n;
    int32_t *ids = l_model_encode_str(L, m, 2, flags, &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    pl_free(ids);
    return 1;
}

static int l_model_decode(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    struct pl_tokenizer *tok = l_model_tok(L, m);
    int B, T;
    int32_t *ids = l_model_ids(L, 2, &B, &T);
    char *text = NULL;
    size_t len = 0;
    enum pl_status st = pl_tokenizer_decode(tok, ids, (size_t)B * T, 0, &text, &len);
    pl_free(ids);
    if (st != PL_OK) return pl_lua_error(L);
    lua_pushlstring(L, text, len);
    pl_free(text);
    return 1;
}

/* m:tokenizer() → a peft.Tokenizer loaded from the same file the model's tokenizer came from. */
static int l_model_tokenizer(lua_State *L)
{
    struct pl_model *m = l_model_check(L, 1);
    if (!m->tok || !m->tokenizer_path) return luaL_error(L, "%s: the model has no tokenizer", m->path);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "peft.tokenizer");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "load");
    lua_pushstring(L, m->tokenizer_path);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2)) return luaL_error(L, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}


/* ------------------------------------------------------------------ adapters */

/* The adapter a call runs with, from option "adapter" of the table at opt: a name, false (the
 * base model alone) or absent (the last loaded; with none loaded the model's hook is left as
 * it is, e.g. a trainer's adapter). *change = 0: leave the hook alone. Raises on an unknown name. */
static struct pl_lora *l_model_pick(lua_State *L, int opt, int *change)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    int t = lua_istable(L, opt) ? lua_getfield(L, opt, "adapter") : (lua_pushnil(L), LUA_TNIL);
    struct pl_lora *a = NULL;
    *change = 1;
    if (t == LUA_TNIL) {
        struct pl_adapter_slot *sl = pl_adapter_set_last(u->ads);
        if (sl) a = sl->lora; else *change = 0;
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        a = NULL;
    } else if (t == LUA_TSTRING) {
        struct pl_adapter_slot *sl = pl_adapter_set_find(u->ads, lua_tostring(L, -1));
        if (!sl) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; u->ads && i < u->ads->n; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, u->ads->v[i].name);
            }
            if (!u->ads || !u->ads->n) luaL_addstring(&b, "none; use m:load_adapter(path)");
            luaL_pushresult(&b);
            return (luaL_error(L, "option 'adapter': no adapter named '%s' is loaded (loaded: %s)",
                               lua_tostring(L, -2), lua_tostring(L, -1)), NULL);
        }
        a = sl->lora;
    } else {
        luaL_error(L, "option 'adapter' must be an adapter name or false");
    }
    lua_pop(L, 1);
    return a;
}

/* Default name: the file's or directory's base name (without .gguf; a PEFT file's directory). */
static void l_adapter_default_name(const char *path, char *out, size_t n)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    char *base = strrchr(buf, '/');
    if (base && (strcmp(base + 1, "adapter_model.safetensors") == 0 ||
                 strcmp(base + 1, "adapter_config.json") == 0)) {
        *base = '\0';
        base = strrchr(buf, '/');
    }
    base = base ? base + 1 : buf;
    len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".gguf") == 0) base[len - 5] = '\0';
    snprintf(out, n, "%s", *base ? base : "adapter");
}

/* m:load_adapter(path [, {name =, scale =}]) → name */
static int l_model_load_adapter(lua_State *L)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    struct pl_model *m = l_model_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    static const char *const allowed[] = { "name", "scale", NULL };
    pl_lua_check_options(L, 3, allowed, "load_adapter");
    char name[128];
    const char *given = pl_lua_opt_str(L, 3, "name", NULL);
    if (given) {
        if (!*given || strlen(given) > 127) return luaL_error(L, "load_adapter: name must be 1..127 characters");
        snprintf(name, sizeof name, "%s", given);
    } else {
        l_adapter_default_name(path, name, sizeof name);
    }
    double scale = pl_lua_opt_num(L, 3, "scale", 1.0);
    if (!isfinite(scale)) return luaL_error(L, "load_adapter: scale must be a finite number");
    if (pl_adapter_set_find(u->ads, name))
        return luaL_error(L, "load_adapter: an adapter named '%s' is already loaded "
                          "(m:unload_adapter('%s') first, or give {name = ...})", name, name);
    if (!u->ads && !(u->ads = pl_adapter_set_new())) return pl_lua_error(L);
    struct pl_lora *a;
    if (pl_adapter_open(&a, path, &m->cfg) != PL_OK) return pl_lua_error(L);
    if (pl_adapter_set_add(u->ads, name, path, a, (float)scale) != PL_OK) {
        pl_lora_free(a);
        return pl_lua_error(L);
    }
    lua_pushstring(L, name);
    return 1;
}

/* m:unload_adapter([name]): that adapter, or every loaded one. */
static int l_model_unload_adapter(lua_State *L)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    struct pl_model *m = l_model_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        pl_adapter_set_free(u->ads, m);
        u->ads = NULL;
        return 0;
    }
    const char *name = luaL_checkstring(L, 2);
    if (pl_adapter_set_remove(u->ads, name, m) != PL_OK) return pl_lua_error(L);
    return 0;
}

/* m:adapters() → { {name, path, r, alpha, rslora, scale, user_scale, targets = {...},
 *                   layers = n | {l, ...}, params, default}, ... } in load order */
static int l_model_adapters(lua_State *L)
{
    struct l_model *u = luaL_checkudata(L, 1, PL_MODEL_MT);
    l_model_check(L, 1);
    int n = u->ads ? u->ads->n : 0;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const struct pl_adapter_slot *sl = &u->ads->v[i];
        const struct pl_lora *a = sl->lora;
        lua_newtable(L);
        SETS("name", sl->name);
        SETS("path", sl->path);
        SETI("r", a->cfg.r);
        SETN("alpha", a->cfg.alpha);
        SETB("rslora", a->cfg.use_rslora);
        lua_pushstring(L, pl_adapter_kind_name(a->cfg.kind)); lua_setfield(L, -2, "method");   /* lora | dora | ia3 */
        SETN("scale", a->scale);
        SETN("user_scale", sl->user_scale);
        SETI("params", a->n_params);
        SETB("default", i == n - 1);
        lua_newtable(L);
        int k = 0;
        for (int p = 0; p < PL_PROJ_COUNT; p++)
            if (a->cfg.targets & (1u << p)) {
                lua_pushstring(L, pl_proj_names[p]);
                lua_rawseti(L, -2, ++k);
            }
        lua_setfield(L, -2, "targets");
        if (a->cfg.n_layers_sel == 0) SETI("layers", a->n_model_layers);
        else {
            lua_createtable(L, a->cfg.n_layers_sel, 0);
            for (int l = 0; l < a->cfg.n_layers_sel; l++) {
                lua_pushinteger(L, a->cfg.layers[l]);
                lua_rawseti(L, -2, l + 1);
            }
            lua_setfield(L, -2, "layers");
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static const luaL_Reg l_model_methods[] = {
    { "load_adapter", l_model_load_adapter },
    { "unload_adapter", l_model_unload_adapter },
    { "adapters", l_model_adapters },
    { "tokenizer", l_model_tokenizer },
    { "card", l_model_card },
    { "config", l_model_config },
    { "params", l_model_params },
    { "forward", l_model_forward },
    { "loss", l_model_loss },
    { "perplexity", l_model_perplexity },
    { "generate", l_model_generate },
    { "encode", l_model_encode },
    { "decode", l_model_decode },
    { "close", l_model_close },
    { NULL, NULL },
};

static const luaL_Reg l_model_funcs[] = {
    { "load", l_model_load },
    { NULL, NULL },
};

int luaopen_peft_model(lua_State *L)
{
    pl_lua_new_class(L, PL_MODEL_MT, l_model_methods, l_model_close, l_model_tostring);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, LUA_REGISTRYINDEX, "peft.Model.methods");
    lua_pop(L, 1);
    luaL_newlib(L, l_model_funcs);
    lua_getfield(L, LUA_REGISTRYINDEX, "peft.Model.methods");
    lua_setfield(L, -2, "Model");   /* the method table, for lua/peft/model.lua to extend */
    return 1;
}
