-- peftlua generate --model M [--adapter DIR] PROMPT — continue a prompt (or, with --chat,
-- answer it through the chat template) and print the text, streamed.
local cli = require "peft.cli"
local spec = {
  name = "generate",
  usage = "peftlua generate --model M [--adapter DIR] [options] PROMPT",
  summary = "Generate text from a prompt (the prompt is read from stdin when it is '-').",
  flags = {
    { "model", "path", "the model (a path, or a name on the models search path)", required = true },
    { "adapter", "dir", "a LoRA adapter folder (PEFT layout)" },
    { "chat", "boolean", "treat the prompt as a user message and use the chat template" },
    { "max-tokens", "integer", "tokens to generate", default = 128 },
    { "temperature", "number", "sampling temperature (0: greedy)", default = 0.8 },
    { "top-p", "number", "nucleus sampling", default = 0.9 },
    { "seed", "integer", "sampling seed", default = 42 },
    { "greedy", "boolean", "always the most likely token" },
  },
  examples = { "peftlua generate --model stories260K.gguf --greedy 'Once upon a time'",
               "peftlua generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat 'What is the capital of France?'" },
}
local o, rest = cli.parse(spec, { ... })
local prompt = table.concat(rest, " ")
if prompt == "-" then prompt = io.read("a") end
cli.run("generate", function()
  local m <close> = cli.load_model("generate", o.model, o.adapter)
  local gen = { max_tokens = o.max_tokens, temperature = o.temperature, top_p = o.top_p, seed = o.seed,
                greedy = o.greedy or o.temperature == 0 or nil,
                on_token = function(piece) io.write(piece); io.flush() end }
  if o.chat then
    m:chat({ { role = "user", content = prompt } }, gen)
  else
    io.write(prompt)
    m:generate(prompt, gen)
  end
  io.write("\n")
end)
