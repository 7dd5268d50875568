-- recipes/finetune.lua — the quickstart fine-tune: LoRA on the default model with the synthetic
-- tool-calling dataset; validation loss, sample answers and the tool-call exact-match metric
-- before and after; saves the adapter (PEFT layout) and the merged model, and charts the
-- run's per-step memory (output/memory.png from output/memory.json).
--
--   peftlua recipes/finetune.lua [--smoke] [--model PATH] [--data TRAIN.jsonl --valid VALID.jsonl]
--                                [--iters N] [--method lora|full] [--out DIR] [--eval-n N]
--                                [--compute f32|bf16]
--
-- Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf (make model), the dataset that
-- recipes/make_toolcall_dataset.lua writes (made here if missing), output build/finetune.
-- --smoke (or PEFT_SMOKE=1) runs in seconds for the test suite: stories260K on a slice of the
-- WikiSQL sample, a few steps, the same code path end to end.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."

local opt = { smoke = os.getenv("PEFT_SMOKE") == "1" }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local function val() i = i + 1; return (assert(arg[i], a .. " needs a value")) end
    if a == "--smoke" then opt.smoke = true
    elseif a == "--model" then opt.model = val()
    elseif a == "--data" then opt.data = val()
    elseif a == "--valid" then opt.valid = val()
    elseif a == "--iters" then opt.iters = assert(math.tointeger(tonumber(val())), "--iters needs an integer")
    elseif a == "--method" then opt.method = val()
    elseif a == "--out" then opt.out = val()
    elseif a == "--compute" then opt.compute = val()
    elseif a == "--eval-n" then opt.eval_n = assert(math.tointeger(tonumber(val())), "--eval-n needs an integer")
    else error("finetune.lua: unknown argument " .. a) end
    i = i + 1
  end
end

local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")
local model_path, train_path, valid_path
if opt.smoke then
  model_path = opt.model or (shared .. "/models/stories260K/stories260K.gguf")
  train_path = opt.data or (shared .. "/data/wikisql/train.jsonl")
  valid_path = opt.valid or (shared .. "/data/wikisql/valid.jsonl")
else
  model_path = peft.cli.find_model(opt.model or os.getenv("PEFT_MODEL") or "SmolLM2-135M-Instruct.Q4_1.gguf")
  if opt.data then
    train_path, valid_path = opt.data, opt.valid
  else
    local dir = here .. "/build/data/toolcall"
    train_path, valid_path = dir .. "/train.jsonl", dir .. "/valid.jsonl"
    local f = io.open(valid_path)
    if f then f:close() else
      local saved = arg
      arg = { [0] = "make_toolcall_dataset.lua", dir }
      dofile(here .. "/recipes/make_toolcall_dataset.lua")
      arg = saved
    end
  end
end
local out = opt.out or (here .. (opt.smoke and "/build/tmp/finetune_smoke" or "/build/finetune"))
os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")

local m = peft.model.load(model_path)
local card = m:card()
print(string.format("model    %s (%.1f M parameters, %s)", card.name, card.params / 1e6, card.path))
print(string.format("data     %s\n         %s", train_path, valid_path or "(no validation file)"))

-- Validation prompts and reference answers of a chat dataset (the tool-call metric).
local cases = {}
if valid_path then
  local recs, info = peft.data.read(valid_path)
  if info.format == "chat" then
    for _, r in ipairs(recs) do
      local msgs = r.messages
      if msgs[#msgs].role == "assistant" then
        cases[#cases + 1] = { msgs = { table.unpack(msgs, 1, #msgs - 1) }, ref = msgs[#msgs].content }
      end
    end
  end
end
local chatml = card.chat_template == "chatml"
local function prompt_of(msgs)
  local parts = {}
  for _, msg in ipairs(msgs) do
    parts[#parts + 1] = "<|im_start|>" .. msg.role .. "\n" .. msg.content .. "<|im_end|>\n"
  end
  return table.concat(parts) .. "<|im_start|>assistant\n"
end
local eval_n = math.min(#cases, opt.eval_n or (opt.smoke and 2 or 40))

local function answers(label)
  if not chatml or eval_n == 0 then return nil end
  local hits, shown = 0, 0
  for i = 1, eval_n do
    local c = cases[i]
    local text = m:generate(prompt_of(c.msgs), { max_tokens = 64, greedy = true, stop = { "<|im_end|>" } })
    local ok = peft.data.toolcall_exact_match(text, c.ref)
    if ok then hits = hits + 1 end
    if shown < 3 then
      shown = shown + 1
      print(string.format("  [%s] %s\n      → %s%s", label, c.msgs[#c.msgs].content, text:gsub("\n", " "),
        ok and "   ✓" or ""))
    end
  end
  local acc = hits / eval_n
  print(string.format("%s: tool-call exact match %d/%d = %.1f%%", label, hits, eval_n, 100 * acc))
  return acc
end

if not chatml then
  print("(the model has no chat template: sample answers and the tool-call metric are skipped)")
end
local before_acc = answers("before")

local evals = {}
local r = peft.train.run {
  model = m, dataset = train_path, valid = valid_path, output = out,
  method = opt.method or "lora",
  max_iters = opt.iters or (opt.smoke and 12 or 100),
  batch_size = 4, grad_accum = 1,
  learning_rate = (opt.method == "full") and 5e-5 or (opt.smoke and 3e-3 or 5e-4),
  lora_rank = 8, lora_alpha = 16, lora_dropout = 0.05,
  targets = { "q_proj", "k_proj", "v_proj", "o_proj" },
  warmup = opt.smoke and 2 or 10, schedule = "cosine", max_grad_norm = 1.0,
  max_seq_len = opt.smoke and 64 or 384,
  eval_every = opt.smoke and 6 or 50, eval_batches = opt.smoke and 3 or 16,
  save_every = opt.smoke and 6 or 50, seed = 42,
  compute = opt.compute,
  on_eval = function(i) evals[#evals + 1] = i end,
}
print(string.format("training %d scored tokens in %.1f s (%.1f scored tokens/s with its evaluations; compute %s)",
  r.tokens, r.elapsed, r.tokens / math.max(r.elapsed, 1e-9), opt.compute or "default"))
local v0, v1 = evals[1] and evals[1].val_loss, r.val_loss
if v0 and v1 then
  print(string.format("validation loss %.4f → %.4f (%.1f%% lower)", v0, v1, 100 * (1 - v1 / v0)))
end
local after_acc = answers("after")
if before_acc and after_acc then
  print(string.format("tool-call exact match %.1f%% → %.1f%%", 100 * before_acc, 100 * after_acc))
end

-- outputs: the adapter (PEFT layout, written by run) and the merged model
local merged = out .. "/merged.gguf"
r.trainer:merge()
peft.train.export(m, merged, { dtype = opt.smoke and "f32" or "f16" })
peft.train.export(m, out .. "/merged-hf", { format = "safetensors" })
r.trainer:close()
print(string.format("adapter  %s/adapter (adapter_model.safetensors + adapter_config.json)", out))
print(string.format("merged   %s and %s/merged-hf (safetensors)", merged, out))
print(string.format("metrics  %s", r.metrics))
do -- the per-step memory profile (peft.train.run wrote it) as a chart
  local img <close> = peft.report.memory_chart(r.memory, { title = "Memory per step (" .. card.name .. ")" })
  assert(img:save(out .. "/memory.png"))
  print(string.format("memory   %s, chart %s/memory.png\n%s", r.memory, out, peft.memory.summary()))
end
return { val_before = v0, val_after = v1, acc_before = before_acc, acc_after = after_acc, output = out }
