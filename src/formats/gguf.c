/* gguf.c — GGUF v2/v3 reader (mmap, validated against the file size) and writer (atomic).
 *
 * Owner: formats. API and file layout: include/peftlua/gguf.h.
 *
 * Reading: the file is mapped read-only and parsed by a bounds-checked cursor; nothing is
 * read before its length has been checked against what is left of the file, counts are
 * bounded by the bytes that their smallest possible encoding would need (so an absurd count
 * fails before any allocation), element counts are multiplied with overflow checks, and every
 * tensor's data range is checked to lie inside the file. Strings are copied NUL-terminated
 * into an arena owned by the file object; numeric arrays are left in the mapping.
 * The host is assumed little-endian (as GGUF is); big-endian files are recognised and refused.
 *
 * Lifetime: struct pl_gguf is refcounted. Each tensor returned by pl_gguf_tensor() has its
 * own storage header whose release callback drops one reference, so the mapping outlives
 * pl_gguf_close() for as long as any tensor uses it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peftlua/gguf.h"
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/quant.h"

#define GGUF_MAGIC "GGUF"
#define MAX_NEST 8              /* nested array depth accepted */

/* ------------------------------------------------------------------ names */

static const char *const type_names[PL_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const uint8_t type_sizes[PL_GGUF_TYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

const char *pl_gguf_type_name(enum pl_gguf_type t)
{
    return (unsigned)t < PL_GGUF_TYPE_COUNT ? type_names[t] : "?";
}

size_t pl_gguf_type_size(enum pl_gguf_type t)
{
    return (unsigned)t < PL_GGUF_TYPE_COUNT ? type_sizes[t] : 0;
}

const char *pl_ggml_type_name(int32_t t)
{
    static const char *const names[] = {
        "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1",
        "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
        "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
        "bf16", "q4_0_4_4", "q4_0_4_8", "q4_0_8_8", "tq1_0", "tq2_0", "iq4_nl_4_4",
        "iq4_nl_4_8", "iq4_nl_8_8", "mxfp4",
    };
    if (t < 0 || t >= (int32_t)(sizeof names / sizeof names[0])) return "?";
    return names[t];
}

static int is_unsigned(enum pl_gguf_type t)
{
    return t == PL_GGUF_UINT8 || t == PL_GGUF_UINT16 || t == PL_GGUF_UINT32 || t == PL_GGUF_UINT64;
}
static int is_signed(enum pl_gguf_type t)
{
    return t == PL_GGUF_INT8 || t == PL_GGUF_INT16 || t == PL_GGUF_INT32 || t == PL_GGUF_INT64;
}
static int is_float(enum pl_gguf_type t) { return t == PL_GGUF_FLOAT32 || t == PL_GGUF_FLOAT64; }

/* ------------------------------------------------------------------ arena for strings etc. */

struct chunk { struct chunk *next; size_t used, cap; };

static void *arena_alloc(struct chunk **head, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = *head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = pl_alloc(sizeof(struct chunk) + 16 + cap, PL_MEM_DATA);
        if (!c) return NULL;
        c->next = *head;
        c->used = 0;
        c->cap = cap;
        *head = c;
    }
    uint8_t *base = (uint8_t *)c + ((sizeof(struct chunk) + 15) & ~(size_t)15);
    void *p = base + c->used;
    c->used += n;
    return p;
}

static void arena_free(struct chunk *c)
{
    while (c) { struct chunk *n = c->next; pl_free(c); c = n; }
}

/* ------------------------------------------------------------------ the file object */

struct kv { struct pl_gguf_str key; struct pl_gguf_value val; };

struct pl_gguf {
    int32_t refcount;
    char *path;
    const uint8_t *map;   /* pl_file_map */
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_off;
    int64_t n_kv, n_tensors;
    struct kv *kv;
    struct pl_gguf_tensor_info *ti;
    struct chunk *arena;
};

struct parser {
    struct pl_gguf *g;
    uint64_t pos;
};

static enum pl_status perr(struct parser *P, enum pl_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static enum pl_status perr(struct parser *P, enum pl_status st, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return pl_fail(st, "%s: %s", P->g->path, buf);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static enum pl_status need(struct parser *P, uint64_t n, const char *what)
{
    if (n > P->g->size - P->pos)
        return perr(P, PL_ERR_FORMAT, "truncated: %s needs %llu bytes at offset %llu but the file has %llu bytes",
                    what, (unsigned long long)n, (unsigned long long)P->pos, (unsigned long long)P->g->size);
    return PL_OK;
}

static enum pl_status rd(struct parser *P, void *dst, uint64_t n, const char *what)
{
    enum pl_status st = need(P, n, what);
    if (st) return st;
    memcpy(dst, P->g->map + P->pos, (size_t)n);
    P->pos += n;
    return PL_OK;
}

static enum pl_status rd_str(struct parser *P, struct pl_gguf_str *out, const char *what)
{
    uint64_t len;
    enum pl_status st = rd(P, &len, 8, what);
    if (st) return st;
    if (len > P->g->size - P->pos)
        return perr(P, PL_ERR_FORMAT, "%s: string length %llu at offset %llu runs past end of file (%llu bytes)",
                    what, (unsigned long long)len, (unsigned long long)(P->pos - 8),
                    (unsigned long long)P->g->size);
    char *s = arena_alloc(&P->g->arena, (size_t)len + 1);
    if (!s) return perr(P, PL_ERR_NOMEM, "out of memory reading %s", what);
    memcpy(s, P->g->map + P->pos, (size_t)len);
    s[len] = 0;
    P->pos += len;
    out->s = s;
    out->len = len;
    return PL_OK;
}

static enum pl_status parse_value(struct parser *P, enum pl_gguf_type type, struct pl_gguf_value *out,
                                  int depth, const char *key)
{
    enum pl_status st;
    out->type = type;
    if ((unsigned)type >= PL_GGUF_TYPE_COUNT)
        return perr(P, PL_ERR_FORMAT, "metadata '%s': unknown value type %u", key, (unsigned)type);
    if (type == PL_GGUF_STRING) return rd_str(P, &out->v.str, key);
    if (type != PL_GGUF_ARRAY) {
        uint8_t b[8] = {0};
        if ((st = rd(P, b, type_sizes[type], key))) return st;
        switch (type) {
        case PL_GGUF_UINT8:   out->v.u64 = b[0]; break;
        case PL_GGUF_INT8:    out->v.i64 = (int8_t)b[0]; break;
        case PL_GGUF_UINT16:  { uint16_t x; memcpy(&x, b, 2); out->v.u64 = x; } break;
        case PL_GGUF_INT16:   { int16_t x; memcpy(&x, b, 2); out->v.i64 = x; } break;
        case PL_GGUF_UINT32:  { uint32_t x; memcpy(&x, b, 4); out->v.u64 = x; } break;
        case PL_GGUF_INT32:   { int32_t x; memcpy(&x, b, 4); out->v.i64 = x; } break;
        case PL_GGUF_FLOAT32: { float x; memcpy(&x, b, 4); out->v.f64 = x; } break;
        case PL_GGUF_BOOL:    out->v.b = b[0] != 0; break;
        case PL_GGUF_UINT64:  memcpy(&out->v.u64, b, 8); break;
        case PL_GGUF_INT64:   memcpy(&out->v.i64, b, 8); break;
        case PL_GGUF_FLOAT64: memcpy(&out->v.f64, b, 8); break;
        default: break;
        }
        return PL_OK;
    }
    if (depth >= MAX_NEST)
        return perr(P, PL_ERR_FORMAT, "metadata '%s': arrays nested deeper than %d", key, MAX_NEST);
    uint32_t et;
    uint64_t n;
    if ((st = rd(P, &et, 4, key)) || (st = rd(P, &n, 8, key))) return st;
    if (et >= PL_GGUF_TYPE_COUNT)
        return perr(P, PL_ERR_FORMAT, "metadata '%s': unknown array element type %u", key, et);
    out->v.arr.elem = (enum pl_gguf_type)et;
    out->v.arr.n = n;
    const uint64_t left = P->g->size - P->pos;
    /* smallest encoding of one element: its size, 8 for a string, 12 for an array */
    const uint64_t min_el = et == PL_GGUF_STRING ? 8 : et == PL_GGUF_ARRAY ? 12 : type_sizes[et];
    if (n > left / min_el)
        return perr(P, PL_ERR_FORMAT, "metadata '%s': array of %llu %s elements cannot fit in the %llu bytes left",
                    key, (unsigned long long)n, type_names[et], (unsigned long long)left);
    if (et == PL_GGUF_STRING) {
        struct pl_gguf_str *a = n ? arena_alloc(&P->g->arena, (size_t)n * sizeof *a) : NULL;
        if (n && !a) return perr(P, PL_ERR_NOMEM, "out of memory reading '%s'", key);
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_str(P, &a[i], key))) return st;
        out->v.arr.data = a;
    } else if (et == PL_GGUF_ARRAY) {
        struct pl_gguf_value *a = n ? arena_alloc(&P->g->arena, (size_t)n * sizeof *a) : NULL;
        if (n && !a) return perr(P, PL_ERR_NOMEM, "out of memory reading '%s'", key);
        for (uint64_t i = 0; i < n; i++)
            if ((st = parse_value(P, PL_GGUF_ARRAY, &a[i], depth + 1, key))) return st;
        out->v.arr.data = a;
    } else {
        out->v.arr.data = P->g->map + P->pos;
        P->pos += n * min_el;
    }
    return PL_OK;
}

static void gguf_destroy(struct pl_gguf *g)
{
    pl_file_unmap(g->map, g->size);
    arena_free(g->arena);
    pl_free(g->kv);
    pl_free(g->ti);
    pl_free(g->path);
    pl_free(g);
}

struct pl_gguf *pl_gguf_retain(struct pl_gguf *g)
{
    if (g) __atomic_fetch_add(&g->refcount, 1, __ATOMIC_RELAXED);
    return g;
}

void pl_gguf_close(struct pl_gguf *g)
{
    if (g && __atomic_sub_fetch(&g->refcount, 1, __ATOMIC_ACQ_REL) == 0) gguf_destroy(g);
}

static enum pl_status parse(struct parser *P)
{
    struct pl_gguf *g = P->g;
    enum pl_status st;
    char magic[4];
    if (g->size < 4 + 4 + 8 + 8) {
        if (g->size >= 4 && memcmp(g->map, GGUF_MAGIC, 4) != 0)
            return perr(P, PL_ERR_FORMAT, "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                        g->map[0], g->map[1], g->map[2], g->map[3]);
        return perr(P, PL_ERR_FORMAT, "truncated: %llu bytes is too small for a GGUF header",
                    (unsigned long long)g->size);
    }
    rd(P, magic, 4, "magic");
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return perr(P, PL_ERR_FORMAT, "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                    (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    rd(P, &g->version, 4, "version");
    if (g->version == 1)
        return perr(P, PL_ERR_UNSUPPORTED, "GGUF version 1 is not supported (only 2 and 3)");
    if ((g->version & 0xFFFF) == 0 && g->version != 0)
        return perr(P, PL_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    if (g->version != 2 && g->version != 3)
        return perr(P, PL_ERR_FORMAT, "unknown GGUF version %u (expected 2 or 3)", g->version);
    uint64_t nt, nkv;
    rd(P, &nt, 8, "tensor count");
    rd(P, &nkv, 8, "metadata count");
    /* each kv needs at least a key length, a type and a one-byte value; each tensor info at
     * least a name length, n_dims, one dim, type and offset */
    const uint64_t left = g->size - P->pos;
    if (nkv > left / 13)
        return perr(P, PL_ERR_FORMAT, "metadata count %llu is impossible for a file of %llu bytes",
                    (unsigned long long)nkv, (unsigned long long)g->size);
    if (nt > left / 32)
        return perr(P, PL_ERR_FORMAT, "tensor count %llu is impossible for a file of %llu bytes",
                    (unsigned long long)nt, (unsigned long long)g->size);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    g->kv = pl_calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv, PL_MEM_DATA);
    g->ti = pl_calloc(nt ? (size_t)nt : 1, sizeof *g->ti, PL_MEM_DATA);
    if (!g->kv || !g->ti) return perr(P, PL_ERR_NOMEM, "out of memory for %llu keys and %llu tensors",
                                      (unsigned long long)nkv, (unsigned long long)nt);

    g->alignment = PL_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < nkv; i++) {
        struct kv *kv = &g->kv[i];
        char what[48];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        if ((st = rd_str(P, &kv->key, what))) return st;
        for (uint64_t j = 0; j < i; j++)
            if (g->kv[j].key.len == kv->key.len && memcmp(g->kv[j].key.s, kv->key.s, kv->key.len) == 0)
                return perr(P, PL_ERR_FORMAT, "duplicate metadata key '%s'", kv->key.s);
        uint32_t type;
        if ((st = rd(P, &type, 4, kv->key.s))) return st;
        if ((st = parse_value(P, (enum pl_gguf_type)type, &kv->val, 0, kv->key.s))) return st;
        if (strcmp(kv->key.s, "general.alignment") == 0) {
            if (kv->val.type != PL_GGUF_UINT32)
                return perr(P, PL_ERR_FORMAT, "general.alignment has type %s, expected u32",
                            pl_gguf_type_name(kv->val.type));
            const uint64_t a = kv->val.v.u64;
            if (a == 0 || (a & (a - 1)) != 0)
                return perr(P, PL_ERR_FORMAT, "general.alignment %llu is not a power of two",
                            (unsigned long long)a);
            g->alignment = (uint32_t)a;
        }
    }

    for (uint64_t i = 0; i < nt; i++) {
        struct pl_gguf_tensor_info *t = &g->ti[i];
        char what[48];
        snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
        struct pl_gguf_str name;
        if ((st = rd_str(P, &name, what))) return st;
        t->name = name.s;
        if (strlen(name.s) != name.len)
            return perr(P, PL_ERR_FORMAT, "tensor %llu: name contains a NUL byte", (unsigned long long)i);
        uint32_t nd;
        if ((st = rd(P, &nd, 4, name.s))) return st;
        if (nd == 0 || nd > PL_MAX_DIMS)
            return perr(P, PL_ERR_FORMAT, "tensor '%s': %u dimensions (expected 1..%d)", name.s, nd, PL_MAX_DIMS);
        t->ndim = (int32_t)nd;
        int64_t numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if ((st = rd(P, &t->ne[d], 8, name.s))) return st;
            if (t->ne[d] < 0)
                return perr(P, PL_ERR_FORMAT, "tensor '%s': negative dimension %lld", name.s, (long long)t->ne[d]);
            if (t->ne[d] && numel > INT64_MAX / t->ne[d])
                return perr(P, PL_ERR_FORMAT, "tensor '%s': element count overflows", name.s);
            numel *= t->ne[d];
            t->shape[nd - 1 - d] = t->ne[d];
        }
        uint32_t type;
        if ((st = rd(P, &type, 4, name.s)) || (st = rd(P, &t->offset, 8, name.s))) return st;
        t->ggml_type = (int32_t)type;
        const int dt = pl_dtype_from_gguf((int32_t)type);
        if (dt < 0)
            return perr(P, PL_ERR_UNSUPPORTED, "tensor '%s' has type %u (%s), which peftlua does not support",
                        name.s, type, pl_ggml_type_name((int32_t)type));
        t->dtype = (enum pl_dtype)dt;
        const struct pl_dtype_info *in = pl_dtype_info(t->dtype);
        if (t->ne[0] % in->block)
            return perr(P, PL_ERR_FORMAT, "tensor '%s': row length %lld is not a multiple of the %s block size %d",
                        name.s, (long long)t->ne[0], in->name, in->block);
        const uint64_t rows = t->ne[0] ? (uint64_t)(numel / t->ne[0]) : 0;
        const uint64_t row_bytes = pl_dtype_row_bytes(t->dtype, t->ne[0]);
        if (row_bytes && rows > UINT64_MAX / row_bytes)
            return perr(P, PL_ERR_FORMAT, "tensor '%s': byte size overflows", name.s);
        t->nbytes = rows * row_bytes;
    }
    /* duplicate names: sorted, not pairwise (a large file can declare millions of tensors) */
    if (nt > 1) {
        const char **nm = pl_alloc((size_t)nt * sizeof *nm, PL_MEM_WORKSPACE);
        if (!nm) return perr(P, PL_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < nt; i++) nm[i] = g->ti[i].name;
        qsort(nm, (size_t)nt, sizeof *nm, name_cmp);
        for (uint64_t i = 1; i < nt; i++)
            if (strcmp(nm[i - 1], nm[i]) == 0) {
                st = perr(P, PL_ERR_FORMAT, "duplicate tensor name '%s'", nm[i]);
                pl_free(nm);
                return st;
            }
        pl_free(nm);
    }

    /* data section: after the infos, padded to the alignment */
    const uint64_t a = g->alignment;
    g->data_off = P->pos + (a - P->pos % a) % a;
    for (uint64_t i = 0; i < nt; i++) {
        struct pl_gguf_tensor_info *t = &g->ti[i];
        if (t->offset % a)
            return perr(P, PL_ERR_FORMAT, "tensor '%s': data offset %llu is not a multiple of the alignment %llu",
                        t->name, (unsigned long long)t->offset, (unsigned long long)a);
        const uint64_t rel = t->offset;
        if (g->data_off > g->size || rel > g->size - g->data_off || t->nbytes > g->size - g->data_off - rel)
            return perr(P, PL_ERR_FORMAT,
                        "tensor '%s' data [offset %llu, %llu bytes] runs past end of file (%llu bytes)",
                        t->name, (unsigned long long)(g->data_off + rel), (unsigned long long)t->nbytes,
                        (unsigned long long)g->size);
        t->offset = g->data_off + rel;
        t->data = g->map + t->offset;
    }
    return PL_OK;
}

enum pl_status pl_gguf_open(const char *path, struct pl_gguf **out)
{
    *out = NULL;
    if (!path) return pl_fail(PL_ERR_ARG, "pl_gguf_open: no path");
    const uint8_t *map;
    uint64_t size;
    enum pl_status st = pl_file_map(path, &map, &size);
    if (st) return st;
    if (size == 0) return pl_fail(PL_ERR_FORMAT, "%s: empty file (not a GGUF file)", path);
    struct pl_gguf *g = pl_calloc(1, sizeof *g, PL_MEM_DATA);
    if (!g || !(g->path = pl_strdup(path, PL_MEM_DATA))) {
        pl_free(g);
        pl_file_unmap(map, size);
        return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    }
    g->refcount = 1;
    g->map = map;
    g->size = size;
    struct parser P = { g, 0 };
    st = parse(&P);
    if (st) {
        gguf_destroy(g);
        return st;
    }
    *out = g;
    return PL_OK;
}

const char *pl_gguf_path(const struct pl_gguf *g) { return g->path; }
uint32_t pl_gguf_version(const struct pl_gguf *g) { return g->version; }
uint32_t pl_gguf_alignment(const struct pl_gguf *g) { return g->alignment; }
uint64_t pl_gguf_data_offset(const struct pl_gguf *g) { return g->data_off; }
uint64_t pl_gguf_file_size(const struct pl_gguf *g) { return g->size; }

/* ------------------------------------------------------------------ metadata access */

int64_t pl_gguf_kv_count(const struct pl_gguf *g) { return g->n_kv; }

const char *pl_gguf_kv_key(const struct pl_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kv[i].key.s : NULL;
}

const struct pl_gguf_value *pl_gguf_kv_value(const struct pl_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kv[i].val : NULL;
}

int64_t pl_gguf_find_key(const struct pl_gguf *g, const char *key)
{
    if (!key) return -1;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key.s, key) == 0) return i;
    return -1;
}

