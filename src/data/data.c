/* data.c — reading and validating fine-tuning data files (JSONL or a JSON array).
 *
 * Owner: data. See include/peftlua/data.h for the pipeline. This file turns a file into
 * records of one format and a list of line-numbered issues; it never drops a bad record
 * silently. JSON goes through the JSON layer (peftlua/json.h) only; this file adds the
 * structural scanning JSON parsers do not give us: where each array element starts (for
 * line numbers), trailing text after a value, UTF-8 validity and NUL bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/data.h"
#include "peftlua/json.h"

static const char *const format_names[PL_DATA_FORMAT_COUNT] = {
    "auto", "text", "completion", "chat", "alpaca"
};

const char *pl_data_format_name(enum pl_data_format f)
{
    return (unsigned)f < PL_DATA_FORMAT_COUNT ? format_names[f] : "?";
}

int pl_data_format_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < PL_DATA_FORMAT_COUNT; i++)
        if (strcmp(name, format_names[i]) == 0) return i;
    if (strcmp(name, "prompt_completion") == 0) return PL_DATA_COMPLETION;
    if (strcmp(name, "messages") == 0) return PL_DATA_CHAT;
    if (strcmp(name, "instruction") == 0) return PL_DATA_ALPACA;
    return -1;
}

/* ---------------------------------------------------------------- issues */

struct reader {
    struct pl_data_file *f;
    int32_t cap_rec, cap_iss;
    enum pl_data_format force;
    int oom;
};

static void add_issue(struct reader *rd, int32_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void add_issue(struct reader *rd, int32_t line, const char *fmt, ...)
{
    struct pl_data_file *f = rd->f;
    if (f->n_issues == rd->cap_iss) {
        int32_t nc = rd->cap_iss ? rd->cap_iss * 2 : 16;
        void *p = pl_realloc(f->issues, (size_t)nc * sizeof *f->issues);
        if (!p) { rd->oom = 1; return; }
        f->issues = p;
        rd->cap_iss = nc;
    }
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    size_t n = strlen(f->path) + strlen(body) + 32;
    char *msg = pl_alloc(n, PL_MEM_DATA);
    if (!msg) { rd->oom = 1; return; }
    if (line > 0) snprintf(msg, n, "%s:%d: %s", f->path, (int)line, body);
    else snprintf(msg, n, "%s: %s", f->path, body);
    f->issues[f->n_issues].line = line;
    f->issues[f->n_issues].msg = msg;
    f->n_issues++;
}

/* ---------------------------------------------------------------- byte-level checks */

/* Offset of the first invalid UTF-8 sequence (or NUL byte when nul_bad) in s[0..n), or -1. */
static long utf8_bad_at(const char *s, size_t n, int nul_bad)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c < 0x80) {
            if (c == 0 && nul_bad) return (long)i;
            i++;
            continue;
        }
        size_t len;
        unsigned min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
        else return (long)i;
        if (i + len > n) return (long)i;
        unsigned cp = c & (0xFF >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return (long)i;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long)i;
        i += len;
    }
    return -1;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* End (exclusive) of the JSON value starting at s[i] (no whitespace first), by structure
 * only: balanced brackets outside strings, or a scalar up to a delimiter. Returns -1 if an
 * object/array/string is not closed before n. */
static long value_end(const char *s, size_t n, size_t i)
{
    if (i >= n) return -1;
    char c = s[i];
    if (c == '"') {
        for (size_t k = i + 1; k < n; k++) {
            if (s[k] == '\\') k++;
            else if (s[k] == '"') return (long)k + 1;
        }
        return -1;
    }
    if (c == '{' || c == '[') {
        int depth = 0, instr = 0;
        for (size_t k = i; k < n; k++) {
            char d = s[k];
            if (instr) {
                if (d == '\\') k++;
                else if (d == '"') instr = 0;
                continue;
            }
            if (d == '"') instr = 1;
            else if (d == '{' || d == '[') depth++;
            else if (d == '}' || d == ']') { if (--depth == 0) return (long)k + 1; }
        }
        return -1;
    }
    size_t k = i;
    while (k < n && !is_ws(s[k]) && s[k] != ',' && s[k] != ']' && s[k] != '}') k++;
    return (long)k;
}

/* ---------------------------------------------------------------- record validation */

static enum pl_data_format detect_keys(const struct pl_json *o)
{
    if (pl_json_get(o, "messages")) return PL_DATA_CHAT;
    if (pl_json_get(o, "instruction") || pl_json_get(o, "output")) return PL_DATA_ALPACA;
    if (pl_json_get(o, "prompt") || pl_json_get(o, "completion")) return PL_DATA_COMPLETION;
    if (pl_json_get(o, "text")) return PL_DATA_TEXT;
    return PL_DATA_AUTO;
}

