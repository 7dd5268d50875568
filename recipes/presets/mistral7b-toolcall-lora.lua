-- recipes/presets/mistral7b-toolcall-lora.lua — the configuration 7B tool-calling fine-tunes
-- ask for: Mistral-7B-Instruct, LoRA r16 / alpha 32 on q_proj and v_proj, batch 2 x
-- accumulation 4, learning rate 2e-4, clipping 1.0, warm-up 100 steps, 3 epochs, 16-bit
-- (bf16 frozen weights and saved activations).
--   peftlua train recipes/presets/mistral7b-toolcall-lora.lua --estimate
--     prints the memory model's estimate for this machine (from `shape`, before any file is
--     read) and, when it does not fit, what would: QLoRA, checkpointing, both.
--   peftlua train recipes/presets/mistral7b-toolcall-lora.lua --dataset my_tools.jsonl
--     trains (the GGUF found on PEFT_MODEL_PATH, ./models or ~/.cache/peftlua/models);
--     add --method qlora --checkpointing true where the estimate says so.
return {
  model = "Mistral-7B-Instruct-v0.3-BF16.gguf",    -- a 16-bit GGUF (llama.cpp convert_hf_to_gguf --outtype bf16)
  -- the shape of that file for the estimate (bf16 weights used in place from the mapping)
  shape = { dim = 4096, hidden_dim = 14336, layers = 32, heads = 32, kv_heads = 8, vocab_size = 32768,
            base = "bf16", mapped = true },
  dataset = "build/data/toolcall/train.jsonl",     -- recipes/make_toolcall_dataset.lua writes it
  output = "runs/mistral7b-toolcall",
  method = "lora", lora_rank = 16, lora_alpha = 32, targets = { "q_proj", "v_proj" },
  batch_size = 2, grad_accum = 4, learning_rate = 2e-4, max_grad_norm = 1.0,
  warmup = 100, epochs = 3, precision = "bf16", max_seq_len = 1024,
  schedule = "cosine", save_every = 200, seed = 42,
}