const struct pl_gguf_value *pl_gguf_find(const struct pl_gguf *g, const char *key)
{
    const int64_t i = pl_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i].val;
}

static enum pl_status lookup(const struct pl_gguf *g, const char *key, const struct pl_gguf_value **v)
{
    *v = pl_gguf_find(g, key);
    if (!*v) return pl_fail(PL_ERR_FORMAT, "%s: metadata key '%s' not found", g->path, key ? key : "(null)");
    return PL_OK;
}

static enum pl_status wrong_type(const struct pl_gguf *g, const char *key, const struct pl_gguf_value *v,
                                 const char *want)
{
    return pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' is %s, expected %s", g->path, key,
                   pl_gguf_type_name(v->type), want);
}

/* Integer value as (negative?, magnitude) for range checks. */
static int as_int(const struct pl_gguf_value *v, int *neg, uint64_t *mag)
{
    if (is_unsigned(v->type)) { *neg = 0; *mag = v->v.u64; return 1; }
    if (is_signed(v->type)) {
        *neg = v->v.i64 < 0;
        *mag = *neg ? (uint64_t)0 - (uint64_t)v->v.i64 : (uint64_t)v->v.i64;
        return 1;
    }
    return 0;
}

static enum pl_status get_int(const struct pl_gguf *g, const char *key, int64_t lo, uint64_t hi,
                              const char *tname, int *neg, uint64_t *mag)
{
    const struct pl_gguf_value *v;
    enum pl_status st = lookup(g, key, &v);
    if (st) return st;
    if (!as_int(v, neg, mag)) return wrong_type(g, key, v, "an integer");
    if ((*neg && *mag > (uint64_t)0 - (uint64_t)lo) || (!*neg && *mag > hi))
        return pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' = %s%llu is out of range for %s", g->path, key,
                       *neg ? "-" : "", (unsigned long long)*mag, tname);
    return PL_OK;
}

