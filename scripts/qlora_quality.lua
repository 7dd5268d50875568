-- scripts/qlora_quality.lua — QLoRA quality: LoRA (rank 8, q_proj + v_proj) on SmolLM2-135M
-- over an f32 base, an NF4 base and a Q8_0 base, the same iterations, seed and data
-- (../shared/data/wikisql), validation loss on valid.jsonl compared. Owner: memory.
--
--   build/peftlua scripts/qlora_quality.lua [iters=200] [batch=4] [out=build/qlora_quality] [bases]
--   build/peftlua scripts/qlora_quality.lua variants [out] [variants]
--
-- The f32 base is the Q4_1 file's projections dequantised to f32; NF4 and Q8_0 re-quantise
-- those f32 values (src/adapt/qlora.c). Prints one line per base and the ratios to f32.
-- bases: a comma-separated subset of the names below (default f32,nf4,q8_0), e.g. "nf4".
-- "variants" compares the NF4 layouts and scale rules cheaply: for each, the relative RMS error
-- of all projections against the f32 base, and the validation loss before any training.
local here = debug.getinfo(1, "S").source:match("^@(.*)/scripts/") or "."
local MODEL = os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
local DATA = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/data/wikisql/"

-- name → peft.memory.quantize arguments
local BASES = {
  f32 = { "f32" }, q8_0 = { "q8_0" },
  nf4 = { "nf4" },                                           -- the default NF4 layout
  ["nf4-64-absmax"] = { "nf4", { block = 64, scale = "absmax" } },   -- bitsandbytes' choice
  ["nf4-64-mse"] = { "nf4", { block = 64, scale = "mse" } },
  ["nf4-32-absmax"] = { "nf4", { block = 32, scale = "absmax" } },
  ["nf4-32-mse"] = { "nf4", { block = 32, scale = "mse" } },
  ["nf4-dq-absmax"] = { "nf4", { double_quant = true, scale = "absmax" } },
  ["nf4-dq-mse"] = { "nf4", { double_quant = true, scale = "mse" } },
}

local function train(base, out, iters, batch, eval_every)
  local m <close> = peft.model.load(MODEL)
  local spec = BASES[base] or error("unknown base " .. base)
  local q = peft.memory.quantize(m, spec[1], spec[2])
  local t0, val0 = os.time(), nil
  local r = peft.train.run {
    model = m, dataset = DATA .. "train.jsonl", valid = DATA .. "valid.jsonl",
    output = out .. "/" .. base, method = "lora", max_iters = iters, batch_size = batch,
    learning_rate = 2e-4, lora_rank = 8, lora_alpha = 16, lora_dropout = 0,
    targets = { "q_proj", "v_proj" }, warmup = 10, schedule = "cosine", seed = 42,
    eval_every = eval_every, save_every = 0, quiet = true, progress = false, save_adapter = false,
    on_eval = function(e) if e.step == 0 then val0 = e.val_loss end end,
  }
  r.trainer:close()
  return q, r, val0, os.time() - t0
end

if arg and arg[1] == "variants" then
  local out = arg[2] or "build/qlora_quality"
  local list = { "f32" }
  for b in (arg[3] or "q8_0,nf4-64-absmax,nf4-64-mse,nf4-32-absmax,nf4-32-mse,nf4-dq-absmax,nf4-dq-mse"):gmatch("[^,]+") do
    list[#list + 1] = b
  end
  print(string.format("%-14s %-7s %7s %6s %9s %12s", "variant", "dtype", "MiB", "bits", "rel.RMSE", "val before"))
  local ref
  for _, base in ipairs(list) do
    local q, _, val0, dt = train(base, out, 1, 4, 1)
    ref = ref or val0
    print(string.format("%-14s %-7s %7.2f %6.3f %9.5f %12.4f (%+.2f%%, %ds)", base, q.dtype, q.bytes_after / 2^20,
                        q.bits_per_weight, q.rel_rmse, val0, 100 * (val0 / ref - 1), dt))
  end
  return
end

local iters = tonumber(arg and arg[1]) or 200
local batch = tonumber(arg and arg[2]) or 4
local out = (arg and arg[3]) or "build/qlora_quality"
local list = {}
for b in ((arg and arg[4]) or "f32,nf4,q8_0"):gmatch("[^,]+") do list[#list + 1] = b end

local results = {}
for _, base in ipairs(list) do
  local q, r, val0, dt = train(base, out, iters, batch, math.min(iters, 100))
  results[base] = r.val_loss
  print(string.format("%-5s base (%s): %d projections re-stored (%.1f -> %.1f MiB, rel. RMSE %.4f); %d steps, validation loss %.4f before, train loss %.4f, validation loss %.4f (%ds)",
                      base, q.dtype, q.converted, q.bytes_before / 2^20, q.bytes_after / 2^20, q.rel_rmse, r.steps,
                      val0, r.loss, r.val_loss, dt))
end
if results.f32 then
  for _, base in ipairs(list) do
    if base ~= "f32" then
      print(string.format("%s / f32 validation loss: %.4f (%+.2f%%)", base, results[base] / results.f32,
                          100 * (results[base] / results.f32 - 1)))
    end
  end
end
