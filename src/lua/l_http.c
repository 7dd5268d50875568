/* l_http.c — peft.http: the Lua binding of include/peftlua/http.h (owner: serve). The Lua
 * thread is the server's one worker: it takes requests in order and answers each.
 *
 *   local srv <close> = peft.http.server{host = "127.0.0.1", port = 0, max_body = bytes,
 *       max_queue = 64, max_connections = 64, idle_timeout = seconds, token = "...",
 *       token_cookie = "name", headers = {["X-Frame-Options"] = "DENY", ...}}
 *   srv:route(method, path [, {body = "none"|"json"|"raw"|"file", max_body =, spool = dir,
 *                              auth = bool, prefix = bool}])   -- requests go to srv:next()
 *   srv:static(prefix, dir [, {auth = bool}])    -- files served by the connection threads
 *   srv:fixed(method, path, status, body [, {content_type =, auth =}])  -- answered by them too;
 *                                                   calling again replaces the body
 *   srv:start() -> port;  srv:port();  srv:queued() -> requests waiting
 *   srv:next([timeout_s]) -> req | nil (timeout); Ctrl-C raises "interrupted"
 *   srv:close()   (also __gc / __close)
 *
 *   req.id, req.method, req.path, req.body (string or nil), req.body_path (file bodies: a file
 *   of the request's, removed when the request is released unless moved away), req.body_size,
 *   req.json (JSON bodies: the parsed document)
 *   req:header(name), req:headers() -> {lowercased name = value}, req:query(name), req:queries()
 *   req:respond(status, body [, headers])          -- headers {name = value}; default JSON
 *   req:error(status, message [, type [, code]])   -- {"error":{"message","type","code"}}
 *   req:stream(status [, headers]); req:write(s) -> true | false, message (client gone);
 *   req:finish();  req:gone() -> the client has hung up
 *   req:release()  (also __gc / __close; an unanswered request is answered 500)
 *
 *   peft.http.json(value) -> text   (tables with a sequence part, or marked by peft.http.array,
 *                                    are arrays; peft.http.null is null; strings are made valid
 *                                    UTF-8, invalid bytes becoming U+FFFD)
 *   peft.http.decode(text [, what]) -> value | nil, message   (the same parser as request bodies)
 *   peft.http.array([t]) -> t marked as a JSON array (so an empty one prints as [])
 *   peft.http.utf8_split(s) -> head, tail: tail is an incomplete UTF-8 sequence at the end of s
 *                              (streamed tokens may split a character), head the rest
 */
#include <math.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "peftlua/alloc.h"
#include "peftlua/http.h"
#include "peftlua/json.h"
#include "peftlua/unicode.h"
#include "pl_lua.h"

#define SRV_MT "peft.HttpServer"
#define REQ_MT "peft.HttpRequest"
#define ARRAY_MT "peft.http.array"

struct l_srv { struct pl_http_server *s; };
struct l_req { struct pl_http_req *r; };

static struct l_srv *l_srv_check(lua_State *L, int idx)
{
    struct l_srv *u = luaL_checkudata(L, idx, SRV_MT);
    if (!u->s) luaL_error(L, "peft.http: the server is closed");
    return u;
}

static struct pl_http_req *l_req_check(lua_State *L, int idx)
{
    struct l_req *u = luaL_checkudata(L, idx, REQ_MT);
    if (!u->r) luaL_error(L, "peft.http: the request is released");
    return u->r;
}

/* headers {name = value} at idx -> a NULL-terminated list in a GC-owned userdata (pushed) */
static const char **l_http_headers(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) { lua_pushnil(L); return NULL; }
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
    const char **h = lua_newuserdatauv(L, (size_t)(2 * n + 1) * sizeof *h, 0);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "peft.http: headers must be {name = value} strings");
        h[i++] = lua_tostring(L, -2);   /* the table keeps both alive */
        h[i++] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    h[i] = NULL;
    return h;
}

