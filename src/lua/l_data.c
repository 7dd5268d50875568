/* l_data.c — peft.data: datasets for fine-tuning (binding of include/peftlua/data.h).
 * Owner: data. Policy helpers (tool-call scoring, report printing) are in lua/peft/data.lua.
 *
 *   local train, valid = peft.data.load(path, {format=, tokenizer=, chat=, max_seq_len=,
 *                                      train_on_prompt=, skip_bad=, valid=path | valid_fraction=,
 *                                      seed=})
 *       tokenizer: a peft.Tokenizer or peft.Model (its tokenizer and chat template), a path to a tokenizer
 *       (.gguf, tokenizer.json, tokenizer.bin), or a Lua table {encode = fn(text) -> ids,
 *       token_bytes = fn(id) -> string (optional), chat = fn(messages) -> text, spans (optional),
 *       bos =, eos =, pad =, add_bos =}. chat = fn(messages) -> text, spans overrides the
 *       template (spans: list of {first, last} 1-based inclusive byte ranges carrying loss).
 *   ds:count() / #ds, ds:example(i) -> {ids=, mask=, line=, file=, len=, truncated=}
 *   ds:report() -> {path, format, records, examples, skipped, issues = {...}, tokens,
 *                   target_tokens, lengths = {min, mean, median, p95, max, histogram},
 *                   truncated, truncated_tokens, no_target, duplicates, duplicate_lines, overlap}
 *   ds:batches{batch_size=, shuffle=, packing=, seq_len=, bucket=, drop_last=, seed= (default: the
 *              load's seed), epochs= (default 1, 0 = endless), as = "tensor" | "table", state=}
 *       -> iterator: `for b in it do` / it:next() (nil after the last epoch);
 *       b = {ids=, targets= ([batch, seq] i32 peft.Tensor or tables), batch=, seq=, n_target=,
 *            epoch=, index= (1-based), examples = {...}}; it:state() / it:restore(state)
 *   peft.data.validate(path [, {format=, tokenizer=, chat=, max_seq_len=, train_on_prompt=}])
 *       -> report with ok = true|false and every issue (never raises on bad data)
 *   peft.data.read(path [, {format=}]) -> records (Lua tables), info {format=, seen=, issues=}
 *   peft.data.json_canonical(s) -> string | nil, message
 *   peft.data.rng(seed) -> r: r:random([m [, n]]) like math.random, r:shuffle(t), r:next(),
 *                          r:state(), r:set_state(s)
 */
#include <math.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "peftlua/alloc.h"
#include "peftlua/data.h"
#include "peftlua/model.h"
#include "peftlua/tensor.h"
#include "peftlua/tokenizer.h"
#include "pl_lua.h"

#define DATASET_MT "peft.Dataset"
#define BATCHES_MT "peft.DataBatches"
#define RNG_MT "peft.DataRNG"

struct l_dataset { struct pl_dataset *ds; };
struct l_batches { struct pl_data_iter *it; lua_Integer epochs; int as_table; };

/* ---------------------------------------------------------------- tokenizers from Lua */

struct l_tok {
    struct pl_data_tokenizer dt;
    struct pl_tokenizer *owned;   /* loaded from a path here; freed after building */
    lua_State *L;
    int tab;                      /* stack index of a Lua tokenizer table, 0 if none */
    int chat;                     /* stack index of a chat override function, 0 if none */
    struct pl_data_tokenizer base;/* what the chat override falls back on for encoding */
};

/* Call the function at stack index fn with the value on top of the stack as argument and
 * nres results; a Lua error becomes an engine failure (never a longjmp through the engine). */
static enum pl_status l_tok_call(lua_State *L, int fn, int nres, const char *what)
{
    lua_pushvalue(L, fn);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, nres, 0) != LUA_OK) {
        enum pl_status st = pl_fail(PL_ERR_ARG, "%s: %s", what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return st;
    }
    return PL_OK;
}

static enum pl_status l_tok_encode(void *ctx, const char *text, size_t n, struct pl_data_ids *out)
{
    struct l_tok *t = ctx;
    lua_State *L = t->L;
    if (!lua_checkstack(L, 8)) return pl_fail(PL_ERR_NOMEM, "tokenizer.encode: Lua stack overflow");
    lua_getfield(L, t->tab, "encode");
    int fn = lua_gettop(L);
    lua_pushlstring(L, text, n);
    enum pl_status st = l_tok_call(L, fn, 1, "tokenizer.encode");
    if (st) { lua_pop(L, 1); return st; }
    if (!lua_istable(L, -1)) { lua_pop(L, 2); return pl_fail(PL_ERR_ARG, "tokenizer.encode must return a list of ids"); }
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= len && st == PL_OK; i++) {
        lua_rawgeti(L, -1, i);
        int isint = 0;
        lua_Integer id = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || id < 0 || id > INT32_MAX) st = pl_fail(PL_ERR_ARG, "tokenizer.encode: id %d is not a valid token id", (int)i);
        else st = pl_data_ids_push(out, (int32_t)id);
    }
    lua_pop(L, 2);
    return st;
}

