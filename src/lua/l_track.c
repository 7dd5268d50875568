/* l_track.c — peft.track (C part): what the run records need from outside Lua; the records,
 * the MLflow file store and the model registry are lua/peft/track.lua.
 *
 *   peft.track.build()      → { commit = "v0.1.0-12-gabc1234[-dirty]" | nil } — `git describe`
 *                             of the tree peftlua was built from (Makefile: build/gen/pl_build.h)
 *   peft.track.now_ms()     → wall-clock milliseconds since 1970 (MLflow's timestamps)
 *   peft.track.random_hex(n) → 2n hex digits from the system's random source (run ids), not
 *                             from math.random (a script's math.randomseed must not repeat ids)
 * Owner: track.
 */
#include <stdio.h>
#include <time.h>
#include "pl_lua.h"
#include "pl_build.h"

static int l_track_build(lua_State *L)
{
    lua_createtable(L, 0, 1);
    if (PL_GIT_COMMIT[0]) { lua_pushstring(L, PL_GIT_COMMIT); lua_setfield(L, -2, "commit"); }
    return 1;
}

static int l_track_now_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static int l_track_random_hex(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 64, 1, "1..64 bytes");
    unsigned char b[64];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(b, 1, (size_t)n, f) : 0;
    if (f) fclose(f);
    if (got != (size_t)n) {
        /* no /dev/urandom: the clock and an address, mixed (splitmix64) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
        x ^= (unsigned long long)(size_t)&x;
        for (lua_Integer i = 0; i < n; i++) {
            x += 0x9e3779b97f4a7c15ull;
            unsigned long long z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            b[i] = (unsigned char)(z ^ (z >> 31));
        }
    }
    char hex[129];
    for (lua_Integer i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
    lua_pushlstring(L, hex, (size_t)(2 * n));
    return 1;
}

int luaopen_peft_track(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "build", l_track_build }, { "now_ms", l_track_now_ms }, { "random_hex", l_track_random_hex },
        { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