/* ---------------------------------------------------------------- server */

static int l_http_server(lua_State *L)
{
    static const char *const allowed[] = { "host", "port", "max_body", "max_queue", "max_connections",
                                           "idle_timeout", "token", "token_cookie", "headers", NULL };
    pl_lua_check_options(L, 1, allowed, "peft.http.server");
    struct pl_http_opts o = { 0 };
    o.host = pl_lua_opt_str(L, 1, "host", NULL);
    lua_Integer port = pl_lua_opt_int(L, 1, "port", 8080);
    if (port < 0 || port > 65535) return luaL_error(L, "peft.http.server: port %d is not in 0..65535", (int)port);
    o.port = (int)port;
    lua_Integer mb = pl_lua_opt_int(L, 1, "max_body", 1 << 20);
    if (mb < 1) return luaL_error(L, "peft.http.server: max_body must be at least 1");
    o.max_body = (size_t)mb;
    o.max_queue = (int)pl_lua_opt_int(L, 1, "max_queue", 64);
    o.max_connections = (int)pl_lua_opt_int(L, 1, "max_connections", 64);
    o.idle_timeout_s = (unsigned)pl_lua_opt_int(L, 1, "idle_timeout", 60);
    if (o.max_queue < 1 || o.max_connections < 1)
        return luaL_error(L, "peft.http.server: max_queue and max_connections must be at least 1");
    o.token = pl_lua_opt_str(L, 1, "token", NULL);
    o.token_cookie = pl_lua_opt_str(L, 1, "token_cookie", NULL);
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "headers");
        o.headers = l_http_headers(L, lua_gettop(L));
    }
    struct l_srv *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, SRV_MT);
    if (pl_http_new(&u->s, &o) != PL_OK) return pl_lua_error(L);
    return 1;
}

static int l_srv_release(lua_State *L)
{
    struct l_srv *u = luaL_checkudata(L, 1, SRV_MT);
    if (u->s) { pl_http_close(u->s); u->s = NULL; }
    return 0;
}

static unsigned l_route_flags(lua_State *L, int idx)
{
    return (pl_lua_opt_bool(L, idx, "auth", 0) ? PL_HTTP_AUTH : 0) |
           (pl_lua_opt_bool(L, idx, "prefix", 0) ? PL_HTTP_PREFIX : 0);
}

static int l_srv_route(lua_State *L)
{
    struct l_srv *u = l_srv_check(L, 1);
    const char *method = luaL_checkstring(L, 2), *path = luaL_checkstring(L, 3);
    static const char *const allowed[] = { "body", "max_body", "spool", "auth", "prefix", NULL };
    pl_lua_check_options(L, 4, allowed, "route");
    static const char *const kinds[] = { "none", "json", "raw", "file", NULL };
    const char *k = pl_lua_opt_str(L, 4, "body", "none");
    int kind = -1;
    for (int i = 0; kinds[i]; i++) if (strcmp(k, kinds[i]) == 0) kind = i;
    if (kind < 0) return luaL_error(L, "route: body must be none, json, raw or file, not '%s'", k);
    lua_Integer mb = pl_lua_opt_int(L, 4, "max_body", 0);
    if (mb < 0) return luaL_error(L, "route: max_body must be >= 0");
    if (pl_http_route(u->s, method, path, l_route_flags(L, 4), (enum pl_http_body)kind, (size_t)mb,
                      pl_lua_opt_str(L, 4, "spool", NULL)) != PL_OK)
        return pl_lua_error(L);
    return 0;
}

