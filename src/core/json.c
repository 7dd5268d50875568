/* json.c — the JSON layer over cJSON (the one file that includes cJSON.h).
 *
 * struct pl_json is cJSON's node; cJSON allocates through the counting allocator (category
 * "data") via its hooks, installed on first use.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "peftlua/alloc.h"
#include "peftlua/json.h"

static void *pl_json_malloc(size_t n) { return pl_alloc(n, PL_MEM_DATA); }

static void pl_json_hooks(void)
{
    static int done;
    if (!done) {
        cJSON_Hooks h = { pl_json_malloc, pl_free };
        cJSON_InitHooks(&h);
        done = 1;
    }
}

#define CJ(j) ((cJSON *)(j))
#define PJ(c) ((struct pl_json *)(c))

struct pl_json *pl_json_parse(const char *text, size_t n, const char *what)
{
    pl_json_hooks();
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long line = 1, col = 1;
        if (at && at >= text && at <= text + n)
            for (const char *p = text; p < at; p++) { if (*p == '\n') { line++; col = 1; } else col++; }
        pl_fail(PL_ERR_FORMAT, "%s:%ld:%ld: invalid JSON", what ? what : "<json>", line, col);
        return NULL;
    }
    return PJ(root);
}

struct pl_json *pl_json_parse_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); pl_fail(PL_ERR_IO, "%s: cannot seek", path); return NULL; }
    long sz = ftell(f);
    rewind(f);
    if (sz < 0) { fclose(f); pl_fail(PL_ERR_IO, "%s: cannot size", path); return NULL; }
    char *buf = pl_alloc((size_t)sz + 1, PL_MEM_DATA);
    if (!buf) { fclose(f); pl_fail(PL_ERR_NOMEM, "%s: out of memory reading %ld bytes", path, sz); return NULL; }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) { pl_free(buf); pl_fail(PL_ERR_IO, "%s: short read", path); return NULL; }
    buf[sz] = 0;
    struct pl_json *j = pl_json_parse(buf, (size_t)sz, path);
    pl_free(buf);
    return j;
}

void pl_json_free(struct pl_json *j) { if (j) cJSON_Delete(CJ(j)); }

enum pl_json_type pl_json_type(const struct pl_json *j)
{
    const cJSON *c = (const cJSON *)j;
    if (!c) return PL_JSON_INVALID;
    if (cJSON_IsNull(c)) return PL_JSON_NULL;
    if (cJSON_IsBool(c)) return PL_JSON_BOOL;
    if (cJSON_IsNumber(c)) return PL_JSON_NUMBER;
    if (cJSON_IsString(c)) return PL_JSON_STRING;
    if (cJSON_IsArray(c)) return PL_JSON_ARRAY;
    if (cJSON_IsObject(c)) return PL_JSON_OBJECT;
    return PL_JSON_INVALID;
}

struct pl_json *pl_json_get(const struct pl_json *obj, const char *key)
{
    return obj && cJSON_IsObject((const cJSON *)obj) ? PJ(cJSON_GetObjectItemCaseSensitive((const cJSON *)obj, key)) : NULL;
}
struct pl_json *pl_json_at(const struct pl_json *arr, int i)
{
    return arr ? PJ(cJSON_GetArrayItem((const cJSON *)arr, i)) : NULL;
}
int pl_json_len(const struct pl_json *j) { return j ? cJSON_GetArraySize((const cJSON *)j) : 0; }
const char *pl_json_key(const struct pl_json *m) { return m ? ((const cJSON *)m)->string : NULL; }
struct pl_json *pl_json_first(const struct pl_json *j) { return j ? PJ(((const cJSON *)j)->child) : NULL; }
struct pl_json *pl_json_next(const struct pl_json *j) { return j ? PJ(((const cJSON *)j)->next) : NULL; }
const char *pl_json_str(const struct pl_json *j) { return cJSON_IsString((const cJSON *)j) ? ((const cJSON *)j)->valuestring : NULL; }
double pl_json_num(const struct pl_json *j, double d) { return cJSON_IsNumber((const cJSON *)j) ? ((const cJSON *)j)->valuedouble : d; }
int pl_json_bool(const struct pl_json *j, int d)
{
    const cJSON *c = (const cJSON *)j;
    return cJSON_IsBool(c) ? cJSON_IsTrue(c) : d;
}
const char *pl_json_get_str(const struct pl_json *o, const char *k) { return pl_json_str(pl_json_get(o, k)); }
double pl_json_get_num(const struct pl_json *o, const char *k, double d) { return pl_json_num(pl_json_get(o, k), d); }

int pl_json_int(const struct pl_json *j, int64_t lo, int64_t hi, int64_t dflt, int64_t *out)
{
    if (!j || pl_json_type(j) == PL_JSON_NULL) { *out = dflt; return 0; }
    if (pl_json_type(j) != PL_JSON_NUMBER) return -1;
    const double d = pl_json_num(j, 0);
    /* compare as doubles before any conversion: NaN and out-of-range values fail here */
    if (!(d >= (double)lo && d <= (double)hi) || d < -9007199254740992.0 || d > 9007199254740992.0) return -1;
    const int64_t v = (int64_t)d;
    if ((double)v != d || v < lo || v > hi) return -1;
    *out = v;
    return 1;
}

int pl_json_get_int(const struct pl_json *o, const char *k, int64_t lo, int64_t hi, int64_t dflt, int64_t *out)
{
    return pl_json_int(pl_json_get(o, k), lo, hi, dflt, out);
}

struct pl_json *pl_json_new_object(void) { pl_json_hooks(); return PJ(cJSON_CreateObject()); }
struct pl_json *pl_json_new_array(void) { pl_json_hooks(); return PJ(cJSON_CreateArray()); }

static void pl_json_attach(struct pl_json *parent, const char *key, cJSON *item)
{
    if (!parent || !item) return;
    if (cJSON_IsArray(CJ(parent))) cJSON_AddItemToArray(CJ(parent), item);
    else cJSON_AddItemToObject(CJ(parent), key ? key : "", item);
}
struct pl_json *pl_json_add_object(struct pl_json *p, const char *k) { cJSON *c = cJSON_CreateObject(); pl_json_attach(p, k, c); return PJ(c); }
struct pl_json *pl_json_add_array(struct pl_json *p, const char *k) { cJSON *c = cJSON_CreateArray(); pl_json_attach(p, k, c); return PJ(c); }
void pl_json_add_str(struct pl_json *p, const char *k, const char *v) { pl_json_attach(p, k, cJSON_CreateString(v ? v : "")); }
void pl_json_add_num(struct pl_json *p, const char *k, double v) { pl_json_attach(p, k, cJSON_CreateNumber(v)); }
void pl_json_add_bool(struct pl_json *p, const char *k, int v) { pl_json_attach(p, k, cJSON_CreateBool(v)); }
void pl_json_add_null(struct pl_json *p, const char *k) { pl_json_attach(p, k, cJSON_CreateNull()); }

char *pl_json_print(const struct pl_json *j, int pretty)
{
    pl_json_hooks();
    return j ? (pretty ? cJSON_Print((const cJSON *)j) : cJSON_PrintUnformatted((const cJSON *)j)) : NULL;
}
