/* tune_io.c — the optimiser's history as JSON, so a search can be saved and resumed
 * (owner: tune). Format in tune.h. Goes through json.h only; categorical values are stored by
 * label, failed trials as "value": null with "failed": true. Loading validates the whole file
 * before telling anything, so a bad file leaves the optimiser unchanged.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/json.h"
#include "peftlua/tune.h"

static const char *type_name(enum pl_tune_type t)
{
    return t == PL_TUNE_REAL ? "real" : t == PL_TUNE_INT ? "int" : "cat";
}

enum pl_status pl_tune_save(const struct pl_tune *t, const char *path)
{
    int np = pl_tune_nparams(t), n = pl_tune_count(t);
    struct pl_json *root = pl_json_new_object();
    if (!root) return pl_fail(PL_ERR_NOMEM, "%s: out of memory building the history", path);
    pl_json_add_str(root, "format", "peftlua-tune-history");
    pl_json_add_num(root, "version", 1);
    struct pl_json *sp = pl_json_add_array(root, "space");
    for (int i = 0; i < np; i++) {
        const struct pl_tune_param *p = pl_tune_param(t, i);
        struct pl_json *o = pl_json_add_object(sp, NULL);
        pl_json_add_str(o, "name", p->name);
        pl_json_add_str(o, "type", type_name(p->type));
        if (p->type == PL_TUNE_CAT) {
            struct pl_json *ch = pl_json_add_array(o, "choices");
            for (int c = 0; c < p->n_choices; c++) pl_json_add_str(ch, NULL, p->choices[c]);
        } else {
            pl_json_add_num(o, "lo", p->lo);
            pl_json_add_num(o, "hi", p->hi);
            pl_json_add_bool(o, "log", p->log != 0);
            if (p->type == PL_TUNE_INT) pl_json_add_bool(o, "pow2", p->pow2 != 0);
        }
    }
    struct pl_json *tr = pl_json_add_array(root, "trials");
    double v[np > 0 ? np : 1], y;
    for (int k = 0; k < n; k++) {
        pl_tune_obs(t, k, v, &y);
        struct pl_json *o = pl_json_add_object(tr, NULL);
        struct pl_json *pp = pl_json_add_object(o, "params");
        for (int i = 0; i < np; i++) {
            const struct pl_tune_param *p = pl_tune_param(t, i);
            if (p->type == PL_TUNE_CAT) pl_json_add_str(pp, p->name, p->choices[(int)v[i]]);
            else pl_json_add_num(pp, p->name, v[i]);
        }
        if (isnan(y)) { pl_json_add_null(o, "value"); pl_json_add_bool(o, "failed", 1); }
        else pl_json_add_num(o, "value", y);
        const char *const *mk;
        const double *mv;
        int nm = pl_tune_obs_metrics(t, k, &mk, &mv);
        if (nm > 0) {
            struct pl_json *mo = pl_json_add_object(o, "metrics");
            for (int q = 0; q < nm; q++) {
                if (isfinite(mv[q])) pl_json_add_num(mo, mk[q], mv[q]);
                else pl_json_add_null(mo, mk[q]);
            }
        }
    }
    char *text = pl_json_print(root, 1);
    pl_json_free(root);
    if (!text) return pl_fail(PL_ERR_NOMEM, "%s: out of memory printing the history", path);
    /* the one atomic writer: an interrupted save never leaves half a file */
    const void *parts[2] = { text, "\n" };
    size_t sizes[2] = { strlen(text), 1 };
    enum pl_status st = pl_file_write_atomic(path, parts, sizes, 2);
    pl_free(text);
    return st;
}

static enum pl_status check_space(const struct pl_tune *t, const struct pl_json *sp, const char *path)
{
    int np = pl_tune_nparams(t);
    if (pl_json_type(sp) != PL_JSON_ARRAY) return pl_fail(PL_ERR_FORMAT, "%s: missing \"space\" array", path);
    if (pl_json_len(sp) != np)
        return pl_fail(PL_ERR_ARG, "%s: the history has %d parameters, this search %d", path, pl_json_len(sp), np);
    for (int i = 0; i < np; i++) {
        const struct pl_tune_param *p = pl_tune_param(t, i);
        const struct pl_json *o = pl_json_at(sp, i);
        const char *nm = pl_json_get_str(o, "name"), *ty = pl_json_get_str(o, "type");
        if (!nm || strcmp(nm, p->name) != 0)
            return pl_fail(PL_ERR_ARG, "%s: space parameter %d is '%s', this search has '%s'", path, i + 1, nm ? nm : "?", p->name);
        if (!ty || strcmp(ty, type_name(p->type)) != 0)
            return pl_fail(PL_ERR_ARG, "%s: parameter '%s' has type '%s' in the history, '%s' here", path, p->name, ty ? ty : "?", type_name(p->type));
        if (p->type == PL_TUNE_CAT) {
            const struct pl_json *ch = pl_json_get(o, "choices");
            int ok = pl_json_type(ch) == PL_JSON_ARRAY && pl_json_len(ch) == p->n_choices;
            for (int c = 0; ok && c < p->n_choices; c++) {
                const char *l = pl_json_str(pl_json_at(ch, c));
                ok = l && strcmp(l, p->choices[c]) == 0;
            }
            if (!ok) return pl_fail(PL_ERR_ARG, "%s: parameter '%s' has different choices in the history", path, p->name);
        } else {
            double lo = pl_json_get_num(o, "lo", NAN), hi = pl_json_get_num(o, "hi", NAN);
            int lg = pl_json_bool(pl_json_get(o, "log"), 0), p2 = pl_json_bool(pl_json_get(o, "pow2"), 0);
            if (lo != p->lo || hi != p->hi || lg != (p->log != 0) || (p->type == PL_TUNE_INT && p2 != (p->pow2 != 0)))
                return pl_fail(PL_ERR_ARG, "%s: parameter '%s' has range [%g, %g]%s in the history, [%g, %g]%s here", path,
                               p->name, lo, hi, lg ? " log" : "", p->lo, p->hi, p->log ? " log" : "");
        }
    }
    return PL_OK;
}

