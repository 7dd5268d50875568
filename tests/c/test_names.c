/* test_names.c — the tensor-name table (src/model/names.c): every parameter of a loaded GGUF
 * model, named in HF spelling by pl_model_param, maps back to a tensor of that GGUF file; the
 * adapter names are PEFT's. */
#include "pl_test.h"
#include "peftlua/gguf.h"
#include "peftlua/model.h"

#define STORIES_GGUF PL_SHARED "/models/stories260K/stories260K.gguf"

static void test_gguf_names_round_trip(void **state)
{
    (void)state;
    struct pl_model *m;
    struct pl_gguf *g;
    assert_int_equal(pl_model_load(&m, STORIES_GGUF, NULL), PL_OK);
    assert_int_equal(pl_gguf_open(STORIES_GGUF, &g), PL_OK);
    int np = pl_model_n_params(m), found = 0;
    for (int i = 0; i < np; i++) {
        char hf[160], gg[160];
        pl_model_param(m, i, hf, sizeof hf);
        assert_int_equal(pl_name_hf_to_gguf(hf, gg, sizeof gg), 1);
        if (pl_gguf_tensor_find(g, gg) >= 0) found++;
        else assert_true(m->cfg.tied_output && strcmp(gg, "output.weight") == 0);
        assert_ptr_equal(pl_model_find_param(m, hf), pl_model_param(m, i, NULL, 0));
    }
    assert_int_equal(found, pl_gguf_tensor_count(g));   /* and nothing in the file unnamed */
    pl_gguf_close(g);
    pl_model_free(m);
}

static void test_names(void **state)
{
    (void)state;
    char b[200];
    pl_name_proj(b, sizeof b, 3, PL_PROJ_DOWN, 0, 0);
    assert_string_equal(b, "model.layers.3.mlp.down_proj.weight");
    pl_name_proj(b, sizeof b, 3, PL_PROJ_K, 1, 1);
    assert_string_equal(b, "blk.3.attn_k.bias");
    pl_name_adapter(b, sizeof b, "base_model.model.", 0, PL_PROJ_Q, 'A');
    assert_string_equal(b, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    pl_name_adapter(b, sizeof b, "", 2, PL_PROJ_UP, 'M');
    assert_string_equal(b, "model.layers.2.mlp.up_proj.lora_magnitude_vector");
    pl_name_adapter(b, sizeof b, "", 2, PL_PROJ_V, 'L');
    assert_string_equal(b, "model.layers.2.self_attn.v_proj.ia3_l");
    assert_int_equal(pl_name_hf_to_gguf("model.layers.1.self_attn.o_proj.bias", b, sizeof b), 0);
    assert_int_equal(pl_name_hf_to_gguf("model.layers.1.mlp.q_proj.weight", b, sizeof b), 0);
    assert_int_equal(pl_name_hf_to_gguf("model.layers.1.post_attention_layernorm.weight", b, sizeof b), 1);
    assert_string_equal(b, "blk.1.ffn_norm.weight");
    assert_int_equal(pl_name_hf_to_gguf("lm_head.weight", b, sizeof b), 1);
    assert_string_equal(b, "output.weight");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_names_round_trip),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