static int l_srv_static(lua_State *L)
{
    struct l_srv *u = l_srv_check(L, 1);
    const char *prefix = luaL_checkstring(L, 2), *dir = luaL_checkstring(L, 3);
    static const char *const allowed[] = { "auth", NULL };
    pl_lua_check_options(L, 4, allowed, "static");
    if (pl_http_static(u->s, prefix, dir, l_route_flags(L, 4)) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_srv_fixed(lua_State *L)
{
    struct l_srv *u = l_srv_check(L, 1);
    const char *method = luaL_checkstring(L, 2), *path = luaL_checkstring(L, 3);
    int status = (int)luaL_checkinteger(L, 4);
    size_t n;
    const char *body = luaL_checklstring(L, 5, &n);
    static const char *const allowed[] = { "content_type", "auth", NULL };
    pl_lua_check_options(L, 6, allowed, "fixed");
    if (pl_http_fixed(u->s, method, path, l_route_flags(L, 6), status,
                      pl_lua_opt_str(L, 6, "content_type", "application/json"), body, n) != PL_OK)
        return pl_lua_error(L);
    return 0;
}

static int l_srv_start(lua_State *L)
{
    struct l_srv *u = l_srv_check(L, 1);
    if (pl_http_start(u->s) != PL_OK) return pl_lua_error(L);
    lua_pushinteger(L, pl_http_port(u->s));
    return 1;
}

static int l_srv_port(lua_State *L)
{
    lua_pushinteger(L, pl_http_port(l_srv_check(L, 1)->s));
    return 1;
}

static int l_srv_queued(lua_State *L)
{
    lua_pushinteger(L, pl_http_queued(l_srv_check(L, 1)->s));
    return 1;
}

static int l_srv_next(lua_State *L)
{
    struct l_srv *u = l_srv_check(L, 1);
    lua_Number t = luaL_optnumber(L, 2, -1);
    int ms = t < 0 ? -1 : t > 86400 ? 86400000 : (int)(t * 1000);
    struct l_req *q = lua_newuserdatauv(L, sizeof *q, 2);   /* closed until a request comes */
    q->r = NULL;
    luaL_setmetatable(L, REQ_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);   /* the server outlives its requests */
    if (pl_http_next(u->s, ms, &q->r) != PL_OK) return pl_lua_error(L);
    if (!q->r) lua_pushnil(L);
    return 1;
}

/* ---------------------------------------------------------------- requests */

static int l_req_release(lua_State *L)
{
    struct l_req *u = luaL_checkudata(L, 1, REQ_MT);
    if (u->r) { pl_http_req_release(u->r); u->r = NULL; }
    return 0;
}

static int l_req_header(lua_State *L)
{
    const char *v = pl_http_req_header(l_req_check(L, 1), luaL_checkstring(L, 2));
    if (v) lua_pushstring(L, v); else lua_pushnil(L);
    return 1;
}

static int l_req_query(lua_State *L)
{
    const char *v = pl_http_req_query(l_req_check(L, 1), luaL_checkstring(L, 2));
    if (v) lua_pushstring(L, v); else lua_pushnil(L);
    return 1;
}

static int l_req_headers(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    lua_newtable(L);
    const char *k, *v;
    for (int i = 0; (k = pl_http_req_header_at(r, i, &v)); i++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *p = k; *p; p++) luaL_addchar(&b, (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p);
        luaL_pushresult(&b);
        lua_pushstring(L, v);
        lua_settable(L, -3);
    }
    return 1;
}

static int l_req_queries(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    lua_newtable(L);
    const char *k, *v;
    for (int i = 0; (k = pl_http_req_query_at(r, i, &v)); i++) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
    return 1;
}

static int l_req_respond(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    int status = (int)luaL_checkinteger(L, 2);
    size_t n = 0;
    const char *body = luaL_optlstring(L, 3, "", &n);
    const char **h = l_http_headers(L, 4);
    if (pl_http_respond(r, status, h, body, n) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_req_error(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    int status = (int)luaL_checkinteger(L, 2);
    const char *msg = luaL_checkstring(L, 3);
    const char *type = luaL_optstring(L, 4, status >= 500 ? "server_error" : "invalid_request_error");
    const char *code = luaL_optstring(L, 5, NULL);
    if (pl_http_respond_error(r, status, msg, type, code) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_req_stream(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    int status = (int)luaL_checkinteger(L, 2);
    const char **h = l_http_headers(L, 3);
    if (pl_http_stream_start(r, status, h) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_req_write(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    enum pl_status st = pl_http_stream_write(r, s, n);
    if (st == PL_ERR_IO) {   /* the client went: an expected outcome, not an error */
        luaL_pushfail(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    if (st != PL_OK) return pl_lua_error(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_req_finish(lua_State *L)
{
    pl_http_stream_end(l_req_check(L, 1));
    return 0;
}

static int l_req_gone(lua_State *L)
{
    lua_pushboolean(L, pl_http_req_gone(l_req_check(L, 1)));
    return 1;
}

static int l_req_index(lua_State *L)
{
    struct pl_http_req *r = l_req_check(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "id") == 0) lua_pushinteger(L, (lua_Integer)pl_http_req_id(r));
    else if (strcmp(k, "method") == 0) lua_pushstring(L, pl_http_req_method(r));
    else if (strcmp(k, "path") == 0) lua_pushstring(L, pl_http_req_path(r));
    else if (strcmp(k, "body_size") == 0) lua_pushinteger(L, (lua_Integer)pl_http_req_body_size(r));
    else if (strcmp(k, "body_path") == 0) {
        const char *p = pl_http_req_body_path(r);
        if (p) lua_pushstring(L, p); else lua_pushnil(L);
    } else if (strcmp(k, "body") == 0) {
        size_t n;
        const char *b = pl_http_req_body(r, &n);
        if (b) lua_pushlstring(L, b, n); else lua_pushnil(L);
    } else if (strcmp(k, "json") == 0) {
        if (lua_getiuservalue(L, 1, 2) == LUA_TNIL) {   /* converted once, then cached */
            lua_pop(L, 1);
            const struct pl_json *j = pl_http_req_json(r);
            if (!j) { lua_pushnil(L); return 1; }
            pl_lua_push_json(L, j);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, 2);
        }
    } else {
        luaL_getmetatable(L, REQ_MT);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, k);
    }
    return 1;
}

/* ---------------------------------------------------------------- JSON out */

static void l_json_str(lua_State *L, int idx, struct pl_json *parent, const char *key)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (pl_utf8_valid(s, n) == n && strlen(s) == n) { pl_json_add_str(parent, key, s); return; }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n;) {
        int l = pl_utf8_seq(s + i, n - i);
        if (l && s[i]) { luaL_addlstring(&b, s + i, (size_t)l); i += (size_t)l; }
        else { if (s[i]) luaL_addstring(&b, "\xEF\xBF\xBD"); i++; }   /* NUL bytes dropped */
    }
    luaL_pushresult(&b);
    pl_json_add_str(parent, key, lua_tostring(L, -1));
    lua_pop(L, 1);
}

static int l_json_is_array(lua_State *L, int idx)
{
    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, ARRAY_MT);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) return 1;
    }
    return lua_rawlen(L, idx) > 0;
}

/* the value at idx added to parent under key (key NULL: parent is an array) */
static void l_json_add(lua_State *L, int idx, struct pl_json *parent, const char *key, int depth)
{
    if (depth > 64) luaL_error(L, "peft.http.json: nested more than 64 deep (a cycle?)");
    luaL_checkstack(L, 6, "peft.http.json");
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: pl_json_add_null(parent, key); break;
    case LUA_TBOOLEAN: pl_json_add_bool(parent, key, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER: pl_json_add_num(parent, key, lua_tonumber(L, idx)); break;
    case LUA_TSTRING: l_json_str(L, idx, parent, key); break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) luaL_error(L, "peft.http.json: cannot encode a userdata");
        pl_json_add_null(parent, key);
        break;
    case LUA_TTABLE: {
        if (l_json_is_array(L, idx)) {
            struct pl_json *a = pl_json_add_array(parent, key);
            lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                l_json_add(L, -1, a, NULL, depth + 1);
                lua_pop(L, 1);
            }
        } else {
            struct pl_json *o = pl_json_add_object(parent, key);
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                if (lua_type(L, -2) != LUA_TSTRING)
                    luaL_error(L, "peft.http.json: object keys must be strings (a %s key)", luaL_typename(L, -2));
                lua_pushvalue(L, -2);   /* key as a string stays anchored on the stack */
                l_json_add(L, -2, o, lua_tostring(L, -1), depth + 1);
                lua_pop(L, 2);
            }
        }
        break;
    }
    default: luaL_error(L, "peft.http.json: cannot encode a %s", luaL_typename(L, idx));
    }
}

static int l_json_root_gc(lua_State *L)
{
    struct pl_json **box = lua_touserdata(L, 1);
    pl_json_free(*box);
    *box = NULL;
    return 0;
}

static int l_http_json(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    /* the tree is owned by a box whose __gc frees it, so a raise below does not leak it */
    struct pl_json **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, "peft.http.jsonbox")) {
        lua_pushcfunction(L, l_json_root_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *box = pl_json_new_array();   /* a holder: the value becomes its one element */
    if (!*box) return luaL_error(L, "peft.http.json: out of memory");
    l_json_add(L, 1, *box, NULL, 0);
    char *s = pl_json_print(pl_json_at(*box, 0), 0);
    if (!s) return luaL_error(L, "peft.http.json: out of memory");
    lua_pushstring(L, s);
    pl_free(s);
    return 1;
}

/* peft.http.decode(text [, what]) -> value | nil, message (null becomes peft.http.null) */
static int l_http_decode(lua_State *L)
{
    size_t n;
    const char *t = luaL_checklstring(L, 1, &n);
    const char *what = luaL_optstring(L, 2, "JSON text");
    struct pl_json *j = pl_json_parse(t, n, what);
    if (!j) {
        lua_pushnil(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    pl_lua_push_json(L, j);
    pl_json_free(j);
    return 1;
}

static int l_http_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, ARRAY_MT);
    return 1;
}

static int l_http_utf8_split(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    /* an incomplete sequence is at most 3 bytes: a lead byte announcing more than follow */
    size_t cut = n;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue;          /* continuation: look further back */
        if (c >= 0xC2 && c <= 0xF4 && (size_t)pl_utf8_len(c) > back) cut = n - back;
        break;
    }
    lua_pushlstring(L, s, cut);
    lua_pushlstring(L, s + cut, n - cut);
    return 2;
}

