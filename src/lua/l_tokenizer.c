/* l_tokenizer.c — peft.tokenizer: the Lua binding of include/peftlua/tokenizer.h and chat.h
 * (owner: tokenizer).
 *
 *   local tok = peft.tokenizer.load(path)      -- .gguf / tokenizer.json / tokenizer.bin;
 *                                              -- nil, message when the file cannot be opened
 *   tok:encode(s [, {bos=, eos=, special=}])   -- table of ids; bos/eos default to the
 *                                              -- vocabulary's add_bos/add_eos, special=false
 *   tok:decode(ids [, {special=, keep_prefix=}]) -- string
 *   tok:piece(id)   -- vocabulary string as stored ("▁the", "Ġthe"); tok:bytes(id) -- its text
 *   tok:find(s)     -- id of an exact vocabulary string or nil;  tok:type(id) -- "normal", ...
 *   tok:vocab_size(), tok:kind() ("spm"|"bpe"|"llama2c"|"wpm"), tok:pre(), tok.bos, tok.eos, tok.eot
 *   tok:chat(messages [, {add_generation_prompt=, template=}]) -> text, spans
 *       messages = { {role=, content=}, ... }; template = a family name ("chatml", "llama2",
 *       "llama3", "mistral", "zephyr") or a function(messages, opts) -> text [, spans] that
 *       renders instead; default: recognised from the model's template. spans: one
 *       {first, last, msg=, content_last=} per assistant message, 1-based inclusive byte
 *       positions from its content to the end of its turn (what training keeps).
 *   tok:template_family() -- family of the model's own template, or nil; tok:chat_template()
 *   tok:close() / <close> / __gc -- one release function
 */
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "pl_lua.h"
#include "peftlua/alloc.h"
#include "peftlua/chat.h"
#include "peftlua/tokenizer.h"

#define TOK_MT "peft.Tokenizer"

/* Layout relied on by other bindings (peft.data reads the first field): keep t first. */
struct l_tok { struct pl_tokenizer *t; };

/* For other binding files: the tokenizer of a peft.Tokenizer at idx, NULL if idx is not one;
 * raises if it is closed. (Declaration to be added to pl_lua.h.) */
struct pl_tokenizer *pl_lua_test_tokenizer(lua_State *L, int idx);
struct pl_tokenizer *pl_lua_test_tokenizer(lua_State *L, int idx)
{
    struct l_tok *u = luaL_testudata(L, idx, TOK_MT);
    if (!u) return NULL;
    if (!u->t) luaL_error(L, "peft.Tokenizer: used after close");
    return u->t;
}

static struct pl_tokenizer *l_tok_check(lua_State *L, int idx)
{
    luaL_checkudata(L, idx, TOK_MT);          /* raises naming the expected type */
    return pl_lua_test_tokenizer(L, idx);     /* raises if closed */
}

static int l_tok_release(lua_State *L)
{
    struct l_tok *u = luaL_checkudata(L, 1, TOK_MT);
    if (u->t) { pl_tokenizer_free(u->t); u->t = NULL; }
    return 0;
}

static int l_tokenizer_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct l_tok *u = lua_newuserdatauv(L, sizeof *u, 0);   /* closed until loaded */
    u->t = NULL;
    luaL_setmetatable(L, TOK_MT);
    enum pl_status st = pl_tokenizer_load(&u->t, path);
    if (st == PL_ERR_IO) { lua_pushnil(L); lua_pushstring(L, pl_last_error()); return 2; }
    if (st) return pl_lua_error(L);
    return 1;
}

static int l_tok_encode(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    static const char *const opts[] = { "bos", "eos", "special", NULL };
    pl_lua_check_options(L, 3, opts, "encode");
    unsigned fl = 0;
    if (pl_lua_opt_bool(L, 3, "bos", pl_tokenizer_add_bos(t))) fl |= PL_TOK_ADD_BOS;
    if (pl_lua_opt_bool(L, 3, "eos", pl_tokenizer_add_eos(t))) fl |= PL_TOK_ADD_EOS;
    if (pl_lua_opt_bool(L, 3, "special", 0)) fl |= PL_TOK_PARSE_SPECIAL;
    int32_t *ids; size_t n;
    if (pl_tokenizer_encode(t, s, len, fl, &ids, &n) != PL_OK) return pl_lua_error(L);
    if (!lua_checkstack(L, 4) || n > (size_t)INT32_MAX) { pl_free(ids); return luaL_error(L, "encode: too many tokens"); }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) { lua_pushinteger(L, ids[i]); lua_rawseti(L, -2, (lua_Integer)i + 1); }
    pl_free(ids);
    return 1;
}

