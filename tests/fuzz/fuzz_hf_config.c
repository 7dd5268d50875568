/* fuzz_hf_config.c — a Hugging Face model directory: config.json (the input, or its first part)
 * and tokenizer.json (the second part, if any) beside a fixed tiny model.safetensors
 * (tests/fuzz/data/tiny-hf). */
#include <sys/stat.h>
#include "fuzz_model_util.h"

static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf", fz_dir);
    if (!ready) {
        mkdir(dir, 0700);
        FILE *in = fopen(fz_root("tests/fuzz/data/tiny-hf/model.safetensors"), "rb");
        if (!in) { perror("tests/fuzz/data/tiny-hf/model.safetensors (set PEFTLUA_ROOT)"); exit(1); }
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, in);
        fclose(in);
        fz_write("hf/model.safetensors", buf, n);
        ready = 1;
    }
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data, size, part, len, 2);
    fz_write("hf/config.json", part[0], len[0]);
    if (np > 1) fz_write("hf/tokenizer.json", part[1], len[1]);
    else unlink(fz_path("hf/tokenizer.json"));
    struct pl_model_load_opts o = { NULL, 1 };
    struct pl_model *m = NULL;
    if (pl_model_load(&m, dir, &o) == PL_OK) {
        fz_use_model(m);
        pl_model_free(m);
    }
    return 0;
}
