/* fuzz_tune.c — a tuner history file (peft.tune's resumable JSON) loaded into a search with one
 * parameter of each type; then one ask, so what was loaded is used.
 * PL_FUZZ_MAKE_SEED=dir writes a seed (a history of a few trials) and exits. */
#include <math.h>
#include "fuzz_common.h"

static const char *choices[] = { "q_proj", "v_proj", "all" };

static struct pl_tune *fresh(void)
{
    struct pl_tune_param ps[3];
    memset(ps, 0, sizeof ps);
    ps[0].name = "lr"; ps[0].type = PL_TUNE_REAL; ps[0].lo = 1e-5; ps[0].hi = 1e-2; ps[0].log = 1;
    ps[1].name = "rank"; ps[1].type = PL_TUNE_INT; ps[1].lo = 2; ps[1].hi = 64; ps[1].pow2 = 1;
    ps[2].name = "targets"; ps[2].type = PL_TUNE_CAT; ps[2].n_choices = 3; ps[2].choices = choices;
    struct pl_tune_opts o = pl_tune_defaults();
    o.seed = 7;
    o.n_init = 3;
    struct pl_tune *t = NULL;
    if (pl_tune_new(&t, ps, 3, &o) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); exit(1); }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *seed = getenv("PL_FUZZ_MAKE_SEED");
    if (seed) {
        struct pl_tune *t = fresh();
        for (int i = 0; i < 5; i++) {
            double v[3];
            if (pl_tune_ask(t, 1, v) != PL_OK) exit(1);
            pl_tune_tell(t, v, i == 2 ? NAN : log(v[0]) + v[1] / 64.0);
        }
        char p[1200];
        snprintf(p, sizeof p, "%s/history.json", seed);
        if (pl_tune_save(t, p) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); exit(1); }
        pl_tune_free(t);
        exit(0);
    }
    const char *p = fz_write("history.json", data, size);
    struct pl_tune *t = fresh();
    if (pl_tune_load(t, p) == PL_OK) {
        double v[3];
        (void)pl_tune_ask(t, 1, v);
    }
    pl_tune_free(t);
    return 0;
}
