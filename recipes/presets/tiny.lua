-- recipes/presets/tiny.lua — the smallest fine-tune: LoRA on stories260K (shipped in
-- tests/fixtures, 0.3 M parameters) with the WikiSQL sample; seconds on a laptop. The test
-- suite and the clone test run it.
--   peftlua train recipes/presets/tiny.lua [--max_iters 50] [--output runs/tiny]
-- Paths are relative to the directory peftlua runs in, else to this file's directory.
return {
  model = "stories260K.gguf",                      -- found on the models search path
  dataset = "../../tests/fixtures/shared/data/wikisql/train.jsonl",
  valid = "../../tests/fixtures/shared/data/wikisql/valid.jsonl",
  output = "runs/tiny",
  method = "lora", lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" },
  max_iters = 20, batch_size = 4, max_seq_len = 128, learning_rate = 1e-3,
  eval_every = 10, eval_batches = 4, seed = 42,
}