static const char *format_keys(enum pl_data_format f)
{
    switch (f) {
    case PL_DATA_TEXT: return "\"text\"";
    case PL_DATA_COMPLETION: return "\"prompt\", \"completion\"";
    case PL_DATA_CHAT: return "\"messages\"";
    case PL_DATA_ALPACA: return "\"instruction\", \"input\", \"output\"";
    default: return "?";
    }
}

/* A string member: returns 0 with *out set, or reports and returns -1. Empty strings are an
 * issue unless allow_empty. optional: a missing (or null) key gives "". */
static int get_string(struct reader *rd, int32_t line, const struct pl_json *o, const char *where,
                      const char *key, int allow_empty, int optional, const char **out)
{
    struct pl_json *v = pl_json_get(o, key);
    if (!v || (optional && pl_json_type(v) == PL_JSON_NULL)) {
        if (optional) { *out = ""; return 0; }
        add_issue(rd, line, "%smissing key '%s'", where, key);
        return -1;
    }
    const char *s = pl_json_str(v);
    if (!s) { add_issue(rd, line, "%s'%s' must be a string", where, key); return -1; }
    if (!allow_empty && s[strspn(s, " \t\r\n")] == 0) {
        add_issue(rd, line, "%sempty '%s'", where, key);
        return -1;
    }
    if (utf8_bad_at(s, strlen(s), 0) >= 0) {
        add_issue(rd, line, "%s'%s' is not valid UTF-8", where, key);
        return -1;
    }
    *out = s;
    return 0;
}

static char *dup_or_oom(struct reader *rd, const char *s)
{
    char *d = pl_strdup(s ? s : "", PL_MEM_DATA);
    if (!d) rd->oom = 1;
    return d;
}

static void record_clear(struct pl_data_record *r)
{
    pl_free(r->a); pl_free(r->b); pl_free(r->c);
    for (int i = 0; i < r->n_msgs; i++) { pl_free(r->msgs[i].role); pl_free(r->msgs[i].content); }
    pl_free(r->msgs);
    memset(r, 0, sizeof *r);
}

/* Validate object o as format fmt; on success fill r (owned strings). */
static int check_record(struct reader *rd, int32_t line, const struct pl_json *o,
                        enum pl_data_format fmt, struct pl_data_record *r)
{
    memset(r, 0, sizeof *r);
    r->line = line;
    const char *a, *b, *c;
    switch (fmt) {
    case PL_DATA_TEXT:
        if (get_string(rd, line, o, "", "text", 0, 0, &a)) return -1;
        r->a = dup_or_oom(rd, a);
        break;
    case PL_DATA_COMPLETION: {
        int bad = get_string(rd, line, o, "", "prompt", 1, 0, &a);
        if (!bad && get_string(rd, line, o, "", "completion", 0, 0, &b)) bad = 1;
        if (bad) return -1;
        r->a = dup_or_oom(rd, a);
        r->b = dup_or_oom(rd, b);
        break;
    }
    case PL_DATA_ALPACA:
        if (get_string(rd, line, o, "", "instruction", 0, 0, &a)) return -1;
        if (get_string(rd, line, o, "", "input", 1, 1, &b)) return -1;
        if (get_string(rd, line, o, "", "output", 0, 0, &c)) return -1;
        r->a = dup_or_oom(rd, a);
        r->b = dup_or_oom(rd, b);
        r->c = dup_or_oom(rd, c);
        break;
    case PL_DATA_CHAT: {
        struct pl_json *m = pl_json_get(o, "messages");
        if (!m) { add_issue(rd, line, "missing key 'messages'"); return -1; }
        if (pl_json_type(m) != PL_JSON_ARRAY) { add_issue(rd, line, "'messages' must be an array"); return -1; }
        int n = pl_json_len(m);
        if (n == 0) { add_issue(rd, line, "empty 'messages'"); return -1; }
        /* Roles: optional system first, then user/assistant alternating from user, ending
         * with assistant (the turn that is trained on). */
        r->msgs = pl_calloc((size_t)n, sizeof *r->msgs, PL_MEM_DATA);
        if (!r->msgs) { rd->oom = 1; return -1; }
        int has_system = 0, i = 0;
        const char *last = "";
        for (struct pl_json *e = pl_json_first(m); e && i < n; e = pl_json_next(e), i++) {
            char where[48];
            snprintf(where, sizeof where, "messages[%d]: ", i);
            const char *role, *content;
            if (pl_json_type(e) != PL_JSON_OBJECT) { add_issue(rd, line, "%snot an object", where); goto bad; }
            if (get_string(rd, line, e, where, "role", 0, 0, &role)) goto bad;
            if (get_string(rd, line, e, where, "content", 0, 0, &content)) goto bad;
            int sys = strcmp(role, "system") == 0, usr = strcmp(role, "user") == 0,
                ast = strcmp(role, "assistant") == 0;
            if (!sys && !usr && !ast) {
                add_issue(rd, line, "%sunknown role '%.40s' (expected system, user or assistant)", where, role);
                goto bad;
            }
            if (sys && i != 0) { add_issue(rd, line, "%sa system message is only allowed first", where); goto bad; }
            if (sys) has_system = 1;
            const char *want = (i - has_system) % 2 == 0 ? "user" : "assistant";
            if (!sys && strcmp(role, want) != 0) {
                add_issue(rd, line, "%srole '%s' where '%s' was expected (user and assistant turns alternate, starting with user)",
                          where, role, want);
                goto bad;
            }
            r->msgs[i].role = dup_or_oom(rd, role);
            r->msgs[i].content = dup_or_oom(rd, content);
            r->n_msgs = i + 1;
            if (rd->oom) goto bad;
            last = role;
        }
        if (strcmp(last, "assistant") != 0) {
            add_issue(rd, line, "the last message must be from the assistant (it is '%s')", last);
            goto bad;
        }
        break;
    }
    default:
        return -1;
    }
    if (rd->oom) { record_clear(r); return -1; }
    return 0;
bad:
    record_clear(r);
    return -1;
}

