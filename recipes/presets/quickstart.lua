-- recipes/presets/quickstart.lua — the quickstart fine-tune as a config file: LoRA on
-- SmolLM2-135M-Instruct (make model) with the synthetic tool-calling chats that
-- recipes/make_toolcall_dataset.lua writes (made here under build/data/toolcall when missing).
--   peftlua train recipes/presets/quickstart.lua
--   peftlua chat --model SmolLM2-135M-Instruct.Q4_1.gguf --adapter runs/quickstart/adapter
local dir = "build/data/toolcall"
local f = io.open(dir .. "/train.jsonl")
if f then f:close() else
  local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/presets/") or "recipes"
  local saved = arg
  arg = { [0] = "make_toolcall_dataset.lua", dir }
  dofile(here .. "/make_toolcall_dataset.lua")
  arg = saved
end
return {
  model = "SmolLM2-135M-Instruct.Q4_1.gguf",
  dataset = dir .. "/train.jsonl",
  valid = dir .. "/valid.jsonl",
  output = "runs/quickstart",
  method = "lora", lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" },
  max_iters = 200, batch_size = 4, grad_accum = 1, max_seq_len = 256,
  learning_rate = 2e-4, warmup = 10, schedule = "cosine", max_grad_norm = 1.0,
  eval_every = 50, eval_batches = 8, save_every = 50, seed = 42,
}
