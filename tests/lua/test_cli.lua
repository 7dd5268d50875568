-- tests/lua/test_cli.lua — peftlua as a tool (issue 15): the commands and their --help, the
-- host's --help/--version, errors for people (exact messages, no traceback unless
-- PEFT_DEBUG=1), the option table and docs/api.md, the REPL through a pipe (help, printer,
-- completion, exit, Ctrl-C during generation), safe outputs, chat templates in training
-- against transformers' goldens, train -> chat --adapter in a new process, and a clone of the
-- repository with no ../shared beside it.
local T = require "testlib"

local S = T.shared .. "/models/stories260K/stories260K.gguf"
local WIKI = T.shared .. "/data/wikisql/"
local TMP = T.tmp .. "/cli"
os.execute("rm -rf '" .. TMP .. "' && mkdir -p '" .. TMP .. "'")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- run the host from the repository root; returns rc, stdout+stderr
local function host(args, env)
  return T.sh(string.format("cd %s && %s%s %s", q(T.root), env and (env .. " ") or "", q(T.host), args))
end
-- stdout only (stderr to /dev/null)
local function host_out(args, env)
  local f = io.popen(string.format("cd %s && %s%s %s 2>/dev/null", q(T.root), env and (env .. " ") or "", q(T.host), args))
  local out = f:read("a")
  f:close()
  return out
end
local function write(path, text) local f = assert(io.open(path, "w")); f:write(text); f:close() end
local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function no_traceback(out) T.ok(not out:find("stack traceback", 1, true), "no traceback:\n" .. out) end

-- a config file for stories260K; extra: lines added inside the table
local function config(name, extra, out)
  local p = TMP .. "/" .. name .. ".lua"
  write(p, string.format([[
return {
  model = %q,
  dataset = %q,
  output = %q,
  max_iters = 2,
  quiet = true,
%s
}
]], S, WIKI .. "train.jsonl", out or (TMP .. "/out_" .. name), extra or ""))
  return p
end