enum pl_status pl_gguf_get_u32(const struct pl_gguf *g, const char *key, uint32_t *out)
{
    int neg; uint64_t m;
    enum pl_status st = get_int(g, key, 0, UINT32_MAX, "u32", &neg, &m);
    if (!st) *out = (uint32_t)m;
    return st;
}

enum pl_status pl_gguf_get_i32(const struct pl_gguf *g, const char *key, int32_t *out)
{
    int neg; uint64_t m;
    enum pl_status st = get_int(g, key, INT32_MIN, INT32_MAX, "i32", &neg, &m);
    if (!st) *out = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    return st;
}

enum pl_status pl_gguf_get_u64(const struct pl_gguf *g, const char *key, uint64_t *out)
{
    int neg; uint64_t m;
    enum pl_status st = get_int(g, key, 0, UINT64_MAX, "u64", &neg, &m);
    if (!st) *out = m;
    return st;
}

enum pl_status pl_gguf_get_i64(const struct pl_gguf *g, const char *key, int64_t *out)
{
    int neg; uint64_t m;
    enum pl_status st = get_int(g, key, INT64_MIN, INT64_MAX, "i64", &neg, &m);
    if (!st) *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return st;
}

static int scalar_f64(const struct pl_gguf_value *v, double *out)
{
    if (is_float(v->type)) { *out = v->v.f64; return 1; }
    if (is_unsigned(v->type)) { *out = (double)v->v.u64; return 1; }
    if (is_signed(v->type)) { *out = (double)v->v.i64; return 1; }
    return 0;
}

