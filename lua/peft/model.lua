-- lua/peft/model.lua — policy on top of the C module peft.model (src/lua/l_model.c).
-- Owner: model. Adds m:chat(messages [, opts]): render the conversation with the model's own
-- chat template (peft.tokenizer's tok:chat, add_generation_prompt) and generate the reply.
local M = ...
local Model = M.Model

local toks = setmetatable({}, { __mode = "k" })   -- one peft.Tokenizer per model, collected with it

function Model:chat(messages, opts)
  assert(type(messages) == "table", "chat: messages must be a list of {role=, content=}")
  local tok = toks[self]
  if not tok then tok = self:tokenizer(); toks[self] = tok end
  local prompt = tok:chat(messages, { add_generation_prompt = true })
  return self:generate(prompt, opts)
end

return M