static int l_tok_bytes(void *ctx, int32_t id, char *buf, size_t cap)
{
    struct l_tok *t = ctx;
    lua_State *L = t->L;
    if (!lua_checkstack(L, 8)) return -1;
    lua_getfield(L, t->tab, "token_bytes");
    int fn = lua_gettop(L);
    lua_pushinteger(L, id);
    if (l_tok_call(L, fn, 1, "tokenizer.token_bytes")) { lua_pop(L, 1); return -1; }
    size_t len = 0;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int r = -1;
    if (s) { memcpy(buf, s, len < cap ? len : cap); r = (int)len; }
    lua_pop(L, 2);
    return r;
}

/* Encoding for a chat override over a real tokenizer goes to that tokenizer. */
static enum pl_status l_tok_base_encode(void *ctx, const char *text, size_t n, struct pl_data_ids *out)
{
    struct l_tok *t = ctx;
    return t->base.encode(t->base.ctx, text, n, out);
}
static int l_tok_base_bytes(void *ctx, int32_t id, char *buf, size_t cap)
{
    struct l_tok *t = ctx;
    return t->base.token_bytes ? t->base.token_bytes(t->base.ctx, id, buf, cap) : -1;
}

static enum pl_status l_tok_chat(void *ctx, const struct pl_data_msg *msgs, int n, char **text,
                                 size_t *len, struct pl_data_span **spans, int *n_spans)
{
    struct l_tok *t = ctx;
    lua_State *L = t->L;
    if (!lua_checkstack(L, 12)) return pl_fail(PL_ERR_NOMEM, "chat: Lua stack overflow");
    int top = lua_gettop(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, msgs[i].role);
        lua_setfield(L, -2, "role");
        lua_pushstring(L, msgs[i].content);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, i + 1);
    }
    enum pl_status st = l_tok_call(L, t->chat, 2, "chat template");
    if (st) { lua_settop(L, top); return st; }
    size_t l = 0;
    const char *s = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &l) : NULL;
    if (!s || !lua_istable(L, -1)) {
        lua_settop(L, top);
        return pl_fail(PL_ERR_ARG, "chat template must return text and a list of {first, last} loss spans");
    }
    int ns = (int)lua_rawlen(L, -1);
    *text = pl_alloc(l + 1, PL_MEM_DATA);
    *spans = pl_alloc((size_t)(ns ? ns : 1) * sizeof **spans, PL_MEM_DATA);
    if (!*text || !*spans) {
        pl_free(*text); pl_free(*spans); *text = NULL; *spans = NULL;
        lua_settop(L, top);
        return pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    memcpy(*text, s, l);
    (*text)[l] = 0;
    *len = l;
    for (int i = 0; i < ns && st == PL_OK; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        int a_ok = 0, b_ok = 0;
        lua_Integer a = lua_tointegerx(L, -2, &a_ok), b = lua_tointegerx(L, -1, &b_ok);
        lua_pop(L, 3);
        if (!a_ok || !b_ok || a < 1 || b < a - 1 || (size_t)b > l)
            st = pl_fail(PL_ERR_ARG, "chat template: span %d is not {first, last} within the text", i + 1);
        else { (*spans)[i].begin = (size_t)(a - 1); (*spans)[i].end = (size_t)b; }
    }
    lua_settop(L, top);
    if (st) { pl_free(*text); pl_free(*spans); *text = NULL; *spans = NULL; return st; }
    *n_spans = ns;
    return PL_OK;
}

static lua_Integer l_field_int(lua_State *L, int idx, const char *k, lua_Integer dflt)
{
    lua_getfield(L, idx, k);
    lua_Integer v = dflt;
    if (!lua_isnil(L, -1)) {
        int ok = 0;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "tokenizer.%s must be an integer", k);
    }
    lua_pop(L, 1);
    return v;
}

/* Set up t from the value at stack index idx (and a chat override at chat_idx, 0 if none).
 * May raise (bad arguments) before anything is allocated; a path is loaded last. */
