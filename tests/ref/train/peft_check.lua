-- tests/ref/train/peft_check.lua — inputs for tests/ref/train/peft_check.py (owner: train):
-- the stories260K base as an HF directory, a LoRA adapter trained a few steps on every
-- projection (PEFT layout), and peftlua's logits for base + adapter on fixed ids.
--   peftlua tests/ref/train/peft_check.lua OUTDIR
local out = assert(arg[1], "usage: peft_check.lua OUTDIR")
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/ref/") or "."
os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")
local m <close> = peft.model.load(here .. "/../shared/models/stories260K/stories260K.gguf")
peft.train.export(m, out .. "/base", { format = "safetensors" })
local tr <close> = peft.train.trainer(m, { batch_size = 1, seq_len = 8, targets = "all",
  learning_rate = 1e-2, lora_rank = 4, lora_alpha = 8, schedule = "constant" })
local ids = { { 1, 30, 40, 50, 30, 40, 50, 30 } }
local tg = { { 30, 40, 50, 30, 40, 50, 30, 40 } }
for _ = 1, 10 do tr:micro(ids, tg) end
tr:save_adapter(out .. "/adapter", "base")
local f = assert(io.open(out .. "/logits.f32", "wb"))
for _, v in ipairs(m:forward(ids[1]):flat()) do f:write(string.pack("<f", v)) end
f:close()
print("wrote " .. out .. "/{base,adapter,logits.f32}")
