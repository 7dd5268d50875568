/* fuzz_chat.c — chat templates: the input is a template, then role/content pairs, separated by
 * FZ_SPLIT lines. Family recognition, the default system prompt, rendering (with and without a
 * generation prompt) and the assistant spans, which must lie inside the rendered text. */
#include "fuzz_common.h"

#define MAXM 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const uint8_t *part[1 + 2 * MAXM];
    size_t len[1 + 2 * MAXM];
    int np = fz_split(data, size, part, len, 1 + 2 * MAXM);
    char *str[1 + 2 * MAXM];
    for (int i = 0; i < np; i++) str[i] = fz_copy(part[i], len[i], 1);
    struct pl_chat_msg msgs[MAXM];
    size_t n = 0;
    for (int i = 1; i + 1 < np; i += 2) { msgs[n].role = str[i]; msgs[n].content = str[i + 1]; n++; }
    (void)pl_chat_detect(str[0]);
    char *sys = pl_chat_default_system(str[0]);
    pl_free(sys);
    for (int fam = 0; fam <= PL_CHAT_ZEPHYR; fam++)
        for (int gen = 0; gen < 2; gen++) {
            struct pl_chat_opts o = { (enum pl_chat_family)fam, str[0], NULL, NULL, gen };
            struct pl_chat_result r;
            if (pl_chat_render(&o, msgs, n, &r) != PL_OK) continue;
            if (strlen(r.text) > r.len) abort();
            for (size_t k = 0; k < r.n_spans; k++)
                if (r.spans[k].start > r.spans[k].end || r.spans[k].end > r.spans[k].turn_end ||
                    r.spans[k].turn_end > r.len || r.spans[k].msg < 0 || (size_t)r.spans[k].msg >= n) {
                    fprintf(stderr, "span %zu outside the text\n", k);
                    abort();
                }
            pl_chat_result_free(&r);
        }
    for (int i = 0; i < np; i++) free(str[i]);
    return 0;
}