static void l_tok_setup(lua_State *L, struct l_tok *t, int idx, int chat_idx)
{
    memset(t, 0, sizeof *t);
    t->L = L;
    idx = lua_absindex(L, idx);
    struct pl_tokenizer *ptok = NULL;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "encode");
        int isfn = lua_isfunction(L, -1);
        lua_pop(L, 1);
        if (!isfn) luaL_error(L, "peft.data: a tokenizer table needs encode = function(text) -> ids");
        t->tab = idx;
        t->dt.ctx = t;
        t->dt.encode = l_tok_encode;
        lua_getfield(L, idx, "token_bytes");
        if (lua_isfunction(L, -1)) t->dt.token_bytes = l_tok_bytes;
        lua_pop(L, 1);
        lua_getfield(L, idx, "chat");
        if (lua_isfunction(L, -1)) { t->chat = lua_absindex(L, -1); t->dt.render_chat = l_tok_chat; }
        else lua_pop(L, 1);
        t->dt.bos_id = (int32_t)l_field_int(L, idx, "bos", -1);
        t->dt.eos_id = (int32_t)l_field_int(L, idx, "eos", -1);
        t->dt.pad_id = (int32_t)l_field_int(L, idx, "pad", -1);
        lua_getfield(L, idx, "add_bos");
        t->dt.add_bos = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else if ((ptok = pl_lua_test_tokenizer(L, idx)) != NULL) {
        /* a peft.Tokenizer */
    } else if (pl_lua_test_model(L, idx)) {
        struct pl_model *m = pl_lua_test_model(L, idx);
        if (!m->tok) luaL_error(L, "peft.data: %s has no tokenizer", m->path);
        ptok = m->tok;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        /* loaded below, after every check that may raise */
    } else if (lua_isnoneornil(L, idx)) {
        luaL_error(L, "peft.data: option 'tokenizer' is required (a peft.Tokenizer, a peft.Model, a tokenizer path or a tokenizer table)");
    } else {
        luaL_error(L, "peft.data: option 'tokenizer' must be a peft.Tokenizer, a peft.Model, a tokenizer path or a tokenizer table (got %s)",
                   luaL_typename(L, idx));
    }
    if (chat_idx && !lua_isnoneornil(L, chat_idx)) {
        if (!lua_isfunction(L, chat_idx)) luaL_error(L, "peft.data: option 'chat' must be a function(messages) -> text, spans");
        t->chat = lua_absindex(L, chat_idx);
    }
    if (lua_type(L, idx) == LUA_TSTRING && !t->tab) {
        const char *path = lua_tostring(L, idx);
        if (pl_tokenizer_load(&t->owned, path) != PL_OK) pl_lua_error(L);
        ptok = t->owned;
    }
    if (ptok) pl_data_tokenizer_bind(&t->dt, ptok);
    if (t->chat && (ptok || t->dt.render_chat != l_tok_chat)) {
        /* the override renders; encoding stays with the tokenizer */
        t->base = t->dt;
        t->dt.ctx = t;
        t->dt.encode = l_tok_base_encode;
        t->dt.token_bytes = t->base.token_bytes ? l_tok_base_bytes : NULL;
        t->dt.render_chat = l_tok_chat;
        if (t->tab) { t->base.ctx = t; }
    }
}

static void l_tok_release(struct l_tok *t)
{
    pl_tokenizer_free(t->owned);
    t->owned = NULL;
}

/* ---------------------------------------------------------------- load */

static enum pl_data_format l_opt_format(lua_State *L, int idx, const char *what)
{
    const char *f = pl_lua_opt_str(L, idx, "format", "auto");
    int v = pl_data_format_from_name(f);
    if (v < 0) luaL_error(L, "%s: unknown format '%s' (auto, text, completion, chat, alpaca)", what, f);
    return (enum pl_data_format)v;
}

static struct l_dataset *l_dataset_new(lua_State *L)
{
    struct l_dataset *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->ds = NULL;
    luaL_setmetatable(L, DATASET_MT);
    return u;
}

static const char *const load_opts[] = { "format", "tokenizer", "chat", "max_seq_len", "train_on_prompt",
                                         "skip_bad", "valid", "valid_fraction", "seed", "chat_template", NULL };

/* chat_template = false: prompt/completion records as [BOS] prompt completion [EOS] even when
 * the model has a chat template (default: the template's user and assistant turns). */
static int l_opt_chat_template(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return 1;
    lua_getfield(L, idx, "chat_template");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_error(L, "peft.data: option 'chat_template' must be true or false");
    int on = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    return on;
}

