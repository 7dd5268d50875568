/* l_fs.c — peft.fs: file digests and the file-system steps of dataset versioning and run
 * tracking (engine: src/core/hash.c, src/core/fs.c).
 *
 *   peft.fs.hash(path [, "md5"|"sha256"])  → hex, size   (streamed; default md5)
 *                                           nil, message when the file cannot be read
 *   peft.fs.hash_string(s [, algo])        → hex
 *   peft.fs.stat(path)    → nil when missing, else { type = "file"|"dir"|"other", size, mode,
 *                           mtime_ns } (symbolic links followed)
 *   peft.fs.list(dir)     → { "a.txt", "sub/b.txt", ... } the regular files below dir, sorted
 *                           bytewise, .git and .dvc skipped; raises on an unreadable tree
 *   peft.fs.dir(path)     → the names directly in path, sorted | nil, message
 *   peft.fs.mkdir(path)   → true | nil, message            (mkdir -p)
 *   peft.fs.copy(src, dst [, mode])  → true | nil, message (atomic; mode e.g. 0x124 = 0444;
 *                                     default 0644)
 *   peft.fs.realpath(path) → absolute path | nil, message
 *   peft.fs.read(path)    → the file's bytes | nil, message
 *   peft.fs.write(path, bytes) → true | nil, message  (fileio's atomic writer: temporary file,
 *                           fsync, rename, directory fsync; a full disk names the file and
 *                           leaves the previous one)
 * Owner: track.
 */
#include "pl_lua.h"
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/fs.h"
#include "peftlua/hash.h"

static enum pl_hash_algo check_algo(lua_State *L, int idx)
{
    static const char *const names[] = { "md5", "sha256", NULL };
    return luaL_checkoption(L, idx, "md5", names) == 0 ? PL_HASH_MD5 : PL_HASH_SHA256;
}

static int fail_nil(lua_State *L)
{
    lua_pushnil(L);
    lua_pushstring(L, pl_last_error());
    return 2;
}

static int l_fs_hash(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    enum pl_hash_algo algo = check_algo(L, 2);
    char hex[PL_HASH_HEX_MAX];
    uint64_t size = 0;
    enum pl_status st = pl_hash_file(path, algo, hex, &size);
    if (st == PL_ERR_INTERRUPTED || st == PL_ERR_NOMEM) return pl_lua_error(L);
    if (st != PL_OK) return fail_nil(L);
    lua_pushstring(L, hex);
    lua_pushinteger(L, (lua_Integer)size);
    return 2;
}

static int l_fs_hash_string(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct pl_hash h;
    char hex[PL_HASH_HEX_MAX];
    pl_hash_init(&h, check_algo(L, 2));
    pl_hash_update(&h, s, n);
    pl_hash_hex(&h, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int l_fs_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct pl_fs_stat st;
    if (pl_fs_stat(path, &st) != PL_OK) return fail_nil(L);
    if (st.type == PL_FS_MISSING) { lua_pushnil(L); return 1; }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, st.type == PL_FS_FILE ? "file" : st.type == PL_FS_DIR ? "dir" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.size); lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.mode); lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.mtime_ns); lua_setfield(L, -2, "mtime_ns");
    return 1;
}

static int l_fs_list(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    char **files;
    int n;
    if (pl_fs_list(dir, &files, &n) != PL_OK) return pl_lua_error(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) { lua_pushstring(L, files[i]); lua_rawseti(L, -2, i + 1); }
    pl_fs_list_free(files, n);
    return 1;
}

static int l_fs_dir(lua_State *L)
{
    char **names;
    int n;
    if (pl_fs_entries(luaL_checkstring(L, 1), &names, &n) != PL_OK) return fail_nil(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) { lua_pushstring(L, names[i]); lua_rawseti(L, -2, i + 1); }
    pl_fs_list_free(names, n);
    return 1;
}

static int l_fs_mkdir(lua_State *L)
{
    if (pl_fs_mkdirs(luaL_checkstring(L, 1)) != PL_OK) return fail_nil(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_fs_copy(lua_State *L)
{
    const char *src = luaL_checkstring(L, 1), *dst = luaL_checkstring(L, 2);
    lua_Integer mode = luaL_optinteger(L, 3, 0644);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "mode must be permission bits (0 .. 0x0fff)");
    if (pl_fs_copy(src, dst, (uint32_t)mode) != PL_OK) return fail_nil(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_fs_realpath(lua_State *L)
{
    char *r;
    if (pl_fs_realpath(luaL_checkstring(L, 1), &r) != PL_OK) return fail_nil(L);
    lua_pushstring(L, r);
    pl_free(r);
    return 1;
}

static int l_fs_read(lua_State *L)
{
    char *buf;
    size_t n;
    enum pl_status st = pl_fs_read(luaL_checkstring(L, 1), &buf, &n);
    if (st == PL_ERR_NOMEM) return pl_lua_error(L);
    if (st != PL_OK) return fail_nil(L);
    lua_pushlstring(L, buf, n);
    pl_free(buf);
    return 1;
}

static int l_fs_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    const void *parts[1] = { data };
    size_t sizes[1] = { n };
    if (pl_file_write_atomic(path, parts, sizes, 1) != PL_OK) return fail_nil(L);
    lua_pushboolean(L, 1);
    return 1;
}

int luaopen_peft_fs(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "hash", l_fs_hash }, { "hash_string", l_fs_hash_string }, { "stat", l_fs_stat },
        { "list", l_fs_list }, { "dir", l_fs_dir }, { "mkdir", l_fs_mkdir }, { "copy", l_fs_copy },
        { "realpath", l_fs_realpath }, { "read", l_fs_read }, { "write", l_fs_write }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