/* One record's text s[0..n) starting at (line, col). */
static void read_record(struct reader *rd, const char *s, size_t n, int32_t line, long col0)
{
    struct pl_data_file *f = rd->f;
    f->n_seen++;
    if (n > PL_DATA_MAX_RECORD_BYTES) {
        add_issue(rd, line, "record is %zu bytes, over the %u MiB limit", n, PL_DATA_MAX_RECORD_BYTES >> 20);
        return;
    }
    long bad = utf8_bad_at(s, n, 1);
    if (bad >= 0) {
        long l = 0, c = col0;
        for (long k = 0; k < bad; k++) { if (s[k] == '\n') { l++; c = 1; } else c++; }
        add_issue(rd, line + (int32_t)l, "%s at column %ld", s[bad] ? "invalid UTF-8" : "NUL byte", c);
        return;
    }
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    long end = value_end(s, n, i);
    struct pl_json *j = NULL;
    long err_at = -1;
    if (end >= 0) {
        size_t k = (size_t)end;
        while (k < n && is_ws(s[k])) k++;
        if (k < n) err_at = (long)k;   /* trailing text */
    }
    if (end < 0) {   /* an object, array or string left open */
        long l = 0, c = col0;
        for (size_t k = 0; k < n; k++) { if (s[k] == '\n') { l++; c = 1; } else c++; }
        while (n > 0 && l == 0 && (s[n - 1] == '\r' || s[n - 1] == ' ')) { n--; c--; }
        add_issue(rd, line + (int32_t)l, "invalid JSON at column %ld (unexpected end of %s)", c,
                  rd->f->is_array ? "file" : "line");
        return;
    }
    if (err_at < 0) {
        j = pl_json_parse(s, n, "x");
        if (!j) {
            long el = 1, ec = 1;
            if (sscanf(pl_last_error(), "x:%ld:%ld", &el, &ec) != 2) { el = 1; ec = 1; }
            long l = el - 1, c = el == 1 ? col0 + ec - 1 : ec;
            add_issue(rd, line + (int32_t)l, "invalid JSON at column %ld", c);
            return;
        }
    } else {
        long l = 0, c = col0;
        for (long k = 0; k < err_at; k++) { if (s[k] == '\n') { l++; c = 1; } else c++; }
        add_issue(rd, line + (int32_t)l, "invalid JSON at column %ld (text after the value)", c);
        return;
    }
    if (pl_json_type(j) != PL_JSON_OBJECT) {
        add_issue(rd, line, "not a JSON object");
        pl_json_free(j);
        return;
    }
    enum pl_data_format got = detect_keys(j), fmt = rd->force;
    if (fmt == PL_DATA_AUTO) {
        if (got == PL_DATA_AUTO) {
            add_issue(rd, line, "no known keys (expected \"text\", \"prompt\"/\"completion\", \"messages\" or \"instruction\"/\"input\"/\"output\")");
            pl_json_free(j);
            return;
        }
        if (f->format == PL_DATA_AUTO) { f->format = got; f->format_line = line; }
        else if (got != f->format) {
            add_issue(rd, line, "a %s record (keys %s) in a %s file (format detected from line %d); mixed formats are not supported",
                      pl_data_format_name(got), format_keys(got), pl_data_format_name(f->format), (int)f->format_line);
            pl_json_free(j);
            return;
        }
        fmt = f->format;
    }
    struct pl_data_record r;
    if (check_record(rd, line, j, fmt, &r) == 0) {
        if (f->n_records == rd->cap_rec) {
            int32_t nc = rd->cap_rec ? rd->cap_rec * 2 : 64;
            void *p = pl_realloc(f->records, (size_t)nc * sizeof *f->records);
            if (!p) { rd->oom = 1; record_clear(&r); pl_json_free(j); return; }
            f->records = p;
            rd->cap_rec = nc;
        }
        f->records[f->n_records++] = r;
    }
    pl_json_free(j);
}

