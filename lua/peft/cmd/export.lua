-- peftlua export --model M [--adapter DIR --lora-gguf] --out PATH — write the model as GGUF
-- (PATH ending in .gguf) or safetensors; with --adapter --lora-gguf the adapter as a GGUF LoRA
-- file (peft.train.export_gguf_adapter).
local cli = require "peft.cli"
local spec = {
  name = "export",
  usage = "peftlua export --model M [--adapter DIR] --out PATH [--format gguf|safetensors] [--dtype D]",
  summary = "Write a model as one file: GGUF (llama.cpp) or safetensors (Hugging Face names), converting\n" ..
            "types with --dtype; with --adapter --lora-gguf, the adapter as a GGUF LoRA file (llama.cpp\n" ..
            "--lora, Ollama ADAPTER) and a Modelfile. (Merging an adapter into the weights needs the\n" ..
            "engine's merge of a loaded adapter, not exposed yet: tr:merge() in a recipe does it.)",
  flags = {
    { "model", "path", "the base model (a path, or a name on the models search path)", required = true },
    { "adapter", "dir", "a LoRA adapter folder (PEFT layout) to merge" },
    { "out", "path", "the file to write", required = true },
    { "format", "name", "gguf | safetensors (default: from the file name)" },
    { "dtype", "name", "f32 | f16 | bf16 | base (the loaded types where the format allows)" },
    { "lora-gguf", "boolean", "with --adapter: write the adapter itself as a GGUF LoRA file (llama.cpp --lora, Ollama ADAPTER) and a Modelfile beside it" },
    { "force", "boolean", "replace an existing file" },
  },
  examples = { "peftlua export --model m.gguf --adapter runs/x/adapter --lora-gguf --out adapter.gguf",
               "peftlua export --model m.gguf --out model.safetensors --dtype bf16" },
}
local o = cli.parse(spec, { ... })
if cli.exists(o.out) and not o.force then
  cli.die("export", string.format("%s exists; --force replaces it", o.out))
end
cli.run("export", function()
  if o.lora_gguf then
    if not o.adapter then error("--lora-gguf needs --adapter DIR", 0) end
    local m <close> = cli.load_model("export", o.model)
    local path, modelfile = peft.train.export_gguf_adapter(m, o.adapter, o.out, { dtype = o.dtype })
    print(string.format("wrote %s%s", path, modelfile and (" and " .. modelfile) or ""))
    return
  end
  local m <close> = cli.load_model("export", o.model, o.adapter)
  if o.adapter then
    local merge = m.merge_adapter or m.merge
    if not merge then
      error("merging a loaded adapter into the weights is not available in this build (no m:merge_adapter); " ..
        "--lora-gguf writes the adapter as a GGUF LoRA file that llama.cpp applies with --lora", 0)
    end
    merge(m)
  end
  peft.train.export(m, o.out, { format = o.format, dtype = o.dtype })
  print(string.format("wrote %s", o.out))
end)