int luaopen_peft_http(lua_State *L)
{
    static const luaL_Reg srv_methods[] = {
        { "route", l_srv_route }, { "static", l_srv_static }, { "fixed", l_srv_fixed },
        { "start", l_srv_start }, { "port", l_srv_port }, { "queued", l_srv_queued },
        { "next", l_srv_next }, { "close", l_srv_release }, { NULL, NULL }
    };
    static const luaL_Reg req_methods[] = {
        { "header", l_req_header }, { "headers", l_req_headers }, { "query", l_req_query },
        { "queries", l_req_queries }, { "respond", l_req_respond }, { "error", l_req_error },
        { "stream", l_req_stream }, { "write", l_req_write }, { "finish", l_req_finish },
        { "gone", l_req_gone }, { "release", l_req_release }, { NULL, NULL }
    };
    pl_lua_new_class(L, SRV_MT, srv_methods, l_srv_release, NULL);
    lua_pop(L, 1);
    /* requests: __index is a function (fields and methods) */
    luaL_newmetatable(L, REQ_MT);
    luaL_newlib(L, req_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_req_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_req_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_req_release);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newmetatable(L, ARRAY_MT);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        { "server", l_http_server }, { "json", l_http_json }, { "array", l_http_array },
        { "utf8_split", l_http_utf8_split }, { "decode", l_http_decode }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
