-- tests/interop/llamacpp_check.lua — llama.cpp itself loads what peftlua exports, and agrees.
-- Owner: interop. Run by `make llamacpp-check` (after `make llamacpp` built llama.cpp from the
-- llama-cpp-python sdist and tests/interop/ll_logits.c against its libllama):
--   LL_LOGITS=build/llamacpp/ll_logits peftlua tests/interop/llamacpp_check.lua [OUTDIR]
-- For each model, a LoRA adapter trained a few steps on every projection is exported as a GGUF
-- LoRA adapter (f32 and f16) and, merged, as a GGUF; llama.cpp's logits for every position of a
-- prompt — base + adapter (llama_adapter_lora_init, scale 1) and the merged model alone — must
-- match peftlua's within 1e-3 relative (max |llama.cpp − peftlua| / max |peftlua|).
--   stories260K (f32 GGUF), plus the rsLoRA adapter Hugging Face PEFT saved for it
--     (tests/data/lora/st260k_rslora: alpha / sqrt(r), layers 1 and 3);
--   SmolLM2-135M-Instruct (models/, Q4_1; 30 layers, GQA 9/3, tied output) re-exported as an
--     f32 GGUF first: on Q4_1 weights llama.cpp rounds the activations to 8 bits for its
--     quantised dot products, which alone is more than 1e-3.
-- Exit status 0 only when all hold; llama.cpp's log is not parsed (only ll_logits' exit status
-- and the numbers it wrote).
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/interop/") or "."
local out = arg[1] or (here .. "/build/tmp/llamacpp_check")
local LL = os.getenv("LL_LOGITS") or (here .. "/build/llamacpp/ll_logits")
local STORIES = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/models/stories260K/stories260K.gguf"
local SMOL = os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
local RS = here .. "/tests/data/lora/st260k_rslora"
os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")
local TOL = 1e-3
local failed, n_files = 0, 0

local function read_f32(path)
  local f = io.open(path, "rb"); if not f then return nil end
  local s = f:read("a"); f:close()
  local t = {}
  for i = 1, #s // 4 do t[i] = string.unpack("<f", s, 4 * i - 3) end
  return t
end

-- llama.cpp's logits: nil and the reason when ll_logits failed
local function llama(ids, model, adapters)
  n_files = n_files + 1
  local f = string.format("%s/ll_%d.f32", out, n_files)
  local cmd = string.format("'%s' '%s' %s '%s'", LL, model, table.concat(ids, ","), f)
  for _, a in ipairs(adapters or {}) do cmd = cmd .. string.format(" '%s' 1", a) end
  local log = string.format("%s/ll_%d.log", out, n_files)
  local ok, how, code = os.execute(cmd .. " >'" .. log .. "' 2>&1")
  if not ok then return nil, string.format("ll_logits exit %s %s (%s)", how, code, log) end
  return read_f32(f)
end

