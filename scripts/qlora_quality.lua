-- scripts/qlora_quality.lua — QLoRA quality: LoRA (rank 8, q_proj + v_proj) on SmolLM2-135M
-- over an f32 base, an NF4 base and a Q8_0 base, the same iterations, seed and data
-- (../shared/data/wikisql), validation loss on valid.jsonl compared. Owner: memory.
--
--   build/peftlua scripts/qlora_quality.lua [iters=200] [batch=4] [out=build/qlora_quality]
--
-- The f32 base is the Q4_1 file's projections dequantised to f32; NF4 and Q8_0 re-quantise
-- those f32 values (src/qlora.c). Prints one line per base and the ratios to f32.
local iters = tonumber(arg and arg[1]) or 200
local batch = tonumber(arg and arg[2]) or 4
local out = (arg and arg[3]) or "build/qlora_quality"
local here = debug.getinfo(1, "S").source:match("^@(.*)/scripts/") or "."
local MODEL = os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
local DATA = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/data/wikisql/"

local results = {}
for _, base in ipairs { "f32", "nf4", "q8_0" } do
  local m <close> = peft.model.load(MODEL)
  local q = peft.memory.quantize(m, base)
  local t0 = os.time()
  local r = peft.train.run {
    model = m, dataset = DATA .. "train.jsonl", valid = DATA .. "valid.jsonl",
    output = out .. "/" .. base, method = "lora", max_iters = iters, batch_size = batch,
    learning_rate = 2e-4, lora_rank = 8, lora_alpha = 16, lora_dropout = 0,
    targets = { "q_proj", "v_proj" }, warmup = 10, schedule = "cosine", seed = 42,
    eval_every = math.min(iters, 100), save_every = 0, quiet = true, progress = false, save_adapter = false,
  }
  results[base] = r.val_loss
  print(string.format("%-5s base: %d projections re-stored (%.1f -> %.1f MiB); %d steps, train loss %.4f, validation loss %.4f (%ds)",
                      base, q.converted, q.bytes_before / 2^20, q.bytes_after / 2^20, r.steps, r.loss,
                      r.val_loss, os.time() - t0))
  r.trainer:close()
end
for _, base in ipairs { "nf4", "q8_0" } do
  print(string.format("%s / f32 validation loss: %.4f (%+.2f%%)", base, results[base] / results.f32,
                      100 * (results[base] / results.f32 - 1)))
end