static int l_data_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    pl_lua_check_options(L, 2, load_opts, "peft.data.load");
    if (lua_isnoneornil(L, 2)) luaL_error(L, "peft.data.load: options with a tokenizer are required");
    lua_settop(L, 2);
    enum pl_data_format fmt = l_opt_format(L, 2, "peft.data.load");
    struct pl_data_build_opts o = pl_data_build_defaults();
    lua_Integer msl = pl_lua_opt_int(L, 2, "max_seq_len", o.max_seq_len);
    if (msl < 2 || msl > INT32_MAX) luaL_error(L, "peft.data.load: max_seq_len must be at least 2");
    o.max_seq_len = (int32_t)msl;
    o.train_on_prompt = pl_lua_opt_bool(L, 2, "train_on_prompt", 0);
    o.skip_bad = pl_lua_opt_bool(L, 2, "skip_bad", 0);
    o.valid_fraction = pl_lua_opt_num(L, 2, "valid_fraction", 0);
    o.seed = (uint64_t)pl_lua_opt_int(L, 2, "seed", (lua_Integer)o.seed);
    const char *vpath = pl_lua_opt_str(L, 2, "valid", NULL);
    if (!(o.valid_fraction >= 0 && o.valid_fraction < 1)) luaL_error(L, "peft.data.load: valid_fraction must be in [0, 1)");
    if (vpath && o.valid_fraction > 0) luaL_error(L, "peft.data.load: give valid or valid_fraction, not both");
    lua_getfield(L, 2, "tokenizer");   /* 3 */
    lua_getfield(L, 2, "chat");        /* 4 */
    struct l_dataset *ut = l_dataset_new(L);           /* 5 */
    struct l_dataset *uv = (vpath || o.valid_fraction > 0) ? l_dataset_new(L) : NULL;   /* 6 */
    int chat_tmpl = l_opt_chat_template(L, 2);
    struct l_tok tok;
    l_tok_setup(L, &tok, 3, 4);
    if (!chat_tmpl) tok.dt.completion_chat = 0;
    /* from here on nothing raises until everything temporary is freed */
    struct pl_data_file *f = NULL, *vf = NULL;
    enum pl_status st = pl_data_read(&f, path, fmt);
    if (st == PL_OK && vpath) st = pl_data_read(&vf, vpath, fmt == PL_DATA_AUTO ? PL_DATA_AUTO : fmt);
    if (st == PL_OK) st = pl_dataset_build(&ut->ds, uv ? &uv->ds : NULL, f, vf, &tok.dt, &o);
    pl_data_file_free(f);
    pl_data_file_free(vf);
    l_tok_release(&tok);
    if (st) return pl_lua_error(L);
    lua_pushvalue(L, 5);
    if (uv) lua_pushvalue(L, 6); else lua_pushnil(L);
    return 2;
}

/* ---------------------------------------------------------------- dataset methods */

static struct pl_dataset *l_dataset_check(lua_State *L, int idx)
{
    struct l_dataset *u = luaL_checkudata(L, idx, DATASET_MT);
    if (!u->ds) luaL_error(L, "peft.Dataset: the dataset is closed");
    return u->ds;
}

static int l_dataset_close(lua_State *L)
{
    struct l_dataset *u = luaL_checkudata(L, 1, DATASET_MT);
    pl_dataset_free(u->ds);
    u->ds = NULL;
    return 0;
}

static int l_dataset_count(lua_State *L)
{
    lua_pushinteger(L, l_dataset_check(L, 1)->n);
    return 1;
}

static int l_dataset_tostring(lua_State *L)
{
    struct l_dataset *u = luaL_checkudata(L, 1, DATASET_MT);
    if (!u->ds) lua_pushliteral(L, "peft.Dataset (closed)");
    else lua_pushfstring(L, "peft.Dataset (%s, %s, %d examples)", u->ds->path, pl_data_format_name(u->ds->format), (int)u->ds->n);
    return 1;
}

static int l_dataset_example(lua_State *L)
{
    struct pl_dataset *ds = l_dataset_check(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && i <= ds->n, 2, "example index out of range");
    const struct pl_data_example *e = &ds->ex[i - 1];
    lua_createtable(L, 0, 6);
    lua_createtable(L, e->len, 0);
    for (int32_t t = 0; t < e->len; t++) { lua_pushinteger(L, ds->ids[e->off + t]); lua_rawseti(L, -2, t + 1); }
    lua_setfield(L, -2, "ids");
    lua_createtable(L, e->len, 0);
    for (int32_t t = 0; t < e->len; t++) { lua_pushinteger(L, ds->mask[e->off + t]); lua_rawseti(L, -2, t + 1); }
    lua_setfield(L, -2, "mask");
    lua_pushinteger(L, e->line); lua_setfield(L, -2, "line");
    lua_pushinteger(L, e->file + 1); lua_setfield(L, -2, "file");
    lua_pushinteger(L, e->len); lua_setfield(L, -2, "len");
    lua_pushinteger(L, e->n_target); lua_setfield(L, -2, "n_target");
    lua_pushinteger(L, e->truncated); lua_setfield(L, -2, "truncated");
    return 1;
}

#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))
#define SETS(k, v) (lua_pushstring(L, v), lua_setfield(L, -2, k))

static void push_lengths(lua_State *L, const struct pl_data_stats *s)
{
    lua_createtable(L, 0, 6);
    SETI("min", s->min); SETN("mean", s->mean); SETI("median", s->median);
    SETI("p95", s->p95); SETI("max", s->max);
    lua_createtable(L, PL_DATA_HIST_BUCKETS, 0);
    for (int k = 0; k < PL_DATA_HIST_BUCKETS; k++) {
        lua_createtable(L, 0, 3);
        SETI("lo", s->hist_lo[k]);
        if (k + 1 < PL_DATA_HIST_BUCKETS) SETI("hi", s->hist_lo[k + 1] - 1);
        else SETN("hi", HUGE_VAL);
        SETI("count", s->hist_count[k]);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "histogram");
    lua_setfield(L, -2, "lengths");
}

