/* test_hostile.c — hostile files and failing disks (issue 12).
 *
 *  - every case of tests/fuzz/regress/<reader>/ (tests/fuzz/make_regress.py: the findings of the
 *    fuzzing: a tokenizer.json id of 1e8, "r": 4000000 / 9e9 / 0, a 4 GiB checkpoint blob,
 *    counters at INT64_MAX, NaN weights, head_dim x heads overflow, vocab INT32_MIN, a
 *    llama2.c vocabulary under 259 tokens, "__metadata__" twice...) is refused with the message
 *    expected here (under `make asan` also: without a sanitizer report or a leak);
 *  - the error formatter keeps the message it prefixes; pl_k_expf(NaN) is NaN without UB;
 *  - a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: the same EFBIG/ENOSPC path as a full
 *    disk) during checkpoint, adapter, export, report and history writes: an error naming the
 *    file, no temporary left, the previous checkpoint resumes bit-identically;
 *  - a second run on the same output directory is refused; a stale lock is taken over;
 *  - a truncated or bit-flipped checkpoint, or one that disagrees with its manifest, is refused.
 * Run from the repository root (make ctest does).
 */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pl_test.h"
#include "peftlua/peftlua.h"
#include "peftlua/adapters.h"
#include "../../src/tensor/kernels_internal.h"

#define REG "tests/fuzz/regress/"
#define SPLIT "\n--PEFTLUA-FUZZ-SPLIT--\n"
#define TINY_GGUF "tests/fuzz/corpus/gguf/tiny_f32.gguf"

/* the model shape of tests/data/lora/peft_fixture (the adapter harness's) */
static const struct pl_model_config fixture_mc = {
    .arch = PL_ARCH_LLAMA, .dim = 24, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
    .head_dim = 6, .n_rot = 6, .vocab_size = 64, .seq_len = 32, .rope_base = 10000.0f, .norm_eps = 1e-5f,
    .rope_layout = PL_ROPE_LAYOUT_INTERLEAVED, .bos_id = 1, .eos_id = 2,
};

static void expect_error(enum pl_status st, const char *what, const char *want)
{
    if (st == PL_OK) fail_msg("%s: accepted, expected an error containing \"%s\"", what, want);
    if (!strstr(pl_last_error(), want))
        fail_msg("%s: message \"%s\" lacks \"%s\"", what, pl_last_error(), want);
}

/* Split a regress file at SPLIT into dir/<name0> and dir/<name1> (the second only if present). */
static void split_into(const char *file, const char *dir, const char *name0, const char *name1)
{
    size_t n;
    char *b = pl_test_read(file, &n);
    mkdir(dir, 0700);
    char p[512];
    char *s = memmem(b, n, SPLIT, sizeof SPLIT - 1);
    snprintf(p, sizeof p, "%s/%s", dir, name0);
    pl_test_write(p, b, s ? (size_t)(s - b) : n);
    snprintf(p, sizeof p, "%s/%s", dir, name1);
    unlink(p);
    if (s) pl_test_write(p, s + sizeof SPLIT - 1, n - (size_t)(s - b) - (sizeof SPLIT - 1));
    free(b);
}

static void test_status_keeps_prefixed_message(void **state)
{
    (void)state;
    pl_fail(PL_ERR_ARG, "lora: rank r = %d must be in [1, %d]", 0, 65536);
    enum pl_status st = pl_fail(PL_ERR_ARG, "%s: %s", "dir/adapter_config.json", pl_last_error());
    assert_int_equal(st, PL_ERR_ARG);
    assert_string_equal(pl_last_error(), "dir/adapter_config.json: lora: rank r = 0 must be in [1, 65536]");
}

static void test_expf_nan(void **state)
{
    (void)state;
    assert_true(isnan(pl_k_expf(NAN)));
    assert_true(isnan(pl_k_expf(-NAN)));
    assert_true(pl_k_expf(INFINITY) > 1e38f);
    assert_true(pl_k_expf(-INFINITY) < 1e-37f);
    assert_true(fabsf(pl_k_expf(1.0f) - 2.7182817f) < 1e-6f);
}

