/* safetensors.c — safetensors reader (mmap, single file or sharded through
 * model.safetensors.index.json) and writer (atomic). JSON only through peftlua/json.h.
 *
 * Owner: formats. API and file layout: include/peftlua/safetensors.h.
 *
 * Validation follows the format's own rules: the header length fits the file (and the
 * format's 100 MB cap), the header is a JSON object, every tensor entry has a known dtype, a
 * shape of non-negative integers and data_offsets [begin, end] with end - begin equal to
 * numel × element size, and the byte ranges, sorted, tile the data section exactly (no gap,
 * no overlap, nothing after the last tensor). Errors read "<path>: <problem>".
 *
 * Lifetime: as for GGUF, each tensor's storage header holds a reference on the object, so
 * the mappings live while any tensor does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peftlua/safetensors.h"
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/json.h"

#define MAX_HEADER (100u << 20)   /* the format's limit on the JSON header */

struct st_file {
    char *path;
    const uint8_t *map;   /* pl_file_map */
    uint64_t size;
    uint64_t data_off;
};

struct pl_safetensors {
    int32_t refcount;
    char *path;
    int nfiles, capfiles;
    struct st_file *files;
    int64_t n, cap;
    struct pl_safetensors_info *ti;
    int64_t n_meta;
    char **meta;   /* key, value, key, value, ... */
};

/* ------------------------------------------------------------------ dtypes */

static int st_dtype(const char *s, int *elsize)
{
    static const struct { const char *name; int dtype, size; } tab[] = {
        { "F32", PL_F32, 4 }, { "F16", PL_F16, 2 }, { "BF16", PL_BF16, 2 },
        { "I32", PL_I32, 4 }, { "I8", PL_I8, 1 },
        /* known to the format, not to peftlua: dtype -2 */
        { "F64", -2, 8 }, { "I64", -2, 8 }, { "U64", -2, 8 }, { "U32", -2, 4 }, { "I16", -2, 2 },
        { "U16", -2, 2 }, { "U8", -2, 1 }, { "BOOL", -2, 1 }, { "F8_E4M3", -2, 1 },
        { "F8_E5M2", -2, 1 },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) { *elsize = tab[i].size; return tab[i].dtype; }
    return -1;
}

static const char *st_dtype_name(enum pl_dtype t)
{
    switch (t) {
    case PL_F32: return "F32";
    case PL_F16: return "F16";
    case PL_BF16: return "BF16";
    case PL_I32: return "I32";
    case PL_I8: return "I8";
    default: return NULL;
    }
}

/* ------------------------------------------------------------------ object */

static void st_destroy(struct pl_safetensors *st)
{
    for (int i = 0; i < st->nfiles; i++) {
        pl_file_unmap(st->files[i].map, st->files[i].size);
        pl_free(st->files[i].path);
    }
    for (int64_t i = 0; i < st->n; i++) pl_free((void *)st->ti[i].name);
    for (int64_t i = 0; i < 2 * st->n_meta; i++) pl_free(st->meta[i]);
    pl_free(st->meta);
    pl_free(st->files);
    pl_free(st->ti);
    pl_free(st->path);
    pl_free(st);
}

struct pl_safetensors *pl_safetensors_retain(struct pl_safetensors *st)
{
    if (st) __atomic_fetch_add(&st->refcount, 1, __ATOMIC_RELAXED);
    return st;
}

void pl_safetensors_close(struct pl_safetensors *st)
{
    if (st && __atomic_sub_fetch(&st->refcount, 1, __ATOMIC_ACQ_REL) == 0) st_destroy(st);
}

const char *pl_safetensors_path(const struct pl_safetensors *st) { return st->path; }
int64_t pl_safetensors_count(const struct pl_safetensors *st) { return st->n; }

int64_t pl_safetensors_find(const struct pl_safetensors *st, const char *name)
{
    if (!name) return -1;
    for (int64_t i = 0; i < st->n; i++)
        if (strcmp(st->ti[i].name, name) == 0) return i;
    return -1;
}

const struct pl_safetensors_info *pl_safetensors_info(const struct pl_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n ? &st->ti[i] : NULL;
}