enum pl_status pl_gguf_get_f64(const struct pl_gguf *g, const char *key, double *out)
{
    const struct pl_gguf_value *v;
    enum pl_status st = lookup(g, key, &v);
    if (st) return st;
    if (!scalar_f64(v, out)) return wrong_type(g, key, v, "a number");
    return PL_OK;
}

enum pl_status pl_gguf_get_f32(const struct pl_gguf *g, const char *key, float *out)
{
    double d;
    enum pl_status st = pl_gguf_get_f64(g, key, &d);
    if (!st) *out = (float)d;
    return st;
}

enum pl_status pl_gguf_get_bool(const struct pl_gguf *g, const char *key, int *out)
{
    const struct pl_gguf_value *v;
    enum pl_status st = lookup(g, key, &v);
    if (st) return st;
    if (v->type != PL_GGUF_BOOL) return wrong_type(g, key, v, "bool");
    *out = v->v.b;
    return PL_OK;
}

enum pl_status pl_gguf_get_str(const struct pl_gguf *g, const char *key, const char **out)
{
    const struct pl_gguf_value *v;
    enum pl_status st = lookup(g, key, &v);
    if (st) return st;
    if (v->type != PL_GGUF_STRING) return wrong_type(g, key, v, "string");
    *out = v->v.str.s;
    return PL_OK;
}

enum pl_status pl_gguf_get_arr(const struct pl_gguf *g, const char *key, enum pl_gguf_type *elem, uint64_t *n)
{
    const struct pl_gguf_value *v;
    enum pl_status st = lookup(g, key, &v);
    if (st) return st;
    if (v->type != PL_GGUF_ARRAY) return wrong_type(g, key, v, "array");
    if (elem) *elem = v->v.arr.elem;
    if (n) *n = v->v.arr.n;
    return PL_OK;
}