local function compare(what, ours, theirs, err, tol)
  tol = tol or TOL
  if not theirs then
    print(string.format("FAIL  %-58s %s", what, err)); failed = failed + 1; return
  end
  if #theirs ~= #ours then
    print(string.format("FAIL  %-58s %d logits from llama.cpp, %d from peftlua", what, #theirs, #ours))
    failed = failed + 1; return
  end
  local d, big = 0, 0
  for i = 1, #ours do
    d = math.max(d, math.abs(ours[i] - theirs[i])); big = math.max(big, math.abs(ours[i]))
  end
  local rel = d / big
  local ok = rel <= tol and rel == rel
  if not ok then failed = failed + 1 end
  print(string.format("%s  %-58s max |diff| %.3g, max |logit| %.3g, relative %.3g (limit %g)",
    ok and "ok  " or "FAIL", what, d, big, rel, tol))
end

local function check(tag, base_path, ids, extra)
  local m <close> = peft.model.load(base_path)
  local base = m:forward(ids):flat()
  compare(tag .. ": base model", base, llama(ids, base_path))
  local tr <close> = peft.train.trainer(m, { batch_size = 1, seq_len = 8, targets = "all",
    learning_rate = 2e-2, lora_rank = 4, lora_alpha = 8, schedule = "constant" })
  local x = { { ids[1], ids[2], ids[3], ids[4], ids[2], ids[3], ids[4], ids[2] } }
  local y = { { ids[2], ids[3], ids[4], ids[2], ids[3], ids[4], ids[2], ids[3] } }
  for _ = 1, 10 do tr:micro(x, y) end
  local tuned = m:forward(ids):flat()
  local moved = 0
  for i = 1, #base do moved = math.max(moved, math.abs(tuned[i] - base[i])) end
  print(string.format("%s: the trained adapter moves peftlua's logits by up to %.3g", tag, moved))
  if moved < 1e-2 then print("FAIL  the adapter hardly changes the model: the check would prove nothing"); failed = failed + 1 end
  local dir = out .. "/" .. tag
  os.execute("mkdir -p '" .. dir .. "'")
  local a32, mf = peft.train.export_gguf_adapter(tr, dir .. "/lora-f32.gguf")
  local a16 = peft.train.export_gguf_adapter(tr, dir .. "/lora-f16.gguf", { dtype = "f16", modelfile = false })
  compare(tag .. ": base + GGUF LoRA adapter (f32)", tuned, llama(ids, base_path, { a32 }))
  -- f16 rounds A and B (2^-11 relative), so peftlua runs the same rounded adapter; llama.cpp
  -- also rounds the activations to f16 for its f16 matrix products (ggml's f16 dot product),
  -- which peftlua does not: 5e-3 here, 1e-3 for everything in f32
  m:load_adapter(a16, { name = "f16" })
  local tuned16 = m:forward(ids, { adapter = "f16" }):flat()
  m:unload_adapter()
  compare(tag .. ": base + GGUF LoRA adapter (f16)", tuned16, llama(ids, base_path, { a16 }), nil, 5e-3)
  if extra then extra(m, base_path) end
  tr:merge()
  local merged = out .. "/" .. tag .. "-merged.gguf"
  peft.train.export(m, merged, { format = "gguf", dtype = "f32" })
  compare(tag .. ": merged GGUF (f32)", tuned, llama(ids, merged))
  os.remove(merged)
  print(string.format("%s: Modelfile %s", tag, mf))
end

check("stories260K", STORIES, { 1, 403, 395, 260, 418, 294, 307, 262, 377, 30, 267, 400 }, function(m, base_path)
  -- the rsLoRA adapter PEFT saved: alpha / sqrt(r) written as llama.cpp's alpha / r
  local ids = { 1, 403, 395, 260, 418, 294, 307, 262, 377, 30, 267, 400 }
  local rs = peft.train.export_gguf_adapter(m, RS, out .. "/rslora.gguf", { modelfile = false })
  m:load_adapter(RS, { name = "rs" })
  compare("stories260K: base + PEFT rsLoRA as GGUF adapter (f32)", m:forward(ids, { adapter = "rs" }):flat(),
    llama(ids, base_path, { rs }))
  m:unload_adapter()
end)

local f = io.open(SMOL, "rb")
if f then
  f:close()
  local smol32 = out .. "/smollm2-f32.gguf"
  do
    local q <close> = peft.model.load(SMOL)
    peft.train.export(q, smol32, { format = "gguf", dtype = "f32" })
  end
  local m <close> = peft.model.load(smol32)
  check("SmolLM2", smol32, m:encode("Once upon a time, a robot learned to paint"))
  os.remove(smol32)
else
  print("FAIL  " .. SMOL .. " is missing (make model)"); failed = failed + 1
end
print(failed == 0 and "llamacpp-check: ok" or ("llamacpp-check: " .. failed .. " failed"))
os.exit(failed == 0 and 0 or 1)
