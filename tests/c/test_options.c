/* test_options.c — the training option table (include/peftlua/options.h): every entry well
 * formed, ranges and choices checked with the messages the Lua layer shows, and the engine's
 * name parsing (precision, schedule) read from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "peftlua/memmodel.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_well_formed),
        cmocka_unit_test(test_ranges_and_messages),
        cmocka_unit_test(test_engine_names_from_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
