/* train_ckpt.c — trainer checkpoints and atomic file writes.
 *
 * Owner: train. A checkpoint is a directory:
 *   state-<step>.bin   "PLCKPT01", a fixed header (method, sizes, step, counters, dropout step),
 *                      from version 2 the precision record (precision, fp16 loss scale, its
 *                      growth counter, skipped steps; version 1 files are fp32 runs),
 *                      the trained vector, the optimizer state, the pending gradients when
 *                      saved mid-accumulation, a user blob (data position, metrics cursor), and
 *                      an FNV-1a 64 checksum of everything before it
 *   manifest.json      names the state file; written last, so a crash at any point leaves the
 *                      previous complete checkpoint in force
 * Every file is written by fileio's atomic writer (temporary, fsync, rename, directory fsync). Older state files are removed only after the new manifest is in place.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "train_internal.h"

#define CKPT_MAGIC "PLCKPT01"

struct ckpt_header {
    char magic[8];
    int32_t version, method, optim, micro;
    int64_t n_params, step, tokens_seen, accum_tokens;
    uint64_t dropout_step, blob_size;
    double accum_loss, last_loss, last_grad_norm, last_lr;
    int32_t has_v, has_grads;
};

/* version 2: follows the header */
struct ckpt_precision {
    int32_t precision, growth_interval;
    double loss_scale;
    int64_t good_steps, skipped_steps;
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) { h ^= c[i]; h *= 0x100000001b3ull; }
    return h;
}

enum pl_status pl_trainer_save(struct pl_trainer *t, const char *dir, const void *blob,
                               size_t blob_size)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return pl_fail(PL_ERR_IO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
    if (pl_train_ensure_optim(t) != PL_OK) return PL_ERR_NOMEM;
    struct ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = 2;
    h.method = (int32_t)t->cfg.method;
    h.optim = (int32_t)t->cfg.optim;
    h.micro = t->micro;
    h.n_params = t->n_params;
    h.step = t->step;
    h.tokens_seen = t->tokens_seen;
    h.accum_tokens = t->accum_tokens;
    h.dropout_step = t->lora ? t->lora->dropout_step : 0;
    h.blob_size = blob_size;
    h.accum_loss = t->accum_loss;
    h.last_loss = t->last_loss;
    h.last_grad_norm = t->last_grad_norm;
    h.last_lr = t->last_lr;
    h.has_v = t->opt_v != NULL;
    h.has_grads = t->micro > 0;
    struct ckpt_precision pr;
    memset(&pr, 0, sizeof pr);
    pr.precision = (int32_t)t->cfg.precision;
    pr.growth_interval = t->cfg.growth_interval;
    pr.loss_scale = t->loss_scale;
    pr.good_steps = t->good_steps;
    pr.skipped_steps = t->skipped_steps;
    size_t vb = (size_t)t->n_params * sizeof(float);
    const void *parts[8];
    size_t sizes[8];
    int np = 0;
    parts[np] = &h; sizes[np++] = sizeof h;
    parts[np] = &pr; sizes[np++] = sizeof pr;
    parts[np] = t->params; sizes[np++] = vb;
    parts[np] = t->opt_m; sizes[np++] = vb;
    if (h.has_v) { parts[np] = t->opt_v; sizes[np++] = vb; }
    if (h.has_grads) { parts[np] = t->grads; sizes[np++] = vb; }
    if (blob_size) { parts[np] = blob; sizes[np++] = blob_size; }
    uint64_t sum = 0xcbf29ce484222325ull;
    for (int i = 0; i < np; i++) sum = fnv1a(sum, parts[i], sizes[i]);
    parts[np] = &sum; sizes[np++] = sizeof sum;

    char name[64], path[4200];
    snprintf(name, sizeof name, "state-%08lld.bin", (long long)t->step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    enum pl_status st = pl_file_write_atomic(path, parts, sizes, np);
    if (st != PL_OK) return st;

    struct pl_json *j = pl_json_new_object();
    if (!j) return pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
    pl_json_add_str(j, "format", "peftlua-checkpoint");
    pl_json_add_num(j, "version", 2);
    pl_json_add_str(j, "state", name);
    pl_json_add_num(j, "step", (double)t->step);
    pl_json_add_str(j, "method", t->cfg.method == PL_TRAIN_LORA ? "lora" : "full");
    pl_json_add_str(j, "precision", pl_precision_name(t->cfg.precision));
    if (t->cfg.precision == PL_PREC_FP16) pl_json_add_num(j, "loss_scale", t->loss_scale);
    pl_json_add_num(j, "n_params", (double)t->n_params);
    pl_json_add_num(j, "tokens_seen", (double)t->tokens_seen);
    /* the state file's length and checksum: a truncated or bit-flipped state is refused */
    size_t total = 0;
    for (int i = 0; i < np; i++) total += sizes[i];
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sum);
    pl_json_add_num(j, "state_bytes", (double)total);
    pl_json_add_str(j, "state_fnv1a64", hex);
    char *txt = pl_json_print(j, 1);
    pl_json_free(j);
    if (!txt) return pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
    const void *mp[2] = { txt, "\n" };
    size_t ms[2] = { strlen(txt), 1 };
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    st = pl_file_write_atomic(path, mp, ms, 2);
    pl_free(txt);
    if (st != PL_OK) return st;

    /* the new manifest is in force: drop older state files */
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "state-", 6) == 0 && strcmp(e->d_name, name) != 0) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return PL_OK;
}