static void read_jsonl(struct reader *rd, const char *s, size_t n)
{
    size_t i = 0;
    int32_t line = 1;
    while (i < n && !rd->oom) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) : n;
        size_t k = i;
        while (k < e && is_ws(s[k])) k++;
        if (k < e) read_record(rd, s + i, e - i, line, 1);
        i = e + 1;
        line++;
    }
}

static void read_array(struct reader *rd, const char *s, size_t n, size_t open)
{
    int32_t line = 1;
    long col = 1;
    size_t i = 0;
#define ADVANCE_TO(pos) do { size_t to_ = (pos); for (; i < to_; i++) { if (s[i] == '\n') { line++; col = 1; } else col++; } } while (0)
    ADVANCE_TO(open + 1);
    for (;;) {
        int32_t start_line = line;
        while (i < n && is_ws(s[i])) ADVANCE_TO(i + 1);
        if (i >= n) { add_issue(rd, start_line, "unterminated JSON array (missing ']')"); break; }
        if (s[i] == ']') {   /* end (a trailing comma before it is tolerated) */
            ADVANCE_TO(i + 1);
            while (i < n && is_ws(s[i])) ADVANCE_TO(i + 1);
            if (i < n) add_issue(rd, line, "invalid JSON at column %ld (text after the array)", col);
            break;
        }
        long end = value_end(s, n, i);
        size_t e = end < 0 ? n : (size_t)end;
        if (end == (long)i) e = i + 1;  /* a stray delimiter: let the parser name it */
        read_record(rd, s + i, e - i, line, col);
        if (rd->oom) break;
        ADVANCE_TO(e);
        int32_t end_line = line;
        while (i < n && is_ws(s[i])) ADVANCE_TO(i + 1);
        if (i < n && s[i] == ',') { ADVANCE_TO(i + 1); continue; }
        if (i < n && s[i] == ']') continue;
        if (end >= 0) {
            if (i < n) add_issue(rd, line, "invalid JSON at column %ld (expected ',' or ']')", col);
            else add_issue(rd, end_line, "unterminated JSON array (missing ']')");
        }
        break;
    }
#undef ADVANCE_TO
}

