/* test_options.c — the training option table (include/peftlua/options.h): every entry well
 * formed, ranges and choices checked with the messages the Lua layer shows, and the engine's
 * name parsing (precision, schedule) read from it; a trainer configured by option name, and the
 * memory model's inputs taken from that configuration predicting what the trainer allocates. */
#define STORIES_GGUF PL_SHARED "/models/stories260K/stories260K.gguf"
#include <math.h>
#include "pl_test.h"

#include "peftlua/alloc.h"
#include "peftlua/memmodel.h"
#include "peftlua/rng.h"
#include "peftlua/optim.h"
#include "peftlua/options.h"
#include "peftlua/train.h"

static void test_table_well_formed(void **state)
{
    (void)state;
    int n;
    const struct pl_option *t = pl_train_options(&n);
    assert_true(n >= 45);
    for (int i = 0; i < n; i++) {
        assert_non_null(t[i].name);
        assert_non_null(t[i].help);
        assert_non_null(t[i].group);
        assert_ptr_equal(pl_option_find(t[i].name), &t[i]);   /* names unique */
        for (int j = 0; j < i; j++) assert_string_not_equal(t[i].name, t[j].name);
        if (t[i].flags & (PL_OPT_HAS_MIN | PL_OPT_HAS_MAX))
            assert_true(t[i].type == PL_OPT_INTEGER || t[i].type == PL_OPT_NUMBER);
        if (t[i].dflt && t[i].choices) assert_true(pl_option_choice(t[i].name, t[i].dflt) >= 0);
        if (t[i].flags & PL_OPT_REQUIRED) assert_null(t[i].dflt);
    }
    assert_null(pl_option_find("lora_rnak"));
}

static void test_ranges_and_messages(void **state)
{
    (void)state;
    char why[256], r[128];
    const struct pl_option *rank = pl_option_find("lora_rank");
    assert_string_equal(pl_option_range_text(rank, r, sizeof r), "an integer >= 1");
    assert_int_equal(pl_option_check_number(rank, 1, why, sizeof why), 0);
    assert_int_equal(pl_option_check_number(rank, 0, why, sizeof why), 1);
    assert_string_equal(why, "is out of range (an integer >= 1)");
    const struct pl_option *drop = pl_option_find("lora_dropout");
    assert_string_equal(pl_option_range_text(drop, r, sizeof r), "a number in [0, 1)");
    assert_int_equal(pl_option_check_number(drop, 0, why, sizeof why), 0);
    assert_int_equal(pl_option_check_number(drop, 1, why, sizeof why), 1);
    assert_string_equal(why, "is out of range (a number in [0, 1))");
    const struct pl_option *alpha = pl_option_find("lora_alpha");
    assert_string_equal(pl_option_range_text(alpha, r, sizeof r), "a number > 0");
    assert_int_equal(pl_option_check_number(alpha, 0, why, sizeof why), 1);
    assert_string_equal(pl_option_range_text(pl_option_find("seed"), r, sizeof r), "an integer");
    const struct pl_option *prec = pl_option_find("precision");
    assert_int_equal(pl_option_check_choice(prec, "bf16", why, sizeof why), 1);
    assert_int_equal(pl_option_check_choice(prec, "fp8", why, sizeof why), -1);
    assert_string_equal(why, "is not one of \"fp32\", \"bf16\", \"fp16\"");
    assert_string_equal(pl_option_choice_name("schedule", 2), "cosine");
    assert_null(pl_option_choice_name("schedule", 3));
}

/* the engine's enums follow the table's choices: one place validates the names */
static void test_engine_names_from_table(void **state)
{
    (void)state;
    assert_int_equal(pl_precision_from_name("fp32"), PL_PREC_FP32);
    assert_int_equal(pl_precision_from_name("bf16"), PL_PREC_BF16);
    assert_int_equal(pl_precision_from_name("fp16"), PL_PREC_FP16);
    assert_int_equal(pl_precision_from_name("f16"), -1);
    assert_int_equal(pl_memm_precision_from_name("f16"), PL_MEMM_FP16);
    assert_int_equal(pl_memm_precision_from_name("bf16"), PL_MEMM_BF16);
    assert_int_equal(pl_memm_precision_from_name("int8"), -1);
    assert_int_equal(pl_schedule_from_name("linear"), PL_SCHED_LINEAR);
    assert_int_equal(pl_schedule_from_name("cosine"), PL_SCHED_COSINE);
    assert_int_equal(pl_schedule_from_name("step"), -1);
    assert_int_equal(pl_option_choice("optimizer", "sgd"), PL_OPTIM_SGD);
    assert_int_equal(pl_option_choice("optimizer", "adamw"), PL_OPTIM_ADAMW);
    for (int p = PL_PREC_FP32; p <= PL_PREC_FP16; p++)
        assert_int_equal(pl_precision_from_name(pl_precision_name((enum pl_precision)p)), p);
}