int64_t pl_safetensors_meta_count(const struct pl_safetensors *st) { return st->n_meta; }

const char *pl_safetensors_meta_key(const struct pl_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n_meta ? st->meta[2 * i] : NULL;
}

const char *pl_safetensors_meta(const struct pl_safetensors *st, const char *key)
{
    for (int64_t i = 0; key && i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

static void mapping_release(struct pl_storage *s) { pl_safetensors_close(s->owner); }

struct pl_tensor *pl_safetensors_tensor_at(struct pl_safetensors *st, int64_t i)
{
    if (i < 0 || i >= st->n) {
        pl_fail(PL_ERR_ARG, "%s: tensor index %lld out of range (%lld tensors)", st->path, (long long)i,
                (long long)st->n);
        return NULL;
    }
    const struct pl_safetensors_info *t = &st->ti[i];
    return pl_file_tensor(t->data, t->nbytes, t->dtype, t->ndim, t->shape, mapping_release,
                          pl_safetensors_retain(st), t->file, t->name);
}

struct pl_tensor *pl_safetensors_tensor(struct pl_safetensors *st, const char *name)
{
    const int64_t i = pl_safetensors_find(st, name);
    if (i < 0) {
        pl_fail(PL_ERR_FORMAT, "%s: no tensor '%s'", st->path, name ? name : "(null)");
        return NULL;
    }
    return pl_safetensors_tensor_at(st, i);
}

/* ------------------------------------------------------------------ parsing one file */

/* JSON number → non-negative integer below 2^53 (exact in a double). */
static int as_u64(const struct pl_json *j, uint64_t *out)
{
    if (pl_json_type(j) != PL_JSON_NUMBER) return 0;
    const double d = pl_json_num(j, -1);
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

struct range { uint64_t begin, end; int64_t idx; };

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static enum pl_status add_info(struct pl_safetensors *st, struct pl_safetensors_info **out)
{
    if (st->n == st->cap) {
        int64_t cap = st->cap ? 2 * st->cap : 64;
        struct pl_safetensors_info *n = st->ti ? pl_realloc(st->ti, (size_t)cap * sizeof *n)
                                               : pl_alloc((size_t)cap * sizeof *n, PL_MEM_DATA);
        if (!n) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", st->path);
        st->ti = n;
        st->cap = cap;
    }
    *out = &st->ti[st->n];
    memset(*out, 0, sizeof **out);
    return PL_OK;
}

static enum pl_status parse_tensor(struct pl_safetensors *st, const char *fpath, const struct pl_json *e,
                                   const char *name, uint64_t data_size, struct range *r)
{
    if (pl_json_type(e) != PL_JSON_OBJECT)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': entry is not an object", fpath, name);
    const char *dts = pl_json_get_str(e, "dtype");
    if (!dts) return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", fpath, name);
    int elsize = 0;
    const int dt = st_dtype(dts, &elsize);
    if (dt == -1) return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", fpath, name, dts);
    if (dt == -2)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which peftlua does not support "
                       "(supported: F32, F16, BF16, I32, I8)", fpath, name, dts);
    const struct pl_json *shape = pl_json_get(e, "shape");
    if (pl_json_type(shape) != PL_JSON_ARRAY)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': missing or invalid \"shape\"", fpath, name);
    const int nd = pl_json_len(shape);
    if (nd > PL_MAX_DIMS)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)", fpath, name, nd, PL_MAX_DIMS);
    struct pl_safetensors_info tmp = {0};
    tmp.ndim = nd;
    tmp.dtype = (enum pl_dtype)dt;
    uint64_t numel = 1;
    int d = 0;
    for (const struct pl_json *x = pl_json_first(shape); x; x = pl_json_next(x), d++) {
        uint64_t v;
        if (!as_u64(x, &v))
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer", fpath, name, d);
        if (v && numel > (UINT64_MAX / 8) / v)
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': element count overflows", fpath, name);
        numel *= v;
        tmp.shape[d] = (int64_t)v;
    }
    const struct pl_json *offs = pl_json_get(e, "data_offsets");
    uint64_t b, en;
    if (pl_json_type(offs) != PL_JSON_ARRAY || pl_json_len(offs) != 2 ||
        !as_u64(pl_json_at(offs, 0), &b) || !as_u64(pl_json_at(offs, 1), &en) || en < b)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with 0 <= begin <= end",
                       fpath, name);
    if (en - b != numel * (uint64_t)elsize)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': shape and dtype %s make %llu bytes but data_offsets span %llu",
                       fpath, name, dts, (unsigned long long)(numel * (uint64_t)elsize),
                       (unsigned long long)(en - b));
    if (en > data_size)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' data [%llu, %llu) runs past the end of the data section (%llu bytes)",
                       fpath, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    /* duplicate names: checked once all are read (sorted, not pairwise: a header of 100 MB
     * holds millions of entries) */
    struct pl_safetensors_info *t = NULL;
    enum pl_status s = add_info(st, &t);
    if (s) return s;
    *t = tmp;
    t->name = pl_strdup(name, PL_MEM_DATA);
    if (!t->name) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    t->nbytes = en - b;
    r->begin = b;
    r->end = en;
    r->idx = st->n++;
    return PL_OK;
}