static void push_issues(lua_State *L, const struct pl_data_issue *iss, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) { lua_pushstring(L, iss[i].msg); lua_rawseti(L, -2, i + 1); }
    lua_setfield(L, -2, "issues");
}

static void push_report(lua_State *L, const struct pl_dataset *ds)
{
    const struct pl_data_stats *s = &ds->stats;
    lua_createtable(L, 0, 20);
    SETS("path", ds->path);
    SETS("format", pl_data_format_name(ds->format));
    SETI("records", ds->n_seen);
    SETI("examples", ds->n);
    SETI("skipped", ds->skipped);
    push_issues(L, ds->issues, ds->n_issues);
    SETI("tokens", s->tokens);
    SETI("target_tokens", s->target_tokens);
    push_lengths(L, s);
    SETI("max_seq_len", ds->max_seq_len);
    SETI("truncated", s->truncated);
    SETI("truncated_tokens", s->truncated_tokens);
    SETI("no_target", s->no_target);
    SETI("duplicates", ds->duplicates);
    lua_createtable(L, ds->n_dup_pairs, 0);
    for (int i = 0; i < ds->n_dup_pairs; i++) {
        lua_createtable(L, 2, 0);
        lua_pushinteger(L, ds->dup_pairs[i][0]); lua_rawseti(L, -2, 1);
        lua_pushinteger(L, ds->dup_pairs[i][1]); lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "duplicate_lines");
    SETI("overlap", ds->overlap);
}

static int l_dataset_report(lua_State *L)
{
    push_report(L, l_dataset_check(L, 1));
    return 1;
}

static int l_dataset_path(lua_State *L)
{
    lua_pushstring(L, l_dataset_check(L, 1)->path);
    return 1;
}

static int l_dataset_format(lua_State *L)
{
    lua_pushstring(L, pl_data_format_name(l_dataset_check(L, 1)->format));
    return 1;
}

/* ---------------------------------------------------------------- batches */

static const char *const batch_opts[] = { "batch_size", "shuffle", "packing", "seq_len", "bucket", "drop_last",
                                          "seed", "epochs", "as", "state", NULL };

static void l_state_from(lua_State *L, int idx, struct pl_data_iter_state *st)
{
    if (!lua_istable(L, idx)) luaL_error(L, "iterator state must be a table from it:state()");
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, "epoch");
    lua_getfield(L, idx, "index");
    lua_getfield(L, idx, "rng");
    int e_ok = 0, i_ok = 0;
    st->epoch = lua_tointegerx(L, -3, &e_ok);
    st->index = lua_tointegerx(L, -2, &i_ok);
    if (!e_ok || !i_ok || !lua_istable(L, -1) || lua_rawlen(L, -1) != 4)
        luaL_error(L, "iterator state must be {epoch=, index=, rng={4 integers}} as it:state() returns");
    for (int k = 0; k < 4; k++) {
        lua_rawgeti(L, -1, k + 1);
        int ok = 0;
        st->rng[k] = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "iterator state: rng[%d] must be an integer", k + 1);
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
}

static int l_dataset_batches(lua_State *L)
{
    const struct pl_dataset *ds = l_dataset_check(L, 1);
    pl_lua_check_options(L, 2, batch_opts, "ds:batches");
    lua_settop(L, 2);
    struct pl_data_iter_opts o = pl_data_iter_defaults();
    lua_Integer bs = pl_lua_opt_int(L, 2, "batch_size", o.batch_size);
    lua_Integer sl = pl_lua_opt_int(L, 2, "seq_len", 0);
    lua_Integer bu = pl_lua_opt_int(L, 2, "bucket", o.bucket);
    luaL_argcheck(L, bs >= 1 && bs <= (1 << 20), 2, "batch_size must be at least 1");
    luaL_argcheck(L, sl >= 0 && sl <= INT32_MAX, 2, "seq_len must be >= 0");
    luaL_argcheck(L, bu >= 0 && bu <= (1 << 20), 2, "bucket must be >= 0");
    o.batch_size = (int32_t)bs;
    o.seq_len = (int32_t)sl;
    o.bucket = (int32_t)bu;
    o.shuffle = pl_lua_opt_bool(L, 2, "shuffle", o.shuffle);
    o.packing = pl_lua_opt_bool(L, 2, "packing", 0);
    o.drop_last = pl_lua_opt_bool(L, 2, "drop_last", 0);
    o.seed = (uint64_t)pl_lua_opt_int(L, 2, "seed", (lua_Integer)ds->seed);
    lua_Integer epochs = pl_lua_opt_int(L, 2, "epochs", 1);
    luaL_argcheck(L, epochs >= 0, 2, "epochs must be >= 0 (0: endless)");
    const char *as = pl_lua_opt_str(L, 2, "as", "tensor");
    if (strcmp(as, "tensor") != 0 && strcmp(as, "table") != 0) luaL_error(L, "ds:batches: as must be \"tensor\" or \"table\"");
    struct pl_data_iter_state st;
    int has_state = 0;
    if (!lua_isnil(L, 2)) {
        lua_getfield(L, 2, "state");
        if (!lua_isnil(L, -1)) { l_state_from(L, -1, &st); has_state = 1; }
        lua_pop(L, 1);
    }
    struct l_batches *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->it = NULL;
    luaL_setmetatable(L, BATCHES_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);    /* keep the dataset alive */
    u->epochs = epochs;
    u->as_table = strcmp(as, "table") == 0;
    u->it = pl_data_iter_new(l_dataset_check(L, 1), &o);
    if (!u->it) return pl_lua_error(L);
    if (has_state && pl_data_iter_set_state(u->it, &st) != PL_OK) return pl_lua_error(L);
    return 1;
}