static void test_train_cfg_set(void **state)
{
    (void)state;
    struct pl_train_cfg c = pl_train_defaults();
    assert_int_equal(pl_train_cfg_set(&c, "lora_rank", "16"), PL_OK);
    assert_int_equal(c.lora.r, 16);
    assert_true(c.lora.alpha == 32.0f);   /* the documented default, 2 x lora_rank */
    assert_int_equal(pl_train_cfg_set(&c, "lora_alpha", "8"), PL_OK);
    assert_true(c.lora.alpha == 8.0f);
    assert_int_equal(pl_train_cfg_set(&c, "lora_rank", "0"), PL_ERR_ARG);
    assert_string_equal(pl_last_error(), "lora_rank = \"0\" is out of range (an integer >= 1)");
    assert_int_equal(pl_train_cfg_set(&c, "lora_rank", "2.5"), PL_ERR_ARG);
    assert_string_equal(pl_last_error(), "lora_rank = \"2.5\" must be an integer >= 1");
    assert_int_equal(c.lora.r, 16);   /* a refused value changes nothing */
    assert_int_equal(pl_train_cfg_set(&c, "precision", "fp8"), PL_ERR_ARG);
    assert_string_equal(pl_last_error(), "precision = \"fp8\" is not one of \"fp32\", \"bf16\", \"fp16\"");
    assert_int_equal(pl_train_cfg_set(&c, "precision", "fp16"), PL_OK);
    assert_int_equal(c.precision, PL_PREC_FP16);
    assert_int_equal(pl_train_cfg_set(&c, "lora_dropout", "1"), PL_ERR_ARG);
    assert_int_equal(pl_train_cfg_set(&c, "lora_dropout", "0.1"), PL_OK);
    assert_true(fabsf(c.lora.dropout - 0.1f) < 1e-7f);
    assert_int_equal(pl_train_cfg_set(&c, "schedule", "linear"), PL_OK);
    assert_int_equal(c.schedule, PL_SCHED_LINEAR);
    assert_int_equal(pl_train_cfg_set(&c, "targets", "q_proj, down_proj"), PL_OK);
    assert_int_equal(c.lora.targets, (1u << PL_PROJ_Q) | (1u << PL_PROJ_DOWN));
    assert_int_equal(pl_train_cfg_set(&c, "targets", "q_proj,wq"), PL_ERR_ARG);
    assert_int_equal(pl_train_cfg_set(&c, "feedforward", "down_proj"), PL_ERR_ARG);   /* not ia3 */
    assert_int_equal(pl_train_cfg_set(&c, "method", "ia3"), PL_OK);
    assert_int_equal(c.lora.kind, PL_ADAPTER_IA3);
    assert_int_equal(c.lora.targets, (1u << PL_PROJ_K) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN));
    assert_int_equal(c.lora.ff_targets, 1u << PL_PROJ_DOWN);
    assert_int_equal(pl_train_cfg_set(&c, "feedforward", "q_proj"), PL_ERR_ARG);   /* not a target */
    assert_int_equal(pl_train_cfg_set(&c, "checkpointing", "true"), PL_OK);
    assert_int_equal(c.ckpt_every, 1);
    assert_int_equal(pl_train_cfg_set(&c, "checkpointing", "3"), PL_OK);
    assert_int_equal(c.ckpt_every, 3);
    assert_int_equal(pl_train_cfg_set(&c, "checkpointing", "0"), PL_ERR_ARG);
    assert_int_equal(pl_train_cfg_set(&c, "layers", "0, 2,5"), PL_OK);
    assert_int_equal(c.lora.n_layers_sel, 3);
    assert_int_equal(c.lora.layers[2], 5);
    assert_int_equal(pl_train_cfg_set(&c, "method", "qlora"), PL_ERR_UNSUPPORTED);
    assert_int_equal(pl_train_cfg_set(&c, "output", "runs/x"), PL_ERR_UNSUPPORTED);
    assert_int_equal(pl_train_cfg_set(&c, "lora_rnak", "4"), PL_ERR_ARG);
    assert_int_equal(pl_train_cfg_set(&c, "optimizer", "sgd"), PL_OK);
    assert_int_equal(c.optim, PL_OPTIM_SGD);
}