return {
  -- ------------------------------------------------------------------ help and version
  host_help_on_stdout = function()
    local out = host_out("--help")
    for _, want in ipairs { "usage: peftlua <command>", "  train ", "  chat ", "  generate ", "  eval ",
                            "  export ", "  data ", "PEFT_MEMORY_BUDGET", "PEFT_THREADS", "PEFT_MODEL_PATH",
                            "PEFT_DEBUG", "docs/api.md" } do
      T.ok(out:find(want, 1, true), "--help lacks " .. want .. ":\n" .. out)
    end
    T.eq(host_out("-h"), out)
  end,

  host_version = function()
    local out = host_out("--version")
    T.ok(out:match("^peftlua %d+%.%d+%.%d+ %(Lua 5%.4%)\n"), out)
    T.ok(out:match("\ncommit   [%x]+"), "commit line: " .. out)
    T.ok(out:find("\nbuild    cc", 1, true) or out:find("\nbuild    ", 1, true), out)
    T.ok(out:match("\nopenblas %S+ core"), out)
    T.eq(host_out("version"), out)
  end,

  every_command_has_help = function()
    for _, c in ipairs { "train", "chat", "generate", "eval", "export", "version" } do
      local rc, out = host(c .. " --help")
      T.eq(rc, 0, c .. " --help: " .. out)
      T.ok(out:find("^usage: peftlua " .. c), c .. " --help: " .. out)
    end
    for _, c in ipairs { "data check", "data stats" } do
      local rc, out = host(c .. " --help")
      T.eq(rc, 0, out)
      T.ok(out:find("^usage: peftlua " .. c), out)
    end
    local rc, out = host("data --help")
    T.eq(rc, 0, out)
    T.ok(out:find("check", 1, true) and out:find("stats", 1, true), out)
    -- train --help lists every option of the table, with its default
    local _, th = host("train --help")
    for _, o in ipairs(peft.train.options()) do
      T.ok(th:find("\n    " .. o.name .. " ", 1, true), "train --help lacks " .. o.name)
    end
    T.ok(th:find("lora_rank        an integer >= 1", 1, true), th)
  end,

  -- ------------------------------------------------------------------ happy paths
  command_generate = function()
    local rc, out = host("generate --model " .. q(S) .. " --greedy --max-tokens 16 'Once upon a time'")
    T.eq(rc, 0, out)
    T.ok(out:find("^Once upon a time, there was a little girl named Lily"), out)
    -- a model name found on the models search path (PEFT_MODEL_PATH)
    local rc2, out2 = host("generate --model stories260K.gguf --greedy --max-tokens 16 'Once upon a time'",
      "PEFT_MODEL_PATH=" .. q(T.shared .. "/models/stories260K"))
    T.eq(rc2, 0, out2)
    T.eq(out2, out)
  end,

  command_eval = function()
    local rc, out = host("eval --model " .. q(S) .. " --limit 5 --json " .. q(WIKI .. "valid.jsonl"))
    T.eq(rc, 0, out)
    local loss = tonumber(out:match('"loss":([%d.]+)'))
    T.ok(loss, out)
    -- the same documents scored by m:loss (every token of a text record is scored)
    local m <close> = peft.model.load(S)
    local ds = peft.data.load(WIKI .. "valid.jsonl", { tokenizer = m, max_seq_len = 512 })
    local sum, cnt = 0, 0
    for i = 1, math.min(5, ds:count()) do
      local ex = ds:example(i)
      local l, c = m:loss({ ex.ids })
      sum, cnt = sum + l * c, cnt + c
    end
    T.near(loss, sum / cnt, 1e-4, "eval loss = m:loss over the same examples")
    T.eq(math.tointeger(tonumber(out:match('"tokens":(%d+)'))), cnt)
  end,

  command_data_check_and_stats = function()
    local rc, out = host("data check " .. q(WIKI .. "valid.jsonl"))
    T.eq(rc, 0, out)
    T.ok(out:find("text, 100 records, 100 examples", 1, true), out)
    T.ok(out:find("ok: no issues", 1, true), out)
    rc, out = host("data check " .. q(T.root .. "/tests/data/bad/wrong_types.jsonl"))
    T.eq(rc, 1, out)
    T.ok(out:find("issue", 1, true), out)
    rc, out = host("data stats " .. q(WIKI .. "valid.jsonl") .. " --model " .. q(S))
    T.eq(rc, 0, out)
    T.ok(out:find("tokens 20756 (20656 trained on)", 1, true), out)
    rc, out = host("data chek x")
    T.eq(rc, 1)
    T.eq(out, "peftlua data: unknown subcommand 'chek' (did you mean 'check'?) (peftlua data --help)\n")
  end,

  command_export = function()
    local dst = TMP .. "/export.gguf"
    local rc, out = host("export --model " .. q(S) .. " --out " .. q(dst))
    T.eq(rc, 0, out)
    T.ok(out:find("wrote " .. dst, 1, true), out)
    local a <close> = peft.model.load(S)
    local b <close> = peft.model.load(dst)
    T.near(b:loss("Once upon a time there was a girl"), a:loss("Once upon a time there was a girl"), 1e-5)
    rc, out = host("export --model " .. q(S) .. " --out " .. q(dst))
    T.eq(rc, 1)
    T.eq(out, "peftlua export: " .. dst .. " exists; --force replaces it\n")
    -- an adapter as a GGUF LoRA file: loading it back gives the same logits as the PEFT folder
    local adir = TMP .. "/export_adapter_run"
    local r = peft.train.run { model = S, dataset = WIKI .. "train.jsonl", output = adir, max_iters = 3,
                               quiet = true, overwrite = true, learning_rate = 1e-2 }
    r.trainer:close()
    local lg = TMP .. "/adapter.gguf"
    os.remove(lg)
    rc, out = host("export --model " .. q(S) .. " --adapter " .. q(adir .. "/adapter") .. " --lora-gguf --out " .. q(lg))
    T.eq(rc, 0, out)
    T.ok(out:find("wrote " .. lg, 1, true), out)
    local m1 <close> = peft.model.load(S)
    m1:load_adapter(adir .. "/adapter", { name = "dir" })
    m1:load_adapter(lg, { name = "gguf" })
    local ids = m1:encode("Once upon a time", { bos = true })
    local a, b = m1:loss({ ids }, { adapter = "dir" }), m1:loss({ ids }, { adapter = "gguf" })
    local base = m1:loss({ ids }, { adapter = false })
    T.near(a, b, 1e-5, "GGUF adapter = PEFT adapter")
    T.ok(math.abs(a - base) > 1e-4, "the adapter changes the loss")
  end,

  command_train_config_and_flags = function()
    local out_dir = TMP .. "/out_train"
    local p = config("train", "  lora_rank = 4,", out_dir)
    local rc, out = host("train " .. q(p) .. " --max_iters 3 --lora-alpha=8")
    T.eq(rc, 0, out)
    T.ok(T.exists(out_dir .. "/adapter/adapter_model.safetensors"), out)
    local cfg = read(out_dir .. "/adapter/adapter_config.json")
    T.ok(cfg:find('"r":%s*4'), cfg)
    T.ok(cfg:find('"lora_alpha":%s*8'), "flag overrides the file: " .. cfg)
    local n = 0
    for line in io.lines(out_dir .. "/metrics.jsonl") do if line:find('"loss"') then n = n + 1 end end
    T.eq(n, 3, "--max_iters 3 over the file's 2")
    -- base_model_name_or_path: the model's absolute path (stories260K records no HF id)
    local abs = S:sub(1, 1) == "/" and S or (T.root .. "/" .. S)
    T.ok(cfg:find('"base_model_name_or_path":%s*"' .. abs:gsub("%p", "%%%0") .. '"'), cfg)
  end,

  preset_estimates = function()
    local rc, out = host("train recipes/presets/mistral7b-toolcall-lora.lua --estimate --compute f32", "PEFT_MEMORY_BUDGET=18G")
    T.eq(rc, 0, out)
    T.ok(out:find("memory estimate for this machine", 1, true), out)
    T.ok(out:find("budget 18.00 GiB from PEFT_MEMORY_BUDGET", 1, true), out)
    T.ok(out:find("does not fit: 29.41 GiB needed, 18.00 GiB available", 1, true), out)
    T.ok(out:find('method = "qlora", checkpointing = true%s+6.59 GiB  fits'), out)
    T.ok(out:find("checkpointing = true%s+16.94 GiB  fits"), out)
    -- the quickstart preset parses and names SmolLM2
    local f = assert(loadfile(T.root .. "/recipes/presets/quickstart.lua", "t", setmetatable({}, { __index = _G })))
    T.ok(f, "quickstart preset loads")
  end,

  preset_tiny_trains = function()
    local out_dir = TMP .. "/tiny"
    local rc, out = host("train recipes/presets/tiny.lua --output " .. q(out_dir) .. " --max_iters 4 --eval_every 2 --progress false")
    T.eq(rc, 0, out)
    T.ok(out:find("trained 4 steps (lora", 1, true), out)
    T.ok(T.exists(out_dir .. "/adapter/adapter_config.json"), out)
  end,

  -- ------------------------------------------------------------------ errors for people
  config_errors_name_key_value_and_line = function()
    local cases = {
      { "  lora_rank = 0,", "lora_rank = 0 is out of range (an integer >= 1)", 7 },
      { '  method = "prefix",', 'method = "prefix" is not one of "lora", "dora", "ia3", "qlora", "full"', 7 },
      { "  max_seq_len = 0,", "max_seq_len = 0 is out of range (an integer >= 2)", 7 },
      { "  learning_rte = 1e-3,", "unknown option 'learning_rte' (did you mean 'learning_rate'?) (peft.train.options() lists them)", 7 },
      { '  precision = "fp8",', 'precision = "fp8" is not one of "fp32", "bf16", "fp16"', 7 },
      { "  lora_dropout = 1.5,", "lora_dropout = 1.5 is out of range (a number in [0, 1))", 7 },
    }
    for i, c in ipairs(cases) do
      local p = config("err" .. i, c[1])
      local rc, out = host("train " .. q(p))
      T.eq(rc, 1, out)
      T.eq(out, string.format("peftlua train: %s:%d: %s\n", p, c[3], c[2]))
    end
    -- a flag: named as the flag
    local p = config("errflag")
    local rc, out = host("train " .. q(p) .. " --lora_rank 0")
    T.eq(rc, 1)
    T.eq(out, "peftlua train: --lora_rank: lora_rank = 0 is out of range (an integer >= 1)\n")
    rc, out = host("train " .. q(p) .. " --learnin_rate 3")
    T.eq(out, "peftlua train: unknown option --learnin_rate (did you mean --learning_rate?) (peftlua train --help lists them)\n")
  end,

  recipe_errors_point_at_the_recipe_line = function()
    local r = TMP .. "/recipe_err.lua"
    write(r, string.format("-- a recipe\nlocal x = 1\npeft.train.run { model = %q, dataset = %q, output = %q, lora_rank = 0 }\n",
      S, WIKI .. "train.jsonl", TMP .. "/recipe_out"))
    local rc, out = host(q(r))
    T.eq(rc, 1)
    T.eq(out, "peftlua: " .. r .. ":3: peft.train.run: lora_rank = 0 is out of range (an integer >= 1)\n")
    rc, out = host(q(r), "PEFT_DEBUG=1")
    T.eq(rc, 1)
    T.ok(out:find("stack traceback", 1, true), "PEFT_DEBUG=1 adds the traceback: " .. out)
  end,

  dataset_errors = function()
    local p = config("dirdata")
    local text = read(p):gsub('dataset = "[^"]*"', 'dataset = "' .. TMP .. '"')
    write(p, text)
    local rc, out = host("train " .. q(p))
    T.eq(rc, 1)
    T.eq(out, string.format('peftlua train: %s:3: dataset = "%s" is a directory, not a data file\n', p, TMP))
    text = read(p):gsub('dataset = "[^"]*"', 'dataset = "' .. TMP .. '/nope.jsonl"')
    write(p, text)
    rc, out = host("train " .. q(p))
    T.eq(out, string.format('peftlua train: %s:3: dataset = "%s/nope.jsonl" cannot be read (no such file or directory)\n', p, TMP))
    rc, out = host("data check " .. q(TMP))
    T.eq(rc, 1)
    T.eq(out, "peftlua data check: " .. TMP .. ": is a directory, not a data file\n")
  end,

  bad_environment_values = function()
    local rc, out = host("-e 'print(1)'", "PEFT_MEMORY_BUDGET=abc")
    T.eq(rc, 1)
    T.eq(out, "peftlua: PEFT_MEMORY_BUDGET='abc' is not a size (bytes, or a number with K, M, G or T: e.g. 512M, 8G)\n")
    rc, out = host("-e 'print(1)'", "PEFT_THREADS=abc")
    T.eq(rc, 1)
    T.eq(out, "peftlua: PEFT_THREADS='abc' is not a thread count (an integer from 1 to 4096)\n")
    rc, out = host("-e 'print(peft.hw.info().threads)'", "PEFT_THREADS=1")
    T.eq(rc, 0, out)
    T.eq(out, "1\n")
  end,

  memory_refusal_readable_and_names_options = function()
    local p = config("budget", "  memory_budget = 1024,")
    local rc, out = host("train " .. q(p))
    T.eq(rc, 1)
    no_traceback(out)
    T.ok(out:find("but the budget is 1.0 KiB", 1, true), out)
    T.ok(out:find('(method = "qlora", checkpointing = true) needs', 1, true), out)
    T.ok(out:find("(checkpointing = true) needs", 1, true), out)
    T.ok(not out:find("0.0 MiB", 1, true), out)
    T.eq(peft.memory.format(1024), "1.0 KiB")
    T.eq(peft.memory.format(12), "12 bytes")
  end,

  -- ------------------------------------------------------------------ safe outputs
  overwrite_refused_then_allowed_and_resume_totals = function()
    local out_dir = TMP .. "/safe"
    local p = config("safe", "  save_every = 1,", out_dir)
    local rc, out = host("train " .. q(p))
    T.eq(rc, 0, out)
    rc, out = host("train " .. q(p))
    T.eq(rc, 1)
    T.eq(out, string.format("peftlua train: peft.train.run: output '%s' is not empty (adapter, checkpoint, memory.json, metrics.jsonl, report.html, run.json); " ..
      "set resume = true to continue that run or overwrite = true to replace it\n", out_dir))
    -- resume to 4 steps: the totals count the whole run
    local before = peft.train.metrics_totals(out_dir .. "/metrics.jsonl")
    local r = peft.train.run { model = S, dataset = WIKI .. "train.jsonl", output = out_dir, max_iters = 4,
                               resume = true, quiet = true, save_every = 1 }
    T.eq(r.steps, 4)
    T.eq(r.resumed_from, 2)
    local after = peft.train.metrics_totals(out_dir .. "/metrics.jsonl")
    T.ok(after.elapsed >= before.elapsed and r.elapsed >= before.elapsed, "elapsed counts the first session")
    T.ok(after.tokens > before.tokens and r.tokens == after.tokens, "tokens count the whole run")
    local steps = {}
    for line in io.lines(out_dir .. "/metrics.jsonl") do steps[#steps + 1] = tonumber(line:match('"step":(%d+)')) end
    T.eq(table.concat(steps, ","), "1,2,3,4")
    r.trainer:close()
    -- overwrite = true replaces
    rc, out = host("train " .. q(p) .. " --overwrite")
    T.eq(rc, 0, out)
    local n = 0
    for _ in io.lines(out_dir .. "/metrics.jsonl") do n = n + 1 end
    T.eq(n, 2, "a fresh metrics.jsonl")
  end,

  base_model_name_or_path_from_gguf_source = function()
    -- stories260K.gguf with a general.source.huggingface.repository key added after the header
    -- (96 bytes: the tensor data keeps its 32-byte alignment)
    local src = read(S)
    local magic, ver, nt, nkv = string.unpack("<c4I4I8I8", src)
    T.eq(magic, "GGUF")
    local key, val = "general.source.huggingface.repository", "https://huggingface.co/test-org/tiny-lm"
    local kv = string.pack("<I8", #key) .. key .. string.pack("<I4I8", 8, #val) .. val
    T.eq(#kv, 96)
    local dst = TMP .. "/sourced.gguf"
    write(dst, string.pack("<c4I4I8I8", magic, ver, nt, nkv + 1) .. kv .. src:sub(25))
    local m <close> = peft.model.load(dst)
    T.eq(m:card().source, "test-org/tiny-lm")
    local out_dir = TMP .. "/sourced_run"
    local r = peft.train.run { model = m, dataset = WIKI .. "train.jsonl", output = out_dir, max_iters = 1,
                               quiet = true, overwrite = true }
    r.trainer:close()
    local cfg = read(out_dir .. "/adapter/adapter_config.json")
    T.ok(cfg:find('"base_model_name_or_path":%s*"test%-org/tiny%-lm"'), cfg)
  end,

  output_with_only_a_failed_run_record_is_reused = function()
    local out_dir = TMP .. "/only_record"
    os.execute("rm -rf " .. q(out_dir))
    T.raises(function()
      peft.train.run { model = S, dataset = WIKI .. "train.jsonl", output = out_dir, max_iters = 1, quiet = true, memory_budget = 1024 }
    end, "but the budget is 1.0 KiB")
    T.eq(table.concat(peft.train.output_entries(out_dir), ","), "run.json")
    local r = peft.train.run { model = S, dataset = WIKI .. "train.jsonl", output = out_dir, max_iters = 1, quiet = true }
    T.eq(r.steps, 1)
    r.trainer:close()
  end,

  second_trainer_after_close_or_gc = function()
    local m <close> = peft.model.load(S)
    local o1, o2, o3 = TMP .. "/tr1", TMP .. "/tr2", TMP .. "/tr3"
    local r1 = peft.train.run { model = m, dataset = WIKI .. "train.jsonl", output = o1, max_iters = 1, quiet = true }
    local err = T.raises(function()
      peft.train.run { model = m, dataset = WIKI .. "train.jsonl", output = o2, max_iters = 1, quiet = true }
    end)
    T.ok(tostring(err):find("result.trainer:close() releases it", 1, true), err)
    r1.trainer:close()
    local r2 = peft.train.run { model = m, dataset = WIKI .. "train.jsonl", output = o2, max_iters = 1, quiet = true, overwrite = true }
    r2 = nil
    collectgarbage(); collectgarbage()
    local r3 = peft.train.run { model = m, dataset = WIKI .. "train.jsonl", output = o3, max_iters = 1, quiet = true }
    T.eq(r3.steps, 1)
    r3.trainer:close()
  end,

  -- ------------------------------------------------------------------ options, help, docs
  option_table_drives_check_and_help = function()
    local names = {}
    for _, o in ipairs(peft.train.options()) do
      names[#names + 1] = o.name
      T.ok(o.type and o.help and o.group, o.name)
    end
    T.ok(#names >= 45, "options: " .. #names)
    local msg, key = peft.train.check_options { model = "m", dataset = S, output = "o", lora_rnak = 4 }
    T.eq(key, "lora_rnak")
    T.eq(msg, "unknown option 'lora_rnak' (did you mean 'lora_rank'?) (peft.train.options() lists them)")
    msg = peft.train.check_options { model = "m", dataset = S, output = "o", rank = 4 }
    T.ok(msg:find("did you mean 'lora_rank'", 1, true), msg)
    T.eq(peft.train.check_options { model = "m", dataset = S, output = "o", checkpointing = 2, targets = { "q_proj" } }, nil)
  end,

  api_reference_covers_every_function_and_is_current = function()
    local api = require "peft.api"
    local missing = {}
    for _, name in ipairs(peft.modules) do
      for k, v in pairs(peft[name]) do
        if type(v) == "function" and not k:match("^_") and not api.find("peft." .. name .. "." .. k) then
          missing[#missing + 1] = "peft." .. name .. "." .. k
        end
      end
    end
    for k, mt in pairs(debug.getregistry()) do
      if type(k) == "string" and k:match("^peft%.%u") and type(mt) == "table" then
        local idx = type(mt.__index) == "table" and mt.__index or mt
        for m, v in pairs(idx) do
          local cls = k:gsub("%.methods$", "")
          if type(v) == "function" and not m:match("^_") and not api.find(cls .. ":" .. m) then
            missing[#missing + 1] = cls .. ":" .. m
          end
        end
      end
    end
    table.sort(missing)
    T.eq(table.concat(missing, ", "), "", "functions without a reference entry")
    -- every entry names something that exists
    for _, mod in ipairs(api.modules) do
      for _, f in ipairs(mod[4]) do
        T.eq(type(peft[mod[1]][f[1]]), "function", "peft." .. mod[1] .. "." .. f[1])
      end
    end
    T.eq(read(T.root .. "/docs/api.md"), api.markdown(),
      "docs/api.md is stale: build/peftlua -e 'io.write(require(\"peft.api\").markdown())' > docs/api.md")
    local md = api.markdown()
    for _, o in ipairs(peft.train.options()) do T.ok(md:find("| `" .. o.name .. "` |", 1, true), o.name) end
    T.ok(md:find("## metrics.jsonl", 1, true) and md:find("## Output folder", 1, true))
  end,

  -- ------------------------------------------------------------------ the REPL
  repl_through_a_pipe = function()
    local script = TMP .. "/repl_in.txt"
    write(script, table.concat({
      "help()",
      "help(peft.train.run)",
      "peft.train",
      "m = peft.model.load(" .. string.format("%q", S) .. ")",
      "m",
      "{1, 'two', {a = 1, b = {c = {d = 1}}}}",
      "help(m.generate)",
      "table.concat(require('peft.repl').complete('peft.tr'), ' ')",
      "table.concat(require('peft.repl').complete('m:ge'), ' ')",
      "table.concat(require('peft.repl').complete('pri'), ' ')",
      "exit",
      "print('after exit')",
    }, "\n") .. "\n")
    local rc, out = host("< " .. q(script))
    T.eq(rc, 0, out)
    T.ok(out:find("help(x)", 1, true), "help(): " .. out)
    T.ok(out:find("peft.train.run(options) -> result", 1, true), out)
    T.ok(out:find("lora_rank        an integer >= 1", 1, true), out)
    T.ok(not out:find("table: 0x", 1, true), "tables printed readably: " .. out)
    T.ok(out:find("run = function peft.train.run", 1, true), out)
    T.ok(out:find("peft.Model (llama, " .. S, 1, true), out)
    T.ok(out:find('{ 1, "two", { a = 1, b = {... 1 entries} } }', 1, true), out)
    T.ok(out:find("m:generate(prompt [, {max_tokens", 1, true), out)
    T.ok(out:find("peft.train peft.train_options", 1, true) or out:find("peft.train", 1, true), out)
    T.ok(out:find("m:generate", 1, true), out)
    T.ok(out:find("print", 1, true), out)
    T.ok(not out:find("after exit", 1, true), "exit leaves: " .. out)
  end,

  repl_tab_completion_in_a_pty = function()
    local py = io.popen("command -v python3"):read("l")
    if not py then print("  (skipped: no python3 for the pty)") return end
    local rc, out = T.sh(string.format("python3 %s %s %s", q(T.root .. "/tests/lua/repl_pty.py"), q(T.host), q(S)))
    T.eq(rc, 0, out)
    T.ok(out:find("COMPLETED peft.train.run", 1, true), out)
    T.ok(out:find("COMPLETED m:generate", 1, true), out)
  end,

  repl_ctrl_c_during_generation = function()
    -- the callback interrupts its own process after 6 tokens (kill -INT to our pid): the text
    -- so far stays, the REPL says "interrupted" in one line and goes on
    local script = TMP .. "/repl_int.txt"
    write(script, table.concat({
      "m = peft.model.load(" .. string.format("%q", S) .. ")",
      "pid = io.open('/proc/self/stat'):read('l'):match('^(%d+)')",
      "n = 0",
      "m:generate('Once upon a time', {greedy = true, max_tokens = 200, on_token = function(p) io.write(p) io.flush() n = n + 1 if n == 6 then io.popen('kill -INT ' .. pid):close() end end})",
      "print('still here', n)",
    }, "\n") .. "\n")
    local rc, out = host("< " .. q(script))
    T.eq(rc, 0, out)
    no_traceback(out)
    T.ok(out:find(", there was a little", 1, true), "the partial text stays: " .. out)
    T.ok(out:find("\npeftlua: interrupted\n", 1, true), "one line, on its own: " .. out)
    local n = tonumber(out:match("still here\t(%d+)"))
    T.ok(n and n >= 6 and n < 200, "generation stopped early: " .. out)
  end,

  -- ------------------------------------------------------------------ chat templates in training
  completion_data_uses_the_chat_template_as_transformers = function()
    if not T.exists(T.model) then print("  (skipped: " .. T.model .. " missing; make model)") return end
    local ref = peft.memory.read_json(T.root .. "/tests/ref/chat_train/completion_ref.json")
    local m <close> = peft.model.load(T.model)
    local ds = peft.data.load(T.root .. "/tests/ref/chat_train/completion.jsonl", { tokenizer = m, max_seq_len = 512 })
    T.eq(ds:count(), #ref.records)
    local eot = m:encode("<|im_end|>", { bos = false, special = true })
    for i, r in ipairs(ref.records) do
      local ex = ds:example(i)
      local want = m:encode(r.text, { bos = false, special = true })
      T.eq(table.concat(ex.ids, " "), table.concat(want, " "), "record " .. i .. " rendered as apply_chat_template")
      local masked = {}
      for j = 1, #ex.ids do if ex.mask[j] == 1 then masked[#masked + 1] = ex.ids[j] end end
      local comp = m:encode(r.completion, { bos = false, special = false })
      comp[#comp + 1] = eot[1]
      T.eq(table.concat(masked, " "), table.concat(comp, " "), "record " .. i .. ": loss on the completion and <|im_end|>")
      local pre = m:encode(r.prompt_text, { bos = false, special = true })
      for j = 1, #pre do T.eq(ex.mask[j], 0, "no loss on the prompt") end
    end
    -- chat_template = false: [BOS] prompt completion [EOS] as before
    local plain = peft.data.load(T.root .. "/tests/ref/chat_train/completion.jsonl",
      { tokenizer = m, max_seq_len = 512, chat_template = false })
    local ex = plain:example(1)
    T.eq(m:decode(ex.ids), "What is 2+2?4")
    -- a model without a template: unchanged
    local s <close> = peft.model.load(S)
    local ds2 = peft.data.load(T.root .. "/tests/ref/chat_train/completion.jsonl", { tokenizer = s, max_seq_len = 512 })
    local ds3 = peft.data.load(T.root .. "/tests/ref/chat_train/completion.jsonl", { tokenizer = s, max_seq_len = 512, chat_template = false })
    T.eq(table.concat(ds2:example(1).ids, " "), table.concat(ds3:example(1).ids, " "))
  end,

  -- ------------------------------------------------------------------ train, then chat with the adapter
  train_then_chat_with_the_adapter = function()
    -- stories260K learns to answer "The secret word is" with "pineapple pineapple pineapple"
    local data = TMP .. "/secret.jsonl"
    local f = assert(io.open(data, "w"))
    for _ = 1, 32 do f:write('{"prompt": "The secret word is", "completion": " pineapple pineapple pineapple."}\n') end
    f:close()
    local out_dir = TMP .. "/secret_run"
    local p = TMP .. "/secret.lua"
    write(p, string.format([[
return { model = %q, dataset = %q, output = %q, max_iters = 60, batch_size = 8,
         learning_rate = 1e-2, lora_rank = 8, lora_alpha = 16, targets = {"q_proj", "k_proj", "v_proj", "o_proj"},
         warmup = 0, schedule = "constant", quiet = true }
]], S, data, out_dir))
    local rc, out = host("train " .. q(p))
    T.eq(rc, 0, out)
    -- without the adapter: no pineapple
    local chat_in = TMP .. "/chat_in.txt"
    write(chat_in, "The secret word is\n/reset\nThe secret word is\n")
    local rc0, base = host("chat --model " .. q(S) .. " --greedy --max-tokens 24 < " .. q(chat_in))
    T.eq(rc0, 0, base)
    T.ok(not base:find("pineapple", 1, true), "the base model does not know: " .. base)
    local rc1, tuned = host("chat --model " .. q(S) .. " --adapter " .. q(out_dir .. "/adapter") .. " --greedy --max-tokens 24 < " .. q(chat_in))
    T.eq(rc1, 0, tuned)
    local _, n = tuned:gsub("pineapple pineapple pineapple", "")
    T.eq(n, 2, "both answers (before and after /reset) show the fine-tune: " .. tuned)
    T.ok(tuned:find("(conversation reset)", 1, true), tuned)
  end,

  train_then_chat_through_the_chat_template = function()
    -- SmolLM2-135M-Instruct: prompt/completion data trained through its chat template, then a
    -- chat in a new process through the same template answers as taught
    if not T.exists(T.model) then print("  (skipped: " .. T.model .. " missing; make model)") return end
    local data = TMP .. "/secret_chat.jsonl"
    local f = assert(io.open(data, "w"))
    for _ = 1, 16 do f:write('{"prompt": "What is the secret word?", "completion": "The secret word is PINEAPPLE."}\n') end
    f:close()
    local out_dir = TMP .. "/secret_chat_run"
    local p = TMP .. "/secret_chat.lua"
    write(p, string.format([[
return { model = %q, dataset = %q, output = %q, max_iters = 8, batch_size = 2, max_seq_len = 64,
         learning_rate = 5e-3, lora_rank = 8, lora_alpha = 16, warmup = 0, schedule = "constant",
         overwrite = true, quiet = true }
]], T.model, data, out_dir))
    local rc, out = host("train " .. q(p), "OMP_NUM_THREADS=2")
    T.eq(rc, 0, out)
    local chat_in = TMP .. "/chat_in2.txt"
    write(chat_in, "What is the secret word?\n/reset\nWhat is the secret word?\n")
    local rc0, base = host("chat --model " .. q(T.model) .. " --greedy --max-tokens 16 < " .. q(chat_in))
    T.eq(rc0, 0, base)
    T.ok(not base:find("PINEAPPLE", 1, true), "the base model does not know: " .. base)
    local rc1, tuned = host("chat --model " .. q(T.model) .. " --adapter " .. q(out_dir .. "/adapter") ..
      " --greedy --max-tokens 16 < " .. q(chat_in))
    T.eq(rc1, 0, tuned)
    T.eq(tuned, "The secret word is PINEAPPLE.\n(conversation reset)\nThe secret word is PINEAPPLE.\n")
  end,

  chat_ctrl_c_stops_the_answer_only = function()
    -- each answer interrupts its own process after 4 tokens (the -e chunk wraps m:generate);
    -- both answers keep their text, the chat goes on after each, and it ends normally
    local code = [[
local pid = io.open('/proc/self/stat'):read('l'):match('^(%d+)')
local M = peft.model.Model
local g = M.generate
M.generate = function(self, p, o)
  local f, n = o.on_token, 0
  o.on_token = function(...) n = n + 1 if n == 4 then io.popen('kill -INT ' .. pid):close() end return f(...) end
  return g(self, p, o)
end]]
    local rc, out = host(string.format("-e %s lua/peft/cmd/chat.lua --model %s --greedy --max-tokens 40 < %s",
      q(code), q(S), q((function() local p = TMP .. "/chat_int.txt"; write(p, "Once upon a time\nOnce upon a time\n"); return p end)())))
    T.eq(rc, 0, out)
    T.eq(out, ", there was [interrupted]\n, there was [interrupted]\n")
  end,

  model_search_path_includes_the_user_cache = function()
    local home = TMP .. "/home"
    os.execute("rm -rf " .. q(home) .. " && mkdir -p " .. q(home .. "/.cache/peftlua/models") ..
      " && cp " .. q(S) .. " " .. q(home .. "/.cache/peftlua/models/cached-tiny.gguf"))
    local rc, out = T.sh(string.format("cd %s && HOME=%s PEFT_MODEL_PATH= %s generate --model cached-tiny.gguf --greedy --max-tokens 8 'Once upon a time'",
      q(TMP), q(home), q(T.host)))
    T.eq(rc, 0, out)
    T.ok(out:find("^Once upon a time, there was a little"), out)
  end,

  -- ------------------------------------------------------------------ a clone with no ../shared
  clone_runs_quickstart_smoke_and_training = function()
    local dir = TMP .. "/clone_parent"
    os.execute("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
    -- the working tree as a commit (uncommitted tracked changes included), cloned
    local rc, out = T.sh(string.format(
      "cd %s && c=$(git stash create) && [ -n \"$c\" ] || c=HEAD; git clone -q --no-checkout . %s/peftlua && cd %s/peftlua && git checkout -q $c",
      q(T.root), q(dir), q(dir)))
    T.eq(rc, 0, out)
    local clone = dir .. "/peftlua"
    T.ok(not T.exists(dir .. "/shared/README.md"), "no ../shared beside the clone")
    T.ok(T.exists(clone .. "/tests/fixtures/shared/models/stories260K/stories260K.gguf"), "fixtures in the clone")
    -- the host built here, reading the clone's Lua layer, recipes and fixtures only
    local env = string.format("cd %s && PEFTLUA_LUA_DIR=%s PEFT_SHARED= PEFT_MODEL_PATH= HOME=%s", q(clone), q(clone .. "/lua"), q(dir))
    rc, out = T.sh(env .. " PEFT_SMOKE=1 " .. q(T.host) .. " recipes/quickstart.lua stories260K.gguf")
    T.eq(rc, 0, out)
    T.ok(out:find("params     0.3 M", 1, true), out)
    T.ok(out:find("Once upon a time", 1, true), out)
    T.ok(out:find("perplexity on toolcall/valid.jsonl:", 1, true), "the quickstart's own data: " .. out)
    T.ok(T.exists(clone .. "/build/data/toolcall/train.jsonl"), "generated in the clone")
    rc, out = T.sh(env .. " " .. q(T.host) .. " train recipes/presets/tiny.lua --max_iters 3 --progress false")
    T.eq(rc, 0, out)
    T.ok(out:find("trained 3 steps", 1, true), out)
    T.ok(T.exists(clone .. "/runs/tiny/adapter/adapter_model.safetensors"), out)
    os.execute("rm -rf " .. q(dir))
  end,
}