static struct l_batches *l_batches_check(lua_State *L, int idx)
{
    struct l_batches *u = luaL_checkudata(L, idx, BATCHES_MT);
    if (!u->it) luaL_error(L, "peft.DataBatches: the iterator is closed");
    lua_getiuservalue(L, idx, 1);
    struct l_dataset *d = luaL_checkudata(L, -1, DATASET_MT);
    if (!d->ds) luaL_error(L, "peft.DataBatches: its dataset was closed");
    lua_pop(L, 1);
    return u;
}

static int l_batches_close(lua_State *L)
{
    struct l_batches *u = luaL_checkudata(L, 1, BATCHES_MT);
    pl_data_iter_free(u->it);
    u->it = NULL;
    return 0;
}

static void push_grid(lua_State *L, const int32_t *v, int B, int T, int as_table)
{
    if (as_table) {
        lua_createtable(L, B, 0);
        for (int r = 0; r < B; r++) {
            lua_createtable(L, T, 0);
            for (int t = 0; t < T; t++) { lua_pushinteger(L, v[(size_t)r * T + t]); lua_rawseti(L, -2, t + 1); }
            lua_rawseti(L, -2, r + 1);
        }
        return;
    }
    int64_t shape[2] = { B, T };
    struct pl_tensor *t = pl_tensor_new(PL_I32, 2, shape, PL_MEM_DATA);
    if (!t) { pl_lua_error(L); return; }
    memcpy(pl_tensor_data(t), v, (size_t)B * T * sizeof *v);
    pl_lua_push_tensor(L, t);
}

static int l_batches_next(lua_State *L)
{
    struct l_batches *u = l_batches_check(L, 1);
    struct pl_data_iter_state st;
    pl_data_iter_get_state(u->it, &st);
    int64_t nb = pl_data_iter_batches_per_epoch(u->it);
    if (u->epochs > 0 && (st.epoch >= u->epochs || (st.epoch == u->epochs - 1 && st.index >= nb))) {
        lua_pushnil(L);
        return 1;
    }
    struct pl_data_batch b;
    if (pl_data_iter_next(u->it, &b) != PL_OK) return pl_lua_error(L);
    lua_createtable(L, 0, 9);
    push_grid(L, b.ids, b.batch, b.seq, u->as_table);
    lua_setfield(L, -2, "ids");
    push_grid(L, b.targets, b.batch, b.seq, u->as_table);
    lua_setfield(L, -2, "targets");
    SETI("batch", b.batch);
    SETI("seq", b.seq);
    SETI("n_target", b.n_target);
    SETI("epoch", b.epoch + 1);
    SETI("index", b.index + 1);
    lua_createtable(L, b.n_examples, 0);
    for (int i = 0; i < b.n_examples; i++) { lua_pushinteger(L, b.examples[i] + 1); lua_rawseti(L, -2, i + 1); }
    lua_setfield(L, -2, "examples");
    return 1;
}

static int l_batches_call(lua_State *L)   /* generic for: it(state, control) */
{
    lua_settop(L, 1);
    return l_batches_next(L);
}

static int l_batches_state(lua_State *L)
{
    struct l_batches *u = l_batches_check(L, 1);
    struct pl_data_iter_state st;
    pl_data_iter_get_state(u->it, &st);
    lua_createtable(L, 0, 3);
    SETI("epoch", st.epoch);
    SETI("index", st.index);
    lua_createtable(L, 4, 0);
    for (int k = 0; k < 4; k++) { lua_pushinteger(L, (lua_Integer)st.rng[k]); lua_rawseti(L, -2, k + 1); }
    lua_setfield(L, -2, "rng");
    return 1;
}