/* A trainer configured once by option name; the memory model's inputs taken from that same
 * configuration predict what the trainer really allocates (as tests/c/test_memmodel.c checks
 * for its hand-written pairs). */
static void check_predicted(const char *const *opts, int n)
{
    struct pl_model *m;
    struct pl_model_load_opts lo = { 0 };
    lo.no_tokenizer = 1;
    assert_int_equal(pl_model_load(&m, STORIES_GGUF, &lo), PL_OK);
    struct pl_train_cfg tc = pl_train_defaults();
    for (int i = 0; i < n; i += 2) assert_int_equal(pl_train_cfg_set(&tc, opts[i], opts[i + 1]), PL_OK);
    struct pl_memmodel_cfg mc = pl_memmodel_defaults();
    pl_memmodel_cfg_from_model(&mc, m);
    pl_memmodel_cfg_from_train(&mc, &tc);
    struct pl_mem_estimate e;
    assert_int_equal(pl_memmodel_estimate(&mc, &e), PL_OK);
    pl_mem_reset_peak();
    int64_t data0 = pl_mem_current(PL_MEM_DATA);
    struct pl_trainer *t = NULL;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
    int B = tc.batch_size, T = tc.seq_len, V = m->cfg.vocab_size;
    int32_t *ids = pl_alloc((size_t)B * T * sizeof(int32_t), PL_MEM_DATA);
    int32_t *tg = pl_alloc((size_t)B * T * sizeof(int32_t), PL_MEM_DATA);
    struct pl_rng r;
    pl_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
        tg[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
    }
    double loss;
    int64_t cnt;
    int stepped = 0;
    assert_int_equal(pl_trainer_micro(t, ids, tg, B, T, &loss, &cnt, &stepped), PL_OK);
    assert_true(stepped && isfinite(loss));
    int64_t meas = pl_mem_peak_total() - data0 - (int64_t)(2 * (size_t)B * T * sizeof(int32_t));
    double rel = fabs((double)e.peak_total - (double)meas) / (double)meas;
    printf("  %s=%s ...: predicted %.3f MiB, measured %.3f MiB (%+.2f%%)\n", opts[0], opts[1],
           e.peak_total / 1048576.0, meas / 1048576.0, 100.0 * ((double)e.peak_total - (double)meas) / (double)meas);
    assert_true(rel < 0.10);
    assert_int_equal(e.peak[PL_MEM_ADAPTERS] > 0, tc.method == PL_TRAIN_LORA);
    pl_free(ids);
    pl_free(tg);
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_memory_model_from_the_same_options(void **state)
{
    (void)state;
    static const char *const dora[] = { "method", "dora", "targets", "all", "lora_rank", "4",
                                        "batch_size", "2", "max_seq_len", "64" };
    static const char *const ia3[] = { "method", "ia3", "batch_size", "4", "max_seq_len", "32",
                                       "optimizer", "sgd" };
    static const char *const lora_ckpt[] = { "method", "lora", "checkpointing", "2", "precision", "bf16",
                                             "batch_size", "2", "max_seq_len", "128", "lora_dropout", "0.1" };
    static const char *const full[] = { "method", "full", "optimizer", "sgd", "batch_size", "2",
                                        "max_seq_len", "64" };
    check_predicted(dora, 10);
    check_predicted(ia3, 8);
    check_predicted(lora_ckpt, 12);
    check_predicted(full, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_well_formed),
        cmocka_unit_test(test_ranges_and_messages),
        cmocka_unit_test(test_engine_names_from_table),
        cmocka_unit_test(test_train_cfg_set),
        cmocka_unit_test(test_memory_model_from_the_same_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