static enum pl_status parse_meta(struct pl_safetensors *st, const char *fpath, const struct pl_json *m)
{
    if (pl_json_type(m) != PL_JSON_OBJECT)
        return pl_fail(PL_ERR_FORMAT, "%s: \"__metadata__\" is not an object", fpath);
    if (st->meta) return PL_OK;     /* shards (or a repeated key): the first metadata wins */
    const int n = pl_json_len(m);
    st->meta = pl_calloc((size_t)(2 * n + 1), sizeof(char *), PL_MEM_DATA);
    if (!st->meta) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    for (const struct pl_json *x = pl_json_first(m); x; x = pl_json_next(x)) {
        const char *v = pl_json_str(x);
        if (!v) return pl_fail(PL_ERR_FORMAT, "%s: __metadata__ '%s' is not a string", fpath, pl_json_key(x));
        const int64_t k = st->n_meta;
        st->meta[2 * k] = pl_strdup(pl_json_key(x), PL_MEM_DATA);
        st->meta[2 * k + 1] = pl_strdup(v, PL_MEM_DATA);
        st->n_meta++;
        if (!st->meta[2 * k] || !st->meta[2 * k + 1]) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    }
    return PL_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every tensor name (over all shards so far) unique: sort the names, compare neighbours. */
static enum pl_status check_unique(struct pl_safetensors *st, const char *fpath)
{
    if (st->n < 2) return PL_OK;
    const char **nm = pl_alloc((size_t)st->n * sizeof *nm, PL_MEM_WORKSPACE);
    if (!nm) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    for (int64_t i = 0; i < st->n; i++) nm[i] = st->ti[i].name;
    qsort(nm, (size_t)st->n, sizeof *nm, name_cmp);
    enum pl_status s = PL_OK;
    for (int64_t i = 1; i < st->n && !s; i++)
        if (strcmp(nm[i - 1], nm[i]) == 0) s = pl_fail(PL_ERR_FORMAT, "%s: duplicate tensor name '%s'", fpath, nm[i]);
    pl_free(nm);
    return s;
}

static enum pl_status open_file(struct pl_safetensors *st, const char *fpath)
{
    if (st->nfiles == st->capfiles) {
        int cap = st->capfiles ? 2 * st->capfiles : 4;
        struct st_file *n = st->files ? pl_realloc(st->files, (size_t)cap * sizeof *n)
                                      : pl_alloc((size_t)cap * sizeof *n, PL_MEM_DATA);
        if (!n) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
        st->files = n;
        st->capfiles = cap;
    }
    struct st_file *f = &st->files[st->nfiles];
    memset(f, 0, sizeof *f);
    if (!(f->path = pl_strdup(fpath, PL_MEM_DATA))) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    st->nfiles++;