int pl_gguf_value_i64(const struct pl_gguf_value *v, uint64_t i, int64_t *out)
{
    if (!v || v->type != PL_GGUF_ARRAY || i >= v->v.arr.n) return 0;
    const enum pl_gguf_type e = v->v.arr.elem;
    const uint8_t *p = (const uint8_t *)v->v.arr.data + i * type_sizes[e];
    switch (e) {
    case PL_GGUF_UINT8: case PL_GGUF_BOOL: *out = p[0]; return 1;
    case PL_GGUF_INT8: *out = (int8_t)p[0]; return 1;
    case PL_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *out = x; return 1; }
    case PL_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *out = x; return 1; }
    case PL_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *out = x; return 1; }
    case PL_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *out = x; return 1; }
    case PL_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); if (x > INT64_MAX) return 0; *out = (int64_t)x; return 1; }
    case PL_GGUF_INT64: memcpy(out, p, 8); return 1;
    default: return 0;
    }
}

int pl_gguf_value_f64(const struct pl_gguf_value *v, uint64_t i, double *out)
{
    if (!v || v->type != PL_GGUF_ARRAY || i >= v->v.arr.n) return 0;
    const enum pl_gguf_type e = v->v.arr.elem;
    const uint8_t *p = (const uint8_t *)v->v.arr.data + i * type_sizes[e];
    if (e == PL_GGUF_FLOAT32) { float x; memcpy(&x, p, 4); *out = x; return 1; }
    if (e == PL_GGUF_FLOAT64) { memcpy(out, p, 8); return 1; }
    if (e == PL_GGUF_UINT64) { uint64_t x; memcpy(&x, p, 8); *out = (double)x; return 1; }
    int64_t x;
    if (!pl_gguf_value_i64(v, i, &x)) return 0;
    *out = (double)x;
    return 1;
}

static enum pl_status arr_elem(const struct pl_gguf *g, const char *key, uint64_t i,
                               const struct pl_gguf_value **v)
{
    enum pl_status st = lookup(g, key, v);
    if (st) return st;
    if ((*v)->type != PL_GGUF_ARRAY) return wrong_type(g, key, *v, "array");
    if (i >= (*v)->v.arr.n)
        return pl_fail(PL_ERR_ARG, "%s: metadata '%s': index %llu out of range (%llu elements)", g->path, key,
                       (unsigned long long)i, (unsigned long long)(*v)->v.arr.n);
    return PL_OK;
}

enum pl_status pl_gguf_arr_i64(const struct pl_gguf *g, const char *key, uint64_t i, int64_t *out)
{
    const struct pl_gguf_value *v;
    enum pl_status st = arr_elem(g, key, i, &v);
    if (st) return st;
    if (!pl_gguf_value_i64(v, i, out))
        return pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' is an array of %s, expected integers", g->path, key,
                       pl_gguf_type_name(v->v.arr.elem));
    return PL_OK;
}

enum pl_status pl_gguf_arr_f32(const struct pl_gguf *g, const char *key, uint64_t i, float *out)
{
    const struct pl_gguf_value *v;
    enum pl_status st = arr_elem(g, key, i, &v);
    if (st) return st;
    double d;
    if (!pl_gguf_value_f64(v, i, &d))
        return pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' is an array of %s, expected numbers", g->path, key,
                       pl_gguf_type_name(v->v.arr.elem));
    *out = (float)d;
    return PL_OK;
}

enum pl_status pl_gguf_arr_str(const struct pl_gguf *g, const char *key, uint64_t i, const char **s, uint64_t *len)
{
    const struct pl_gguf_value *v;
    enum pl_status st = arr_elem(g, key, i, &v);
    if (st) return st;
    if (v->v.arr.elem != PL_GGUF_STRING)
        return pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' is an array of %s, expected strings", g->path, key,
                       pl_gguf_type_name(v->v.arr.elem));
    const struct pl_gguf_str *a = v->v.arr.data;
    *s = a[i].s;
    if (len) *len = a[i].len;
    return PL_OK;
}

const struct pl_gguf_str *pl_gguf_str_array(const struct pl_gguf *g, const char *key, uint64_t *n)
{
    const struct pl_gguf_value *v;
    if (lookup(g, key, &v)) return NULL;
    if (v->type != PL_GGUF_ARRAY || v->v.arr.elem != PL_GGUF_STRING) {
        pl_fail(PL_ERR_FORMAT, "%s: metadata '%s' is not an array of strings", g->path, key);
        return NULL;
    }
    *n = v->v.arr.n;
    static const struct pl_gguf_str empty = { "", 0 };
    return v->v.arr.n ? v->v.arr.data : &empty;
}

uint32_t pl_gguf_u32_or(const struct pl_gguf *g, const char *key, uint32_t dflt)
{
    const struct pl_gguf_value *v = pl_gguf_find(g, key);
    int neg; uint64_t m;
    if (!v || !as_int(v, &neg, &m) || neg || m > UINT32_MAX) return dflt;
    return (uint32_t)m;
}

float pl_gguf_f32_or(const struct pl_gguf *g, const char *key, float dflt)
{
    const struct pl_gguf_value *v = pl_gguf_find(g, key);
    double d;
    if (!v || !scalar_f64(v, &d)) return dflt;
    return (float)d;
}

const char *pl_gguf_str_or(const struct pl_gguf *g, const char *key, const char *dflt)
{
    const struct pl_gguf_value *v = pl_gguf_find(g, key);
    return v && v->type == PL_GGUF_STRING ? v->v.str.s : dflt;
}

/* ------------------------------------------------------------------ tensors */

int64_t pl_gguf_tensor_count(const struct pl_gguf *g) { return g->n_tensors; }

int64_t pl_gguf_tensor_find(const struct pl_gguf *g, const char *name)
{
    if (!name) return -1;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->ti[i].name, name) == 0) return i;
    return -1;
}

const struct pl_gguf_tensor_info *pl_gguf_tensor_info(const struct pl_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->ti[i] : NULL;
}

static void mapping_release(struct pl_storage *s)
{
    pl_gguf_close(s->owner);
}

struct pl_tensor *pl_gguf_tensor_at(struct pl_gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_tensors) {
        pl_fail(PL_ERR_ARG, "%s: tensor index %lld out of range (%lld tensors)", g->path, (long long)i,
                (long long)g->n_tensors);
        return NULL;
    }
    const struct pl_gguf_tensor_info *t = &g->ti[i];
    return pl_file_tensor(t->data, t->nbytes, t->dtype, t->ndim, t->shape, mapping_release, pl_gguf_retain(g),
                          g->path, t->name);
}