static void test_regress_tokenizers(void **state)
{
    (void)state;
    static const struct { const char *file, *want; } hf[] = {
        { REG "tokenizer_json/id_1e8.json", "vocab entry 'b' has a bad id" },
        { REG "tokenizer_json/id_16m_sparse.json", "token id 16000000 but only 2 vocabulary entries" },
        { REG "tokenizer_json/id_fraction.json", "vocab entry 'b' has a bad id" },
        { REG "tokenizer_json/added_id_huge.json", "added_tokens entry without id/content" },
    };
    for (size_t i = 0; i < sizeof hf / sizeof *hf; i++) {
        struct pl_tokenizer *t = NULL;
        expect_error(pl_tokenizer_load_hf(&t, hf[i].file), hf[i].file, hf[i].want);
        assert_null(t);
    }
    struct pl_tokenizer *t = NULL;
    expect_error(pl_tokenizer_load_llama2c(&t, REG "llama2c_tokenizer/vocab_5.bin"), "vocab_5.bin",
                 "only 5 tokens (llama2.c vocabularies hold <unk>, <s>, </s> and the 256 byte tokens");
    /* the same vocabulary built directly is refused too (byte fallback needs ids 3..258) */
    const char *toks[5] = { "<unk>", "<s>", "</s>", "a", "b" };
    struct pl_tokenizer_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = PL_TOK_LLAMA2C; sp.n_vocab = 5; sp.tokens = toks; sp.unk = 0; sp.bos = 1; sp.eos = 2; sp.pad = -1;
    sp.add_bos = -1; sp.add_eos = -1; sp.add_space_prefix = -1;
    expect_error(pl_tokenizer_new(&t, &sp, "tiny"), "llama2.c spec", "lacks the 256 byte tokens");
}

