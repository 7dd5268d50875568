/* pl_open.c — the peft modules registered in a Lua state; shared by the peftlua host
 * (src/host/main.c) and peft.so, the Lua C module a stock lua5.4 loads with require "peft"
 * (luaopen_peft). Not a Lua module itself.
 *
 * Each C module peft.<name> (src/lua/l_<name>.c, listed in the generated pl_modules.h) is a
 * package.preload entry that opens the C table and lets lua/peft/<name>.lua extend it; the
 * Lua layer's directory goes first on package.path and into the global PEFTLUA_LUA_DIR.
 * peft.so finds that directory from its own file: PREFIX/lib/lua/5.4/peft.so reads
 * PREFIX/share/peftlua/lua (as installed by `make install`), a build tree's peft.so the source
 * tree it was built from; PEFTLUA_LUA_DIR in the environment overrides both.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "peftlua/blas.h"
#include "peftlua/hw.h"
#include "pl_lua.h"

#define PL_MODULE(n) int luaopen_peft_##n(lua_State *L);
#include "pl_modules.h"
#undef PL_MODULE

struct pl_cmodule { const char *name; lua_CFunction open; };
static const struct pl_cmodule pl_cmodules[] = {
#define PL_MODULE(n) { #n, luaopen_peft_##n },
#include "pl_modules.h"
#undef PL_MODULE
    { NULL, NULL }
};

/* package.preload["peft.<name>"]: open the C module, then let lua/peft/<name>.lua (if any)
 * extend it; that file receives the C table as its first argument and returns the module. */
static int load_cmodule(lua_State *L)
{
    lua_CFunction open = lua_tocfunction(L, lua_upvalueindex(1));
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    const char *dir = lua_tostring(L, lua_upvalueindex(3));
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/peft/%s.lua", dir, name);
    if (access(path, R_OK) == 0) {
        if (luaL_loadfile(L, path) != LUA_OK) return lua_error(L);
        lua_pushvalue(L, -2);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_remove(L, -2);
    }
    return 1;
}

void pl_lua_register_modules(lua_State *L, const char *luadir)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", luadir, luadir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    for (const struct pl_cmodule *m = pl_cmodules; m->name; m++) {
        lua_pushfstring(L, "peft.%s", m->name);
        lua_pushcfunction(L, m->open);
        lua_pushstring(L, m->name);
        lua_pushstring(L, luadir);
        lua_pushcclosure(L, load_cmodule, 3);
        lua_settable(L, -3);
    }
    lua_pop(L, 2);
    /* list of C modules for peft/init.lua */
    lua_newtable(L);
    int i = 1;
    for (const struct pl_cmodule *m = pl_cmodules; m->name; m++) {
        lua_pushstring(L, m->name);
        lua_rawseti(L, -2, i++);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "peft.cmodules");
    lua_pushstring(L, luadir);
    lua_setglobal(L, "PEFTLUA_LUA_DIR");
}

static int isdir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* the Lua layer for peft.so: PEFTLUA_LUA_DIR, else beside the installed module, else the
 * source tree it was built from */
static void module_luadir(char *out, size_t n)
{
    const char *env = getenv("PEFTLUA_LUA_DIR");
    if (env && *env) { snprintf(out, n, "%s", env); return; }
    Dl_info info;
    if (dladdr((void *)pl_lua_register_modules, &info) && info.dli_fname) {
        char so[PATH_MAX];
        snprintf(so, sizeof so, "%s", info.dli_fname);
        char *slash = strrchr(so, '/');
        if (slash) {
            *slash = 0;
            char cand[PATH_MAX + 64], real[PATH_MAX];
            snprintf(cand, sizeof cand, "%s/../../../share/peftlua/lua", so);   /* lib/lua/5.4 */
            if (isdir(cand) && realpath(cand, real)) { snprintf(out, n, "%s", real); return; }
        }
    }
    snprintf(out, n, "%s", PL_LUA_DIR);
}

/* require "peft" from a stock Lua 5.4: register the modules, set the engine's thread count
 * from the hardware report (as the host does), run peft/init.lua and return the peft table
 * (also set as the global `peft`, which the Lua layer uses). */
int luaopen_peft(lua_State *L)
{
    char dir[PATH_MAX + 64];
    module_luadir(dir, sizeof dir);
    char init[2 * PATH_MAX];
    snprintf(init, sizeof init, "%s/peft/init.lua", dir);
    if (access(init, R_OK) != 0)
        return luaL_error(L, "peft: the Lua layer is not in %s (set PEFTLUA_LUA_DIR to the folder holding peft/init.lua)", dir);
    struct pl_hw hw;
    if (pl_hw_query(&hw) == PL_OK) pl_blas_set_threads(pl_hw_default_threads(&hw));
    pl_lua_register_modules(L, dir);
    if (luaL_loadfile(L, init) != LUA_OK) return lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "peft");
    return 1;
}