static int l_batches_restore(lua_State *L)
{
    struct l_batches *u = l_batches_check(L, 1);
    struct pl_data_iter_state st;
    l_state_from(L, 2, &st);
    if (pl_data_iter_set_state(u->it, &st) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_batches_per_epoch(lua_State *L)
{
    lua_pushinteger(L, pl_data_iter_batches_per_epoch(l_batches_check(L, 1)->it));
    return 1;
}

/* ---------------------------------------------------------------- validate / read */

static int l_data_validate(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    static const char *const validate_opts[] = { "format", "tokenizer", "chat", "max_seq_len", "train_on_prompt", "chat_template", NULL };
    pl_lua_check_options(L, 2, validate_opts, "peft.data.validate");
    lua_settop(L, 2);
    enum pl_data_format fmt = l_opt_format(L, 2, "peft.data.validate");
    struct pl_data_build_opts o = pl_data_build_defaults();
    lua_Integer msl = pl_lua_opt_int(L, 2, "max_seq_len", o.max_seq_len);
    if (msl < 2 || msl > INT32_MAX) luaL_error(L, "peft.data.validate: max_seq_len must be at least 2");
    o.max_seq_len = (int32_t)msl;
    o.train_on_prompt = pl_lua_opt_bool(L, 2, "train_on_prompt", 0);
    o.skip_bad = 1;
    int has_tok = 0;
    if (!lua_isnil(L, 2)) {
        lua_getfield(L, 2, "tokenizer");   /* 3 */
        lua_getfield(L, 2, "chat");        /* 4 */
        has_tok = !lua_isnil(L, 3);
    }
    int chat_tmpl = l_opt_chat_template(L, 2);
    struct l_tok tok;
    if (has_tok) { l_tok_setup(L, &tok, 3, 4); if (!chat_tmpl) tok.dt.completion_chat = 0; }
    struct pl_data_file *f = NULL;
    if (pl_data_read(&f, path, fmt) != PL_OK) {
        if (has_tok) l_tok_release(&tok);
        lua_pushnil(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    struct pl_dataset *ds = NULL;
    char build_err[512] = "";
    if (has_tok && f->n_records > 0 && pl_dataset_build(&ds, NULL, f, NULL, &tok.dt, &o) != PL_OK)
        snprintf(build_err, sizeof build_err, "%s", pl_last_error());
    if (has_tok) l_tok_release(&tok);
    /* build the report; only pushes from here (they raise only on memory exhaustion) */
    if (ds) push_report(L, ds);
    else lua_createtable(L, 0, 8);
    SETS("path", f->path);
    SETS("format", pl_data_format_name(f->format));
    SETI("records", f->n_seen);
    SETI("valid_records", f->n_records);
    SETI("skipped", f->n_seen - f->n_records);
    SETS("kind", f->is_array ? "json" : "jsonl");
    push_issues(L, f->issues, f->n_issues);
    lua_pushboolean(L, f->n_issues == 0 && build_err[0] == 0);
    lua_setfield(L, -2, "ok");
    if (build_err[0]) SETS("error", build_err);
    pl_dataset_free(ds);
    pl_data_file_free(f);
    return 1;
}

static int l_data_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    static const char *const allowed[] = { "format", NULL };
    pl_lua_check_options(L, 2, allowed, "peft.data.read");
    enum pl_data_format fmt = l_opt_format(L, 2, "peft.data.read");
    struct pl_data_file *f = NULL;
    if (pl_data_read(&f, path, fmt) != PL_OK) {
        lua_pushnil(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    lua_createtable(L, f->n_records, 0);
    for (int i = 0; i < f->n_records; i++) {
        const struct pl_data_record *r = &f->records[i];
        lua_createtable(L, 0, 4);
        SETI("line", r->line);
        switch (f->format) {
        case PL_DATA_TEXT: SETS("text", r->a); break;
        case PL_DATA_COMPLETION: SETS("prompt", r->a); SETS("completion", r->b); break;
        case PL_DATA_ALPACA: SETS("instruction", r->a); SETS("input", r->b); SETS("output", r->c); break;
        case PL_DATA_CHAT:
            lua_createtable(L, r->n_msgs, 0);
            for (int k = 0; k < r->n_msgs; k++) {
                lua_createtable(L, 0, 2);
                SETS("role", r->msgs[k].role);
                SETS("content", r->msgs[k].content);
                lua_rawseti(L, -2, k + 1);
            }
            lua_setfield(L, -2, "messages");
            break;
        default: break;
        }
        lua_rawseti(L, -2, i + 1);
    }
    lua_createtable(L, 0, 4);
    SETS("format", pl_data_format_name(f->format));
    SETI("seen", f->n_seen);
    SETS("kind", f->is_array ? "json" : "jsonl");
    push_issues(L, f->issues, f->n_issues);
    pl_data_file_free(f);
    return 2;
}

static int l_data_json_canonical(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char *c = pl_data_json_canonical(s, n);
    if (!c) { lua_pushnil(L); lua_pushstring(L, pl_last_error()); return 2; }
    lua_pushstring(L, c);
    pl_free(c);
    return 1;
}

/* ---------------------------------------------------------------- rng */

static struct pl_data_rng *l_rng_check(lua_State *L) { return luaL_checkudata(L, 1, RNG_MT); }

static int l_data_rng(lua_State *L)
{
    lua_Integer seed = luaL_optinteger(L, 1, 42);
    struct pl_data_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
    pl_data_rng_seed(r, (uint64_t)seed);
    luaL_setmetatable(L, RNG_MT);
    return 1;
}

static int l_rng_next(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)pl_data_rng_next(l_rng_check(L)));
    return 1;
}

static int l_rng_random(lua_State *L)
{
    struct pl_data_rng *r = l_rng_check(L);
    int n = lua_gettop(L);
    if (n == 1) { lua_pushnumber(L, pl_data_rng_uniform(r)); return 1; }
    lua_Integer lo = 1, hi;
    if (n == 2) hi = luaL_checkinteger(L, 2);
    else { lo = luaL_checkinteger(L, 2); hi = luaL_checkinteger(L, 3); }
    luaL_argcheck(L, lo <= hi, n, "interval is empty");
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    uint64_t x = span == 0 ? pl_data_rng_next(r) : pl_data_rng_below(r, span);
    lua_pushinteger(L, (lua_Integer)((uint64_t)lo + x));
    return 1;
}

static int l_rng_shuffle(lua_State *L)
{
    struct pl_data_rng *r = l_rng_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = n; i > 1; i--) {   /* Fisher–Yates, as pl_data_shuffle_i32 */
        lua_Integer j = (lua_Integer)pl_data_rng_below(r, (uint64_t)i) + 1;
        lua_rawgeti(L, 2, i);
        lua_rawgeti(L, 2, j);
        lua_rawseti(L, 2, i);
        lua_rawseti(L, 2, j);
    }
    lua_settop(L, 2);
    return 1;
}

static int l_rng_state(lua_State *L)
{
    struct pl_data_rng *r = l_rng_check(L);
    lua_createtable(L, 4, 0);
    for (int k = 0; k < 4; k++) { lua_pushinteger(L, (lua_Integer)r->s[k]); lua_rawseti(L, -2, k + 1); }
    return 1;
}

static int l_rng_set_state(lua_State *L)
{
    struct pl_data_rng *r = l_rng_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    uint64_t s[4], any = 0;
    for (int k = 0; k < 4; k++) {
        lua_rawgeti(L, 2, k + 1);
        int ok = 0;
        s[k] = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_argerror(L, 2, "state must be a list of 4 integers");
        lua_pop(L, 1);
        any |= s[k];
    }
    luaL_argcheck(L, any != 0, 2, "an all-zero state is not a valid xoshiro256** state");
    memcpy(r->s, s, sizeof s);
    return 0;
}

/* ---------------------------------------------------------------- module */

int luaopen_peft_data(lua_State *L)
{
    static const luaL_Reg ds_methods[] = {
        { "count", l_dataset_count }, { "example", l_dataset_example }, { "report", l_dataset_report },
        { "batches", l_dataset_batches }, { "path", l_dataset_path }, { "format", l_dataset_format },
        { "close", l_dataset_close }, { NULL, NULL }
    };
    pl_lua_new_class(L, DATASET_MT, ds_methods, l_dataset_close, l_dataset_tostring);
    lua_pushcfunction(L, l_dataset_count); lua_setfield(L, -2, "__len");
    lua_pop(L, 1);

    static const luaL_Reg it_methods[] = {
        { "next", l_batches_next }, { "state", l_batches_state }, { "restore", l_batches_restore },
        { "batches_per_epoch", l_batches_per_epoch }, { "close", l_batches_close }, { NULL, NULL }
    };
    pl_lua_new_class(L, BATCHES_MT, it_methods, l_batches_close, NULL);
    lua_pushcfunction(L, l_batches_call); lua_setfield(L, -2, "__call");
    lua_pop(L, 1);

    static const luaL_Reg rng_methods[] = {
        { "next", l_rng_next }, { "random", l_rng_random }, { "shuffle", l_rng_shuffle },
        { "state", l_rng_state }, { "set_state", l_rng_set_state }, { NULL, NULL }
    };
    pl_lua_new_class(L, RNG_MT, rng_methods, NULL, NULL);
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        { "load", l_data_load }, { "validate", l_data_validate }, { "read", l_data_read },
        { "json_canonical", l_data_json_canonical }, { "rng", l_data_rng }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
