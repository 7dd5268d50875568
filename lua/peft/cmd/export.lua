-- peftlua export --model M [--adapter DIR] --out PATH — write the model (with the adapter
-- merged into its weights when one is given) as GGUF (PATH ending in .gguf) or safetensors.
local cli = require "peft.cli"
local spec = {
  name = "export",
  usage = "peftlua export --model M [--adapter DIR] --out PATH [--format gguf|safetensors] [--dtype D]",
  summary = "Merge a LoRA adapter into its base model (W + (alpha/r) B A) and write the result as one\n" ..
            "file: GGUF (llama.cpp) or safetensors (Hugging Face names). Without --adapter, converts.",
  flags = {
    { "model", "path", "the base model (a path, or a name on the models search path)", required = true },
    { "adapter", "dir", "a LoRA adapter folder (PEFT layout) to merge" },
    { "out", "path", "the file to write", required = true },
    { "format", "name", "gguf | safetensors (default: from the file name)" },
    { "dtype", "name", "f32 | f16 | bf16 | base (the loaded types where the format allows)" },
    { "force", "boolean", "replace an existing file" },
  },
  examples = { "peftlua export --model m.gguf --adapter runs/x/adapter --out merged.gguf",
               "peftlua export --model m.gguf --out model.safetensors --dtype bf16" },
}
local o = cli.parse(spec, { ... })
if cli.exists(o.out) and not o.force then
  cli.die("export", string.format("%s exists; --force replaces it", o.out))
end
cli.run("export", function()
  local m <close> = cli.load_model("export", o.model, o.adapter)
  if o.adapter then
    local merge = m.merge_adapter or m.merge
    if not merge then error("this build cannot merge a loaded adapter (m:merge_adapter is missing)", 0) end
    merge(m)
  end
  peft.train.export(m, o.out, { format = o.format, dtype = o.dtype })
  print(string.format("wrote %s", o.out))
end)
