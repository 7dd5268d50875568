-- tests/lua/test_methods.lua — DoRA and IA3 adapters SAVED BY PEFTLUA, loaded by Hugging Face
-- PEFT: tests/ref/methods/golden/<method>_interop/ holds the adapter peftlua wrote and the
-- logits PyPI peft gave for it (tests/ref/methods/methods_ref.py; versions in versions.txt).
-- peftlua loads the same adapter with m:load_adapter and must give PEFT's logits within 1e-4.
-- Also: training through peft.train.trainer with method = "dora" / "ia3" lowers the loss,
-- checkpointed training gives the same losses, and a merged model gives the adapter's logits.
-- Owner: train.
local T = require "testlib"
local GGUF = T.shared .. "/models/stories260K/stories260K.gguf"
local GOLD = T.root .. "/tests/ref/methods/golden/"
local IDS = { 1, 30, 40, 50, 30, 40, 50, 30 }

local function read_f32(path)
  local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close()
  local t = {}
  for i = 1, #s // 4 do t[i] = string.unpack("<f", s, 4 * i - 3) end
  return t
end
local function maxdiff(a, b)
  T.eq(#a, #b, "logit count")
  local d = 0
  for i = 1, #a do d = math.max(d, math.abs(a[i] - b[i])) end
  return d
end

return {
  peftlua_saved_adapters_give_peft_logits = function()
    local m <close> = peft.model.load(GGUF)
    local base = m:forward(IDS):flat()
    for _, meth in ipairs { "dora", "ia3" } do
      local name = m:load_adapter(GOLD .. meth .. "_interop/adapter", { name = meth })
      local peft_logits = read_f32(GOLD .. meth .. "_interop/peft_logits.f32")
      local d = maxdiff(m:forward(IDS, { adapter = name }):flat(), peft_logits)
      local moved = maxdiff(base, peft_logits)
      print(string.format("  %s saved by peftlua, PEFT's logits: max |diff| %.3g (the adapter moves them by %.3g)", meth, d, moved))
      T.ok(d <= 1e-4, meth .. " vs PEFT: " .. d)
      T.ok(moved > 1, meth .. " changes the logits")
    end
    local list = m:adapters()
    T.eq(list[1].method, "dora"); T.eq(list[2].method, "ia3")
    T.eq(list[2].params, 1180, "IA3: k, v (2 x 32) and down_proj's input (172) per layer, 5 layers")
  end,

  trainer_methods_learn_and_checkpoint = function()
    local m = peft.model.load(GGUF)
    local ids = { IDS }
    local tg = { { 30, 40, 50, 30, 40, 50, 30, 40 } }
    for _, meth in ipairs { "dora", "ia3" } do
      local losses = {}
      for _, ck in ipairs { false, true } do
        local tr <close> = peft.train.trainer(m, { method = meth, batch_size = 1, seq_len = 8,
          learning_rate = 3e-2, lora_rank = 4, schedule = "constant", checkpointing = ck })
        T.eq(tr:stats().method, meth)
        local est = peft.memory.estimate { model = m, method = meth, batch_size = 1, seq_len = 8, lora_rank = 4,
          checkpointing = ck }
        T.eq(est.trained_params, tr:stats().params, meth .. ": the memory model counts the trained parameters")
        local l = {}
        for i = 1, 8 do l[i] = tr:micro(ids, tg) end
        losses[#losses + 1] = l
        T.ok(l[8] < l[1] - 0.5, meth .. " learns: " .. l[1] .. " -> " .. l[8])
        if ck then
          local before = m:forward(IDS):flat()
          tr:merge()
          local d = maxdiff(m:forward(IDS):flat(), before)
          T.ok(d < 1e-3, meth .. " merged vs adapter logits: " .. d)
        end
      end
      for i = 1, 8 do T.near(losses[2][i], losses[1][i], 1e-5 * math.abs(losses[1][i]), meth .. " checkpointed loss " .. i) end
      m:close()
      m = peft.model.load(GGUF)   -- merging changed the weights
    end
    T.raises(function() peft.train.trainer(m, { method = "dora", lora_dropout = 0.1 }) end, "not supported with DoRA")
    T.raises(function() peft.train.trainer(m, { method = "lora", feedforward = { "down_proj" } }) end, "IA3 option")
    m:close()
  end,
}
