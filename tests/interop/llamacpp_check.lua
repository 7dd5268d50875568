-- tests/interop/llamacpp_check.lua — llama.cpp itself loads what peftlua exports, and agrees.
-- Owner: interop. Run by `make llamacpp-check` (after `make llamacpp` built llama.cpp from the
-- llama-cpp-python sdist and tests/interop/ll_logits.c against its libllama):
--   LL_LOGITS=build/llamacpp/ll_logits peftlua tests/interop/llamacpp_check.lua [OUTDIR]
-- On stories260K (f32 GGUF): a LoRA adapter trained a few steps on every projection, and the
-- rsLoRA adapter Hugging Face PEFT saved (tests/data/lora/st260k_rslora, layers 1 and 3), are
-- exported as GGUF LoRA adapters (f32 and f16) and the trained one also merged into a GGUF.
-- llama.cpp's logits for every position of a prompt — base + adapter (llama_adapter_lora_init,
-- scale 1) and the merged model alone — must match peftlua's within 1e-3 relative
-- (max |llama.cpp − peftlua| / max |peftlua|). Exit status 0 only when all hold; llama.cpp's
-- log is not parsed (only ll_logits' exit status and the numbers it wrote).
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/interop/") or "."
local out = arg[1] or (here .. "/build/tmp/llamacpp_check")
local LL = os.getenv("LL_LOGITS") or (here .. "/build/llamacpp/ll_logits")
local BASE = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/models/stories260K/stories260K.gguf"
local RS = here .. "/tests/data/lora/st260k_rslora"
os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")
local IDS = { 1, 403, 395, 260, 418, 294, 307, 262, 377, 30, 267, 400 }
local ids_s = table.concat(IDS, ",")
local TOL = 1e-3
local failed = 0

local function read_f32(path)
  local f = io.open(path, "rb"); if not f then return nil end
  local s = f:read("a"); f:close()
  local t = {}
  for i = 1, #s // 4 do t[i] = string.unpack("<f", s, 4 * i - 3) end
  return t
end

-- llama.cpp's logits: nil and the reason when ll_logits failed
local function llama(model, adapters)
  local f = out .. "/ll_" .. tostring(math.random(1 << 30)) .. ".f32"
  local cmd = string.format("'%s' '%s' %s '%s'", LL, model, ids_s, f)
  for _, a in ipairs(adapters or {}) do cmd = cmd .. string.format(" '%s' 1", a) end
  local ok, how, code = os.execute(cmd .. " >'" .. out .. "/ll.log' 2>&1")
  if not ok then return nil, string.format("ll_logits exit %s %s (%s)", how, code, out .. "/ll.log") end
  return read_f32(f)
end

local function compare(what, ours, theirs, err)
  if not theirs then
    print(string.format("FAIL  %-52s %s", what, err)); failed = failed + 1; return
  end
  if #theirs ~= #ours then
    print(string.format("FAIL  %-52s %d logits from llama.cpp, %d from peftlua", what, #theirs, #ours))
    failed = failed + 1; return
  end
  local d, big = 0, 0
  for i = 1, #ours do
    d = math.max(d, math.abs(ours[i] - theirs[i])); big = math.max(big, math.abs(ours[i]))
  end
  local rel = d / big
  local ok = rel <= TOL and rel == rel
  if not ok then failed = failed + 1 end
  print(string.format("%s  %-52s max |diff| %.3g, max |logit| %.3g, relative %.3g (limit %g)",
    ok and "ok  " or "FAIL", what, d, big, rel, TOL))
end

local m <close> = peft.model.load(BASE)
local base = m:forward(IDS):flat()
compare("base model", base, llama(BASE))

-- a LoRA adapter trained a few steps on every projection
local tr <close> = peft.train.trainer(m, { batch_size = 1, seq_len = 8, targets = "all",
  learning_rate = 2e-2, lora_rank = 4, lora_alpha = 8, schedule = "constant" })
local x = { { 1, 30, 40, 50, 30, 40, 50, 30 } }
local y = { { 30, 40, 50, 30, 40, 50, 30, 40 } }
for _ = 1, 10 do tr:micro(x, y) end
local tuned = m:forward(IDS):flat()
local moved = 0
for i = 1, #base do moved = math.max(moved, math.abs(tuned[i] - base[i])) end
print(string.format("the trained adapter moves peftlua's logits by up to %.3g", moved))
if moved < 1e-2 then print("FAIL  the adapter hardly changes the model: the check would prove nothing"); failed = failed + 1 end
local a32, mf = peft.train.export_gguf_adapter(tr, out .. "/lora-f32.gguf")
local a16 = peft.train.export_gguf_adapter(tr, out .. "/lora-f16.gguf", { dtype = "f16", modelfile = false })
compare("base + GGUF LoRA adapter (f32)", tuned, llama(BASE, { a32 }))
compare("base + GGUF LoRA adapter (f16)", tuned, llama(BASE, { a16 }))

-- the rsLoRA adapter PEFT saved: alpha / sqrt(r) written as llama.cpp's alpha / r
local rs = peft.train.export_gguf_adapter(m, RS, out .. "/rslora.gguf", { modelfile = false })
m:load_adapter(RS, { name = "rs" })
compare("base + PEFT rsLoRA as GGUF adapter (f32)", m:forward(IDS, { adapter = "rs" }):flat(), llama(BASE, { rs }))
m:unload_adapter()

-- merged into the weights and written as a GGUF
tr:merge()
peft.train.export(m, out .. "/merged.gguf", { format = "gguf", dtype = "f32" })
compare("merged GGUF (f32)", tuned, llama(out .. "/merged.gguf"))
print(string.format("Modelfile: %s", mf))
print(failed == 0 and "llamacpp-check: ok" or ("llamacpp-check: " .. failed .. " failed"))
os.exit(failed == 0 and 0 or 1)