enum pl_status pl_data_read_mem(struct pl_data_file **out, const char *name, const char *text,
                                size_t n, enum pl_data_format force)
{
    *out = NULL;
    if ((unsigned)force >= PL_DATA_FORMAT_COUNT) return pl_fail(PL_ERR_ARG, "%s: bad format %d", name, (int)force);
    struct pl_data_file *f = pl_calloc(1, sizeof *f, PL_MEM_DATA);
    if (!f) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", name);
    f->path = pl_strdup(name, PL_MEM_DATA);
    if (!f->path) { pl_free(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", name); }
    f->format = PL_DATA_AUTO;
    struct reader rd = { .f = f, .force = force };
    size_t i = 0;
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) i = 3;   /* UTF-8 byte-order mark */
    size_t k = i;
    while (k < n && is_ws(text[k])) k++;
    if (k >= n) {
        add_issue(&rd, 0, "empty file (no records)");
    } else if (text[k] == '[') {
        f->is_array = 1;
        /* keep line numbers right: scan from the start, skipping the BOM bytes as columns */
        read_array(&rd, text, n, k);
    } else {
        read_jsonl(&rd, text + i, n - i);
    }
    if (force != PL_DATA_AUTO) { f->format = force; f->format_line = 0; }
    if (!rd.oom && f->n_seen > 0 && f->n_records == 0 && f->n_issues == 0)
        add_issue(&rd, 0, "no records");
    if (rd.oom) { pl_data_file_free(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory while reading", name); }
    *out = f;
    return PL_OK;
}

enum pl_status pl_data_read(struct pl_data_file **out, const char *path, enum pl_data_format force)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = pl_alloc(cap, PL_MEM_DATA);
    if (!buf) { fclose(fp); return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); }
    for (;;) {
        if (n == cap) {
            char *nb = pl_realloc(buf, cap * 2);
            if (!nb) { pl_free(buf); fclose(fp); return pl_fail(PL_ERR_NOMEM, "%s: out of memory reading", path); }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) { pl_free(buf); return pl_fail(PL_ERR_IO, "%s: read error", path); }
    enum pl_status st = pl_data_read_mem(out, path, buf, n, force);
    pl_free(buf);
    return st;
}

void pl_data_file_free(struct pl_data_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_records; i++) record_clear(&f->records[i]);
    for (int i = 0; i < f->n_issues; i++) pl_free(f->issues[i].msg);
    pl_free(f->records);
    pl_free(f->issues);
    pl_free(f->path);
    pl_free(f);
}

/* ---------------------------------------------------------------- canonical JSON */

static int cmp_members(const void *a, const void *b)
{
    const char *ka = pl_json_key(*(struct pl_json *const *)a), *kb = pl_json_key(*(struct pl_json *const *)b);
    return strcmp(ka ? ka : "", kb ? kb : "");
}

/* Copy v under parent (key for objects) with object keys sorted; 0 on success. */
static int canon_copy(struct pl_json *parent, const char *key, const struct pl_json *v, int depth)
{
    if (depth > 200) return -1;
    switch (pl_json_type(v)) {
    case PL_JSON_NULL: pl_json_add_null(parent, key); return 0;
    case PL_JSON_BOOL: pl_json_add_bool(parent, key, pl_json_bool(v, 0)); return 0;
    case PL_JSON_NUMBER: pl_json_add_num(parent, key, pl_json_num(v, 0)); return 0;
    case PL_JSON_STRING: pl_json_add_str(parent, key, pl_json_str(v)); return 0;
    case PL_JSON_ARRAY: {
        struct pl_json *a = pl_json_add_array(parent, key);
        if (!a) return -1;
        for (struct pl_json *e = pl_json_first(v); e; e = pl_json_next(e))
            if (canon_copy(a, NULL, e, depth + 1)) return -1;
        return 0;
    }
    case PL_JSON_OBJECT: {
        struct pl_json *o = pl_json_add_object(parent, key);
        if (!o) return -1;
        int n = pl_json_len(v), i = 0;
        struct pl_json **m = pl_alloc((size_t)(n ? n : 1) * sizeof *m, PL_MEM_WORKSPACE);
        if (!m) return -1;
        for (struct pl_json *e = pl_json_first(v); e; e = pl_json_next(e)) m[i++] = e;
        qsort(m, (size_t)n, sizeof *m, cmp_members);
        int rc = 0;
        for (i = 0; i < n && !rc; i++) rc = canon_copy(o, pl_json_key(m[i]), m[i], depth + 1);
        pl_free(m);
        return rc;
    }
    default: return -1;
    }
}

char *pl_data_json_canonical(const char *text, size_t n)
{
    size_t i = 0;
    while (i < n && is_ws(text[i])) i++;
    long end = value_end(text, n, i);
    if (end < 0) { pl_fail(PL_ERR_FORMAT, "invalid JSON (unterminated)"); return NULL; }
    for (size_t k = (size_t)end; k < n; k++)
        if (!is_ws(text[k])) { pl_fail(PL_ERR_FORMAT, "invalid JSON (text after the value at byte %zu)", k + 1); return NULL; }
    struct pl_json *j = pl_json_parse(text, n, "json");
    if (!j) return NULL;
    /* Wrap in an array so scalars and containers go through the same copy. */
    struct pl_json *box = pl_json_new_array();
    char *out = NULL;
    if (box && canon_copy(box, NULL, j, 0) == 0) {
        char *s = pl_json_print(box, 0);
        if (s) {
            size_t len = strlen(s);   /* "[...]" */
            out = pl_alloc(len, PL_MEM_DATA);
            if (out) { memcpy(out, s + 1, len - 2); out[len - 2] = 0; }
            pl_free(s);
        }
    }
    if (!out) pl_fail(PL_ERR_NOMEM, "out of memory canonicalising JSON");
    pl_json_free(box);
    pl_json_free(j);
    return out;
}