int pl_trainer_has_checkpoint(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    return access(path, R_OK) == 0;
}

static const char *optim_name(int kind)
{
    const struct pl_optimizer *o = pl_optimizer_get(kind);
    return o ? o->name : "an unknown optimizer";
}

enum pl_status pl_trainer_load(struct pl_trainer *t, const char *dir, void **blob,
                               size_t *blob_size)
{
    if (blob) *blob = NULL;
    if (blob_size) *blob_size = 0;
    char path[4200], mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    struct pl_json *j = pl_json_parse_file(mpath);
    if (!j) return PL_ERR_FORMAT;
    const char *state = pl_json_get_str(j, "state");
    if (!state || strchr(state, '/') || strncmp(state, "state-", 6) != 0) {
        pl_json_free(j);
        return pl_fail(PL_ERR_FORMAT, "%s: no valid \"state\" entry", mpath);
    }
    snprintf(path, sizeof path, "%s/%s", dir, state);
    /* version 2 manifests carry the state file's length, checksum and step */
    int64_t mversion = 0, mbytes = -1, mstep = -1;
    unsigned long long msum = 0;
    int have_sum = 0;
    if (pl_json_get_int(j, "version", 1, 2, 1, &mversion) < 0 ||
        pl_json_get_int(j, "step", 0, (int64_t)1 << 53, -1, &mstep) < 0 ||
        pl_json_get_int(j, "state_bytes", 0, (int64_t)1 << 53, -1, &mbytes) < 0) {
        pl_json_free(j);
        return pl_fail(PL_ERR_FORMAT, "%s: corrupt manifest (version, step or state_bytes out of range)", mpath);
    }
    const char *hex = pl_json_get_str(j, "state_fnv1a64");
    if (hex) {
        char *end = NULL;
        msum = strtoull(hex, &end, 16);
        have_sum = strlen(hex) == 16 && end && *end == 0;
    }
    pl_json_free(j);
    if (mversion >= 2 && (!have_sum || mbytes < 0)) {
        return pl_fail(PL_ERR_FORMAT, "%s: corrupt manifest (no valid state_bytes/state_fnv1a64)", mpath);
    }

    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct ckpt_header h;
    enum pl_status st = PL_OK;
    void *ub = NULL;
    float *grads_tmp = NULL;
    struct ckpt_precision pr;
    memset(&pr, 0, sizeof pr);
    pr.loss_scale = 1.0;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = pl_fail(PL_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    const uint64_t fsize = (uint64_t)sb.st_size;
    if (mbytes >= 0 && (uint64_t)mbytes != fsize) {
        st = pl_fail(PL_ERR_FORMAT, "%s: %llu bytes, the manifest says %lld (truncated or corrupt checkpoint)",
                     path, (unsigned long long)fsize, (long long)mbytes);
        goto out;
    }
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CKPT_MAGIC, 8) != 0 ||
        (h.version != 1 && h.version != 2) ||
        (h.version == 2 && fread(&pr, sizeof pr, 1, f) != 1)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: not a peftlua checkpoint (bad header)", path);
        goto out;
    }
    if (pr.precision != (int32_t)t->cfg.precision) {
        st = pl_fail(PL_ERR_ARG, "%s: checkpoint was trained with precision %s; this run is %s",
                     path, pl_precision_name((enum pl_precision)pr.precision),
                     pl_precision_name(t->cfg.precision));
        goto out;
    }
    if (pr.precision == PL_PREC_FP16 && !(pr.loss_scale >= 1.0 && pr.loss_scale < 1e300)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: implausible loss scale %g", path, pr.loss_scale);
        goto out;
    }
    if (h.method != (int32_t)t->cfg.method || h.optim != (int32_t)t->cfg.optim ||
        h.n_params != t->n_params) {
        st = pl_fail(PL_ERR_ARG, "%s: checkpoint is for %s/%s with %lld parameters; this run is %s/%s with %lld",
                     path, h.method == PL_TRAIN_LORA ? "lora" : "full", optim_name(h.optim),
                     (long long)h.n_params, t->cfg.method == PL_TRAIN_LORA ? "lora" : "full",
                     optim_name(t->cfg.optim), (long long)t->n_params);
        goto out;
    }
    if ((st = pl_train_ensure_optim(t)) != PL_OK) goto out;
    /* every counter within what a run can reach, before anything is sized or restored by it */
    const int64_t lim = (int64_t)1 << 53;
    if (h.step < 0 || h.step >= lim || h.micro < 0 || h.micro > (1 << 24) ||
        h.tokens_seen < 0 || h.tokens_seen >= lim || h.accum_tokens < 0 || h.accum_tokens >= lim ||
        h.dropout_step >= (uint64_t)lim || h.dropout_step < (uint64_t)h.micro ||
        (h.has_v != 0 && h.has_v != 1) || h.has_v != (t->opt_v != NULL) ||
        h.has_grads != (h.micro > 0) || !isfinite(h.accum_loss) ||
        pr.skipped_steps < 0 || pr.skipped_steps > h.step || pr.good_steps < 0 || pr.good_steps >= lim ||
        (mstep >= 0 && mstep != h.step)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: corrupt checkpoint (step, counters or flags out of range)", path);
        goto out;
    }
    /* the file must be exactly as long as its header says, before anything is allocated */
    size_t vb = 0, vecs = 0;
    const size_t nvec = 2 + (size_t)h.has_v + (size_t)h.has_grads;
    uint64_t expect = 0;
    if (!pl_mul_size((size_t)t->n_params, sizeof(float), &vb) || !pl_mul_size(nvec, vb, &vecs) ||
        __builtin_add_overflow((uint64_t)sizeof h + (h.version == 2 ? sizeof pr : 0) + sizeof(uint64_t),
                               (uint64_t)vecs, &expect) ||
        __builtin_add_overflow(expect, h.blob_size, &expect) || expect != fsize) {
        st = pl_fail(PL_ERR_FORMAT, "%s: truncated checkpoint (%llu bytes, the header implies %llu)", path,
                     (unsigned long long)fsize, (unsigned long long)expect);
        goto out;
    }
    /* read into temporaries first, so a corrupt file leaves the trainer untouched */
    grads_tmp = pl_alloc(vecs + 1, PL_MEM_WORKSPACE);
    ub = pl_alloc((size_t)h.blob_size + 1, PL_MEM_DATA);
    if (!grads_tmp || !ub) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto out; }
    uint64_t sum_file = 0, sum = fnv1a(0xcbf29ce484222325ull, &h, sizeof h);
    if (h.version == 2) sum = fnv1a(sum, &pr, sizeof pr);
    if (fread(grads_tmp, 1, vecs, f) != vecs ||
        fread(ub, 1, (size_t)h.blob_size, f) != (size_t)h.blob_size ||
        fread(&sum_file, sizeof sum_file, 1, f) != 1) {
        st = pl_fail(PL_ERR_FORMAT, "%s: truncated checkpoint", path);
        goto out;
    }
    sum = fnv1a(sum, grads_tmp, vecs);
    sum = fnv1a(sum, ub, (size_t)h.blob_size);
    if (sum != sum_file || (have_sum && sum != (uint64_t)msum)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: checksum mismatch (corrupt checkpoint; %s)", path,
                     sum != sum_file ? "the state file is damaged" : "it does not match manifest.json");
        goto out;
    }
    const char *p = (const char *)grads_tmp;
    memcpy(t->params, p, vb); p += vb;
    pl_lora_touch(t->lora);
    memcpy(t->opt_m, p, vb); p += vb;
    if (h.has_v && t->opt_v) { memcpy(t->opt_v, p, vb); p += vb; }
    if (h.has_grads) memcpy(t->grads, p, vb);
    else memset(t->grads, 0, vb);
    t->step = h.step;
    t->micro = h.micro;
    t->tokens_seen = h.tokens_seen;
    t->accum_tokens = h.accum_tokens;
    t->accum_loss = h.accum_loss;
    t->last_loss = h.last_loss;
    t->last_grad_norm = h.last_grad_norm;
    t->last_lr = h.last_lr;
    if (t->cfg.precision == PL_PREC_FP16) t->loss_scale = pr.loss_scale;
    t->good_steps = pr.good_steps;
    t->skipped_steps = pr.skipped_steps;
    if (t->lora) t->lora->dropout_step = h.dropout_step;
    t->dropout_at_step = h.dropout_step - (uint64_t)h.micro;
    if (blob) { *blob = ub; ub = NULL; }
    if (blob_size) *blob_size = (size_t)h.blob_size;
out:
    fclose(f);
    pl_free(grads_tmp);
    pl_free(ub);
    return st;
}