    enum pl_status s = pl_file_map(fpath, &f->map, &f->size);
    if (s) return s;
    if (f->size < 8)
        return pl_fail(PL_ERR_FORMAT, "%s: truncated: %lld bytes is too small for a safetensors file",
                       fpath, (long long)f->size);

    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > f->size - 8)
        return pl_fail(PL_ERR_FORMAT, "%s: header length %llu runs past end of file (%llu bytes)", fpath,
                       (unsigned long long)hlen, (unsigned long long)f->size);
    if (hlen > MAX_HEADER)
        return pl_fail(PL_ERR_FORMAT, "%s: header length %llu exceeds the format's 100 MB limit", fpath,
                       (unsigned long long)hlen);
    if (hlen < 2 || f->map[8] != '{')
        return pl_fail(PL_ERR_FORMAT, "%s: header does not start with a JSON object", fpath);
    f->data_off = 8 + hlen;
    const uint64_t data_size = f->size - f->data_off;

    struct pl_json *root = pl_json_parse((const char *)f->map + 8, (size_t)hlen, fpath);
    if (!root) return PL_ERR_FORMAT;   /* message names the file and line */
    if (pl_json_type(root) != PL_JSON_OBJECT) {
        pl_json_free(root);
        return pl_fail(PL_ERR_FORMAT, "%s: header is not a JSON object", fpath);
    }
    const int nmem = pl_json_len(root);
    struct range *rs = pl_alloc((size_t)(nmem + 1) * sizeof *rs, PL_MEM_WORKSPACE);
    if (!rs) {
        pl_json_free(root);
        return pl_fail(PL_ERR_NOMEM, "%s: out of memory", fpath);
    }
    int nr = 0;
    for (const struct pl_json *x = pl_json_first(root); x && !s; x = pl_json_next(x)) {
        const char *key = pl_json_key(x);
        if (strcmp(key, "__metadata__") == 0) s = parse_meta(st, fpath, x);
        else if ((s = parse_tensor(st, fpath, x, key, data_size, &rs[nr])) == PL_OK) nr++;
    }
    pl_json_free(root);
    if (!s) {
        /* the sorted ranges must tile the data section */
        qsort(rs, (size_t)nr, sizeof *rs, range_cmp);
        uint64_t at = 0;
        for (int i = 0; i < nr && !s; i++) {
            const char *nm = st->ti[rs[i].idx].name;
            if (rs[i].begin < at)
                s = pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' data [%llu, %llu) overlaps the previous tensor", fpath, nm,
                            (unsigned long long)rs[i].begin, (unsigned long long)rs[i].end);
            else if (rs[i].begin > at)
                s = pl_fail(PL_ERR_FORMAT, "%s: gap of %llu bytes before tensor '%s' (data_offsets not contiguous)",
                            fpath, (unsigned long long)(rs[i].begin - at), nm);
            at = rs[i].end;
        }
        if (!s && at != data_size)
            s = pl_fail(PL_ERR_FORMAT, "%s: data section has %llu bytes but the tensors cover %llu", fpath,
                        (unsigned long long)data_size, (unsigned long long)at);
        for (int i = 0; i < nr && !s; i++) {
            struct pl_safetensors_info *t = &st->ti[rs[i].idx];
            t->data = f->map + f->data_off + rs[i].begin;
            t->file = f->path;
        }
    }
    pl_free(rs);
    if (!s) s = check_unique(st, fpath);
    return s;
}

/* ------------------------------------------------------------------ open (file, index, dir) */

