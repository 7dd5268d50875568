-- bf16_quality.lua — issue 18's quality check of bf16 compute: the same LoRA run (SmolLM2-135M
-- Q4_1, WikiSQL sample, r8 on q,v, batch 4, 200 steps, seed 42) with compute = "f32" and with
-- compute = "bf16", and the relative difference of their final validation losses (on every
-- validation record). Prints figures; the 1% criterion is printed, not asserted (a benchmark).
--
--   build/peftlua tests/bench/bf16_quality.lua [--steps N] [--model PATH] [--threads N]
local opt = { steps = 200 }
do
  local i = 1
  while arg and arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--steps" then opt.steps = assert(math.tointeger(tonumber(v)), "--steps needs an integer")
    elseif a == "--model" then opt.model = v
    elseif a == "--threads" then opt.threads = assert(math.tointeger(tonumber(v)), "--threads needs an integer")
    else error("bf16_quality.lua: unknown argument " .. a) end
    i = i + 2
  end
end
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/bench/") or "."
local data = here .. "/tests/fixtures/shared/data/wikisql/"
local model_path = peft.cli.find_model(opt.model or "SmolLM2-135M-Instruct.Q4_1.gguf")
if opt.threads then peft.hw.threads(opt.threads) end
print(string.format("bf16_quality: %s, WikiSQL, LoRA r8 q,v, batch 4, %d steps; CPU %s, bf16 kernel %s",
  model_path, opt.steps, peft.hw.info().cpu or "?", peft.hw.info().bf16_kernel or "?"))

local res = {}
for _, compute in ipairs { "f32", "bf16" } do
  local m <close> = peft.model.load(model_path)
  local out = here .. "/build/tmp/bf16_quality_" .. compute
  os.execute("rm -rf '" .. out .. "'")
  local r = peft.train.run {
    model = m, dataset = data .. "train.jsonl", valid = data .. "valid.jsonl", output = out,
    method = "lora", lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" },
    max_iters = opt.steps, batch_size = 4, max_seq_len = 256, learning_rate = 5e-4,
    warmup = 10, schedule = "cosine", seed = 42, compute = compute,
    eval_every = opt.steps, eval_batches = 1000, save_every = 0, save_adapter = false,
    progress = false, quiet = true, report = false,
  }
  res[compute] = r
  print(string.format("  compute %-4s  validation loss %.5f  last training loss %.5f  %.1f s",
    compute, r.val_loss, r.loss, r.elapsed))
  r.trainer:close()
end
local rel = (res.bf16.val_loss - res.f32.val_loss) / res.f32.val_loss
print(string.format("bf16 vs f32: validation loss %+.3f%% (criterion: within 1%%: %s)", 100 * rel,
  math.abs(rel) <= 0.01 and "holds" or "does not hold"))
