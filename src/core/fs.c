/* fs.c — stat, recursive listing, mkdir -p, atomic copy and realpath for the versioning and
 * tracking layers (DVC caches, MLflow stores, run records). POSIX only. Owner: track.
 * API: include/peftlua/fs.h.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/fs.h"

enum pl_status pl_fs_stat(const char *path, struct pl_fs_stat *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) { out->type = PL_FS_MISSING; return PL_OK; }
        return pl_fail(PL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    out->type = S_ISREG(st.st_mode) ? PL_FS_FILE : S_ISDIR(st.st_mode) ? PL_FS_DIR : PL_FS_OTHER;
    out->size = (uint64_t)st.st_size;
    out->mode = (uint32_t)(st.st_mode & 07777);
#if defined(__APPLE__)
    out->mtime_ns = (int64_t)st.st_mtimespec.tv_sec * 1000000000 + st.st_mtimespec.tv_nsec;
#else
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
#endif
    return PL_OK;
}

struct list { char **v; int n, cap; };

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = pl_alloc(la + lb + 2, PL_MEM_DATA);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (la) s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

static enum pl_status push(struct list *l, char *s)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = pl_alloc((size_t)cap * sizeof *v, PL_MEM_DATA);
        if (!v) { pl_free(s); return pl_fail(PL_ERR_NOMEM, "out of memory listing files"); }
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        pl_free(l->v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return PL_OK;
}

/* root/rel is a directory: add its files (as rel/...) to l */
static enum pl_status walk(const char *root, const char *rel, struct list *l, int depth)
{
    char *full = rel[0] ? join(root, rel) : join("", root);
    if (!full) return pl_fail(PL_ERR_NOMEM, "out of memory listing files");
    if (depth > 64) {
        enum pl_status st = pl_fail(PL_ERR_IO, "%s: directories nested too deep (a symbolic link loop?)", full);
        pl_free(full);
        return st;
    }
    DIR *d = opendir(full);
    if (!d) {
        enum pl_status st = pl_fail(PL_ERR_IO, "%s: cannot read the directory: %s", full, strerror(errno));
        pl_free(full);
        return st;
    }
    enum pl_status rc = PL_OK;
    struct dirent *e;
    while (rc == PL_OK && (e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) continue;
        char *path = join(full, nm), *r = join(rel, nm);
        if (!path || !r) { pl_free(path); pl_free(r); rc = pl_fail(PL_ERR_NOMEM, "out of memory listing files"); break; }
        struct pl_fs_stat st;
        rc = pl_fs_stat(path, &st);
        if (rc == PL_OK) {
            if (st.type == PL_FS_FILE) { rc = push(l, r); r = NULL; }
            else if (st.type == PL_FS_DIR) {
                if (strcmp(nm, ".git") != 0 && strcmp(nm, ".dvc") != 0) rc = walk(root, r, l, depth + 1);
            } else if (st.type == PL_FS_MISSING) {
                rc = pl_fail(PL_ERR_IO, "%s: a broken symbolic link", path);
            } else {
                rc = pl_fail(PL_ERR_IO, "%s: neither a regular file nor a directory", path);
            }
        }
        pl_free(path);
        pl_free(r);
    }
    closedir(d);
    pl_free(full);
    return rc;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

enum pl_status pl_fs_list(const char *dir, char ***files, int *n)
{
    struct list l = { 0 };
    *files = NULL;
    *n = 0;
    enum pl_status rc = walk(dir, "", &l, 0);
    if (rc != PL_OK) { pl_fs_list_free(l.v, l.n); return rc; }
    if (l.n > 1) qsort(l.v, (size_t)l.n, sizeof *l.v, cmp);   /* bytewise: UTF-8 code point order */
    *files = l.v;
    *n = l.n;
    return PL_OK;
}

enum pl_status pl_fs_entries(const char *dir, char ***names, int *n)
{
    struct list l = { 0 };
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return pl_fail(PL_ERR_IO, "%s: cannot read the directory: %s", dir, strerror(errno));
    struct dirent *e;
    enum pl_status rc = PL_OK;
    while (rc == PL_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *s = join("", e->d_name);
        rc = s ? push(&l, s) : pl_fail(PL_ERR_NOMEM, "out of memory listing files");
    }
    closedir(d);
    if (rc != PL_OK) { pl_fs_list_free(l.v, l.n); return rc; }
    if (l.n > 1) qsort(l.v, (size_t)l.n, sizeof *l.v, cmp);
    *names = l.v;
    *n = l.n;
    return PL_OK;
}

void pl_fs_list_free(char **files, int n)
{
    for (int i = 0; i < n; i++) pl_free(files[i]);
    pl_free(files);
}

enum pl_status pl_fs_mkdirs(const char *path)
{
    size_t len = strlen(path);
    char *p = pl_alloc(len + 1, PL_MEM_WORKSPACE);
    if (!p) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    memcpy(p, path, len + 1);
    enum pl_status rc = PL_OK;
    for (size_t i = 1; i <= len && rc == PL_OK; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0) {
            struct stat st;
            if (errno != EEXIST)
                rc = pl_fail(PL_ERR_IO, "%s: cannot make the directory: %s", p, strerror(errno));
            else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
                rc = pl_fail(PL_ERR_IO, "%s: exists and is not a directory", p);
        }
        p[i] = c;
    }
    pl_free(p);
    return rc;
}

enum pl_status pl_fs_copy(const char *src, const char *dst, uint32_t mode)
{
    enum { CHUNK = 1 << 20 };
    FILE *in = fopen(src, "rb");
    if (!in) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    char *buf = pl_alloc(CHUNK, PL_MEM_WORKSPACE);
    if (!buf) { fclose(in); return pl_fail(PL_ERR_NOMEM, "%s: out of memory for the copy buffer", src); }
    struct pl_file_out out;
    enum pl_status rc = pl_file_replace_begin(&out, dst);
    if (rc != PL_OK) { pl_free(buf); fclose(in); return rc; }
    int err = 0;
    for (;;) {
        size_t got = fread(buf, 1, CHUNK, in);
        if (got && fwrite(buf, 1, got, out.f) != got) { err = errno ? errno : EIO; break; }
        if (got < CHUNK) { if (ferror(in)) err = errno ? errno : EIO; break; }
    }
    /* the mode goes on before the rename, so dst never appears writable */
    if (!err && fchmod(fileno(out.f), (mode_t)mode) != 0) err = errno;
    pl_free(buf);
    fclose(in);
    return pl_file_replace_end(&out, err);
}

enum pl_status pl_fs_realpath(const char *path, char **out)
{
    char *r = realpath(path, NULL);
    if (!r) return pl_fail(PL_ERR_IO, "%s: cannot resolve the path: %s", path, strerror(errno));
    size_t n = strlen(r);
    *out = pl_alloc(n + 1, PL_MEM_DATA);
    if (!*out) { free(r); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); }
    memcpy(*out, r, n + 1);
    free(r);
    return PL_OK;
}

enum pl_status pl_fs_read(const char *path, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = pl_alloc(cap + 1, PL_MEM_DATA);
    if (!buf) { fclose(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); }
    for (;;) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *nb = pl_realloc(buf, cap * 2 + 1);
        if (!nb) { pl_free(buf); fclose(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    const int e = errno;
    fclose(f);
    if (bad) { pl_free(buf); return pl_fail(PL_ERR_IO, "%s: read failed: %s", path, strerror(e)); }
    buf[len] = 0;
    *out = buf;
    *n = len;
    return PL_OK;
}
