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
 * Every file is written as <name>.tmp, fsync'ed, renamed over <name>, and the directory is
 * fsync'ed. Older state files are removed only after the new manifest is in place.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "train_internal.h"

static enum pl_status write_full(int fd, const void *p, size_t n, const char *path)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pl_fail(PL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return PL_OK;
}

static void fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

enum pl_status pl_file_write_atomic(const char *path, const void *const *parts,
                                    const size_t *sizes, int nparts)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pl_fail(PL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    enum pl_status st = PL_OK;
    for (int i = 0; i < nparts && st == PL_OK; i++)
        if (sizes[i]) st = write_full(fd, parts[i], sizes[i], tmp);
    if (st == PL_OK && fsync(fd) != 0)
        st = pl_fail(PL_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == PL_OK)
        st = pl_fail(PL_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == PL_OK && rename(tmp, path) != 0)
        st = pl_fail(PL_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != PL_OK) { unlink(tmp); return st; }
    fsync_dir_of(path);
    return PL_OK;
}

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
    pl_json_add_num(j, "version", 1);
    pl_json_add_str(j, "state", name);
    pl_json_add_num(j, "step", (double)t->step);
    pl_json_add_str(j, "method", t->cfg.method == PL_TRAIN_LORA ? "lora" : "full");
    pl_json_add_str(j, "precision", pl_precision_name(t->cfg.precision));
    if (t->cfg.precision == PL_PREC_FP16) pl_json_add_num(j, "loss_scale", t->loss_scale);
    pl_json_add_num(j, "n_params", (double)t->n_params);
    pl_json_add_num(j, "tokens_seen", (double)t->tokens_seen);
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

enum pl_status pl_trainer_load(struct pl_trainer *t, const char *dir, void **blob,
                               size_t *blob_size)
{
    if (blob) *blob = NULL;
    if (blob_size) *blob_size = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    struct pl_json *j = pl_json_parse_file(path);
    if (!j) return PL_ERR_FORMAT;
    const char *state = pl_json_get_str(j, "state");
    if (!state || strchr(state, '/') || strncmp(state, "state-", 6) != 0) {
        pl_json_free(j);
        return pl_fail(PL_ERR_FORMAT, "%s: no valid \"state\" entry", path);
    }
    snprintf(path, sizeof path, "%s/%s", dir, state);
    pl_json_free(j);

    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct ckpt_header h;
    enum pl_status st = PL_OK;
    void *ub = NULL;
    float *grads_tmp = NULL;
    struct ckpt_precision pr;
    memset(&pr, 0, sizeof pr);
    pr.loss_scale = 1.0;
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
                     path, h.method == PL_TRAIN_LORA ? "lora" : "full", h.optim ? "sgd" : "adamw",
                     (long long)h.n_params, t->cfg.method == PL_TRAIN_LORA ? "lora" : "full",
                     t->cfg.optim ? "sgd" : "adamw", (long long)t->n_params);
        goto out;
    }
    if ((st = pl_train_ensure_optim(t)) != PL_OK) goto out;
    if (h.blob_size > ((uint64_t)1 << 32)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: implausible blob size %llu", path, (unsigned long long)h.blob_size);
        goto out;
    }
    /* read into temporaries first, so a corrupt file leaves the trainer untouched */
    size_t vb = (size_t)t->n_params * sizeof(float);
    size_t nvec = 2 + (h.has_v ? 1 : 0) + (h.has_grads ? 1 : 0);
    grads_tmp = pl_alloc(nvec * vb + 1, PL_MEM_WORKSPACE);
    ub = pl_alloc((size_t)h.blob_size + 1, PL_MEM_DATA);
    if (!grads_tmp || !ub) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto out; }
    uint64_t sum_file = 0, sum = fnv1a(0xcbf29ce484222325ull, &h, sizeof h);
    if (h.version == 2) sum = fnv1a(sum, &pr, sizeof pr);
    if (fread(grads_tmp, 1, nvec * vb, f) != nvec * vb ||
        fread(ub, 1, (size_t)h.blob_size, f) != (size_t)h.blob_size ||
        fread(&sum_file, sizeof sum_file, 1, f) != 1) {
        st = pl_fail(PL_ERR_FORMAT, "%s: truncated checkpoint", path);
        goto out;
    }
    sum = fnv1a(sum, grads_tmp, nvec * vb);
    sum = fnv1a(sum, ub, (size_t)h.blob_size);
    if (sum != sum_file) { st = pl_fail(PL_ERR_FORMAT, "%s: checksum mismatch (corrupt checkpoint)", path); goto out; }
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
