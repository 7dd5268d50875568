/* adapters.c — LoRA adapters loaded beside a model for inference, by name, chosen per call.
 *
 * Owner: model/interop. The API and its rules are in include/peftlua/adapters.h. File formats
 * stay with their owners: PEFT directories are lora.c's (pl_lora_load), GGUF LoRA adapters
 * lora_gguf.c's; this file only resolves what a path names, keeps the named set, and swaps
 * the model's linear hook for the length of one call.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "peftlua/adapters.h"
#include "peftlua/alloc.h"

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

enum pl_status pl_adapter_open(struct pl_lora **out, const char *path,
                               const struct pl_model_config *mc)
{
    *out = NULL;
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        return pl_fail(PL_ERR_IO, "%s: no such adapter file or directory", path ? path : "(null)");
    if (S_ISDIR(sb.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/adapter_config.json", path);
        if (stat(p, &sb) != 0)
            return pl_fail(PL_ERR_IO, "%s: not an adapter directory (no adapter_config.json; "
                           "expected a PEFT/peftlua adapter directory or a GGUF LoRA file)", path);
        return pl_lora_load(out, path, mc);
    }
    if (ends_with(path, ".gguf")) return pl_lora_load_gguf(out, path, mc);
    if (ends_with(path, "adapter_model.safetensors") || ends_with(path, "adapter_config.json")) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
        return pl_lora_load(out, dir, mc);
    }
    return pl_fail(PL_ERR_UNSUPPORTED, "%s: not an adapter (give a PEFT/peftlua adapter directory, "
                   "its adapter_model.safetensors, or a GGUF LoRA adapter .gguf)", path);
}

struct pl_adapter_set *pl_adapter_set_new(void)
{
    struct pl_adapter_set *s = pl_calloc(1, sizeof *s, PL_MEM_ADAPTERS);
    if (!s) pl_fail(PL_ERR_NOMEM, "adapters: out of memory");
    return s;
}

static void slot_free(struct pl_adapter_slot *sl, struct pl_model *m)
{
    if (m && m->linear_hook == pl_lora_hook && m->linear_hook_ctx == sl->lora) {
        m->linear_hook = NULL;
        m->linear_hook_ctx = NULL;
    }
    pl_lora_free(sl->lora);
    pl_free(sl->name);
    pl_free(sl->path);
}

void pl_adapter_set_free(struct pl_adapter_set *s, struct pl_model *m)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) slot_free(&s->v[i], m);
    pl_free(s->v);
    pl_free(s);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pl_alloc(n, PL_MEM_ADAPTERS);
    if (d) memcpy(d, s, n);
    return d;
}

enum pl_status pl_adapter_set_add(struct pl_adapter_set *s, const char *name, const char *path,
                                  struct pl_lora *lora, float user_scale)
{
    if (!name || !*name || strlen(name) > 127)
        return pl_fail(PL_ERR_ARG, "adapter name must be 1..127 characters");
    if (pl_adapter_set_find(s, name))
        return pl_fail(PL_ERR_ARG, "an adapter named '%s' is already loaded (unload it or give another name)", name);
    if (!(user_scale == user_scale) || user_scale > 1e6f || user_scale < -1e6f)
        return pl_fail(PL_ERR_ARG, "adapter '%s': scale %g is not a finite number", name, (double)user_scale);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 4;
        struct pl_adapter_slot *v = pl_alloc((size_t)cap * sizeof *v, PL_MEM_ADAPTERS);
        if (!v) return pl_fail(PL_ERR_NOMEM, "adapters: out of memory");
        if (s->n) memcpy(v, s->v, (size_t)s->n * sizeof *v);
        pl_free(s->v);
        s->v = v;
        s->cap = cap;
    }
    struct pl_adapter_slot *sl = &s->v[s->n];
    sl->name = dup_str(name);
    sl->path = dup_str(path ? path : "");
    if (!sl->name || !sl->path) {
        pl_free(sl->name);
        pl_free(sl->path);
        return pl_fail(PL_ERR_NOMEM, "adapters: out of memory");
    }
    sl->lora = lora;
    sl->user_scale = user_scale;
    lora->scale *= user_scale;
    lora->training = 0;
    lora->enabled = 1;
    s->n++;
    return PL_OK;
}

struct pl_adapter_slot *pl_adapter_set_find(struct pl_adapter_set *s, const char *name)
{
    for (int i = 0; s && name && i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

struct pl_adapter_slot *pl_adapter_set_last(struct pl_adapter_set *s)
{
    return s && s->n ? &s->v[s->n - 1] : NULL;
}

enum pl_status pl_adapter_set_remove(struct pl_adapter_set *s, const char *name, struct pl_model *m)
{
    struct pl_adapter_slot *sl = pl_adapter_set_find(s, name);
    if (!sl) {
        char have[512] = "";
        size_t u = 0;
        for (int i = 0; s && i < s->n && u < sizeof have - 1; i++)
            u += (size_t)snprintf(have + u, sizeof have - u, "%s'%s'", i ? ", " : "", s->v[i].name);
        return pl_fail(PL_ERR_ARG, "no adapter named '%s' is loaded (loaded: %s)", name ? name : "?",
                       s && s->n ? have : "none");
    }
    slot_free(sl, m);
    int i = (int)(sl - s->v);
    memmove(&s->v[i], &s->v[i + 1], (size_t)(s->n - i - 1) * sizeof *sl);
    s->n--;
    return PL_OK;
}

struct pl_hook_state pl_adapter_use(struct pl_model *m, struct pl_lora *lora)
{
    struct pl_hook_state h = { m->linear_hook, m->linear_hook_ctx, m->linear_in_hook };
    m->linear_hook = lora ? pl_lora_hook : NULL;
    m->linear_hook_ctx = lora;
    /* IA3 scales down_proj's input; DoRA's norms read the base weights of the model in use */
    m->linear_in_hook = lora && lora->cfg.kind == PL_ADAPTER_IA3 ? pl_lora_in_hook : NULL;
    if (lora) lora->attached = m;
    return h;
}

void pl_adapter_restore(struct pl_model *m, struct pl_hook_state h)
{
    m->linear_hook = h.fn;
    m->linear_hook_ctx = h.ctx;
    m->linear_in_hook = h.in_fn;
}