struct pl_tensor *pl_gguf_tensor(struct pl_gguf *g, const char *name)
{
    const int64_t i = pl_gguf_tensor_find(g, name);
    if (i < 0) {
        pl_fail(PL_ERR_FORMAT, "%s: no tensor '%s'", g->path, name ? name : "(null)");
        return NULL;
    }
    return pl_gguf_tensor_at(g, i);
}

/* ------------------------------------------------------------------ writer */

struct wkv { char *key; struct pl_gguf_value val; };
struct wtensor { char *name; struct pl_tensor *t; };

struct pl_gguf_writer {
    struct wkv *kv;
    int64_t n_kv, cap_kv;
    struct wtensor *ts;
    int64_t n_t, cap_t;
    uint32_t alignment;
};

static void value_free(struct pl_gguf_value *v)
{
    if (v->type == PL_GGUF_STRING) {
        pl_free((void *)v->v.str.s);
    } else if (v->type == PL_GGUF_ARRAY) {
        if (v->v.arr.elem == PL_GGUF_STRING) {
            struct pl_gguf_str *a = (struct pl_gguf_str *)v->v.arr.data;
            for (uint64_t i = 0; a && i < v->v.arr.n; i++) pl_free((void *)a[i].s);
        } else if (v->v.arr.elem == PL_GGUF_ARRAY) {
            struct pl_gguf_value *a = (struct pl_gguf_value *)v->v.arr.data;
            for (uint64_t i = 0; a && i < v->v.arr.n; i++) value_free(&a[i]);
        }
        pl_free((void *)v->v.arr.data);
    }
    v->type = PL_GGUF_UINT8;
}

static char *dup_bytes(const char *s, uint64_t len)
{
    if (len >= SIZE_MAX) return NULL;
    char *d = pl_alloc((size_t)len + 1, PL_MEM_DATA);
    if (!d) return NULL;
    if (len) memcpy(d, s, (size_t)len);
    d[len] = 0;
    return d;
}

/* Deep copy; on failure dst is left empty (freeable) and 0 returned. */
static int value_copy(struct pl_gguf_value *dst, const struct pl_gguf_value *src, int depth)
{
    *dst = *src;
    if (src->type == PL_GGUF_STRING) {
        dst->v.str.s = dup_bytes(src->v.str.s ? src->v.str.s : "", src->v.str.len);
        if (!dst->v.str.s) { dst->type = PL_GGUF_UINT8; return 0; }
        return 1;
    }
    if (src->type != PL_GGUF_ARRAY) return 1;
    if (depth >= MAX_NEST || (unsigned)src->v.arr.elem >= PL_GGUF_TYPE_COUNT) { dst->type = PL_GGUF_UINT8; return 0; }
    const uint64_t n = src->v.arr.n;
    const enum pl_gguf_type e = src->v.arr.elem;
    dst->v.arr.data = NULL;
    dst->v.arr.n = 0;
    if (n == 0) return 1;
    if (e == PL_GGUF_STRING) {
        if (n > SIZE_MAX / sizeof(struct pl_gguf_str)) { dst->type = PL_GGUF_UINT8; return 0; }
        struct pl_gguf_str *a = pl_calloc((size_t)n, sizeof *a, PL_MEM_DATA);
        if (!a) { dst->type = PL_GGUF_UINT8; return 0; }
        dst->v.arr.data = a;
        const struct pl_gguf_str *s = src->v.arr.data;
        for (uint64_t i = 0; i < n; i++) {
            a[i].s = dup_bytes(s[i].s ? s[i].s : "", s[i].len);
            a[i].len = s[i].len;
            dst->v.arr.n = i + 1;
            if (!a[i].s) { value_free(dst); return 0; }
        }
    } else if (e == PL_GGUF_ARRAY) {
        if (n > SIZE_MAX / sizeof(struct pl_gguf_value)) { dst->type = PL_GGUF_UINT8; return 0; }
        struct pl_gguf_value *a = pl_calloc((size_t)n, sizeof *a, PL_MEM_DATA);
        if (!a) { dst->type = PL_GGUF_UINT8; return 0; }
        dst->v.arr.data = a;
        const struct pl_gguf_value *s = src->v.arr.data;
        for (uint64_t i = 0; i < n; i++) {
            dst->v.arr.n = i + 1;
            if (!value_copy(&a[i], &s[i], depth + 1)) { value_free(dst); return 0; }
        }
    } else {
        const size_t es = type_sizes[e];
        if (n > SIZE_MAX / es) { dst->type = PL_GGUF_UINT8; return 0; }
        void *a = pl_alloc((size_t)n * es, PL_MEM_DATA);
        if (!a) { dst->type = PL_GGUF_UINT8; return 0; }
        memcpy(a, src->v.arr.data, (size_t)n * es);
        dst->v.arr.data = a;
        dst->v.arr.n = n;
    }
    return 1;
}

struct pl_gguf_writer *pl_gguf_writer_new(void)
{
    struct pl_gguf_writer *w = pl_calloc(1, sizeof *w, PL_MEM_DATA);
    if (!w) { pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory"); return NULL; }
    w->alignment = PL_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void pl_gguf_writer_free(struct pl_gguf_writer *w)
{
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) { pl_free(w->kv[i].key); value_free(&w->kv[i].val); }
    for (int64_t i = 0; i < w->n_t; i++) { pl_free(w->ts[i].name); pl_tensor_release(w->ts[i].t); }
    pl_free(w->kv);
    pl_free(w->ts);
    pl_free(w);
}

/* Takes ownership of *v's buffers on success and on failure (freed). */
static enum pl_status put(struct pl_gguf_writer *w, const char *key, struct pl_gguf_value *v)
{
    if (!key || !*key) { value_free(v); return pl_fail(PL_ERR_ARG, "gguf writer: empty metadata key"); }
    if (strcmp(key, "general.alignment") == 0) {
        if (v->type != PL_GGUF_UINT32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1))) {
            value_free(v);
            return pl_fail(PL_ERR_ARG, "gguf writer: general.alignment must be a u32 power of two");
        }
        w->alignment = (uint32_t)v->v.u64;
    }
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            value_free(&w->kv[i].val);
            w->kv[i].val = *v;
            return PL_OK;
        }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        struct wkv *n = w->kv ? pl_realloc(w->kv, (size_t)cap * sizeof *n) : pl_alloc((size_t)cap * sizeof *n, PL_MEM_DATA);
        if (!n) { value_free(v); return pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory"); }
        w->kv = n;
        w->cap_kv = cap;
    }
    char *k = pl_strdup(key, PL_MEM_DATA);
    if (!k) { value_free(v); return pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory"); }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].val = *v;
    w->n_kv++;
    return PL_OK;
}