static void test_regress_adapters(void **state)
{
    (void)state;
    static const struct { const char *file, *want; } cases[] = {
        { REG "adapter/r_4000000", "\"r\" must be an integer rank in [1, 65536]" },
        { REG "adapter/r_9e9", "\"r\" must be an integer rank in [1, 65536]" },
        { REG "adapter/r_9e9_no_weights", "\"r\" must be an integer rank in [1, 65536]" },
        { REG "adapter/r_0", "adapter_config.json: \"r\" must be an integer rank" },
        { REG "adapter/r_nan_like", "\"r\" must be an integer rank" },
        { REG "adapter/r_60000_small_file", "lora_A.weight has rank 2 but adapter_config.json says r = 60000" },
        { REG "adapter/r_65536_no_tensors", "rank r = 65536 needs 141557760 bytes of LoRA weights, but" },
        { REG "adapter/layer_1e12", "\"layers_to_transform\" entry 0 is not a layer index" },
    };
    const char *dir = pl_test_tmp("adapter");
    char d[256];
    snprintf(d, sizeof d, "%s", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        split_into(cases[i].file, d, "adapter_config.json", "adapter_model.safetensors");
        struct pl_lora *a = NULL;
        int64_t before = pl_mem_current_total();
        expect_error(pl_lora_load(&a, d, &fixture_mc), cases[i].file, cases[i].want);
        assert_null(a);
        assert_int_equal(pl_mem_current_total(), before);   /* nothing kept on the error path */
    }
    /* GGUF LoRA adapters (llama.cpp layout) */
    struct pl_lora *g = NULL;
    expect_error(pl_lora_load_gguf(&g, REG "adapter/gguf_rank_2p20_empty.gguf", &fixture_mc), "gguf rank",
                 "tensor blk.1.attn_v.weight.lora_a has rank 1048576 (1 to 65536 expected)");
    expect_error(pl_lora_load_gguf(&g, REG "adapter/gguf_wrong_in.gguf", &fixture_mc), "gguf shape",
                 "tensor blk.1.attn_v.weight.lora_a has shape [2, 64], this model needs [2, 24]");
    if (pl_lora_load_gguf(&g, "tests/fuzz/corpus/adapter/gguf_v_down.gguf", &fixture_mc) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(g->cfg.r, 2);
    pl_lora_free(g);
    /* the seed itself loads (the cases differ from it in one field only) */
    split_into("tests/fuzz/corpus/adapter/fixture_shape_v_down", d, "adapter_config.json", "adapter_model.safetensors");
    struct pl_lora *a = NULL;
    if (pl_lora_load(&a, d, &fixture_mc) != PL_OK) fail_msg("%s", pl_last_error());
    pl_lora_free(a);
}

static void test_regress_models(void **state)
{
    (void)state;
    struct pl_model_load_opts o = { NULL, 1 };
    static const struct { const char *file, *want; } cases[] = {
        { REG "gguf/nan_weight.gguf", "tensor 'model.norm.weight' holds NaN or infinite values" },
        { REG "gguf/inf_weight.gguf", "tensor 'model.norm.weight' holds NaN or infinite values" },
        { REG "gguf/nan_q8_0_scale.gguf", "tensor 'model.layers.0.self_attn.q_proj.weight' holds NaN or infinite values" },
        { REG "gguf/head_dim_overflow.gguf", "implausible configuration (head_dim 1073741824" },
        { REG "llama2c_model/vocab_int32_min.bin", "bad vocab_size -2147483648 in llama2.c header" },
        { REG "llama2c_model/huge_header.bin", "truncated: 11388 bytes, the header implies" },
        { REG "llama2c_model/nan_weight.bin", "tensor 'model.embed_tokens.weight' holds NaN or infinite values" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct pl_model *m = NULL;
        int64_t before = pl_mem_current_total();
        expect_error(pl_model_load(&m, cases[i].file, &o), cases[i].file, cases[i].want);
        assert_null(m);
        assert_int_equal(pl_mem_current_total(), before);
    }
    /* HF config.json beside the tiny model.safetensors */
    static const struct { const char *file, *want; } hf[] = {
        { REG "hf_config/kv_heads_1e300.json", "\"num_key_value_heads\" must be an integer in [1, 1048576]" },
        { REG "hf_config/head_dim_2e9.json", "\"head_dim\" must be an integer in [0, 65536]" },
        { REG "hf_config/max_pos_neg.json", "\"max_position_embeddings\" must be an integer" },
        { REG "hf_config/bos_1e10.json", "\"bos_token_id\" must be an integer" },
        { REG "hf_config/rope_theta_inf.json", "\"rope_theta\" must be a positive number" },
    };
    char dir[256];
    snprintf(dir, sizeof dir, "%s", pl_test_tmp("hf"));
    mkdir(dir, 0700);
    size_t n;
    void *st = pl_test_read("tests/fuzz/data/tiny-hf/model.safetensors", &n);
    char p[300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    pl_test_write(p, st, n);
    free(st);
    for (size_t i = 0; i < sizeof hf / sizeof *hf; i++) {
        void *c = pl_test_read(hf[i].file, &n);
        snprintf(p, sizeof p, "%s/config.json", dir);
        pl_test_write(p, c, n);
        free(c);
        struct pl_model *m = NULL;
        expect_error(pl_model_load(&m, dir, &o), hf[i].file, hf[i].want);
        assert_null(m);
    }
    /* the untouched seeds load */
    struct pl_model *m = NULL;
    if (pl_model_load(&m, TINY_GGUF, &o) != PL_OK) fail_msg("%s", pl_last_error());
    pl_model_free(m);
}

static void test_regress_safetensors_metadata_twice(void **state)
{
    (void)state;
    struct pl_safetensors *st = NULL;
    int64_t before = pl_mem_current_total();
    if (pl_safetensors_open(REG "safetensors/metadata_twice.safetensors", &st) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_safetensors_meta_count(st), 0);   /* the first (empty) one wins */
    assert_int_equal(pl_safetensors_count(st), 1);
    pl_safetensors_close(st);
    assert_int_equal(pl_mem_current_total(), before);      /* the second table was not leaked */
}

/* ---------------------------------------------------------------- checkpoints */

static struct pl_model *tiny_model(void)
{
    struct pl_model_load_opts o = { NULL, 1 };
    struct pl_model *m = NULL;
    if (pl_model_load(&m, TINY_GGUF, &o) != PL_OK) fail_msg("%s", pl_last_error());
    return m;
}

static struct pl_trainer *tiny_trainer(struct pl_model *m)
{
    struct pl_train_cfg c = pl_train_defaults();
    c.batch_size = 1;
    c.seq_len = 8;
    c.lora.r = 2;
    struct pl_trainer *t = NULL;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    return t;
}

static void test_regress_checkpoints(void **state)
{
    (void)state;
    static const struct { const char *file, *want; } cases[] = {
        { REG "checkpoint/blob_size_4g", "truncated checkpoint (951 bytes, the header implies 4294968216)" },
        { REG "checkpoint/step_int64_max", "corrupt checkpoint (step, counters or flags out of range)" },
        { REG "checkpoint/bit_flip", "checksum mismatch (corrupt checkpoint; the state file is damaged)" },
        { REG "checkpoint/truncated", "851 bytes, the manifest says 951 (truncated or corrupt checkpoint)" },
    };
    struct pl_model *m = tiny_model();
    struct pl_trainer *t = tiny_trainer(m);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", pl_test_tmp("ckreg"));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        split_into(cases[i].file, dir, "manifest.json", "state-00000000.bin");
        void *blob = NULL;
        size_t bs = 0;
        expect_error(pl_trainer_load(t, dir, &blob, &bs), cases[i].file, cases[i].want);
        assert_null(blob);
        assert_int_equal(pl_trainer_state(t).step, 0);
    }
    pl_trainer_free(t);
    pl_model_free(m);
}

/* Save, then damage the state file or the manifest in each way: every one is refused and the
 * trainer keeps its values. */
static void test_damaged_checkpoint_refused(void **state)
{
    (void)state;
    struct pl_model *m = tiny_model();
    struct pl_trainer *t = tiny_trainer(m);
    char dir[256], st_path[300], man_path[300];
    snprintf(dir, sizeof dir, "%s", pl_test_tmp("ckdamage"));
    for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = 0.001f * (float)i;
    pl_trainer_set_step(t, 7);
    assert_int_equal(pl_trainer_save(t, dir, "blob", 4), PL_OK);
    snprintf(st_path, sizeof st_path, "%s/state-00000007.bin", dir);
    snprintf(man_path, sizeof man_path, "%s/manifest.json", dir);
    size_t sn, mn;
    char *good = pl_test_read(st_path, &sn), *man = pl_test_read(man_path, &mn);
    float *saved = malloc((size_t)pl_trainer_n_params(t) * sizeof(float));
    memcpy(saved, pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * sizeof(float));
    const int64_t np = pl_trainer_n_params(t);
    pl_trainer_free(t);   /* one trainer per model at a time */

    struct pl_trainer *u = tiny_trainer(m);
    void *blob = NULL;
    size_t bs = 0;
    /* truncated by one byte */
    pl_test_write(st_path, good, sn - 1);
    expect_error(pl_trainer_load(u, dir, &blob, &bs), "truncated", "the manifest says");
    /* one bit flipped anywhere: header, vector, blob, trailer */
    const size_t at[] = { 9, 100, sn / 2, sn - 12, sn - 1 };
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        good[at[k]] ^= 4;
        pl_test_write(st_path, good, sn);
        assert_int_not_equal(pl_trainer_load(u, dir, &blob, &bs), PL_OK);
        good[at[k]] ^= 4;
    }
    assert_int_equal(pl_trainer_state(u).step, 0);
    assert_null(blob);
    /* the manifest's checksum disagrees with an intact state file */
    pl_test_write(st_path, good, sn);
    char *h = strstr(man, "\"state_fnv1a64\"");
    assert_non_null(h);
    char *q = strchr(h + 16, '"') + 1;
    const char orig = *q;
    *q = orig == '0' ? '1' : '0';
    pl_test_write(man_path, man, mn);
    expect_error(pl_trainer_load(u, dir, &blob, &bs), "manifest checksum", "does not match manifest.json");
    /* a manifest without its checksum (version 2) */
    const char *bare = "{\"format\": \"peftlua-checkpoint\", \"version\": 2, \"state\": \"state-00000007.bin\"}";
    pl_test_write(man_path, bare, strlen(bare));
    expect_error(pl_trainer_load(u, dir, &blob, &bs), "no checksum", "no valid state_bytes/state_fnv1a64");
    /* restored: loads, bit-identical */
    *q = orig;
    pl_test_write(man_path, man, mn);
    if (pl_trainer_load(u, dir, &blob, &bs) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_trainer_state(u).step, 7);
    assert_int_equal(bs, 4);
    assert_memory_equal(pl_trainer_params(u, NULL), saved, (size_t)np * sizeof(float));
    pl_free(blob);
    free(good);
    free(man);
    free(saved);
    pl_trainer_free(u);
    pl_model_free(m);
}

/* ---------------------------------------------------------------- failing writes */

static int no_tmp_left(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    int ok = 1;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp")) ok = 0;
    closedir(d);
    return ok;
}

static void set_fsize(rlim_t lim)
{
    struct rlimit r;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &r), 0);
    r.rlim_cur = lim;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

