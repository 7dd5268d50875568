/* fuzz_data.c — training data files in every format (text, completion, chat, alpaca; JSONL or
 * a JSON array): read and validate (format detected, then each format forced), render every
 * good record through a real tokenizer with a chat template (the tiny GGUF seed's), and build
 * the dataset (packing, cutting, masks). */
#include "fuzz_common.h"

static struct pl_tokenizer *tok;
static struct pl_data_tokenizer dt;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (!tok) {
        if (pl_tokenizer_load_gguf(&tok, fz_root("tests/fuzz/corpus/gguf/tiny_f32.gguf")) != PL_OK) {
            fprintf(stderr, "%s (set PEFTLUA_ROOT)\n", pl_last_error());
            exit(1);
        }
        pl_data_tokenizer_bind(&dt, tok);
    }
    char *text = fz_copy(data, size, 0);
    for (int fmt = PL_DATA_AUTO; fmt < PL_DATA_FORMAT_COUNT; fmt++) {
        struct pl_data_file *f = NULL;
        if (pl_data_read_mem(&f, "fuzz.jsonl", text, size, (enum pl_data_format)fmt) != PL_OK) continue;
        for (int32_t i = 0; i < f->n_records && i < 8; i++) {
            struct pl_data_ids ids = {0};
            uint8_t *mask = NULL;
            if (pl_data_render(&ids, &mask, f->format, &f->records[i], &dt, i & 1) == PL_OK) {
                for (int64_t k = 0; k < ids.n; k++)
                    if (ids.v[k] < 0 || ids.v[k] >= pl_tokenizer_n_vocab(tok)) { fprintf(stderr, "bad id\n"); abort(); }
            }
            pl_data_ids_free(&ids);
            pl_free(mask);
        }
        if (fmt == PL_DATA_AUTO) {
            struct pl_data_build_opts o = pl_data_build_defaults();
            o.max_seq_len = 256;
            o.skip_bad = 1;
            struct pl_dataset *ds = NULL, *vs = NULL;
            if (pl_dataset_build(&ds, &vs, f, NULL, &dt, &o) == PL_OK) { pl_dataset_free(ds); pl_dataset_free(vs); }
        }
        pl_data_file_free(f);
    }
    free(text);
    return 0;
}