static int l_tok_decode(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const opts[] = { "special", "keep_prefix", NULL };
    pl_lua_check_options(L, 3, opts, "decode");
    unsigned fl = 0;
    if (pl_lua_opt_bool(L, 3, "special", 0)) fl |= PL_TOK_DECODE_SPECIAL;
    if (pl_lua_opt_bool(L, 3, "keep_prefix", 0)) fl |= PL_TOK_DECODE_KEEP_PREFIX;
    size_t n = lua_rawlen(L, 2);
    int32_t *ids = pl_alloc((n ? n : 1) * sizeof *ids, PL_MEM_WORKSPACE);
    if (!ids) return luaL_error(L, "decode: out of memory");
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 0 || v >= pl_tokenizer_n_vocab(t)) {
            pl_free(ids);
            return luaL_error(L, "decode: ids[%d] is not a token id in [0, %d)", (int)i + 1, (int)pl_tokenizer_n_vocab(t));
        }
        ids[i] = (int32_t)v;
    }
    char *s; size_t len;
    enum pl_status st = pl_tokenizer_decode(t, ids, n, fl, &s, &len);
    pl_free(ids);
    if (st) return pl_lua_error(L);
    lua_pushlstring(L, s, len);
    pl_free(s);
    return 1;
}

static int32_t l_tok_id(lua_State *L, struct pl_tokenizer *t, int idx)
{
    lua_Integer id = luaL_checkinteger(L, idx);
    if (id < 0 || id >= pl_tokenizer_n_vocab(t))
        luaL_error(L, "token id %d is out of range [0, %d)", (int)id, (int)pl_tokenizer_n_vocab(t));
    return (int32_t)id;
}

static int l_tok_piece(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    size_t len;
    const char *p = pl_tokenizer_piece(t, l_tok_id(L, t, 2), &len);
    lua_pushlstring(L, p, len);
    return 1;
}

static int l_tok_bytes(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    int32_t id = l_tok_id(L, t, 2);
    int special = lua_toboolean(L, 3);
    int n = pl_tokenizer_token_bytes(t, id, special, NULL, 0);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n + 1);
    pl_tokenizer_token_bytes(t, id, special, p, (size_t)n + 1);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int l_tok_find(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int32_t id = pl_tokenizer_find(t, s, len);
    if (id < 0) lua_pushnil(L); else lua_pushinteger(L, id);
    return 1;
}

static int l_tok_type(lua_State *L)
{
    static const char *const names[] = { "undefined", "normal", "unknown", "control", "user_defined", "unused", "byte" };
    struct pl_tokenizer *t = l_tok_check(L, 1);
    lua_pushstring(L, names[pl_tokenizer_type(t, l_tok_id(L, t, 2))]);
    return 1;
}

static int l_tok_vocab_size(lua_State *L) { lua_pushinteger(L, pl_tokenizer_n_vocab(l_tok_check(L, 1))); return 1; }
static int l_tok_pre(lua_State *L) { lua_pushstring(L, pl_tokenizer_pre_name(l_tok_check(L, 1))); return 1; }
static int l_tok_kind(lua_State *L)
{
    static const char *const k[] = { "spm", "bpe", "llama2c", "wpm" };
    lua_pushstring(L, k[pl_tokenizer_kind(l_tok_check(L, 1))]);
    return 1;
}

static int l_tok_chat_template(lua_State *L)
{
    const char *s = pl_tokenizer_chat_template(l_tok_check(L, 1));
    if (s) lua_pushstring(L, s); else lua_pushnil(L);
    return 1;
}

static int l_tok_template_family(lua_State *L)
{
    enum pl_chat_family f = pl_chat_detect(pl_tokenizer_chat_template(l_tok_check(L, 1)));
    if (f == PL_CHAT_NONE) lua_pushnil(L); else lua_pushstring(L, pl_chat_family_name(f));
    return 1;
}