/* A file-size limit during every kind of write: each fails naming its file, leaves no
 * temporary, and the checkpoint saved before still resumes with the same bits. */
static void test_file_size_limit_during_writes(void **state)
{
    (void)state;
    struct pl_model *m = tiny_model();
    struct pl_trainer *t = tiny_trainer(m);
    char dir[256], ck[300], ad[300], ex[300], hist[300], png[300];
    snprintf(dir, sizeof dir, "%s", pl_test_tmp("fsize"));
    mkdir(dir, 0700);
    snprintf(ck, sizeof ck, "%s/checkpoint", dir);
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    snprintf(ex, sizeof ex, "%s/export.gguf", dir);
    snprintf(hist, sizeof hist, "%s/history.json", dir);
    snprintf(png, sizeof png, "%s/chart.png", dir);
    for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = 0.01f * (float)(i % 17) - 0.05f;
    pl_trainer_set_step(t, 3);
    assert_int_equal(pl_trainer_save(t, ck, "pos=3", 5), PL_OK);
    float *saved = malloc((size_t)pl_trainer_n_params(t) * sizeof(float));
    memcpy(saved, pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * sizeof(float));
    size_t mn0;
    char *man0 = pl_test_read(pl_test_tmp("fsize/checkpoint/manifest.json"), &mn0);

    /* the next state differs; the disk then allows 256 bytes per file */
    for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] += 1.0f;
    pl_trainer_set_step(t, 4);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit keep;
    getrlimit(RLIMIT_FSIZE, &keep);
    set_fsize(256);
    enum pl_status st = pl_trainer_save(t, ck, "pos=4", 5);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pl_last_error());
    enum pl_status st_ad = pl_lora_save(pl_trainer_lora(t), ad, "tiny");
    char msg_ad[1024];
    snprintf(msg_ad, sizeof msg_ad, "%s", pl_last_error());
    /* a history file and a chart go through the same writer */
    const char *big = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const void *parts[8] = { big, big, big, big, big, big, big, big };
    size_t sizes[8] = { 64, 64, 64, 64, 64, 64, 64, 64 };
    enum pl_status st_h = pl_file_write_atomic(hist, parts, sizes, 8);
    char msg_h[1024];
    snprintf(msg_h, sizeof msg_h, "%s", pl_last_error());
    setrlimit(RLIMIT_FSIZE, &keep);
    signal(SIGXFSZ, old);

    expect_error(st, "checkpoint under RLIMIT_FSIZE", "");
    assert_non_null(strstr(msg, "state-00000004.bin: write failed: File too large"));
    assert_non_null(strstr(msg, "(the previous file, if any, is unchanged)"));
    assert_int_not_equal(st_ad, PL_OK);
    assert_non_null(strstr(msg_ad, "adapter"));
    assert_non_null(strstr(msg_ad, "File too large"));
    assert_int_not_equal(st_h, PL_OK);
    assert_non_null(strstr(msg_h, "history.json: write failed: File too large"));
    assert_false(pl_test_exists(hist));
    assert_true(no_tmp_left(ck));
    assert_true(no_tmp_left(dir));
    assert_false(pl_test_exists(pl_test_tmp("fsize/checkpoint/state-00000004.bin")));
    /* the manifest still names the step-3 state, byte for byte */
    size_t mn1;
    char *man1 = pl_test_read(pl_test_tmp("fsize/checkpoint/manifest.json"), &mn1);
    assert_int_equal(mn0, mn1);
    assert_memory_equal(man0, man1, mn0);

    /* an export of the merged model under the limit: the same */
    pl_trainer_free(t);   /* detaches the adapters */
    old = signal(SIGXFSZ, SIG_IGN);
    set_fsize(4096);
    st = pl_train_export(m, ex, "gguf", "f32");
    snprintf(msg, sizeof msg, "%s", pl_last_error());
    setrlimit(RLIMIT_FSIZE, &keep);
    signal(SIGXFSZ, old);
    assert_int_not_equal(st, PL_OK);
    assert_non_null(strstr(msg, "export.gguf"));
    assert_non_null(strstr(msg, "File too large"));
    assert_false(pl_test_exists(ex));
    assert_true(no_tmp_left(dir));

    /* the step-3 checkpoint resumes bit-identically in a fresh trainer */
    struct pl_trainer *u = tiny_trainer(m);
    void *blob = NULL;
    size_t bs = 0;
    if (pl_trainer_load(u, ck, &blob, &bs) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_trainer_state(u).step, 3);
    assert_int_equal(bs, 5);
    assert_memory_equal(blob, "pos=3", 5);
    assert_memory_equal(pl_trainer_params(u, NULL), saved, (size_t)pl_trainer_n_params(u) * sizeof(float));
    pl_free(blob);
    pl_trainer_free(u);
    free(saved);
    free(man0);
    free(man1);
    pl_model_free(m);
    (void)png;
}

