/* fuzz_checkpoint.c — a trainer checkpoint directory: manifest.json, then (after FZ_SPLIT) the
 * state file it names, resumed into a LoRA trainer on the tiny GGUF seed model.
 * PL_FUZZ_MAKE_SEED=dir writes seeds (fresh, mid-accumulation with a user blob) and exits. */
#include <sys/stat.h>
#include "fuzz_common.h"

static struct pl_model *model;
static struct pl_trainer *tr;

static void seed_file(const char *out, const char *name, const char *ckdir)
{
    char p[1200], q[1200];
    snprintf(p, sizeof p, "%s/manifest.json", ckdir);
    FILE *m = fopen(p, "rb");
    if (!m) { perror(p); exit(1); }
    snprintf(q, sizeof q, "%s/%s", out, name);
    FILE *o = fopen(q, "wb");
    if (!o) { perror(q); exit(1); }
    int c;
    char state[64] = "state-00000000.bin";
    while ((c = fgetc(m)) != EOF) fputc(c, o);
    fclose(m);
    fputs(FZ_SPLIT, o);
    snprintf(p, sizeof p, "%s/%s", ckdir, state);
    FILE *s = fopen(p, "rb");
    if (!s) { perror(p); exit(1); }
    while ((c = fgetc(s)) != EOF) fputc(c, o);
    fclose(s);
    fclose(o);
}

static void init(void)
{
    fz_init();
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&model, fz_root("tests/fuzz/corpus/gguf/tiny_f32.gguf"), &o) != PL_OK) {
        fprintf(stderr, "%s (set PEFTLUA_ROOT)\n", pl_last_error());
        exit(1);
    }
    struct pl_train_cfg c = pl_train_defaults();
    c.batch_size = 1;
    c.seq_len = 8;
    c.lora.r = 2;
    if (pl_trainer_new(&tr, model, &c) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); exit(1); }
    const char *seed = getenv("PL_FUZZ_MAKE_SEED");
    if (seed) {
        char ck[1100];
        snprintf(ck, sizeof ck, "%s/ckpt", fz_dir);
        if (pl_trainer_save(tr, ck, NULL, 0) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); exit(1); }
        seed_file(seed, "fresh", ck);
        const char blob[] = "{\"data_pos\": 3, \"metrics\": 12}";
        if (pl_trainer_save(tr, ck, blob, sizeof blob) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); exit(1); }
        seed_file(seed, "with_blob", ck);
        exit(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tr) init();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ck", fz_dir);
    mkdir(dir, 0700);
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data, size, part, len, 2);
    fz_write("ck/manifest.json", part[0], len[0]);
    if (np > 1) fz_write("ck/state-00000000.bin", part[1], len[1]);
    else unlink(fz_path("ck/state-00000000.bin"));
    void *blob = NULL;
    size_t bs = 0;
    if (pl_trainer_load(tr, dir, &blob, &bs) == PL_OK) {
        if (bs > size) abort();   /* the blob came from the file */
        pl_free(blob);
    }
    return 0;
}