static enum pl_status put_scalar(struct pl_gguf_writer *w, const char *key, struct pl_gguf_value v)
{
    return put(w, key, &v);
}

#define SETTER(fn, ctype, T, field)                                                   \
    enum pl_status fn(struct pl_gguf_writer *w, const char *key, ctype x)            \
    {                                                                                 \
        struct pl_gguf_value v = { .type = T };                                       \
        v.v.field = x;                                                                \
        return put_scalar(w, key, v);                                                 \
    }
SETTER(pl_gguf_set_u8, uint8_t, PL_GGUF_UINT8, u64)
SETTER(pl_gguf_set_i8, int8_t, PL_GGUF_INT8, i64)
SETTER(pl_gguf_set_u16, uint16_t, PL_GGUF_UINT16, u64)
SETTER(pl_gguf_set_i16, int16_t, PL_GGUF_INT16, i64)
SETTER(pl_gguf_set_u32, uint32_t, PL_GGUF_UINT32, u64)
SETTER(pl_gguf_set_i32, int32_t, PL_GGUF_INT32, i64)
SETTER(pl_gguf_set_u64, uint64_t, PL_GGUF_UINT64, u64)
SETTER(pl_gguf_set_i64, int64_t, PL_GGUF_INT64, i64)
SETTER(pl_gguf_set_f64, double, PL_GGUF_FLOAT64, f64)
#undef SETTER

enum pl_status pl_gguf_set_f32(struct pl_gguf_writer *w, const char *key, float x)
{
    struct pl_gguf_value v = { .type = PL_GGUF_FLOAT32 };
    v.v.f64 = x;
    return put_scalar(w, key, v);
}

enum pl_status pl_gguf_set_bool(struct pl_gguf_writer *w, const char *key, int x)
{
    struct pl_gguf_value v = { .type = PL_GGUF_BOOL };
    v.v.b = x != 0;
    return put_scalar(w, key, v);
}

enum pl_status pl_gguf_set_value(struct pl_gguf_writer *w, const char *key, const struct pl_gguf_value *src)
{
    if (!src || (unsigned)src->type >= PL_GGUF_TYPE_COUNT)
        return pl_fail(PL_ERR_ARG, "gguf writer: metadata '%s': invalid value", key ? key : "");
    struct pl_gguf_value v;
    if (!value_copy(&v, src, 0))
        return pl_fail(PL_ERR_NOMEM, "gguf writer: metadata '%s': out of memory (or invalid nesting)", key ? key : "");
    if (v.type == PL_GGUF_FLOAT32) v.v.f64 = (float)v.v.f64;
    return put(w, key, &v);
}

enum pl_status pl_gguf_set_str(struct pl_gguf_writer *w, const char *key, const char *s)
{
    if (!s) return pl_fail(PL_ERR_ARG, "gguf writer: metadata '%s': NULL string", key ? key : "");
    struct pl_gguf_value v = { .type = PL_GGUF_STRING };
    v.v.str.s = s;
    v.v.str.len = strlen(s);
    return pl_gguf_set_value(w, key, &v);
}

enum pl_status pl_gguf_set_arr(struct pl_gguf_writer *w, const char *key, enum pl_gguf_type elem,
                               const void *data, uint64_t n)
{
    if ((unsigned)elem >= PL_GGUF_TYPE_COUNT || elem == PL_GGUF_STRING || elem == PL_GGUF_ARRAY)
        return pl_fail(PL_ERR_ARG, "gguf writer: metadata '%s': pl_gguf_set_arr needs a numeric or bool element type",
                       key ? key : "");
    if (n && !data) return pl_fail(PL_ERR_ARG, "gguf writer: metadata '%s': NULL array data", key ? key : "");
    struct pl_gguf_value v = { .type = PL_GGUF_ARRAY };
    v.v.arr.elem = elem;
    v.v.arr.n = n;
    v.v.arr.data = data;
    return pl_gguf_set_value(w, key, &v);
}

enum pl_status pl_gguf_set_arr_str(struct pl_gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
    if (n && !strs) return pl_fail(PL_ERR_ARG, "gguf writer: metadata '%s': NULL string array", key ? key : "");
    if (n > SIZE_MAX / sizeof(struct pl_gguf_str)) return pl_fail(PL_ERR_ARG, "gguf writer: array too long");
    struct pl_gguf_str *a = n ? pl_alloc((size_t)n * sizeof *a, PL_MEM_WORKSPACE) : NULL;
    if (n && !a) return pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory");
    for (uint64_t i = 0; i < n; i++) {
        a[i].s = strs[i] ? strs[i] : "";
        a[i].len = strlen(a[i].s);
    }
    struct pl_gguf_value v = { .type = PL_GGUF_ARRAY };
    v.v.arr.elem = PL_GGUF_STRING;
    v.v.arr.n = n;
    v.v.arr.data = a;
    enum pl_status st = pl_gguf_set_value(w, key, &v);
    pl_free(a);
    return st;
}

enum pl_status pl_gguf_copy_kv(struct pl_gguf_writer *w, const struct pl_gguf *g)
{
    for (int64_t i = 0; i < g->n_kv; i++) {
        enum pl_status st = pl_gguf_set_value(w, g->kv[i].key.s, &g->kv[i].val);
        if (st) return st;
    }
    return PL_OK;
}

enum pl_status pl_gguf_set_alignment(struct pl_gguf_writer *w, uint32_t a)
{
    if (a == 0 || (a & (a - 1)))
        return pl_fail(PL_ERR_ARG, "gguf writer: alignment %u is not a power of two", a);
    return pl_gguf_set_u32(w, "general.alignment", a);
}

