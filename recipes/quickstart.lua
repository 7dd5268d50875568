-- recipes/quickstart.lua — load a model, show its card, chat with it, measure perplexity.
--
--   peftlua recipes/quickstart.lua [model] [text-or-jsonl]
-- The model is arg[1], else $PEFT_MODEL, else the default SmolLM2-135M-Instruct (make model),
-- looked up on the models search path (peft.cli.find_model: ./models, $PEFT_MODEL_PATH,
-- ~/.cache/peftlua/models, the installed share/peftlua/models). The text is arg[2], else the
-- validation half of the tool-calling dataset that recipes/make_toolcall_dataset.lua writes
-- (made here, under build/data/toolcall, when missing). PEFT_SMOKE=1 keeps it short (the test
-- suite; with stories260K as the model it needs nothing outside the clone).
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."
local path = peft.cli.find_model(arg[1] or os.getenv("PEFT_MODEL") or "SmolLM2-135M-Instruct.Q4_1.gguf")
local text = arg[2]
if not text then
  local dir = "build/data/toolcall"
  text = dir .. "/valid.jsonl"
  local f = io.open(text)
  if f then f:close() else
    local saved = arg
    arg = { [0] = "make_toolcall_dataset.lua", dir }
    dofile(here .. "/recipes/make_toolcall_dataset.lua")
    arg = saved
  end
end
local smoke = os.getenv("PEFT_SMOKE") == "1"

local m <close> = peft.model.load(path)
local c = m:card()

print(string.format("model      %s (%s, %s)", c.name, c.arch, c.format))
print(string.format("file       %s", c.path))
print(string.format("params     %.1f M  (%.1f MiB of weights)", c.params / 1e6, c.weight_bytes / 1048576))
local types = {}
for k, v in pairs(c.dtypes) do types[#types + 1] = string.format("%s×%d", k, v) end
table.sort(types)
print(string.format("tensors    %s", table.concat(types, " ")))
print(string.format("shape      %d layers, dim %d, ffn %d, heads %d (kv %d), vocab %d, context %d",
  c.layers, c.dim, c.hidden_dim, c.heads, c.kv_heads, c.vocab_size, c.context_length))
print(string.format("chat       %s", c.chat_template))

-- Chat through the model's own template when it has one (m:chat), else continue a story.
local question = "What is the capital of France? Answer in one sentence."
local gen = {
  max_tokens = smoke and 24 or 96, temperature = 0.7, top_p = 0.9, seed = 42,
  on_token = function(piece) io.write(piece); io.flush() end,
}
local n
if c.chat_template ~= "none" then
  print("\n> " .. question)
  io.write("< ")
  _, n = m:chat({ { role = "user", content = question } }, gen)
else
  io.write("\nOnce upon a time")
  _, n = m:generate("Once upon a time", gen)
end
print(string.format("\n(%d tokens)", n))

-- Perplexity: a plain text file as documents; a JSONL file through the data pipeline (each
-- record rendered as training renders it, chats with the model's template), every token scored.
local ppl, mean, count
if text:match("%.jsonl$") then
  -- a model without a chat template (stories260K) reads chats as "role: content" lines
  local plain = c.chat_template == "none" and function(msgs)
    local t = {}
    for _, msg in ipairs(msgs) do t[#t + 1] = msg.role .. ": " .. msg.content end
    return table.concat(t, "\n"), { { 1, #table.concat(t, "\n") } }
  end or nil
  local ds = peft.data.load(text, { tokenizer = m, max_seq_len = 512, chat = plain })
  local sum, n = 0, 0
  for i = 1, smoke and math.min(10, ds:count()) or ds:count() do
    local l, c = m:loss({ ds:example(i).ids })
    sum, n = sum + l * c, n + c
  end
  mean, count = sum / n, n
  ppl = math.exp(mean)
else
  ppl, mean, count = m:perplexity(text, { limit = smoke and 10 or nil })
end
print(string.format("\nperplexity on %s: %.3f  (mean loss %.4f nats over %d tokens)",
  text:match("[^/]+/[^/]+$") or text, ppl, mean, count))
