/* pl_lua.c — option-table helpers shared by the bindings (see pl_lua.h). */
#include <math.h>
#include <string.h>
#include "peftlua/json.h"
#include "pl_lua.h"

int pl_lua_error(lua_State *L)
{
    return luaL_error(L, "%s", pl_last_error());
}

void pl_lua_new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction release, lua_CFunction tostring)
{
    luaL_newmetatable(L, mt);
    lua_newtable(L);
    if (methods) luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (release) {
        lua_pushcfunction(L, release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, release);
        lua_setfield(L, -2, "__close");
    }
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
}

void pl_lua_check_options(lua_State *L, int idx, const char *const allowed[], const char *what)
{
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: option keys must be strings", what);
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], k) == 0) { ok = 1; break; }
        if (!ok) luaL_error(L, "%s: unknown option '%s'", what, k);
    }
}

static int pl_lua_field(lua_State *L, int idx, const char *key)
{
    if (lua_isnoneornil(L, idx)) return LUA_TNIL;
    return lua_getfield(L, idx, key);
}

lua_Integer pl_lua_opt_int(lua_State *L, int idx, const char *key, lua_Integer dflt)
{
    idx = lua_absindex(L, idx);
    int t = pl_lua_field(L, idx, key);
    if (t == LUA_TNIL) { if (!lua_isnoneornil(L, idx)) lua_pop(L, 1); return dflt; }
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint) luaL_error(L, "option '%s' must be an integer", key);
    lua_pop(L, 1);
    return v;
}

lua_Number pl_lua_opt_num(lua_State *L, int idx, const char *key, lua_Number dflt)
{
    idx = lua_absindex(L, idx);
    int t = pl_lua_field(L, idx, key);
    if (t == LUA_TNIL) { if (!lua_isnoneornil(L, idx)) lua_pop(L, 1); return dflt; }
    if (t != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number", key);
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

int pl_lua_opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
    idx = lua_absindex(L, idx);
    int t = pl_lua_field(L, idx, key);
    if (t == LUA_TNIL) { if (!lua_isnoneornil(L, idx)) lua_pop(L, 1); return dflt; }
    if (t != LUA_TBOOLEAN) luaL_error(L, "option '%s' must be a boolean", key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The returned string stays valid while the options table holds it. */
const char *pl_lua_opt_str(lua_State *L, int idx, const char *key, const char *dflt)
{
    idx = lua_absindex(L, idx);
    int t = pl_lua_field(L, idx, key);
    if (t == LUA_TNIL) { if (!lua_isnoneornil(L, idx)) lua_pop(L, 1); return dflt; }
    if (t != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", key);
    const char *v = lua_tostring(L, -1);
    lua_pop(L, 1);
    return v;
}

/* JSON -> Lua (depth-limited by the parser's own nesting limit and the Lua stack check) */
void pl_lua_push_json(lua_State *L, const struct pl_json *j)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    switch (pl_json_type(j)) {
    case PL_JSON_BOOL: lua_pushboolean(L, pl_json_bool(j, 0)); break;
    case PL_JSON_NUMBER: {
        double v = pl_json_num(j, 0);
        if (v == floor(v) && fabs(v) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)v);
        else lua_pushnumber(L, v);
        break;
    }
    case PL_JSON_STRING: lua_pushstring(L, pl_json_str(j)); break;
    case PL_JSON_ARRAY: {
        int n = pl_json_len(j), i = 1;
        lua_createtable(L, n, 0);
        for (struct pl_json *c = pl_json_first(j); c; c = pl_json_next(c), i++) {
            pl_lua_push_json(L, c);
            lua_rawseti(L, -2, i);
        }
        break;
    }
    case PL_JSON_OBJECT:
        lua_createtable(L, 0, pl_json_len(j));
        for (struct pl_json *c = pl_json_first(j); c; c = pl_json_next(c)) {
            pl_lua_push_json(L, c);
            lua_setfield(L, -2, pl_json_key(c));
        }
        break;
    default: lua_pushnil(L); break;
    }
}
