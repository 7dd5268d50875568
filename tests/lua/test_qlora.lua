-- tests/lua/test_qlora.lua — peft.memory.quantize's NF4 layouts and options, and
-- peft.train.run's double_quant and embed_dtype. Owner: memory (QLoRA bases).
local T = require "testlib"
local mem = peft.memory
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"

return {
  nf4_layouts = function()
    local res = {}
    for _, v in ipairs {
      { "default", nil, "nf4_32" },
      { "64-absmax", { block = 64, scale = "absmax" }, "nf4" },
      { "64-mse", { block = 64 }, "nf4" },
      { "dq", { double_quant = true }, "nf4_dq" },
    } do
      local m <close> = peft.model.load(MODEL)
      local q = mem.quantize(m, "nf4", v[2])
      T.eq(q.dtype, v[3], v[1])
      T.eq(q.converted, 30, v[1] .. ": q k v o gate up of 5 layers")
      T.eq(m:card().dtypes[v[3]], 30, v[1] .. ": the model holds them")
      T.ok(q.rel_rmse > 0.02 and q.rel_rmse < 0.2, string.format("%s: rel. RMSE %.4f", v[1], q.rel_rmse))
      res[v[1]] = q
    end
    -- the searched scale beats absmax; 32-element blocks beat 64; nf4 and nf4_32 cost the same
    T.ok(res["64-mse"].rel_rmse < res["64-absmax"].rel_rmse)
    T.ok(res.default.rel_rmse < res["64-mse"].rel_rmse)
    T.eq(res.default.bytes_after, res["64-mse"].bytes_after)
    -- double quantisation: 33 bytes per 64 weights plus 8 per 256 blocks, not 36
    T.ok(res.dq.bytes_after < res["64-mse"].bytes_after * 0.93, "nf4_dq is smaller")
    T.ok(math.abs(res.dq.rel_rmse - res["64-mse"].rel_rmse) < 0.01 * res["64-mse"].rel_rmse,
         "double quantisation adds little error")
  end,

  nf4_options_refused = function()
    local m <close> = peft.model.load(MODEL)
    T.raises(function() mem.quantize(m, "nf4", { block = 48 }) end, "32 or 64")
    T.raises(function() mem.quantize(m, "nf4", { scale = "max" }) end, 'scale must be "mse" or "absmax"')
    T.raises(function() mem.quantize(m, "nf4", { double_quant = true, block = 32 }) end, "64%-element")
    T.raises(function() mem.quantize(m, "q8_0", { block = 32 }) end, "apply to \"nf4\"")
    T.raises(function() mem.quantize(m, "nf4", 3) end, "must be a table")
  end,

  train_run_double_quant = function()
    local m <close> = peft.model.load(MODEL)
    local r = peft.train.run { model = m, method = "qlora", double_quant = true, overwrite = true,
      dataset = T.shared .. "/data/wikisql/train.jsonl", valid = T.shared .. "/data/wikisql/valid.jsonl",
      output = T.tmp .. "/qlora_dq_run", max_iters = 2, batch_size = 2, max_seq_len = 64,
      eval_every = 0, save_every = 0, eval_batches = 2, quiet = true, progress = false }
    T.eq(r.steps, 2)
    T.ok(r.loss == r.loss, "a finite loss")
    T.eq(m:card().dtypes.nf4_dq, 30, "the base was re-stored as nf4_dq")
    r.trainer:close()
    T.raises(function()
      peft.train.run { model = MODEL, dataset = "x", output = "y", double_quant = true }
    end, 'quant is for method = "qlora"')
  end,

  estimate_double_quant = function()
    -- a 7B base held as it is made in memory (bench_qlora): projections already in the format
    local base = { preset = "llama2-7b", method = "qlora", embd = "bf16", batch_size = 1,
                   seq_len = 512, checkpointing = true }
    local function with(q)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      o.quant, o.base = q, q
      return mem.estimate(o)
    end
    local nf4, nf4_32, dq = with("nf4"), with("nf4_32"), with("nf4_dq")
    T.eq(nf4.weights, nf4_32.weights, "4.5 bits either way")
    -- 6.48e9 projection weights: 36/64 - (33/64 + 8/(64*256)) bytes each fewer
    local saved = nf4.weights - dq.weights
    T.ok(math.abs(saved - 6476005376 * (3 / 64 - 8 / 16384)) < 1e6, string.format("saved %d bytes", saved))
  end,

  embed_dtype_q8_0 = function()
    local m <close> = peft.model.load(MODEL)
    local q = mem.quantize(m, "nf4", { double_quant = true, embed_dtype = "q8_0" })
    local c = m:config()
    local n = c.tied_output and 1 or 2
    T.eq(q.embed_converted, n, "the embedding (and an untied head) re-stored")
    T.eq(q.embed_bytes_after, n * c.vocab_size * (c.dim // 32) * 34, "34 bytes per 32 weights")
    T.ok(q.embed_rel_rmse > 0 and q.embed_rel_rmse < 0.01, string.format("rel. RMSE %.4f", q.embed_rel_rmse))
    T.eq(m:card().dtypes.q8_0, n, "the model holds them")
    T.raises(function() mem.quantize(peft.model.load(MODEL), "nf4", { embed_dtype = "nf4" }) end, "q8_0, bf16, f16 or f32")
    T.raises(function() mem.quantize(peft.model.load(MODEL), "nf4", { embed_dtype = "x" }) end, "unknown dtype")
    -- the memory model: re-stored on load or held so, the step's bytes agree
    local o = { preset = "llama2-7b", method = "qlora", base = "nf4_dq", quant = "nf4_dq", embd = "bf16",
                batch_size = 1, seq_len = 512, checkpointing = true }
    local bf = mem.estimate(o)
    o.embed_dtype = "q8_0"
    local ld = mem.estimate(o)
    o.embed_dtype, o.embd = nil, "q8_0"
    local held = mem.estimate(o)
    T.eq(ld.step, held.step)
    T.eq(bf.weights - held.weights, 2 * 32000 * (4096 * 2 - 4096 // 32 * 34))
    T.ok(held.total <= 4.2 * 2^30, string.format("7B: %.3f GiB", held.total / 2^30))
  end,

  train_run_embed_dtype = function()
    local m <close> = peft.model.load(MODEL)
    local r = peft.train.run { model = m, method = "qlora", embed_dtype = "q8_0", overwrite = true,
      dataset = T.shared .. "/data/wikisql/train.jsonl", valid = T.shared .. "/data/wikisql/valid.jsonl",
      output = T.tmp .. "/qlora_embed_run", max_iters = 2, batch_size = 2, max_seq_len = 64,
      eval_every = 0, save_every = 0, eval_batches = 2, quiet = true, progress = false }
    T.eq(r.steps, 2)
    T.ok(r.loss == r.loss, "a finite loss")
    T.ok((m:card().dtypes.q8_0 or 0) >= 1, "the embedding was re-stored as q8_0")
    r.trainer:close()
    T.raises(function()
      peft.train.run { model = MODEL, dataset = "x", output = "y", embed_dtype = "q8_0" }
    end, 'embed_dtype is for method = "qlora"')
  end,
}