/* ---------------------------------------------------------------- output lock */

static void test_output_lock(void **state)
{
    (void)state;
    char dir[256], lockf[300];
    snprintf(dir, sizeof dir, "%s", pl_test_tmp("locked"));
    snprintf(lockf, sizeof lockf, "%s/peftlua.lock", dir);
    struct pl_dir_lock a, b;
    assert_int_equal(pl_dir_lock(dir, &a), PL_OK);
    /* the holder's pid is in the file */
    char *txt = pl_test_read(lockf, NULL);
    assert_int_equal(atol(txt), (long)getpid());
    free(txt);
    /* a second run (here: the same process again) is refused, naming the holder */
    expect_error(pl_dir_lock(dir, &b), "second lock", "output directory is in use by another run (pid");
    pl_dir_unlock(&a);
    assert_false(pl_test_exists(lockf));

    /* another process holds it: refused; once that process is gone the lock is stale */
    int go[2], ready[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct pl_dir_lock c;
        char r = pl_dir_lock(dir, &c) == PL_OK ? 'y' : 'n';
        if (write(ready[1], &r, 1) != 1) _exit(2);
        if (read(go[0], &r, 1) < 0) _exit(2);   /* hold until told (or the pipe closes) */
        _exit(0);                                 /* exits without unlocking: a crash */
    }
    char r = 0;
    assert_int_equal(read(ready[0], &r, 1), 1);
    assert_int_equal(r, 'y');
    enum pl_status st = pl_dir_lock(dir, &b);
    char want[64];
    snprintf(want, sizeof want, "(pid %ld holds", (long)pid);
    expect_error(st, "held by a child", want);
    assert_int_equal(write(go[1], "x", 1), 1);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(pl_test_exists(lockf));          /* left behind by the "crashed" holder */
    assert_int_equal(pl_dir_lock(dir, &b), PL_OK);   /* stale: taken over */
    txt = pl_test_read(lockf, NULL);
    assert_int_equal(atol(txt), (long)getpid());
    free(txt);
    pl_dir_unlock(&b);
    close(go[0]); close(go[1]); close(ready[0]); close(ready[1]);

    /* a holder that exited but is not reaped yet (a zombie) holds nothing */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct pl_dir_lock c;
        _exit(pl_dir_lock(dir, &c) == PL_OK ? 0 : 3);
    }
    char stat_path[64], buf[256];
    snprintf(stat_path, sizeof stat_path, "/proc/%ld/stat", (long)pid);
    int zombie = 0;
    for (int i = 0; i < 500 && !zombie; i++) {
        FILE *f = fopen(stat_path, "r");
        if (!f) break;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *rp = strrchr(buf, ')');
        zombie = rp && rp[2] == 'Z';
        if (!zombie) usleep(10000);
    }
    assert_true(zombie);
    assert_true(pl_test_exists(lockf));
    assert_int_equal(pl_dir_lock(dir, &b), PL_OK);
    pl_dir_unlock(&b);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(WEXITSTATUS(ws), 0);
    /* waiting: a holder that lets go within the wait is waited for */
    assert_int_equal(pl_dir_lock(dir, &a), PL_OK);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct pl_dir_lock c;
        _exit(pl_dir_lock_wait(dir, &c, 5000) == PL_OK ? 0 : 4);
    }
    usleep(300000);
    pl_dir_unlock(&a);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(WEXITSTATUS(ws), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_keeps_prefixed_message),
        cmocka_unit_test(test_expf_nan),
        cmocka_unit_test(test_regress_tokenizers),
        cmocka_unit_test(test_regress_adapters),
        cmocka_unit_test(test_regress_models),
        cmocka_unit_test(test_regress_safetensors_metadata_twice),
        cmocka_unit_test(test_regress_checkpoints),
        cmocka_unit_test(test_damaged_checkpoint_refused),
        cmocka_unit_test(test_file_size_limit_during_writes),
        cmocka_unit_test(test_output_lock),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
