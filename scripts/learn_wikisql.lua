-- scripts/learn_wikisql.lua — issue 3's "Learning" check, as one command:
--
--   build/peftlua scripts/learn_wikisql.lua [lora|full] [iters]       (from the repository root)
--
-- SmolLM2-135M-Instruct (Q4_1 base), LoRA rank 8 on q_proj and v_proj (or full fine-tuning),
-- batch 4, max_seq_len 256, on ../shared/data/wikisql/train.jsonl; validation loss on
-- valid.jsonl every 40 steps. Prints the curve and the relative drop. Resumable: rerunning
-- continues from the last checkpoint in build/learn_wikisql_<method>. Takes tens of minutes on
-- 2 cores, so it is not part of `make test` (the smoke fine-tune in test_train.lua is).
local method = arg[1] or "lora"
local iters = math.tointeger(tonumber(arg[2] or (method == "lora" and "200" or "80")))
local curve = {}
local r = peft.train.run {
  model = os.getenv("PEFT_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf",
  dataset = "../shared/data/wikisql/train.jsonl", valid = "../shared/data/wikisql/valid.jsonl",
  output = "build/learn_wikisql_" .. method, method = method,
  max_iters = iters, batch_size = 4, learning_rate = method == "lora" and 5e-4 or 5e-5,
  lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" },
  warmup = 10, schedule = "cosine", max_seq_len = 256,
  eval_every = 40, save_every = 20, seed = 42, resume = true, progress = true,
  on_eval = function(i)
    curve[#curve + 1] = i
    print(string.format("eval step %d val_loss %.4f", i.step, i.val_loss))
    io.stdout:flush()
  end,
}
print(string.format("done: %s, steps %d, train loss %.4f, validation loss %.4f, %.0f s",
  method, r.steps, r.loss, r.val_loss, r.elapsed))
if curve[1] then
  print(string.format("validation loss %.4f -> %.4f: %.1f%% lower", curve[1].val_loss, r.val_loss,
    100 * (1 - r.val_loss / curve[1].val_loss)))
end
