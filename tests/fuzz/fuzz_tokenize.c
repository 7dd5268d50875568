/* fuzz_tokenize.c — text through real tokenizers: the input is the text (its first byte picks
 * the flags) encoded by every tokenizer kind (llama2.c tok512, tokenizer.json BPE and SPM
 * fixtures, the tiny GGUF's SPM vocabulary); every id must be in the vocabulary; the ids are
 * decoded again, and the input read as 16-bit ids is decoded too. */
#include "fuzz_model_util.h"

#define NTOK 5
static struct pl_tokenizer *tok[NTOK];
static int ready;

static void load(void)
{
    struct { const char *path; int kind; } f[NTOK] = {
        { "../shared/models/stories260K/tok512.bin", 0 },
        { "tests/ref/tokenizer/tiny_bpe/tokenizer.json", 1 },
        { "tests/ref/tokenizer/tiny_spm/tokenizer.json", 1 },
        { "tests/ref/tokenizer/tiny_spm_metaspace/tokenizer.json", 1 },
        { "tests/fuzz/corpus/gguf/tiny_f32.gguf", 2 },
    };
    for (int i = 0; i < NTOK; i++) {
        const char *p = fz_root(f[i].path);
        enum pl_status st = f[i].kind == 0 ? pl_tokenizer_load_llama2c(&tok[i], p)
                          : f[i].kind == 1 ? pl_tokenizer_load_hf(&tok[i], p) : pl_tokenizer_load_gguf(&tok[i], p);
        if (st != PL_OK) tok[i] = NULL;   /* ../shared absent: that one is skipped */
    }
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (!ready) load();
    if (size == 0) return 0;
    const unsigned flags = data[0] & 15;
    char *text = fz_copy(data + 1, size - 1, 0);
    for (int i = 0; i < NTOK; i++) {
        const struct pl_tokenizer *t = tok[i];
        if (!t) continue;
        const int32_t V = pl_tokenizer_n_vocab(t);
        int32_t *ids = NULL;
        size_t n = 0;
        if (pl_tokenizer_encode(t, text, size - 1, flags, &ids, &n) == PL_OK) {
            for (size_t k = 0; k < n; k++)
                if (ids[k] < 0 || ids[k] >= V) { fprintf(stderr, "tokenizer %d: id %d outside [0, %d)\n", i, ids[k], V); abort(); }
            char *s = NULL;
            size_t len = 0;
            if (pl_tokenizer_decode(t, ids, n, data[0] >> 4 & 3, &s, &len) == PL_OK) pl_free(s);
        }
        pl_free(ids);
        size_t m = (size - 1) / 2;
        int32_t *raw = malloc((m ? m : 1) * sizeof *raw);
        for (size_t k = 0; k < m; k++) raw[k] = (int32_t)((data[1 + 2 * k] | data[2 + 2 * k] << 8) % (V + 2)) - 1;
        char *s = NULL;
        size_t len = 0;
        if (pl_tokenizer_decode(t, raw, m, data[0] >> 4 & 3, &s, &len) == PL_OK) pl_free(s);
        free(raw);
    }
    free(text);
    return 0;
}
