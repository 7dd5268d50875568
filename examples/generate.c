/* examples/generate.c — the worked example of include/peftlua/peftlua.h as a program.
 *
 *   cc generate.c $(pkg-config --cflags --libs peftlua) -o generate
 *   ./generate model.gguf "Once upon a time"
 */
#include <stdio.h>
#include <string.h>
#include <peftlua/peftlua.h>

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL PROMPT\n", argv[0]); return 2; }
    struct pl_model *m;
    if (pl_model_load(&m, argv[1], NULL) != PL_OK) {
        fprintf(stderr, "%s\n", pl_last_error());
        return 1;
    }
    int32_t *ids;
    size_t n;
    if (pl_tokenizer_encode(m->tok, argv[2], strlen(argv[2]), PL_TOK_DEFAULT_SPECIAL, &ids, &n) != PL_OK) {
        fprintf(stderr, "%s\n", pl_last_error());
        pl_model_free(m);
        return 1;
    }
    struct pl_generate_opts g = { .max_tokens = 32 };
    pl_sampler_init(&g.sampler, 42);
    g.sampler.greedy = 1;
    char *text = NULL;
    enum pl_status st = pl_generate(m, ids, (int)n, &g, &text, NULL, NULL);
    if (st == PL_OK) printf("%s%s\n", argv[2], text);
    else fprintf(stderr, "%s\n", pl_last_error());
    pl_free(text);
    pl_free(ids);
    pl_model_free(m);
    return st == PL_OK ? 0 : 1;
}
