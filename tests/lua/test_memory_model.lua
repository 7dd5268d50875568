-- tests/lua/test_memory_model.lua — peft.memory.estimate / autosize / quantize from Lua.
-- Owner: memory. Predictions are checked against the counting allocator's measured peaks.
local T = require "testlib"
local mem = peft.memory
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"

local cats = { "weights", "adapters", "gradients", "optimizer", "activations", "workspace" }

-- Make a trainer, take one step, compare each sizeable category and the total.
local function measure(m, topts, eopts)
  local est = mem.estimate(eopts)
  mem.reset_peak()
  local data0 = mem.current("data")
  if eopts.method == "qlora" then mem.quantize(m, eopts.quant or "nf4") end
  do
    local tr <close> = peft.train.trainer(m, topts)
    local B, S = topts.batch_size, topts.seq_len
    local ids, tg = {}, {}
    for b = 1, B do
      ids[b], tg[b] = {}, {}
      for i = 1, S do ids[b][i] = (b * 31 + i * 7) % 512; tg[b][i] = (b * 17 + i * 5) % 512 end
    end
    local loss, _, stepped = tr:micro(ids, tg)
    T.ok(stepped and loss == loss, "a step was taken")
    local total = mem.peak() - data0
    local rel = math.abs(est.total - total) / total
    T.ok(rel <= 0.10, string.format("total predicted %d measured %d (%.1f%%)", est.total, total, 100 * rel))
    for _, c in ipairs(cats) do
      local p, q = est[c], mem.peak(c)
      local big = math.max(p, q)
      if big >= total / 50 then
        T.ok(math.abs(p - q) / big <= 0.10, string.format("%s predicted %d measured %d", c, p, q))
      end
    end
  end
  return est
end

return {
  estimate_matches_measured_lora = function()
    local m <close> = peft.model.load(MODEL)
    measure(m, { batch_size = 4, seq_len = 64, lora_rank = 8, targets = { "q_proj", "v_proj" } },
               { model = m, batch_size = 4, seq_len = 64, lora_rank = 8, targets = { "q_proj", "v_proj" } })
  end,

  estimate_matches_measured_full_sgd = function()
    local m <close> = peft.model.load(MODEL)
    measure(m, { method = "full", optimizer = "sgd", batch_size = 2, seq_len = 128 },
               { model = m, method = "full", optimizer = "sgd", batch_size = 2, seq_len = 128 })
  end,

  estimate_matches_measured_qlora = function()
    local m <close> = peft.model.load(MODEL)
    local targets = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" }
    measure(m, { batch_size = 2, seq_len = 64, lora_rank = 4, targets = targets },
               { model = m, method = "qlora", quant = "q8_0", batch_size = 2, seq_len = 64,
                 lora_rank = 4, targets = targets })
    T.eq(m:card().dtypes.q8_0, 6 * 5, "q..up of 5 layers are q8_0 (down_proj's 172 columns stay f32)")
  end,

  seven_b_qlora_fits_and_full_is_refused = function()
    local q = mem.estimate { preset = "llama2-7b", method = "qlora", base = "nf4", embd = "bf16",
                             batch_size = 1, seq_len = 512, checkpointing = true }
    T.ok(q.resident < 8 * 2^30, "7B QLoRA under 8 GiB: " .. mem.format(q.resident))
    T.ok(mem.report(q):find("activations"), "report names categories")
    local ok, msg, e = mem.autosize { preset = "llama2-7b", method = "full", budget = 24 * 2^30,
                                      batch_size = 1, seq_len = 512 }
    T.eq(ok, nil)
    T.ok(msg:find("needs") and msg:find("QLoRA"), msg)
    T.ok(e.resident > 100e9, "full fine-tuning needs over 100 GB")
  end,

  autosize_keeps_effective_batch = function()
    local base = { preset = "llama2-7b", layers = 2, dim = 256, hidden_dim = 688, heads = 4, kv_heads = 4, head_dim = 64,
                   vocab_size = 1000, seq_len = 256 }
    local e8 = mem.estimate(setmetatable({ batch_size = 8 }, { __index = base }))
    local opts = {}
    for k, v in pairs(base) do opts[k] = v end
    opts.budget = math.floor(e8.resident * 0.5)
    local a = assert(mem.autosize(opts))
    T.ok(a.batch_size < 8 and a.batch_size * a.grad_accum >= 8,
         string.format("batch %d x accumulation %d", a.batch_size, a.grad_accum))
    T.eq(a.seq_len, 256)
    T.ok(a.resident <= opts.budget)
  end,

  train_run_qlora = function()
    local m <close> = peft.model.load(MODEL)
    local r = peft.train.run { model = m, method = "qlora", quant = "q8_0", overwrite = true,
      dataset = T.shared .. "/data/wikisql/train.jsonl", valid = T.shared .. "/data/wikisql/valid.jsonl",
      output = T.tmp .. "/memory_qlora_run", max_iters = 2, batch_size = 2, max_seq_len = 64,
      eval_every = 0, save_every = 0, eval_batches = 2, quiet = true, progress = false }
    T.eq(r.steps, 2)
    T.ok(r.loss == r.loss, "a finite loss")
    T.eq(m:card().dtypes.q8_0, 6 * 5, "the base was re-stored as q8_0")
    r.trainer:close()
    T.raises(function()
      peft.train.run { model = MODEL, dataset = "x", output = "y", quant = "nf4" }
    end, 'quant is for method = "qlora"')
  end,

  bad_options = function()
    T.raises(function() mem.estimate { preset = "llama2-7b", batchsize = 2 } end, "unknown option 'batchsize'")
    T.raises(function() mem.estimate { preset = "llama2-7b", method = "prefix" } end, "method 'prefix'")
    T.raises(function() mem.estimate { preset = "llama2-7b", targets = { "qkv" } } end, "unknown target module 'qkv'")
    T.raises(function() mem.estimate { dim = 0 } end, "shape")
    local m <close> = peft.model.load(MODEL)
    T.raises(function() mem.quantize(m, "q4_k") end, "q4_k")
  end,
}
