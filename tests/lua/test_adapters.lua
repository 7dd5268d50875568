-- tests/lua/test_adapters.lua — m:load_adapter / m:unload_adapter / {adapter = ...} per call.
-- Owner: interop. The fixtures under tests/data/lora/st260k_* were saved by Hugging Face PEFT
-- itself over stories260K and the golden logits are PEFT's (tests/ref/interop/peft_adapters.py).
local T = require "testlib"
local GGUF = T.shared .. "/models/stories260K/stories260K.gguf"
local LORA = T.root .. "/tests/data/lora/"
local GOLD = T.root .. "/tests/ref/interop/golden/"
local IDS = { 1, 403, 395, 260, 418, 294, 307, 262, 377, 30 }

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
local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end
local function spit(p, s) local f = assert(io.open(p, "wb")); f:write(s); f:close() end
-- a copy of a fixture directory with its config and/or safetensors edited
local function variant(src, name, edit_cfg, edit_st)
  local d = T.tmp .. "/adapters_" .. name
  os.execute("rm -rf '" .. d .. "' && mkdir -p '" .. d .. "'")
  local cfg, st = slurp(LORA .. src .. "/adapter_config.json"), slurp(LORA .. src .. "/adapter_model.safetensors")
  spit(d .. "/adapter_config.json", edit_cfg and edit_cfg(cfg) or cfg)
  spit(d .. "/adapter_model.safetensors", edit_st and edit_st(st) or st)
  return d
end

