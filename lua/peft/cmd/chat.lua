-- peftlua chat --model M [--adapter DIR] — an interactive chat, streamed, with history.
-- Each line read is a user turn; the reply is generated through the model's chat template
-- (m:chat) and streamed. /reset forgets the conversation, /exit (or end of input) leaves.
-- Ctrl-C stops the answer being written (the text so far stays in the history), not the
-- program. A model without a chat template continues the text of each line instead.
local cli = require "peft.cli"
local spec = {
  name = "chat",
  usage = "peftlua chat --model M [--adapter DIR] [options]",
  summary = "Chat with a model (and a fine-tuned adapter) on the terminal, or through a pipe:\n" ..
            "one line per user turn; /reset starts over, /exit leaves; Ctrl-C stops an answer.",
  flags = {
    { "model", "path", "the model (a path, or a name on the models search path)", required = true },
    { "adapter", "dir", "a LoRA adapter folder (PEFT layout: adapter_config.json + adapter_model.safetensors)" },
    { "system", "text", "a system message opening the conversation" },
    { "max-tokens", "integer", "longest answer, in tokens", default = 256 },
    { "temperature", "number", "sampling temperature (0: greedy)", default = 0.7 },
    { "top-p", "number", "nucleus sampling", default = 0.9 },
    { "seed", "integer", "sampling seed", default = 42 },
    { "greedy", "boolean", "always the most likely token" },
  },
  examples = { "peftlua chat --model SmolLM2-135M-Instruct.Q4_1.gguf",
               "peftlua chat --model m.gguf --adapter runs/x/adapter",
               "printf 'Hello\\n/reset\\nHi\\n' | peftlua chat --model m.gguf --greedy" },
}
local o = cli.parse(spec, { ... })
local host = package.loaded["peft.host"] or {}
local m
cli.run("chat", function() m = cli.load_model("chat", o.model, o.adapter) end)
local card = m:card()
local templated = card.chat_template ~= "none"
local tty = peft.train.isatty(0)
if tty then
  print(string.format("%s%s — %s. /reset starts over, /exit leaves, Ctrl-C stops an answer.",
    card.name, o.adapter and (" + " .. o.adapter) or "",
    templated and ("chat template " .. card.chat_template) or "no chat template: each line is continued"))
end

local history = {}
if o.system then history[1] = { role = "system", content = o.system } end
local gen = { max_tokens = o.max_tokens, temperature = o.temperature, top_p = o.top_p, seed = o.seed,
              greedy = o.greedy or o.temperature == 0 or nil }

while true do
  if tty then io.write("> "); io.flush() end
  local line = io.read("l")
  if not line or line == "/exit" or line == "/quit" then break end
  if line == "/reset" then
    history = {}
    if o.system then history[1] = { role = "system", content = o.system } end
    print("(conversation reset)")
  elseif line:match("%S") then
    history[#history + 1] = { role = "user", content = line }
    local parts = {}
    gen.on_token = function(piece) parts[#parts + 1] = piece; io.write(piece); io.flush() end
    local ok, err = pcall(function()
      if templated then return m:chat(history, gen) end
      return m:generate(line, gen)
    end)
    local reply = table.concat(parts)
    if not ok then
      if tostring(err):find("interrupt") then
        io.write(" [interrupted]")
        if host.rearm_interrupt then host.rearm_interrupt() end
      else
        io.write("\n")
        cli.die("chat", cli.clean(err))
      end
    end
    io.write("\n")
    io.flush()
    history[#history + 1] = { role = "assistant", content = reply }
    gen.seed = gen.seed + 1
  end
end
m:close()
