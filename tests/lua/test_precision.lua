-- tests/lua/test_precision.lua — mixed precision from Lua: the trainer's precision /
-- loss_scale / growth_interval keys and stats, peft.train.run's precision key and its fp16
-- scaler metrics, and refusals naming what is wrong. Owner: precision.
local T = require "testlib"
local train = peft.train
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"
local DATA = T.shared .. "/data/wikisql/"

return {
  unknown_precision_is_refused_by_name = function()
    local m <close> = peft.model.load(MODEL)
    T.raises(function() train.trainer(m, { precision = "fp8", batch_size = 1, seq_len = 8 }) end,
      'unknown precision "fp8"')
    T.raises(function() train.trainer(m, { precision = "bf16", loss_scale = 1024, batch_size = 1, seq_len = 8 }) end,
      'for precision = "fp16"')
    T.raises(function() train.trainer(m, { precision = "fp16", loss_scale = 1000, batch_size = 1, seq_len = 8 }) end,
      "power of two")
    T.raises(function()
      train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = T.tmp .. "/prec_x", precision = "half" }
    end, 'precision = "half" is not one of "fp32", "bf16", "fp16"')
    T.raises(function()
      train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = T.tmp .. "/prec_x", growth_interval = 10 }
    end, 'for precision = "fp16"')
  end,

  trainer_stats_and_16bit_base = function()
    local m <close> = peft.model.load(MODEL)
    local tr <close> = train.trainer(m, { precision = "bf16", batch_size = 2, seq_len = 16, lora_rank = 2 })
    local st = tr:stats()
    T.eq(st.precision, "bf16")
    T.eq(st.loss_scale, 1.0)
    T.eq(st.skipped_steps, 0)
    local ids = { { 1, 2, 3, 4, 5, 6, 7, 8 }, { 9, 10, 11, 12, 13, 14, 15, 16 } }
    local tg = { { 2, 3, 4, 5, 6, 7, 8, 9 }, { 10, 11, 12, 13, 14, 15, 16, 17 } }
    local loss, count, stepped = tr:micro(ids, tg)
    T.ok(loss > 0 and count == 16 and stepped, "a bf16 step runs")
    local h <close> = train.trainer(peft.model.load(MODEL), { precision = "fp16", loss_scale = 2^10,
      growth_interval = 1, batch_size = 2, seq_len = 16, lora_rank = 2 })
    h:micro(ids, tg)
    st = h:stats()
    T.eq(st.precision, "fp16")
    T.eq(st.skipped_steps, 0)
    T.eq(st.loss_scale, 2^11, "grew after one finite step (growth_interval 1)")
  end,

  run_reports_the_scaler = function()
    -- S = 2^140 overflows f32 at once: every one of 3 steps is skipped and the scale halves each time
    local dir = T.tmp .. "/prec_run"
    os.execute("rm -rf '" .. dir .. "'")
    local r = train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = dir, max_iters = 3,
      batch_size = 2, max_seq_len = 32, lora_rank = 2, precision = "fp16", loss_scale = 2^140,
      progress = false, quiet = true, save_adapter = false }
    T.eq(r.precision, "fp16")
    T.eq(r.skipped_steps, 3)
    T.eq(r.loss_scale, 2^137)
    r.trainer:close()
    local f = assert(io.open(dir .. "/metrics.jsonl"))
    local txt = f:read("a")
    f:close()
    T.ok(txt:find('"step":3,', 1, true) and txt:find('"skipped_steps":3', 1, true), txt)
    T.ok(txt:find('"loss_scale":' .. string.format("%.17g", 2^138), 1, true), "scale after step 2 in the metrics")
    -- resumed with another precision: refused, naming both
    local err = T.raises(function()
      train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = dir, max_iters = 4, resume = true,
        batch_size = 2, max_seq_len = 32, lora_rank = 2, precision = "bf16", progress = false, quiet = true }
    end, "precision fp16")
    T.ok(err:find("bf16", 1, true), err)
  end,
}
