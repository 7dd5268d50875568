/* test_perplexity.c — pl_model_perplexity_file (src/model/perplexity.c) against scoring each
 * document by hand (encode + pl_llama_score_stream), for text with separators and JSONL, and
 * its errors naming the file and line. Also pl_fs_read, which it reads the file with. */
#include <math.h>
#include "pl_test.h"
#include "peftlua/fs.h"
#include "peftlua/model.h"
#include "peftlua/tokenizer.h"

#define STORIES_GGUF PL_SHARED "/models/stories260K/stories260K.gguf"

static void by_hand(struct pl_model *m, const char *text, int max_len, double *sum, int64_t *count)
{
    int32_t *ids;
    size_t n;
    assert_int_equal(pl_tokenizer_encode(m->tok, text, strlen(text), PL_TOK_DEFAULT_SPECIAL, &ids, &n), PL_OK);
    double s;
    int64_t c;
    assert_int_equal(pl_llama_score_stream(m, ids, (int64_t)n, max_len, max_len, &s, &c), PL_OK);
    pl_free(ids);
    *sum += s;
    *count += c;
}

static void test_perplexity_file(void **state)
{
    (void)state;
    struct pl_model *m;
    assert_int_equal(pl_model_load(&m, STORIES_GGUF, NULL), PL_OK);
    const char *txt = "  Once upon a time, there was a little girl.\n<|endoftext|>\nShe liked to play in the park.  \n<|endoftext|>\n\n";
    const char *tp = pl_test_tmp("docs.txt");
    pl_test_write(tp, txt, strlen(txt));
    struct pl_ppl_opts o = { 0, NULL, "<|endoftext|>", 32, 0, 0 };
    double sum, want = 0;
    int64_t count, want_n = 0;
    assert_int_equal(pl_model_perplexity_file(m, tp, &o, &sum, &count), PL_OK);
    by_hand(m, "Once upon a time, there was a little girl.", 32, &want, &want_n);
    by_hand(m, "She liked to play in the park.", 32, &want, &want_n);
    assert_int_equal(count, want_n);
    assert_true(count > 10);
    assert_true(sum == want);   /* same documents, same order: the same bits */
    assert_true(isfinite(exp(sum / (double)count)));

    const char *jl = "{\"text\": \"Once upon a time, there was a little girl.\"}\n\n{\"text\": \"She liked to play in the park.\"}\n{\"text\": \"ignored by limit\"}\n";
    const char *jp = pl_test_tmp("docs.jsonl");
    pl_test_write(jp, jl, strlen(jl));
    struct pl_ppl_opts oj = { 1, "text", NULL, 32, 0, 2 };
    double sj;
    int64_t cj;
    assert_int_equal(pl_model_perplexity_file(m, jp, &oj, &sj, &cj), PL_OK);
    assert_int_equal(cj, want_n);
    assert_true(sj == want);

    /* a record without the field: the file and line named */
    struct pl_ppl_opts bad = { 1, "prompt", NULL, 32, 0, 0 };
    assert_int_equal(pl_model_perplexity_file(m, jp, &bad, &sj, &cj), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "docs.jsonl:1: no string field \"prompt\""));
    struct pl_ppl_opts toolong = { 0, NULL, NULL, 1 << 20, 0, 0 };
    assert_int_equal(pl_model_perplexity_file(m, tp, &toolong, &sj, &cj), PL_ERR_ARG);
    assert_int_equal(pl_model_perplexity_file(m, pl_test_tmp("missing.txt"), &o, &sj, &cj), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "missing.txt"));
    pl_model_free(m);
}

static void test_fs_read(void **state)
{
    (void)state;
    const char *p = pl_test_tmp("bytes.bin");
    char big[200000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + (i >> 9));
    pl_test_write(p, big, sizeof big);   /* more than the first 64 KiB block: the buffer grows */
    char *s;
    size_t n;
    assert_int_equal(pl_fs_read(p, &s, &n), PL_OK);
    assert_int_equal(n, sizeof big);
    assert_memory_equal(s, big, sizeof big);
    assert_int_equal(s[n], 0);
    pl_free(s);
    assert_int_equal(pl_fs_read(pl_test_tmp("none"), &s, &n), PL_ERR_IO);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perplexity_file),
        cmocka_unit_test(test_fs_read),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
