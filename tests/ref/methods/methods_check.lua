-- tests/ref/methods/methods_check.lua — inputs for tests/ref/methods/methods_ref.py (owner:
-- train): the stories260K base as an HF directory, and for DoRA and IA3 an adapter trained
-- 10 steps by peftlua (PEFT layout) with peftlua's logits for base + adapter on fixed ids.
--   peftlua tests/ref/methods/methods_check.lua OUTDIR
local out = assert(arg[1], "usage: methods_check.lua OUTDIR")
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/ref/") or "."
os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")
local m <close> = peft.model.load(here .. "/../shared/models/stories260K/stories260K.gguf")
peft.train.export(m, out .. "/base", { format = "safetensors" })
local ids = { { 1, 30, 40, 50, 30, 40, 50, 30 } }
local tg = { { 30, 40, 50, 30, 40, 50, 30, 40 } }
for _, meth in ipairs { "dora", "ia3" } do
  local tr <close> = peft.train.trainer(m, { method = meth, batch_size = 1, seq_len = 8,
    targets = meth == "dora" and "all" or nil, learning_rate = 3e-2, lora_rank = 4,
    lora_alpha = 8, schedule = "constant", seed = 7 })
  for _ = 1, 10 do tr:micro(ids, tg) end
  tr:save_adapter(out .. "/" .. meth, "base")
  local f = assert(io.open(out .. "/" .. meth .. "_logits.f32", "wb"))
  for _, v in ipairs(m:forward(ids[1]):flat()) do f:write(string.pack("<f", v)) end
  f:close()
  tr:adapters(false)
end
local f = assert(io.open(out .. "/base_logits.f32", "wb"))
for _, v in ipairs(m:forward(ids[1]):flat()) do f:write(string.pack("<f", v)) end
f:close()
print("wrote " .. out .. "/{base,dora,ia3,*_logits.f32}")