enum pl_status pl_gguf_add_tensor(struct pl_gguf_writer *w, const char *name, struct pl_tensor *t)
{
    if (!name || !*name || !t) return pl_fail(PL_ERR_ARG, "gguf writer: tensor needs a name and a tensor");
    const struct pl_dtype_info *in = pl_dtype_info(t->dtype);
    if (!in || in->gguf_type < 0)
        return pl_fail(PL_ERR_UNSUPPORTED, "gguf writer: tensor '%s': dtype %s has no GGUF type", name,
                       in ? in->name : "?");
    if (t->ndim < 1 || t->ndim > 4)
        return pl_fail(PL_ERR_ARG, "gguf writer: tensor '%s': %d dimensions (GGUF takes 1..4)", name, (int)t->ndim);
    if (!pl_tensor_is_contiguous(t))
        return pl_fail(PL_ERR_ARG, "gguf writer: tensor '%s' is not contiguous", name);
    if (t->shape[t->ndim - 1] % in->block)
        return pl_fail(PL_ERR_ARG, "gguf writer: tensor '%s': row length %lld is not a multiple of the %s block %d",
                       name, (long long)t->shape[t->ndim - 1], in->name, in->block);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return pl_fail(PL_ERR_ARG, "gguf writer: duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *n = w->ts ? pl_realloc(w->ts, (size_t)cap * sizeof *n) : pl_alloc((size_t)cap * sizeof *n, PL_MEM_DATA);
        if (!n) return pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory");
        w->ts = n;
        w->cap_t = cap;
    }
    char *nm = pl_strdup(name, PL_MEM_DATA);
    if (!nm) return pl_fail(PL_ERR_NOMEM, "gguf writer: out of memory");
    w->ts[w->n_t].name = nm;
    w->ts[w->n_t].t = pl_tensor_retain(t);
    w->n_t++;
    return PL_OK;
}

/* buffered output with error latch */
struct out { FILE *f; uint64_t pos; int err; };

static void put_bytes(struct out *o, const void *p, uint64_t n)
{
    if (o->err || !n) return;
    if (fwrite(p, 1, (size_t)n, o->f) != n) o->err = errno ? errno : EIO;
    o->pos += n;
}
static void put_u32(struct out *o, uint32_t x) { put_bytes(o, &x, 4); }
static void put_u64(struct out *o, uint64_t x) { put_bytes(o, &x, 8); }
static void put_str(struct out *o, const char *s, uint64_t len) { put_u64(o, len); put_bytes(o, s, len); }
static void put_pad(struct out *o, uint64_t a)
{
    static const uint8_t zeros[64];
    uint64_t pad = (a - o->pos % a) % a;
    while (pad) { uint64_t k = pad > 64 ? 64 : pad; put_bytes(o, zeros, k); pad -= k; }
}

static void put_value(struct out *o, const struct pl_gguf_value *v, int with_type)
{
    if (with_type) put_u32(o, (uint32_t)v->type);
    uint8_t b[8];
    switch (v->type) {
    case PL_GGUF_UINT8: b[0] = (uint8_t)v->v.u64; put_bytes(o, b, 1); break;
    case PL_GGUF_INT8: b[0] = (uint8_t)(int8_t)v->v.i64; put_bytes(o, b, 1); break;
    case PL_GGUF_BOOL: b[0] = (uint8_t)(v->v.b != 0); put_bytes(o, b, 1); break;
    case PL_GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; put_bytes(o, &x, 2); } break;
    case PL_GGUF_INT16: { int16_t x = (int16_t)v->v.i64; put_bytes(o, &x, 2); } break;
    case PL_GGUF_UINT32: put_u32(o, (uint32_t)v->v.u64); break;
    case PL_GGUF_INT32: { int32_t x = (int32_t)v->v.i64; put_bytes(o, &x, 4); } break;
    case PL_GGUF_FLOAT32: { float x = (float)v->v.f64; put_bytes(o, &x, 4); } break;
    case PL_GGUF_UINT64: put_u64(o, v->v.u64); break;
    case PL_GGUF_INT64: put_bytes(o, &v->v.i64, 8); break;
    case PL_GGUF_FLOAT64: put_bytes(o, &v->v.f64, 8); break;
    case PL_GGUF_STRING: put_str(o, v->v.str.s, v->v.str.len); break;
    case PL_GGUF_ARRAY: {
        const enum pl_gguf_type e = v->v.arr.elem;
        put_u32(o, (uint32_t)e);
        put_u64(o, v->v.arr.n);
        if (e == PL_GGUF_STRING) {
            const struct pl_gguf_str *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_str(o, a[i].s, a[i].len);
        } else if (e == PL_GGUF_ARRAY) {
            const struct pl_gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_value(o, &a[i], 0);
        } else {
            put_bytes(o, v->v.arr.data, v->v.arr.n * type_sizes[e]);
        }
    } break;
    default: break;
    }
}

enum pl_status pl_gguf_writer_write(struct pl_gguf_writer *w, const char *path)
{
    if (!path || !*path) return pl_fail(PL_ERR_ARG, "gguf writer: no output path");
    struct pl_file_out fo;
    enum pl_status st = pl_file_replace_begin(&fo, path);
    if (st) return st;
    struct out o = { fo.f, 0, 0 };
    const uint64_t a = w->alignment;
    put_bytes(&o, GGUF_MAGIC, 4);
    put_u32(&o, 3);
    put_u64(&o, (uint64_t)w->n_t);
    put_u64(&o, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key, strlen(w->kv[i].key));
        put_value(&o, &w->kv[i].val, 1);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        const struct pl_tensor *t = w->ts[i].t;
        put_str(&o, w->ts[i].name, strlen(w->ts[i].name));
        put_u32(&o, (uint32_t)t->ndim);
        for (int d = t->ndim - 1; d >= 0; d--) put_u64(&o, (uint64_t)t->shape[d]);
        put_u32(&o, (uint32_t)pl_dtype_info(t->dtype)->gguf_type);
        put_u64(&o, off);
        off += pl_tensor_nbytes(t);
        off += (a - off % a) % a;
    }
    put_pad(&o, a);
    for (int64_t i = 0; i < w->n_t; i++) {
        const struct pl_tensor *t = w->ts[i].t;
        put_bytes(&o, pl_tensor_data(t), pl_tensor_nbytes(t));
        put_pad(&o, a);
    }
    return pl_file_replace_end(&fo, o.err);
}