/* tok:chat(messages [, opts]) */
static int l_tok_chat(lua_State *L)
{
    struct pl_tokenizer *t = l_tok_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const opts[] = { "add_generation_prompt", "template", NULL };
    pl_lua_check_options(L, 3, opts, "chat");
    int gen = pl_lua_opt_bool(L, 3, "add_generation_prompt", 0);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "template") == LUA_TFUNCTION) {
        /* a Lua renderer overrides the template: fn(messages, opts) -> text [, spans] */
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_call(L, 2, 2);
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "chat: the template function must return a string");
        if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_newtable(L); }
        return 2;
    }
    const char *family = NULL;
    if (lua_istable(L, 3)) {
        lua_settop(L, 3);
        family = pl_lua_opt_str(L, 3, "template", NULL);
    }
    size_t n = lua_rawlen(L, 2);
    /* scratch for the message array, owned by the GC (no leak if a check below raises); the
     * role/content strings stay referenced by the messages table at index 2 */
    struct pl_chat_msg *m = lua_newuserdatauv(L, (n ? n : 1) * sizeof *m, 0);
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE) return luaL_error(L, "chat: messages[%d] is not a table", (int)i + 1);
        if (lua_getfield(L, -1, "role") != LUA_TSTRING) return luaL_error(L, "chat: messages[%d].role is not a string", (int)i + 1);
        if (lua_getfield(L, -2, "content") != LUA_TSTRING) return luaL_error(L, "chat: messages[%d].content is not a string", (int)i + 1);
        m[i].role = lua_tostring(L, -2);
        m[i].content = lua_tostring(L, -1);
        lua_pop(L, 3);
    }
    struct pl_chat_result r;
    if (pl_chat_render_tok(t, family, m, n, gen, &r) != PL_OK) return pl_lua_error(L);
    if (!lua_checkstack(L, 6)) { pl_chat_result_free(&r); return luaL_error(L, "chat: Lua stack overflow"); }
    lua_pushlstring(L, r.text, r.len);
    lua_createtable(L, (int)r.n_spans, 0);
    for (size_t k = 0; k < r.n_spans; k++) {
        lua_createtable(L, 2, 2);
        lua_pushinteger(L, (lua_Integer)r.spans[k].start + 1); lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)r.spans[k].turn_end); lua_rawseti(L, -2, 2);
        lua_pushinteger(L, (lua_Integer)r.spans[k].msg + 1); lua_setfield(L, -2, "msg");
        lua_pushinteger(L, (lua_Integer)r.spans[k].end); lua_setfield(L, -2, "content_last");
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    pl_chat_result_free(&r);
    return 2;
}

static int l_tok_index(lua_State *L)
{
    struct l_tok *u = luaL_checkudata(L, 1, TOK_MT);
    const char *k = luaL_checkstring(L, 2);
    if (u->t) {
        int32_t v = -2;
        if (strcmp(k, "bos") == 0) v = pl_tokenizer_bos(u->t);
        else if (strcmp(k, "eos") == 0) v = pl_tokenizer_eos(u->t);
        else if (strcmp(k, "eot") == 0) v = pl_tokenizer_eot(u->t);
        if (v >= 0) { lua_pushinteger(L, v); return 1; }
        if (v == -1) { lua_pushnil(L); return 1; }
    }
    luaL_getmetatable(L, TOK_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int l_tok_tostring(lua_State *L)
{
    struct l_tok *u = luaL_checkudata(L, 1, TOK_MT);
    if (!u->t) { lua_pushliteral(L, "peft.Tokenizer (closed)"); return 1; }
    static const char *const k[] = { "spm", "bpe", "llama2c", "wpm" };
    lua_pushfstring(L, "peft.Tokenizer (%s%s%s, %d tokens)", k[pl_tokenizer_kind(u->t)],
                    *pl_tokenizer_pre_name(u->t) ? " " : "", pl_tokenizer_pre_name(u->t),
                    (int)pl_tokenizer_n_vocab(u->t));
    return 1;
}

static const luaL_Reg tok_methods[] = {
    {"encode", l_tok_encode}, {"decode", l_tok_decode}, {"piece", l_tok_piece}, {"bytes", l_tok_bytes},
    {"find", l_tok_find}, {"type", l_tok_type}, {"vocab_size", l_tok_vocab_size}, {"kind", l_tok_kind},
    {"pre", l_tok_pre}, {"chat", l_tok_chat}, {"chat_template", l_tok_chat_template},
    {"template_family", l_tok_template_family}, {"close", l_tok_release}, {NULL, NULL}
};

static const luaL_Reg tok_meta[] = {
    {"__index", l_tok_index}, {"__gc", l_tok_release}, {"__close", l_tok_release},
    {"__tostring", l_tok_tostring}, {NULL, NULL}
};

static int l_tokenizer_families(lua_State *L)
{
    lua_newtable(L);
    for (int f = PL_CHAT_CHATML; f <= PL_CHAT_ZEPHYR; f++) {
        lua_pushstring(L, pl_chat_family_name((enum pl_chat_family)f));
        lua_rawseti(L, -2, f);
    }
    return 1;
}

/* peft.tokenizer.detect(template_string) -> family name or nil */
static int l_tokenizer_detect(lua_State *L)
{
    enum pl_chat_family f = pl_chat_detect(luaL_checkstring(L, 1));
    if (f == PL_CHAT_NONE) lua_pushnil(L); else lua_pushstring(L, pl_chat_family_name(f));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"load", l_tokenizer_load}, {"families", l_tokenizer_families}, {"detect", l_tokenizer_detect},
    {NULL, NULL}
};

int luaopen_peft_tokenizer(lua_State *L)
{
    luaL_newmetatable(L, TOK_MT);
    luaL_setfuncs(L, tok_meta, 0);
    luaL_newlib(L, tok_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