return {
  peft_saved_adapters_give_peft_logits = function()
    local m <close> = peft.model.load(GGUF)
    local base = m:forward(IDS):flat()
    T.ok(maxdiff(base, read_f32(GOLD .. "base_logits.f32")) <= 1e-4, "base logits vs transformers")
    T.eq(m:load_adapter(LORA .. "st260k_lora"), "st260k_lora")
    local d = maxdiff(m:forward(IDS):flat(), read_f32(GOLD .. "st260k_lora_logits.f32"))
    T.ok(d <= 1e-4, "LoRA (all projections) vs PEFT: max |diff| " .. d)
    -- rsLoRA on some layers, loaded by its safetensors file and named
    T.eq(m:load_adapter(LORA .. "st260k_rslora/adapter_model.safetensors", { name = "rs" }), "rs")
    d = maxdiff(m:forward(IDS):flat(), read_f32(GOLD .. "st260k_rslora_logits.f32"))
    T.ok(d <= 1e-4, "rsLoRA (default = last loaded) vs PEFT: max |diff| " .. d)
    d = maxdiff(m:forward(IDS, { adapter = "st260k_lora" }):flat(), read_f32(GOLD .. "st260k_lora_logits.f32"))
    T.ok(d <= 1e-4, "LoRA chosen by name: " .. d)
    T.eq(maxdiff(m:forward(IDS, { adapter = false }):flat(), base), 0, "adapter = false is the base model")
    local list = m:adapters()
    T.eq(#list, 2); T.eq(list[1].name, "st260k_lora"); T.eq(list[2].name, "rs")
    T.eq(list[1].r, 4); T.eq(#list[1].targets, 7); T.eq(list[1].layers, 5); T.eq(list[2].default, true)
    T.near(list[1].scale, 2.0, 1e-6, "alpha / r"); T.near(list[2].scale, 4 / math.sqrt(8), 1e-6, "rsLoRA alpha / sqrt(r)")
    T.eq(list[2].rslora, true); T.eq(#list[2].layers, 2); T.eq(list[2].layers[2], 3)
    m:unload_adapter("rs")
    d = maxdiff(m:forward(IDS):flat(), read_f32(GOLD .. "st260k_lora_logits.f32"))
    T.ok(d <= 1e-4, "after unloading rs the default is st260k_lora again")
    -- DoRA (use_dora, PEFT-saved) gives PEFT's logits
    T.eq(m:load_adapter(LORA .. "st260k_dora", { name = "dora" }), "dora")
    d = maxdiff(m:forward(IDS, { adapter = "dora" }):flat(), read_f32(GOLD .. "st260k_dora_logits.f32"))
    T.ok(d <= 1e-4, "DoRA vs PEFT: max |diff| " .. d)
    m:unload_adapter()
    T.eq(#m:adapters(), 0)
    T.eq(maxdiff(m:forward(IDS):flat(), base), 0, "all unloaded: the base model")
  end,

  scale_and_every_call_kind = function()
    local m <close> = peft.model.load(GGUF)
    local base = m:forward(IDS):flat()
    local base_loss = m:loss(IDS)
    local base_text = m:generate("Once upon a time", { greedy = true, max_tokens = 12 })
    m:load_adapter(LORA .. "st260k_lora", { name = "zero", scale = 0 })
    T.eq(maxdiff(m:forward(IDS):flat(), base), 0, "scale 0 adds nothing")
    m:load_adapter(LORA .. "st260k_lora", { name = "half", scale = 0.5 })
    T.near(m:adapters()[2].scale, 1.0, 1e-6, "user scale multiplies alpha / r")
    local half = m:forward(IDS):flat()
    T.ok(maxdiff(half, base) > 0.1, "half scale moves the logits")
    T.ok(maxdiff(half, read_f32(GOLD .. "st260k_lora_logits.f32")) > 0.1, "and differs from full scale")
    -- loss, generate, chat and perplexity take the same choice
    local l_half = m:loss(IDS)
    T.ok(math.abs(l_half - base_loss) > 1e-3, "loss with the adapter differs")
    T.eq(m:loss(IDS, { adapter = false }), base_loss, "loss with adapter = false")
    T.eq(m:loss(IDS, { adapter = "zero" }), base_loss, "loss with the zero-scale adapter")
    T.eq(m:generate("Once upon a time", { greedy = true, max_tokens = 12, adapter = false }), base_text)
    local t_half = m:generate("Once upon a time", { greedy = true, max_tokens = 12 })
    T.eq(m:generate("Once upon a time", { greedy = true, max_tokens = 12, adapter = "half" }), t_half)
    T.ok(t_half ~= base_text, "generation with the adapter differs: " .. t_half)
    local txt = T.tmp .. "/adapters_ppl.txt"
    spit(txt, "Once upon a time, there was a little girl named Lily. She liked to play outside.\n")
    local p_base = m:perplexity(txt, { adapter = false })
    local p_half = m:perplexity(txt, { adapter = "half" })
    T.ok(p_base ~= p_half, "perplexity follows the adapter")
    T.eq(m:perplexity(txt, { adapter = "zero" }), p_base)
    T.raises(function() m:forward(IDS, { adapter = "nope" }) end, "no adapter named 'nope' is loaded %(loaded: zero, half%)")
    T.raises(function() m:forward(IDS, { adapter = 3 }) end, "must be an adapter name or false")
    T.raises(function() m:load_adapter(LORA .. "st260k_lora", { name = "half" }) end, "already loaded")
    T.raises(function() m:load_adapter(LORA .. "st260k_lora", { rank = 3 }) end, "unknown option 'rank'")
    T.raises(function() m:unload_adapter("nope") end, "no adapter named 'nope'")
  end,

  bad_adapters_name_the_first_mismatch = function()
    local m <close> = peft.model.load(GGUF)
    -- DoRA loads since issue 13; a DoRA file whose config says plain LoRA names the tensor
    local d0 = variant("st260k_dora", "notdora", function(c) return (c:gsub('"use_dora": true', '"use_dora": false')) end)
    T.raises(function() m:load_adapter(d0) end, "lora_magnitude_vector does not belong to a LoRA adapter")
    -- another base model's adapter (hidden 24, PEFT-saved): the first tensor, its shape and the needed one
    T.raises(function() m:load_adapter(LORA .. "peft_fixture") end,
      "tensor base_model%.model%.model%.layers%.0%.self_attn%.q_proj%.lora_A%.weight has shape %[2, 24%], this model needs %[2, 64%]")
    local d = variant("st260k_lora", "rank", function(c) return (c:gsub('"r": 4', '"r": 3')) end)
    T.raises(function() m:load_adapter(d) end, "lora_A%.weight has rank 4 but adapter_config%.json says r = 3")
    d = variant("st260k_rslora", "layer", nil, function(s)
      return (s:gsub("layers%.3%.self_attn%.q_proj%.lora_A", "layers.7.self_attn.q_proj.lora_A")) end)
    T.raises(function() m:load_adapter(d) end, "layers%.7%.self_attn%.q_proj%.lora_A%.weight: the base model has no module model%.layers%.7")
    d = variant("st260k_rslora", "missing", function(c) return (c:gsub('"o_proj"', '"o_proj", "down_proj"')) end)
    T.raises(function() m:load_adapter(d) end, "tensor base_model%.model%.model%.layers%.1%.mlp%.down_proj%.lora_A%.weight is missing")
    d = variant("st260k_lora", "pattern", function(c) return (c:gsub('"rank_pattern": {}', '"rank_pattern": {"q_proj": 8}')) end)
    T.raises(function() m:load_adapter(d) end, "rank_pattern is not empty")
    T.raises(function() m:load_adapter(T.tmp .. "/no/such/adapter") end, "no such adapter file or directory")
    T.raises(function() m:load_adapter(GGUF) end, "not a GGUF LoRA adapter")
    T.eq(#m:adapters(), 0, "nothing half-loaded")
  end,

  -- GGUF LoRA adapters (llama.cpp's layout): PyPI gguf reads metadata, names and shapes;
  -- peftlua reads them back to the same logits; the Ollama Modelfile beside them.
  gguf_adapter_export = function()
    local m <close> = peft.model.load(GGUF)
    local tr <close> = peft.train.trainer(m, { batch_size = 1, seq_len = 8, targets = "all",
      learning_rate = 2e-2, lora_rank = 4, lora_alpha = 8, schedule = "constant" })
    for _ = 1, 5 do tr:micro({ { 1, 30, 40, 50, 30, 40, 50, 30 } }, { { 30, 40, 50, 30, 40, 50, 30, 40 } }) end
    local tuned = m:forward(IDS):flat()
    local dir = T.tmp .. "/adapters_gguf"
    os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'")
    local p32, mf = peft.train.export_gguf_adapter(tr, dir .. "/tuned.gguf")
    T.eq(p32, dir .. "/tuned.gguf"); T.eq(mf, dir .. "/Modelfile")
    local modelfile = slurp(mf)
    local real = io.popen("realpath '" .. GGUF .. "'"):read("l")
    T.ok(modelfile:find("\nFROM " .. real .. "\n", 1, true), "Modelfile FROM the base: " .. modelfile)
    T.ok(modelfile:find("\nADAPTER ./tuned.gguf\n", 1, true), "Modelfile ADAPTER beside it")
    local p16, mf16 = peft.train.export_gguf_adapter(tr, dir .. "/tuned16.gguf", { dtype = "f16", modelfile = false })
    T.eq(mf16, nil)
    -- what PyPI gguf must see
    local function expect(path, alpha, dtype, layers, projs, r)
      local shapes = { attn_q = { 64, 64 }, attn_k = { 32, 64 }, attn_v = { 32, 64 }, attn_output = { 64, 64 },
                       ffn_gate = { 172, 64 }, ffn_up = { 172, 64 }, ffn_down = { 64, 172 } }
      local items = {}
      for _, l in ipairs(layers) do
        for _, p in ipairs(projs) do
          local out, inn = shapes[p][1], shapes[p][2]
          items[#items + 1] = string.format('"blk.%d.%s.weight.lora_a": [%d, %d]', l, p, r, inn)
          items[#items + 1] = string.format('"blk.%d.%s.weight.lora_b": [%d, %d]', l, p, out, r)
        end
      end
      local j = path .. ".expect.json"
      spit(j, string.format('{"architecture": "llama", "alpha": %.9g, "dtype": "%s", "tensors": {%s}}',
        alpha, dtype, table.concat(items, ", ")))
      local rc, o = T.sh("python3 '" .. T.root .. "/tests/ref/interop/gguf_adapter_check.py' '" .. path .. "' '" .. j .. "'")
      T.eq(rc, 0, o)
      T.ok(o:find("names and shapes as expected", 1, true), o)
    end
    local all = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" }
    expect(p32, 8, "F32", { 0, 1, 2, 3, 4 }, all, 4)
    expect(p16, 8, "F16", { 0, 1, 2, 3, 4 }, all, 4)
    -- read back: f32 exactly the trainer's adapter, f16 within its rounding
    T.eq(m:load_adapter(p32), "tuned")
    local d = maxdiff(m:forward(IDS):flat(), tuned)
    T.ok(d <= 1e-5, "GGUF f32 adapter read back: " .. d)
    m:load_adapter(p16)
    d = maxdiff(m:forward(IDS):flat(), tuned)
    T.ok(d <= 2e-2, "GGUF f16 adapter read back: " .. d)
    -- rsLoRA (PEFT-saved, layers 1 and 3): llama.cpp scales by alpha / r, so alpha·sqrt(r) is written
    local rs = peft.train.export_gguf_adapter(m, LORA .. "st260k_rslora", dir .. "/rs.gguf")
    expect(rs, 4 * math.sqrt(8), "F32", { 1, 3 }, { "attn_q", "attn_k", "attn_v", "attn_output" }, 8)
    m:load_adapter(rs)
    d = maxdiff(m:forward(IDS, { adapter = "rs" }):flat(), read_f32(GOLD .. "st260k_rslora_logits.f32"))
    T.ok(d <= 1e-4, "PEFT rsLoRA -> GGUF -> peftlua vs PEFT: " .. d)
    -- the same adapter exported from the HF (rotate-half) layout of the model: q/k lora_b rows are
    -- put in llama.cpp's order, so the file is the same as from the GGUF model
    local hf = T.tmp .. "/adapters_hf"
    do local plain <close> = peft.model.load(GGUF); peft.train.export(plain, hf, { format = "safetensors" }) end
    local mh <close> = peft.model.load(hf, { no_tokenizer = true })
    T.eq(mh:config().rope_layout, "half")
    local rs2, mf2 = peft.train.export_gguf_adapter(mh, LORA .. "st260k_rslora", dir .. "/rs_from_hf.gguf")
    T.eq(mf2, nil, "no Modelfile without a base GGUF")
    m:load_adapter(rs2, { name = "rs2" })
    T.eq(maxdiff(m:forward(IDS, { adapter = "rs2" }):flat(), m:forward(IDS, { adapter = "rs" }):flat()), 0,
      "adapter GGUF from the HF layout == from the GGUF layout")
    T.raises(function() peft.train.export_gguf_adapter(mh, LORA .. "st260k_rslora", dir .. "/x.gguf", { modelfile = true }) end,
      "a Modelfile needs the base GGUF")
    T.raises(function() peft.train.export_gguf_adapter(tr, dir .. "/x.gguf", { dtype = "q8_0" }) end,
      "dtype must be \"f32\" or \"f16\"")
    T.raises(function() peft.train.export_gguf_adapter(m, LORA .. "st260k_dora", dir .. "/x.gguf") end, "DoRA")
  end,
}