enum pl_status pl_tune_load(struct pl_tune *t, const char *path)
{
    FILE *probe = fopen(path, "rb");
    if (!probe) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    struct pl_json *root = pl_json_parse_file(path);
    if (!root) return PL_ERR_FORMAT;     /* the JSON layer's message names the file and line */
    enum pl_status st = PL_OK;
    int np = pl_tune_nparams(t);
    double *buf = NULL;
    const char *fmt = pl_json_get_str(root, "format");
    if (pl_json_type(root) != PL_JSON_OBJECT || !fmt || strcmp(fmt, "peftlua-tune-history") != 0) {
        st = pl_fail(PL_ERR_FORMAT, "%s: not a peftlua tune history (\"format\" missing or wrong)", path);
        goto done;
    }
    if (pl_json_get_num(root, "version", 0) != 1) {
        st = pl_fail(PL_ERR_FORMAT, "%s: unsupported history version %g", path, pl_json_get_num(root, "version", 0));
        goto done;
    }
    if ((st = check_space(t, pl_json_get(root, "space"), path))) goto done;
    const struct pl_json *tr = pl_json_get(root, "trials");
    if (pl_json_type(tr) != PL_JSON_ARRAY) { st = pl_fail(PL_ERR_FORMAT, "%s: missing \"trials\" array", path); goto done; }
    int n = pl_json_len(tr);
    buf = pl_alloc(sizeof(double) * (size_t)(n ? n : 1) * (np + 1), PL_MEM_WORKSPACE);
    if (!buf) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (int k = 0; k < n; k++) {
        const struct pl_json *o = pl_json_at(tr, k), *pp = pl_json_get(o, "params");
        double *v = buf + (size_t)k * (np + 1);
        if (pl_json_type(pp) != PL_JSON_OBJECT) { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d has no \"params\" object", path, k + 1); goto done; }
        for (int i = 0; i < np; i++) {
            const struct pl_tune_param *p = pl_tune_param(t, i);
            const struct pl_json *e = pl_json_get(pp, p->name);
            if (p->type == PL_TUNE_CAT) {
                const char *l = pl_json_str(e);
                int c = -1;
                for (int q = 0; l && q < p->n_choices; q++) if (strcmp(l, p->choices[q]) == 0) c = q;
                if (c < 0) { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d: '%s' = '%s' is not one of its choices", path, k + 1, p->name, l ? l : "(missing)"); goto done; }
                v[i] = c;
            } else {
                if (pl_json_type(e) != PL_JSON_NUMBER) { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d: '%s' missing or not a number", path, k + 1, p->name); goto done; }
                v[i] = pl_json_num(e, NAN);
            }
        }
        const struct pl_json *mo = pl_json_get(o, "metrics");
        if (mo && pl_json_type(mo) != PL_JSON_OBJECT) { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d: \"metrics\" must be an object", path, k + 1); goto done; }
        if (pl_tune_check(t, v)) { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d: %s", path, k + 1, pl_last_error()); goto done; }
        const struct pl_json *val = pl_json_get(o, "value");
        if (pl_json_type(val) == PL_JSON_NUMBER) v[np] = pl_json_num(val, NAN);
        else if (pl_json_type(val) == PL_JSON_NULL || pl_json_bool(pl_json_get(o, "failed"), 0)) v[np] = NAN;
        else { st = pl_fail(PL_ERR_FORMAT, "%s: trial %d: \"value\" must be a number or null", path, k + 1); goto done; }
    }
    for (int k = 0; k < n; k++) {
        const struct pl_json *o = pl_json_at(tr, k), *mo = pl_json_get(o, "metrics");
        int nm = mo ? pl_json_len(mo) : 0;
        const char *keys[nm > 0 ? nm : 1];
        double vals[nm > 0 ? nm : 1];
        int q = 0;
        for (const struct pl_json *e = mo ? pl_json_first(mo) : NULL; e && q < nm; e = pl_json_next(e), q++) {
            keys[q] = pl_json_key(e);
            vals[q] = pl_json_num(e, NAN);
        }
        if ((st = pl_tune_tell_metrics(t, buf + (size_t)k * (np + 1), buf[(size_t)k * (np + 1) + np], q, keys, vals))) goto done;
    }
done:
    pl_free(buf);
    pl_json_free(root);
    return st;
}
