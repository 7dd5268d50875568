/* pl_options.c — the training option table (include/peftlua/options.h) for the Lua layer;
 * not a Lua module itself: l_train.c sets it as peft.train._options, which
 * lua/peft/train_options.lua builds its check, help and documentation from.
 *
 *   _options.list                  {descriptor}: {name, type, group, default, doc, required,
 *                                   min, max, min_open, max_open, choices, keys, help}
 *   _options.range_text(name)      "an integer >= 1"
 *   _options.check_number(name, v) nil | "is out of range (...)"
 *   _options.check_choice(name, s) nil | "is not one of ..."
 */
#include <string.h>

#include "peftlua/options.h"
#include "pl_lua.h"

static const struct pl_option *check_option(lua_State *L, int idx)
{
    const char *name = luaL_checkstring(L, idx);
    const struct pl_option *o = pl_option_find(name);
    if (!o) luaL_error(L, "peft.train: no option '%s'", name);
    return o;
}

static int l_range_text(lua_State *L)
{
    char b[128];
    lua_pushstring(L, pl_option_range_text(check_option(L, 1), b, sizeof b));
    return 1;
}

static int l_check_number(lua_State *L)
{
    const struct pl_option *o = check_option(L, 1);
    char why[256];
    if (pl_option_check_number(o, luaL_checknumber(L, 2), why, sizeof why)) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 1;
}

static int l_check_choice(lua_State *L)
{
    const struct pl_option *o = check_option(L, 1);
    char why[512];
    if (pl_option_check_choice(o, lua_tostring(L, 2), why, sizeof why) < 0) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 1;
}

/* a default as Lua sees it: numbers as written ("16" an integer, "1.0" a float) */
static void push_default(lua_State *L, const struct pl_option *o)
{
    switch (o->type) {
    case PL_OPT_INTEGER: case PL_OPT_NUMBER: case PL_OPT_SIZE:
        if (lua_stringtonumber(L, o->dflt) == 0) lua_pushstring(L, o->dflt);
        break;
    case PL_OPT_BOOLEAN: case PL_OPT_BOOL_OR_INT: case PL_OPT_TRACKING:
        if (!strcmp(o->dflt, "true") || !strcmp(o->dflt, "false")) lua_pushboolean(L, o->dflt[0] == 't');
        else if (lua_stringtonumber(L, o->dflt) == 0) lua_pushstring(L, o->dflt);
        break;
    default:
        lua_pushstring(L, o->dflt);
    }
}

static void push_strings(lua_State *L, const char *const *s)
{
    lua_newtable(L);
    for (int i = 0; s[i]; i++) {
        lua_pushstring(L, s[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void push_bound(lua_State *L, double v)
{
    if (v == (double)(lua_Integer)v) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
}

void pl_lua_push_options(lua_State *L)
{
    int n;
    const struct pl_option *t = pl_train_options(&n);
    lua_createtable(L, 0, 4);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const struct pl_option *o = &t[i];
        lua_createtable(L, 0, 12);
        lua_pushstring(L, o->name); lua_setfield(L, -2, "name");
        lua_pushstring(L, pl_option_type_name(o->type)); lua_setfield(L, -2, "type");
        lua_pushstring(L, o->group); lua_setfield(L, -2, "group");
        lua_pushstring(L, o->help); lua_setfield(L, -2, "help");
        if (o->dflt) { push_default(L, o); lua_setfield(L, -2, "default"); }
        if (o->doc) { lua_pushstring(L, o->doc); lua_setfield(L, -2, "doc"); }
        if (o->flags & PL_OPT_REQUIRED) { lua_pushboolean(L, 1); lua_setfield(L, -2, "required"); }
        if (o->flags & PL_OPT_HAS_MIN) { push_bound(L, o->min); lua_setfield(L, -2, "min"); }
        if (o->flags & PL_OPT_HAS_MAX) { push_bound(L, o->max); lua_setfield(L, -2, "max"); }
        if (o->flags & PL_OPT_MIN_OPEN) { lua_pushboolean(L, 1); lua_setfield(L, -2, "min_open"); }
        if (o->flags & PL_OPT_MAX_OPEN) { lua_pushboolean(L, 1); lua_setfield(L, -2, "max_open"); }
        if (o->choices) { push_strings(L, o->choices); lua_setfield(L, -2, "choices"); }
        if (o->keys) { push_strings(L, o->keys); lua_setfield(L, -2, "keys"); }
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "list");
    static const luaL_Reg fns[] = {
        { "range_text", l_range_text },
        { "check_number", l_check_number },
        { "check_choice", l_check_choice },
        { NULL, NULL }
    };
    luaL_setfuncs(L, fns, 0);
}