static int ends_with(const char *s, const char *suf)
{
    const size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *join(const char *dir, const char *name)
{
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *p = pl_alloc(n, PL_MEM_WORKSPACE);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static enum pl_status open_index(struct pl_safetensors *st, const char *ipath)
{
    struct pl_json *j = pl_json_parse_file(ipath);
    if (!j) {
        char why[400];
        snprintf(why, sizeof why, "%s", pl_last_error());
        return pl_fail(access(ipath, R_OK) == 0 ? PL_ERR_FORMAT : PL_ERR_IO, "%s", why);
    }
    const struct pl_json *wm = pl_json_get(j, "weight_map");
    enum pl_status s = PL_OK;
    if (pl_json_type(wm) != PL_JSON_OBJECT) {
        pl_json_free(j);
        return pl_fail(PL_ERR_FORMAT, "%s: no \"weight_map\" object", ipath);
    }
    /* directory of the index */
    char *dir = pl_strdup(ipath, PL_MEM_WORKSPACE);
    if (!dir) { pl_json_free(j); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", ipath); }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    for (const struct pl_json *x = pl_json_first(wm); x && !s; x = pl_json_next(x)) {
        const char *shard = pl_json_str(x);
        if (!shard || !*shard || shard[0] == '/' || strstr(shard, ".."))
            s = pl_fail(PL_ERR_FORMAT, "%s: weight_map['%s'] is not a shard file name", ipath, pl_json_key(x));
        if (s) break;
        char *sp = join(dir, shard);
        if (!sp) { s = pl_fail(PL_ERR_NOMEM, "%s: out of memory", ipath); break; }
        int have = 0;
        for (int i = 0; i < st->nfiles; i++) if (strcmp(st->files[i].path, sp) == 0) have = 1;
        if (!have) s = open_file(st, sp);
        if (!s) {
            const int64_t k = pl_safetensors_find(st, pl_json_key(x));
            if (k < 0 || strcmp(st->ti[k].file, sp) != 0)
                s = pl_fail(PL_ERR_FORMAT, "%s: weight_map puts tensor '%s' in %s, which does not hold it", ipath,
                            pl_json_key(x), shard);
        }
        pl_free(sp);
    }
    pl_free(dir);
    pl_json_free(j);
    return s;
}

enum pl_status pl_safetensors_open(const char *path, struct pl_safetensors **out)
{
    *out = NULL;
    if (!path) return pl_fail(PL_ERR_ARG, "pl_safetensors_open: no path");
    struct pl_safetensors *st = pl_calloc(1, sizeof *st, PL_MEM_DATA);
    if (!st || !(st->path = pl_strdup(path, PL_MEM_DATA))) {
        pl_free(st);
        return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    }
    st->refcount = 1;
    enum pl_status s;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        s = pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char *ip = join(path, "model.safetensors.index.json");
        char *fp = join(path, "model.safetensors");
        if (!ip || !fp) s = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
        else if (access(ip, R_OK) == 0) s = open_index(st, ip);
        else if (access(fp, R_OK) == 0) s = open_file(st, fp);
        else s = pl_fail(PL_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json in this directory", path);
        pl_free(ip);
        pl_free(fp);
    } else if (ends_with(path, ".json")) {
        s = open_index(st, path);
    } else {
        s = open_file(st, path);
    }
    if (s) {
        st_destroy(st);
        return s;
    }
    *out = st;
    return PL_OK;
}

/* ------------------------------------------------------------------ writer */

struct wt { char *name; struct pl_tensor *t; };

struct pl_safetensors_writer {
    struct wt *ts;
    int64_t n, cap;
    char **meta;       /* key, value pairs */
    int64_t n_meta, cap_meta;
};

struct pl_safetensors_writer *pl_safetensors_writer_new(void)
{
    struct pl_safetensors_writer *w = pl_calloc(1, sizeof *w, PL_MEM_DATA);
    if (!w) pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory");
    return w;
}

void pl_safetensors_writer_free(struct pl_safetensors_writer *w)
{
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) { pl_free(w->ts[i].name); pl_tensor_release(w->ts[i].t); }
    for (int64_t i = 0; i < 2 * w->n_meta; i++) pl_free(w->meta[i]);
    pl_free(w->ts);
    pl_free(w->meta);
    pl_free(w);
}

enum pl_status pl_safetensors_set_meta(struct pl_safetensors_writer *w, const char *key, const char *value)
{
    if (!key || !value) return pl_fail(PL_ERR_ARG, "safetensors writer: metadata needs a key and a string value");
    for (int64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            char *v = pl_strdup(value, PL_MEM_DATA);
            if (!v) return pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory");
            pl_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return PL_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **n = w->meta ? pl_realloc(w->meta, (size_t)(2 * cap) * sizeof *n)
                           : pl_alloc((size_t)(2 * cap) * sizeof *n, PL_MEM_DATA);
        if (!n) return pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory");
        w->meta = n;
        w->cap_meta = cap;
    }
    char *k = pl_strdup(key, PL_MEM_DATA), *v = pl_strdup(value, PL_MEM_DATA);
    if (!k || !v) { pl_free(k); pl_free(v); return pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory"); }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return PL_OK;
}

enum pl_status pl_safetensors_add_tensor(struct pl_safetensors_writer *w, const char *name, struct pl_tensor *t)
{
    if (!name || !*name || !t) return pl_fail(PL_ERR_ARG, "safetensors writer: tensor needs a name and a tensor");
    if (strcmp(name, "__metadata__") == 0)
        return pl_fail(PL_ERR_ARG, "safetensors writer: '__metadata__' is reserved");
    if (!st_dtype_name(t->dtype)) {
        const struct pl_dtype_info *in = pl_dtype_info(t->dtype);
        return pl_fail(PL_ERR_UNSUPPORTED, "safetensors writer: tensor '%s': dtype %s cannot be stored in safetensors "
                       "(F32, F16, BF16, I32, I8)", name, in ? in->name : "?");
    }
    if (!pl_tensor_is_contiguous(t))
        return pl_fail(PL_ERR_ARG, "safetensors writer: tensor '%s' is not contiguous", name);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return pl_fail(PL_ERR_ARG, "safetensors writer: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 64;
        struct wt *n = w->ts ? pl_realloc(w->ts, (size_t)cap * sizeof *n) : pl_alloc((size_t)cap * sizeof *n, PL_MEM_DATA);
        if (!n) return pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory");
        w->ts = n;
        w->cap = cap;
    }
    char *nm = pl_strdup(name, PL_MEM_DATA);
    if (!nm) return pl_fail(PL_ERR_NOMEM, "safetensors writer: out of memory");
    w->ts[w->n].name = nm;
    w->ts[w->n].t = pl_tensor_retain(t);
    w->n++;
    return PL_OK;
}

enum pl_status pl_safetensors_writer_write(struct pl_safetensors_writer *w, const char *path)
{
    if (!path || !*path) return pl_fail(PL_ERR_ARG, "safetensors writer: no output path");
    struct pl_json *root = pl_json_new_object();
    if (!root) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    if (w->n_meta) {
        struct pl_json *m = pl_json_add_object(root, "__metadata__");
        for (int64_t i = 0; m && i < w->n_meta; i++) pl_json_add_str(m, w->meta[2 * i], w->meta[2 * i + 1]);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const struct pl_tensor *t = w->ts[i].t;
        struct pl_json *e = pl_json_add_object(root, w->ts[i].name);
        if (!e) break;
        pl_json_add_str(e, "dtype", st_dtype_name(t->dtype));
        struct pl_json *sh = pl_json_add_array(e, "shape");
        for (int d = 0; d < t->ndim; d++) pl_json_add_num(sh, NULL, (double)t->shape[d]);
        struct pl_json *o = pl_json_add_array(e, "data_offsets");
        const uint64_t nb = pl_tensor_nbytes(t);
        pl_json_add_num(o, NULL, (double)off);
        pl_json_add_num(o, NULL, (double)(off + nb));
        off += nb;
    }
    char *hdr = pl_json_print(root, 0);
    pl_json_free(root);
    if (!hdr) return pl_fail(PL_ERR_NOMEM, "%s: out of memory building the header", path);
    const size_t hl = strlen(hdr);
    const uint64_t padded = (hl + 7) & ~(uint64_t)7;

    struct pl_file_out fo;
    enum pl_status st = pl_file_replace_begin(&fo, path);
    if (st) {
        pl_free(hdr);
        return st;
    }
    FILE *f = fo.f;
    int e = 0;
    if (fwrite(&padded, 8, 1, f) != 1) e = errno ? errno : EIO;
    if (!e && fwrite(hdr, 1, hl, f) != hl) e = errno ? errno : EIO;
    for (uint64_t i = hl; !e && i < padded; i++)
        if (fputc(' ', f) == EOF) e = errno ? errno : EIO;
    for (int64_t i = 0; !e && i < w->n; i++) {
        const size_t nb = pl_tensor_nbytes(w->ts[i].t);
        if (nb && fwrite(pl_tensor_data(w->ts[i].t), 1, nb, f) != nb) e = errno ? errno : EIO;
    }
    pl_free(hdr);
    return pl_file_replace_end(&fo, e);
}
