-- peft.ui — the web interface (owner: ui): datasets, new runs, live runs, results, a prompt box.
-- Served by the one HTTP layer (peft.http over src/net/http.c); pages are plain HTML/CSS/JS in
-- lua/peft/ui/ (no build step, nothing fetched at run time; charts are SVG drawn in the page).
--
--   local u = peft.ui.new{workspace = dir, host = "127.0.0.1", port = 8800, token = s | nil,
--                         max_upload = bytes, model = default model path, memory_budget = bytes,
--                         step_delay = seconds (slows each training step: demos and tests),
--                         threads = n (the workers' engine threads),
--                         log = io.stderr | false}
--   u.port, u.url (with ?token= when one is needed), u.token
--   u:serve()        answer requests, run workers, until Ctrl-C (returns) or u:close()
--   u:step(timeout)  one turn of the loop: a request, the workers' new events
--   u:close()        stops the running worker with a checkpoint (SIGTERM), then the server
--
-- Workspace: models/ (offered models), datasets/<sha256>.jsonl|.json (+ .meta.lua),
-- runs/run-NNNN/{config.lua, state.lua, events.jsonl, log.txt, out/ (the training output:
-- checkpoint/, adapter/, metrics.jsonl, memory.json, model.gguf)}, tmp/ (upload spool).
-- Each training is a worker process (`peftlua ui --worker runs/run-NNNN`, M.worker below): it
-- appends one JSON object a line to events.jsonl; the server reads them, numbers them (the SSE
-- event id is the line number), and streams them to every page watching the run. A worker that
-- dies (crash, SIGKILL, out of memory) is noticed by waitpid; the server then appends the
-- "failed" event itself. Stop sends SIGTERM: the trainer writes a checkpoint and stops; resume
-- starts a new worker on the same run with resume = true.
local peft = require("peft")
local http, proc = peft.http, peft.proc

local M = {}
local U = {}
U.__index = U

-- ---------------------------------------------------------------- small helpers

local fs = peft.fs
local function mkdir_p(p) assert(fs.mkdir(p)) end
local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end
local function read_all(p) return (fs.read(p)) end
local function write_atomic(p, text) assert(fs.write(p, text)) end   -- fileio's atomic writer
local function list_dir(dir) return fs.dir(dir) or {} end
local function file_size(p)
  local f = io.open(p, "rb"); if not f then return nil end
  local n = f:seek("end"); f:close(); return n
end

-- Lua values as Lua source (config.lua, state.lua): read back with an empty environment.
local function ser(v, ind)
  ind = ind or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v)
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then return "nil" end
    return string.format("%.17g", v)
  elseif t == "boolean" then return tostring(v)
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      local ks = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. ser(k) .. "]")
      parts[#parts + 1] = ind .. "  " .. ks .. " = " .. ser(v[k], ind .. "  ") .. ","
    end
    return "{\n" .. table.concat(parts, "\n") .. "\n" .. ind .. "}"
  end
  return "nil"
end
M.serialize = ser

local function load_lua(p)
  local f = loadfile(p, "t", {})
  if not f then return nil end
  local ok, v = pcall(f)
  return ok and v or nil
end
M.load_lua = load_lua

local function sha256(path) return (fs.hash(path, "sha256")) end

-- ---------------------------------------------------------------- options and presets

-- The training options the form may set: type, lower and upper bound. (This list should come
-- from the one training-option table, src/train/options.c via peft.train.options(); docs/ui.md.)
local OPTIONS = {
  max_iters = { "integer", 1, 1000000 }, epochs = { "number", 0.01, 1000 },
  batch_size = { "integer", 1, 4096 }, grad_accum = { "integer", 1, 1024 },
  learning_rate = { "number", 1e-8, 1 }, lora_rank = { "integer", 1, 1024 },
  lora_alpha = { "number", 0.01, 100000 }, lora_dropout = { "number", 0, 0.9 },
  max_seq_len = { "integer", 8, 131072 }, valid_fraction = { "number", 0, 0.5 },
  eval_every = { "integer", 0, 1000000 }, save_every = { "integer", 0, 1000000 },
  seed = { "integer", 0, 2147483647 }, warmup = { "integer", 0, 1000000 },
  checkpointing = { "boolean" }, precision = { "enum", fp32 = 1, bf16 = 1, fp16 = 1 },
  schedule = { "enum", constant = 1, linear = 1, cosine = 1 },
  train_on_prompt = { "boolean" }, export_gguf = { "boolean" },
}
M.OPTIONS = OPTIONS

M.PRESETS = {
  quick = { max_iters = 60, batch_size = 4, grad_accum = 1, learning_rate = 1e-3, lora_rank = 8,
            lora_alpha = 16, max_seq_len = 256, valid_fraction = 0.1, eval_every = 20, save_every = 20, warmup = 5 },
  balanced = { epochs = 1, batch_size = 4, grad_accum = 2, learning_rate = 2e-4, lora_rank = 16,
               lora_alpha = 32, max_seq_len = 512, valid_fraction = 0.1, eval_every = 50, save_every = 50, warmup = 10 },
  best = { epochs = 3, batch_size = 4, grad_accum = 4, learning_rate = 1e-4, lora_rank = 32,
           lora_alpha = 64, max_seq_len = 1024, valid_fraction = 0.1, eval_every = 50, save_every = 50, warmup = 20,
           checkpointing = true },
}
M.PRESET_NAMES = { { "quick", "Quick" }, { "balanced", "Balanced" }, { "best", "Best quality" } }
local METHODS = { lora = true, qlora = true, full = true }

-- a client error: answered as {"error":{...}} with this status
local function fail(status, message, extra)
  error({ status = status, message = message, extra = extra }, 0)
end

local function check_options(body)
  local o = {}
  for k, v in pairs(body.options or {}) do
    local spec = OPTIONS[k]
    if not spec then fail(400, ("unknown option '%s'"):format(tostring(k))) end
    local kind = spec[1]
    if kind == "integer" then
      if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
      if math.type(v) ~= "integer" or v < spec[2] or v > spec[3] then
        fail(400, ("option '%s' must be a whole number from %d to %d"):format(k, spec[2], spec[3]))
      end
    elseif kind == "number" then
      if type(v) ~= "number" or v ~= v or v < spec[2] or v > spec[3] then
        fail(400, ("option '%s' must be a number from %g to %g"):format(k, spec[2], spec[3]))
      end
    elseif kind == "boolean" then
      if type(v) ~= "boolean" then fail(400, ("option '%s' must be true or false"):format(k)) end
    elseif kind == "enum" then
      if type(v) ~= "string" or not spec[v] then fail(400, ("option '%s' has no value '%s'"):format(k, tostring(v))) end
    end
    o[k] = v
  end
  if o.max_iters and o.epochs then fail(400, "give max_iters or epochs, not both") end
  return o
end

-- ---------------------------------------------------------------- the server

-- style-src also admits, by its hash, the one inline style sheet of peft.report's pages (the
-- run reports served from the workspace); no inline script is ever allowed.
local function report_style_hash()
  local ok, page = pcall(function() return peft.report.html { title = "x", sections = {} }:render() end)
  local css = ok and page:match("<style>(.-)</style>")
  if not css then return "" end
  local hex = fs.hash_string(css, "sha256")
  return " 'sha256-" .. peft.report.base64((hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))) .. "'"
end

local function csp()
  return "default-src 'none'; script-src 'self'; style-src 'self'" .. report_style_hash() .. "; img-src 'self' data:; " ..
         "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
end

-- only these binds go without a token (127.0.0.2 and the like need one: the rule stays simple)
local function is_loopback(h) return h == "127.0.0.1" or h == "::1" or h == "localhost" end

function M.new(o)
  o = o or {}
  local self = setmetatable({}, U)
  self.ws = o.workspace or "peftlua-workspace"
  mkdir_p(self.ws)
  self.ws = assert(fs.realpath(self.ws))
  for _, d in ipairs { "models", "datasets", "runs", "tmp" } do mkdir_p(self.ws .. "/" .. d) end
  -- the workspace is its own DVC repository (no SCM): dataset versions never reach further up
  if not fs.stat(self.ws .. "/.dvc") then
    mkdir_p(self.ws .. "/.dvc/tmp")
    write_atomic(self.ws .. "/.dvc/config", "[core]\n    no_scm = True\n")
    write_atomic(self.ws .. "/.dvc/.gitignore", "/config.local\n/tmp\n/cache\n")
  end
  self.host = o.host or "127.0.0.1"
  self.loopback = is_loopback(self.host)
  self.token = o.token
  if not self.loopback and not self.token then
    local f = assert(io.open("/dev/urandom", "rb"))
    self.token = (f:read(18):gsub(".", function(c) return string.format("%02x", c:byte()) end))
    f:close()
  end
  self.max_upload = o.max_upload or (256 << 20)
  self.default_model = o.model
  self.budget = o.memory_budget or peft.hw.info().memory_budget
  self.step_delay = o.step_delay
  self.threads = o.threads   -- the workers' engine threads (PEFT_THREADS); nil: their default
  self.logf = o.log == nil and io.stderr or o.log
  self.models = {}        -- id -> loaded peft.Model (estimates, previews, the prompt box)
  self.runs = {}          -- id -> run record
  self.queue = {}         -- run ids waiting, oldest first
  self.running = nil      -- the run id whose worker is alive
  self.uidir = o.static or (PEFTLUA_LUA_DIR .. "/peft/ui")

  local srv = http.server {
    host = self.host, port = o.port or 8800, max_body = 1 << 20, token = self.token,
    token_cookie = self.token and "peftlua_token" or nil, max_connections = 64,
    headers = { ["Content-Security-Policy"] = csp(), ["X-Frame-Options"] = "DENY",
                ["Referrer-Policy"] = "no-referrer", ["Cache-Control"] = "no-store" },
  }
  self.srv = srv
  srv:route("GET", "/", { auth = false })
  srv:static("/ui/", self.uidir, { auth = true })
  srv:static("/files/runs/", self.ws .. "/runs", { auth = true })
  srv:static("/files/datasets/", self.ws .. "/datasets", { auth = true })
  srv:route("GET", "/api/", { prefix = true, auth = true })
  srv:route("POST", "/api/datasets", { body = "file", max_body = self.max_upload, spool = self.ws .. "/tmp", auth = true })
  srv:route("POST", "/api/generate", { body = "json", auth = true })
  srv:route("POST", "/api/estimate", { body = "json", auth = true })
  srv:route("POST", "/api/runs", { body = "json", auth = true })
  srv:route("POST", "/api/runs/", { prefix = true, body = "none", auth = true })
  self.port = srv:start()
  local shown = self.host:find(":", 1, true) and ("[" .. self.host .. "]") or self.host
  self.url = ("http://%s:%d/"):format(shown, self.port) .. (self.token and ("?token=" .. self.token) or "")
  self:load_runs()
  return self
end

function U:log(fmt, ...)
  if self.logf then self.logf:write(("ui: " .. fmt .. "\n"):format(...)); self.logf:flush() end
end

-- ---------------------------------------------------------------- request checks

-- The Host header must name this server (no DNS rebinding on a loopback bind), and a POST must
-- come from this origin: a browser always sends Origin on POST, and a page of another site
-- cannot make it ours. A client that is no browser (no Origin, no Sec-Fetch-Site) is no CSRF
-- vector; on a non-loopback bind it has the token anyway (checked by the layer).
function U:check_request(req)
  local host = req:header("host") or ""
  if self.loopback then
    local name, port = host:match("^%[?([^%]]-)%]?:(%d+)$")
    if not name or tonumber(port) ~= self.port or not (name == "localhost" or is_loopback(name)) then
      fail(421, "this server answers only to 127.0.0.1:" .. self.port .. " or localhost:" .. self.port)
    end
  end
  if req.method ~= "GET" and req.method ~= "HEAD" then
    local origin = req:header("origin")
    if origin then
      if origin ~= "http://" .. host then fail(403, "cross-origin request refused (Origin " .. origin .. ")") end
    else
      local site = req:header("sec-fetch-site")
      if site and site ~= "same-origin" and site ~= "none" then fail(403, "cross-site request refused") end
    end
  end
end

local function respond_json(req, status, v) req:respond(status, http.json(v)) end

-- ---------------------------------------------------------------- models

function U:model_list()
  local out = {}
  for _, f in ipairs(list_dir(self.ws .. "/models")) do
    if f:match("%.gguf$") or f:match("%.bin$") then out[#out + 1] = { id = f, path = self.ws .. "/models/" .. f } end
  end
  if self.default_model then
    local base = self.default_model:match("([^/]+)$")
    out[#out + 1] = { id = "default:" .. base, path = self.default_model, default = true }
  end
  return out
end

function U:model_path(id)
  for _, m in ipairs(self:model_list()) do if m.id == id then return m.path end end
  fail(400, ("no model '%s' (GET /api/info lists them)"):format(tostring(id)))
end

function U:model(id)
  local m = self.models[id]
  if not m then
    local path = self:model_path(id)
    -- one model kept loaded at a time besides the one asked for (memory)
    local n = 0
    for _ in pairs(self.models) do n = n + 1 end
    if n >= 2 then for k, v in pairs(self.models) do v:close(); self.models[k] = nil end end
    local ok, mm = pcall(peft.model.load, path)
    if not ok then fail(422, ("cannot load model '%s': %s"):format(id, tostring(mm))) end
    m = mm
    self.models[id] = m
  end
  return m
end

function U:first_model_id()
  local l = self:model_list()
  for _, m in ipairs(l) do if m.default then return m.id end end
  return l[1] and l[1].id
end

-- ---------------------------------------------------------------- datasets

local function dataset_id_ok(id) return type(id) == "string" and id:match("^%x+%.jsonl?$") ~= nil and #id <= 80 end

function U:dataset_meta(id)
  local meta = load_lua(self.ws .. "/datasets/" .. id .. ".meta.lua")
  return meta
end

function U:upload(req)
  local ct = (req:header("content-type") or ""):lower():gsub(";.*", ""):gsub("%s", "")
  local ext
  if ct == "application/x-ndjson" or ct == "application/jsonl" or ct == "application/jsonlines" then ext = "jsonl"
  elseif ct == "application/json" then ext = "json"
  else
    fail(415, ("an upload must be JSONL (Content-Type: application/x-ndjson) or JSON (application/json), not %s"):format(ct == "" and "untyped" or ct))
  end
  local tmp = req.body_path
  if not tmp or (req.body_size or 0) == 0 then fail(400, "the upload is empty") end
  -- validated where it was spooled, with the name the layer gave it
  local named = tmp .. "." .. ext
  assert(os.rename(tmp, named))
  local ok, rep = pcall(peft.data.validate, named)
  if not ok then os.remove(named); fail(422, "cannot read the upload: " .. tostring(rep)) end
  local name = (req:query("name") or "upload." .. ext):gsub("[%c]", ""):sub(1, 200)
  if not rep.ok then
    os.remove(named)
    local issues = {}
    for i, s in ipairs(rep.issues or {}) do
      if i > 100 then break end
      local line, msg = tostring(s):match(":(%d+): (.*)$")
      -- the spool file's name is ours: show the client's
      issues[#issues + 1] = { line = tonumber(line), message = msg or tostring(s):gsub("^.-: ", ""),
                              text = line and (name .. ":" .. line .. ": " .. msg) or (name .. ": " .. tostring(s):gsub("^.-: ", "")) }
    end
    fail(422, ("%s: %d problem%s"):format(name, #(rep.issues or {}), #(rep.issues or {}) == 1 and "" or "s"),
         { issues = issues, records = rep.records })
  end
  local hash = sha256(named)
  if not hash then os.remove(named); fail(500, "cannot hash the upload") end
  local id = hash .. "." .. ext
  local dest = self.ws .. "/datasets/" .. id
  if exists(dest) then os.remove(named) else assert(os.rename(named, dest)) end
  local metap = self.ws .. "/datasets/" .. id .. ".meta.lua"
  if not exists(dest .. ".dvc") then   -- the DVC file (peft.data.version; `dvc status` reads it)
    local okv, v = pcall(peft.data.version, dest)
    if not okv then self:log("dataset %s: no DVC file: %s", id, tostring(v)) end
  end
  if not exists(metap) then
    write_atomic(metap, "return " .. ser({ id = id, name = name, sha256 = hash, size = req.body_size,
      format = rep.format, records = rep.records, uploaded = os.time() }) .. "\n")
  end
  self:log("dataset %s (%s, %d records)", id, name, rep.records or 0)
  return self:dataset_detail(id)
end

-- A dataset as the model sees it: statistics with the model's tokenizer and the first records
-- rendered (chat template applied) as segments with their loss flag.
function U:dataset_detail(id, model_id, max_seq_len)
  if not dataset_id_ok(id) then fail(404, "no such dataset") end
  local meta = self:dataset_meta(id)
  if not meta then fail(404, "no such dataset") end
  local path = self.ws .. "/datasets/" .. id
  model_id = model_id or self:first_model_id()
  local out = { id = id, name = meta.name, sha256 = meta.sha256, size = meta.size, format = meta.format,
                records = meta.records, uploaded = meta.uploaded, model = model_id,
                download = "/files/datasets/" .. id,
                dvc = exists(path .. ".dvc") and ("/files/datasets/" .. id .. ".dvc") or nil }
  if not model_id then return out end
  local m = self:model(model_id)
  max_seq_len = max_seq_len or 512
  local ok, ds = pcall(peft.data.load, path, { tokenizer = m, max_seq_len = max_seq_len })
  if not ok then out.error = tostring(ds):gsub("%S*/datasets/", ""); return out end
  local r = ds:report()
  local hist = {}
  for _, b in ipairs(r.lengths.histogram or {}) do hist[#hist + 1] = { lo = b.lo or b[1], hi = b.hi or b[2], count = b.count or b[3] } end
  local dl = {}
  for i, d in ipairs(r.duplicate_lines or {}) do if i > 20 then break end dl[#dl + 1] = { line = d[1] or d.line, first_line = d[2] or d.first_line } end
  out.stats = { examples = r.examples, tokens = r.tokens, target_tokens = r.target_tokens,
                lengths = { min = r.lengths.min, mean = r.lengths.mean, median = r.lengths.median,
                            p95 = r.lengths.p95, max = r.lengths.max },
                histogram = http.array(hist), duplicates = r.duplicates, duplicate_lines = http.array(dl),
                truncated = r.truncated, no_target = r.no_target, max_seq_len = max_seq_len }
  local tok = m:tokenizer()
  local prev = {}
  for i = 1, math.min(5, ds:count()) do
    local ex = ds:example(i)
    local segs, cur, curm = {}, {}, nil
    for t = 1, #ex.ids do
      local flag = ex.mask[t] and ex.mask[t] ~= 0 and ex.mask[t] ~= false
      if curm ~= nil and flag ~= curm then segs[#segs + 1] = { text = table.concat(cur), train = curm }; cur = {} end
      curm = flag
      local b = tok:bytes(ex.ids[t])
      if b == "" then b = tok:piece(ex.ids[t]) or "" end   -- special tokens (<|im_start|>, </s>) as their name
      cur[#cur + 1] = b
    end
    if #cur > 0 then segs[#segs + 1] = { text = table.concat(cur), train = curm } end
    prev[#prev + 1] = { line = ex.line, tokens = #ex.ids, truncated = ex.truncated or false, segments = http.array(segs) }
  end
  tok:close()
  ds:close()
  out.preview = http.array(prev)
  return out
end

function U:datasets()
  local out = {}
  for _, f in ipairs(list_dir(self.ws .. "/datasets")) do
    local id = f:match("^(%x+%.jsonl?)%.meta%.lua$")
    if id then
      local m = self:dataset_meta(id)
      if m then out[#out + 1] = { id = id, name = m.name, records = m.records, size = m.size, format = m.format, uploaded = m.uploaded } end
    end
  end
  table.sort(out, function(a, b) return (a.uploaded or 0) > (b.uploaded or 0) end)
  return http.array(out)
end

-- ---------------------------------------------------------------- memory estimate

-- The memory model's estimate for a run's settings against this machine's budget; when it does
-- not fit, what would (a smaller batch with accumulation, checkpointing, QLoRA).
function U:estimate(body)
  local model_id = body.model or self:first_model_id()
  local method = body.method or "lora"
  if not METHODS[method] then fail(400, "method must be lora, qlora or full") end
  local o = check_options(body)
  local m = self:model(model_id)
  local mc = m:config()
  local seq = o.max_seq_len or math.min(512, mc.context_length or mc.seq_len or 512)
  local bs, ga = o.batch_size or 4, o.grad_accum or 1
  local base = { model = m, method = method, batch_size = bs, seq_len = seq, grad_accum = ga,
                 lora_rank = method ~= "full" and o.lora_rank or nil, lora_dropout = o.lora_dropout,
                 checkpointing = o.checkpointing, precision = o.precision, compute = o.compute }
  local ok, e = pcall(peft.memory.estimate, base)
  if not ok then fail(422, "memory model: " .. tostring(e)) end
  local res = { model = model_id, method = method, batch_size = bs, seq_len = seq, grad_accum = ga,
                total = e.total, resident = e.resident, budget = self.budget, fits = e.total <= self.budget,
                by = { weights = e.weights, adapters = e.adapters, gradients = e.gradients, optimizer = e.optimizer,
                       activations = e.activations, workspace = e.workspace, mapped = e.mapped } }
  if not res.fits then
    local recs = {}
    local a = {}
    for k, v in pairs(base) do a[k] = v end
    a.batch_size, a.seq_len, a.grad_accum = nil, nil, nil
    a.effective_batch, a.max_seq_len, a.budget = bs * ga, seq, self.budget
    local fit = peft.memory.autosize(a)
    if fit and fit.seq_len == seq then
      recs[#recs + 1] = { text = ("batch %d with accumulation %d (same effective batch): %s"):format(fit.batch_size, fit.grad_accum, peft.memory.format(fit.total)),
                          options = { batch_size = fit.batch_size, grad_accum = fit.grad_accum } }
    end
    if not o.checkpointing then
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      c.checkpointing = true
      local okc, ec = pcall(peft.memory.estimate, c)
      if okc and ec.total <= self.budget then
        recs[#recs + 1] = { text = "activation checkpointing: " .. peft.memory.format(ec.total), options = { checkpointing = true } }
      end
    end
    if method == "lora" then
      local q = {}
      for k, v in pairs(base) do q[k] = v end
      q.method = "qlora"
      local okq, eq = pcall(peft.memory.estimate, q)
      if okq and eq.total <= self.budget then
        recs[#recs + 1] = { text = "QLoRA (4-bit base): " .. peft.memory.format(eq.total), method = "qlora" }
      end
    end
    res.recommendations = http.array(recs)
    res.message = ("this run needs %s; this machine's budget is %s"):format(peft.memory.format(e.total), peft.memory.format(self.budget)) ..
      (#recs > 0 and ("; it fits with " .. recs[1].text) or "; nothing smaller fits: a smaller model or shorter max_seq_len")
  end
  return res
end

-- ---------------------------------------------------------------- runs

local FINAL = { done = true, failed = true, stopped = true }

function U:save_run(r)
  write_atomic(r.dir .. "/state.lua", "return " .. ser(r.state) .. "\n")
end

function U:load_runs()
  for _, d in ipairs(list_dir(self.ws .. "/runs")) do
    if d:match("^run%-%d+$") then
      local st = load_lua(self.ws .. "/runs/" .. d .. "/state.lua")
      if st then
        local r = { id = d, dir = self.ws .. "/runs/" .. d, state = st, events = {}, offset = 0, partial = "", subs = {} }
        self.runs[d] = r
        self:read_events(r)
        if st.status == "queued" then
          self.queue[#self.queue + 1] = d
        elseif not FINAL[st.status] then
          -- its worker belonged to a server that is gone
          if st.pid and proc.kill(st.pid, 0) then proc.kill(st.pid, "TERM") end
          self:finish_run(r, "failed", "the server stopped while this run was going (resume continues from its last checkpoint)")
        end
      end
    end
  end
  table.sort(self.queue)
end

function U:next_run_id()
  local n = 0
  for _, d in ipairs(list_dir(self.ws .. "/runs")) do
    local k = tonumber(d:match("^run%-(%d+)$"))
    if k and k > n then n = k end
  end
  return ("run-%04d"):format(n + 1)
end

-- New lines of the run's events.jsonl: numbered, applied to its state, sent to its watchers.
function U:read_events(r)
  local f = io.open(r.dir .. "/events.jsonl", "rb")
  if not f then return end
  f:seek("set", r.offset)
  local chunk = f:read("a") or ""
  f:close()
  if chunk == "" then return end
  r.offset = r.offset + #chunk
  local text = r.partial .. chunk
  local last = 1
  for line, nxt in text:gmatch("([^\n]*)\n()") do
    last = nxt
    if line ~= "" then
      local ev = http.decode(line)
      if ev then
        r.events[#r.events + 1] = line
        self:apply_event(r, ev)
        self:broadcast(r, #r.events, line)
      end
    end
  end
  r.partial = text:sub(last)
end

function U:apply_event(r, ev)
  local st = r.state
  if ev.type == "phase" then
    st.phase = ev.phase
    if FINAL[ev.phase] then st.status = ev.phase; st.error = ev.error end
    if ev.phase ~= "queued" and not FINAL[ev.phase] then st.status = "running" end
  elseif ev.type == "step" then
    st.step, st.total, st.loss = ev.step, ev.total, ev.loss
    r.curve = r.curve or {}
    r.curve[ev.step] = ev.loss
    if ev.mem_peak and (not st.mem_peak or ev.mem_peak > st.mem_peak) then st.mem_peak = ev.mem_peak end
    if ev.rss_peak and (not st.rss_peak or ev.rss_peak > st.rss_peak) then st.rss_peak = ev.rss_peak end
  elseif ev.type == "resume" then
    for k in pairs(r.curve or {}) do if k > ev.step then r.curve[k] = nil end end
  elseif ev.type == "eval" then
    st.val_loss = ev.val_loss
  elseif ev.type == "result" then
    st.result = ev
  end
end

function U:broadcast(r, id, line)
  for req in pairs(r.subs) do
    if not req:write(("id: %d\ndata: %s\n\n"):format(id, line)) then
      r.subs[req] = nil
      req:finish(); req:release()
    end
  end
end

-- The worker's events file gets one more line from the server (the worker is gone).
function U:append_event(r, ev)
  ev.t = os.time()
  local f = assert(io.open(r.dir .. "/events.jsonl", "ab"))
  f:write(http.json(ev), "\n")
  f:close()
  self:read_events(r)
end

function U:finish_run(r, status, why)
  self:append_event(r, { type = "phase", phase = status, error = why })
  r.state.status = status
  r.state.phase = status
  r.state.error = why
  r.state.pid = nil
  r.state.finished = os.time()
  self:save_run(r)
end

function U:create_run(body)
  local o = check_options(body)
  if not dataset_id_ok(body.dataset) or not self:dataset_meta(body.dataset) then
    fail(400, "'dataset' must be the id of an uploaded dataset (GET /api/datasets)")
  end
  local est = self:estimate(body)
  if not est.fits then
    fail(422, "refused: " .. est.message, { estimate = est })
  end
  local id = self:next_run_id()
  local dir = self.ws .. "/runs/" .. id
  mkdir_p(dir)
  local cfg = {
    model = self:model_path(est.model), dataset = self.ws .. "/datasets/" .. body.dataset,
    output = dir .. "/out", method = est.method, batch_size = est.batch_size, grad_accum = est.grad_accum,
    max_seq_len = est.seq_len, memory_budget = self.budget,
  }
  for k, v in pairs(o) do if cfg[k] == nil then cfg[k] = v end end
  if not cfg.max_iters and not cfg.epochs then cfg.max_iters = 60 end
  if cfg.valid_fraction == 0 then cfg.valid_fraction = nil end
  cfg.step_delay = self.step_delay
  write_atomic(dir .. "/config.lua", "return " .. ser(cfg) .. "\n")
  local meta = self:dataset_meta(body.dataset)
  local r = { id = id, dir = dir, events = {}, offset = 0, partial = "", subs = {},
              state = { id = id, status = "queued", phase = "queued", created = os.time(), model = est.model,
                        dataset = body.dataset, dataset_name = meta and meta.name, method = est.method,
                        preset = type(body.preset) == "string" and body.preset:sub(1, 40) or nil,
                        options = o, estimate = { total = est.total, resident = est.resident, budget = est.budget,
                                                  batch_size = est.batch_size, seq_len = est.seq_len, grad_accum = est.grad_accum } } }
  self.runs[id] = r
  self:save_run(r)
  self:append_event(r, { type = "phase", phase = "queued", estimate = r.state.estimate })
  self.queue[#self.queue + 1] = id
  self:log("run %s queued (%s on %s)", id, est.method, est.model)
  self:pump()
  return self:run_info(r)
end

function U:start_worker(r)
  local resume = r.state.resumes and r.state.resumes > 0
  local argv = { "", "ui", "--worker", r.dir }
  if resume then argv[#argv + 1] = "--resume" end
  local ok, pid = pcall(proc.spawn, argv, { stdout = r.dir .. "/log.txt", cwd = self.ws,
                                            env = self.threads and { PEFT_THREADS = tostring(self.threads) } or nil })
  if not ok then self:finish_run(r, "failed", "cannot start the worker: " .. tostring(pid)); return end
  r.state.pid = pid
  r.state.status = "running"
  r.state.started = r.state.started or os.time()
  self.running = r.id
  self:save_run(r)
  self:log("run %s: worker %d started%s", r.id, pid, resume and " (resume)" or "")
end

local function log_tail(path, n)
  local t = {}
  local f = io.open(path, "rb")
  if not f then return t end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 4096))
  for l in (f:read("a") or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  f:close()
  while #t > n do table.remove(t, 1) end
  return t
end

-- Workers: reap the one that ended, read new events, start the next queued run.
function U:pump()
  if self.running then
    local r = self.runs[self.running]
    self:read_events(r)
    local w = proc.wait(r.state.pid)
    if w then
      self:read_events(r)
      self.running = nil
      r.state.pid = nil
      r.state.exit = w
      if not FINAL[r.state.phase] then
        local why
        if w.signal then
          why = ("the worker was killed by signal %d (%s)%s"):format(w.signal, w.name,
            w.signal == 9 and " — out of memory, or killed by hand" or "")
          if r.stopping and w.signal == 15 then self:finish_run(r, "stopped", "stopped before training began"); why = nil end
        else
          why = ("the worker exited with status %d"):format(w.code or -1)
        end
        if why then
          local man = http.decode(read_all(r.dir .. "/out/checkpoint/manifest.json") or "")
          why = why .. (man and man.step and ("; resume continues from the checkpoint at step " .. math.tointeger(man.step) or man.step)
                                        or "; there is no checkpoint yet (resume starts it again)")
          for _, l in ipairs(log_tail(r.dir .. "/log.txt", 5)) do self:append_event(r, { type = "log", line = l }) end
          self:finish_run(r, "failed", why)
        end
      else
        r.state.finished = os.time()
        self:save_run(r)
      end
      r.stopping = nil
      self:log("run %s: worker ended (%s), %s", r.id, w.signal and w.name or ("status " .. tostring(w.code)), r.state.status)
    end
  end
  if not self.running and #self.queue > 0 then
    local id = table.remove(self.queue, 1)
    local r = self.runs[id]
    if r and r.state.status == "queued" then self:start_worker(r) end
  end
end

function U:run_info(r)
  local st = r.state
  local files = {}
  local function add(rel, kind)
    local sz = file_size(r.dir .. "/" .. rel)
    if sz then files[#files + 1] = { kind = kind, path = rel, size = sz, url = "/files/runs/" .. r.id .. "/" .. rel } end
  end
  add("out/adapter/adapter_model.safetensors", "adapter")
  add("out/adapter/adapter_config.json", "adapter")
  add("out/adapter.gguf", "gguf adapter")
  add("out/Modelfile", "ollama modelfile")
  add("out/run.json", "run record")
  add("out/model.gguf", "merged gguf")
  add("out/metrics.jsonl", "metrics")
  add("out/memory.json", "memory")
  add("out/report.html", "report")
  add("log.txt", "log")
  return { id = r.id, status = st.status, phase = st.phase, step = st.step, total = st.total, loss = st.loss,
           val_loss = st.val_loss, model = st.model, dataset = st.dataset, dataset_name = st.dataset_name,
           method = st.method, preset = st.preset, options = st.options, estimate = st.estimate,
           mem_peak = st.mem_peak, rss_peak = st.rss_peak, error = st.error, created = st.created,
           started = st.started, finished = st.finished, pid = st.pid, events = #r.events,
           resumable = FINAL[st.status] and st.status ~= "done" and true or false,
           queue_position = (function() for i, q in ipairs(self.queue) do if q == r.id then return i end end end)(),
           files = http.array(files) }
end

function U:run_of(id)
  local r = type(id) == "string" and id:match("^run%-%d+$") and self.runs[id]
  if not r then fail(404, "no such run") end
  return r
end

function U:stop_run(r)
  if r.state.status == "queued" then
    for i, q in ipairs(self.queue) do if q == r.id then table.remove(self.queue, i) break end end
    self:finish_run(r, "stopped", "stopped before it started")
  elseif r.state.status == "running" and r.state.pid then
    r.stopping = true
    proc.kill(r.state.pid, "TERM")
    self:append_event(r, { type = "log", line = "stop requested: the worker writes a checkpoint and stops" })
  else
    fail(409, "the run is " .. tostring(r.state.status) .. ", not running")
  end
end

function U:resume_run(r)
  if not (r.state.status == "failed" or r.state.status == "stopped") then
    fail(409, "only a failed or stopped run can be resumed (this one is " .. tostring(r.state.status) .. ")")
  end
  r.state.resumes = (r.state.resumes or 0) + 1
  r.state.status = "queued"
  r.state.error = nil
  self:save_run(r)
  self:append_event(r, { type = "phase", phase = "queued", resume = true })
  self.queue[#self.queue + 1] = r.id
  self:pump()
end

-- at most n points of the training loss, evenly over the steps: the runs list's small curves
local function thin_curve(c, n)
  local steps = {}
  for k in pairs(c or {}) do steps[#steps + 1] = k end
  table.sort(steps)
  local out, stride = {}, math.max(1, #steps / n)
  for i = 1, #steps, stride do
    local k = steps[math.floor(i)]
    out[#out + 1] = { k, c[k] }
  end
  if #steps > 0 and out[#out][1] ~= steps[#steps] then out[#out + 1] = { steps[#steps], c[steps[#steps]] } end
  return http.array(out)
end

function U:runs_list()
  local ids = {}
  for id in pairs(self.runs) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b) return a > b end)
  local out = {}
  for _, id in ipairs(ids) do
    local info = self:run_info(self.runs[id])
    info.curve = thin_curve(self.runs[id].curve, 60)
    out[#out + 1] = info
  end
  return http.array(out)
end

-- SSE: every event after Last-Event-ID (header, or ?last_event_id= for a first connection),
-- then each new one as it comes.
function U:subscribe(req, r)
  local last = tonumber(req:header("last-event-id") or req:query("last_event_id") or "0") or 0
  last = math.max(0, math.floor(last))
  req:stream(200, { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache", ["X-Accel-Buffering"] = "no" })
  if not req:write("retry: 1000\n\n") then req:finish(); return false end
  for i = last + 1, #r.events do
    if not req:write(("id: %d\ndata: %s\n\n"):format(i, r.events[i])) then req:finish(); return false end
  end
  r.subs[req] = true
  return true
end

-- ---------------------------------------------------------------- the prompt box

function U:generate(req)
  local body = req.json
  local r = self:run_of(body.run)
  local prompt = body.prompt
  if type(prompt) ~= "string" or prompt == "" then fail(400, "'prompt' must be a non-empty string") end
  if #prompt > 8192 then fail(400, "'prompt' is longer than 8192 bytes") end
  local mt = math.tointeger(body.max_tokens) or 64
  if mt < 1 or mt > 512 then fail(400, "'max_tokens' must be from 1 to 512") end
  local adapter = r.dir .. "/out/adapter"
  if not exists(adapter .. "/adapter_model.safetensors") then fail(409, "this run has no adapter yet") end
  local m = self:model(r.state.model)
  local name = "ui-" .. r.id
  local have = false
  for _, a in ipairs(m:adapters()) do if a.name == name then have = true end end
  if not have then m:load_adapter(adapter, { name = name }) end
  local ids = m:encode(prompt, { bos = true })
  req:stream(200, { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache" })
  local gone = false
  local n = 0
  for _, side in ipairs { "tuned", "base" } do
    local pending = ""
    local function send(t) if not gone and not req:write("data: " .. http.json(t) .. "\n\n") then gone = true end end
    send({ side = side, start = true })
    local text, ntok = m:generate(ids, { max_tokens = mt, greedy = true, adapter = side == "tuned" and name or false,
      on_token = function(piece)
        n = n + 1
        local head
        head, pending = http.utf8_split(pending .. piece)
        if head ~= "" then send({ side = side, text = head }) end
        if n % 16 == 0 then self:pump() end   -- the training's events keep flowing
        return gone
      end })
    if pending ~= "" then send({ side = side, text = pending }) end
    send({ side = side, done = true, tokens = ntok })
  end
  if not gone then req:write("data: [DONE]\n\n") end
  req:finish()
end

-- ---------------------------------------------------------------- dispatch

-- compared in time independent of where they differ
local function same_secret(a, b)
  if #a ~= #b then return false end
  local d = 0
  for i = 1, #a do d = d | (a:byte(i) ~ b:byte(i)) end
  return d == 0
end

function U:info()
  local h = peft.hw.info()
  local presets = {}
  for _, p in ipairs(M.PRESET_NAMES) do presets[#presets + 1] = { id = p[1], label = p[2], options = M.PRESETS[p[1]] } end
  return { models = http.array(self:model_list()), default_model = self:first_model_id(), methods = { "lora", "qlora", "full" },
           presets = presets, budget = self.budget, max_upload = self.max_upload,
           hw = { cpu = h.cpu, cores = h.cores, ram_total = h.ram_total, ram_available = h.ram_available },
           workspace = self.ws, running = self.running, queued = #self.queue }
end

function U:dispatch(req)
  local p, m = req.path, req.method
  if p == "/" and m == "GET" then
    -- the entry: a token in the URL becomes a cookie (HttpOnly, this site only), then the UI
    local t = req:query("token")
    local headers = { Location = "/ui/" }
    if self.token then
      if t then
        if not same_secret(t, self.token) then fail(401, "wrong token: open the URL printed when the server started") end
        headers["Set-Cookie"] = "peftlua_token=" .. self.token .. "; Path=/; HttpOnly; SameSite=Strict"
      elseif not same_secret((req:header("cookie") or ""):match("peftlua_token=([%w]+)") or "", self.token) then
        fail(401, "this server needs its token: open the URL printed when it started")
      end
    end
    req:respond(303, "", headers)
    return
  end
  self:check_request(req)
  if m == "GET" then
    if p == "/api/info" then return respond_json(req, 200, self:info()) end
    if p == "/api/datasets" then return respond_json(req, 200, self:datasets()) end
    local did = p:match("^/api/datasets/([^/]+)$")
    if did then
      local msl = math.tointeger(tonumber(req:query("max_seq_len") or ""))
      if msl and (msl < 8 or msl > 131072) then fail(400, "max_seq_len must be from 8 to 131072") end
      local mid = req:query("model")
      if mid then self:model_path(mid) end
      return respond_json(req, 200, self:dataset_detail(did, mid, msl))
    end
    if p == "/api/runs" then return respond_json(req, 200, self:runs_list()) end
    local rid, rest = p:match("^/api/runs/([^/]+)(.*)$")
    if rid then
      local r = self:run_of(rid)
      if rest == "" then return respond_json(req, 200, self:run_info(r)) end
      if rest == "/events" then return self:subscribe(req, r) and "keep" or nil end
    end
    fail(404, "no route for GET " .. p)
  end
  if p == "/api/datasets" then return respond_json(req, 201, self:upload(req)) end
  if p == "/api/estimate" then return respond_json(req, 200, self:estimate(req.json)) end
  if p == "/api/runs" then return respond_json(req, 201, self:create_run(req.json)) end
  if p == "/api/generate" then return self:generate(req) end
  local rid, act = p:match("^/api/runs/([^/]+)/(%a+)$")
  if rid then
    local r = self:run_of(rid)
    if act == "stop" then self:stop_run(r); return respond_json(req, 202, self:run_info(r)) end
    if act == "resume" then self:resume_run(r); return respond_json(req, 202, self:run_info(r)) end
  end
  fail(404, ("no route for %s %s"):format(m, p))
end

function U:step(timeout)
  self:pump()
  local req = self.srv:next(timeout or 0.25)
  if not req then return false end
  local ok, info = pcall(self.dispatch, self, req)
  local status = 200
  if not ok then
    local e = info
    if type(e) == "table" and e.status then
      status = e.status
      local body = { error = { message = e.message, type = "invalid_request_error" } }
      if e.extra then for k, v in pairs(e.extra) do body.error[k] = v end end
      pcall(req.respond, req, e.status, http.json(body))
      info = e.message
    else
      local msg = tostring(e)
      if msg:find("interrupted", 1, true) then req:release(); error(e, 0) end
      status = 500
      if not pcall(req.error, req, 500, msg, "server_error") then
        pcall(req.write, req, "data: " .. http.json({ error = { message = msg } }) .. "\n\n")
        pcall(req.finish, req)
      end
      info = msg
    end
  end
  self:log("#%d %s %s %d %s", req.id, req.method, req.path, status, type(info) == "string" and info or "")
  if info ~= "keep" then req:release() end
  return true
end

function U:serve()
  self:log("workspace %s; open %s", self.ws, self.url)
  peft.train.catch_sigterm(true)   -- SIGTERM stops the server as Ctrl-C does (workers first)
  local beat = 0
  while true do
    local ok, err = pcall(self.step, self, 0.25)
    if not ok then
      peft.train.catch_sigterm(false)
      if tostring(err):find("interrupted", 1, true) then self:log("interrupted; stopping"); return end
      error(err, 0)
    end
    beat = beat + 1
    if beat % 60 == 0 then   -- keep idle event streams open through proxies, drop the gone
      for _, r in pairs(self.runs) do
        for q in pairs(r.subs) do
          if q:gone() or not q:write(": keepalive\n\n") then r.subs[q] = nil; pcall(q.finish, q); q:release() end
        end
      end
    end
  end
end

function U:close()
  if self.running then
    local r = self.runs[self.running]
    if r.state.pid then
      r.stopping = true
      proc.kill(r.state.pid, "TERM")   -- the trainer writes a checkpoint, then stops
      local w
      for _ = 1, 300 do
        w = proc.wait(r.state.pid)
        if w then break end
        proc.sleep(0.1)
      end
      if not w then proc.kill(r.state.pid, "KILL"); proc.wait(r.state.pid, true) end
      self:read_events(r)
      if not FINAL[r.state.phase] then self:finish_run(r, "stopped", "the server stopped") end
      self.running = nil
    end
  end
  for _, r in pairs(self.runs) do
    for q in pairs(r.subs) do pcall(q.finish, q); q:release() end
    r.subs = {}
  end
  for k, v in pairs(self.models) do v:close(); self.models[k] = nil end
  if self.srv then self.srv:close(); self.srv = nil end
end

-- ---------------------------------------------------------------- the worker

-- out/report.html: the run's report (peft.report: one self-contained page, PNG charts).
function M.run_report(dir, cfg, res, model_path)
  local steps, losses, es, evs = {}, {}, {}, {}
  for line in io.lines(cfg.output .. "/metrics.jsonl") do
    local d = http.decode(line)
    if d and d.loss and d.step then steps[#steps + 1] = d.step; losses[#losses + 1] = d.loss
    elseif d and d.val_loss and d.step then es[#es + 1] = d.step; evs[#evs + 1] = d.val_loss end
  end
  local series = { { name = "training loss", x = steps, y = losses } }
  if #es > 0 then series[#series + 1] = { name = "evaluation loss", x = es, y = evs, smooth = false } end
  local loss = peft.report.line { series = series, title = "Loss", xlabel = "step", ylabel = "loss", width = 900, height = 380 }
  local sections = {
    { title = "Results", table = { columns = { "steps", "loss", "evaluation loss", "tokens", "seconds", "trained parameters" },
      rows = { { res.steps, string.format("%.4f", res.loss), res.val_loss and string.format("%.4f", res.val_loss) or "-",
                 res.tokens, string.format("%.1f", res.elapsed), res.params } } } },
    { title = "Loss", chart = loss, caption = "training loss (smoothed) and evaluation loss" },
  }
  local okm, mem = pcall(peft.report.memory_chart, cfg.output .. "/memory.json", { title = "Memory" })
  if okm then sections[#sections + 1] = { title = "Memory", chart = mem } end
  local shown = {}
  for k, v in pairs(cfg) do
    if type(v) ~= "function" and type(v) ~= "userdata" and type(v) ~= "table" then shown[k] = v end
  end
  shown.model = model_path
  sections[#sections + 1] = { title = "Configuration", config = shown }
  local rep = peft.report.html { title = "Run " .. (dir:match("([^/]+)$") or dir), subtitle = os.date("!%Y-%m-%d %H:%M UTC"), sections = sections }
  assert(rep:save(cfg.output .. "/report.html"))
end

-- `peftlua ui --worker RUNDIR [--resume]`: one training, reported as events.jsonl lines.
function M.worker(dir, resume)
  local cfg = assert(load_lua(dir .. "/config.lua"), "cannot read " .. dir .. "/config.lua")
  local ev = assert(io.open(dir .. "/events.jsonl", "ab"))
  ev:setvbuf("line")
  local function emit(t) t.t = os.time(); ev:write(http.json(t), "\n") end
  local rawprint = print
  print = function(...)   -- the trainer's lines become log events
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    local s = table.concat(t, "\t")
    emit({ type = "log", line = s })
    rawprint(s)
    io.stdout:flush()
  end
  local delay = cfg.step_delay
  local export_gguf = cfg.export_gguf
  cfg.step_delay, cfg.export_gguf = nil, nil
  local ok, err = pcall(function()
    emit({ type = "phase", phase = "validating" })
    local rep = peft.data.validate(cfg.dataset, { tokenizer = cfg.model, max_seq_len = cfg.max_seq_len })
    if not rep.ok then error("the dataset has problems: " .. tostring(rep.issues[1]), 0) end
    emit({ type = "log", line = ("dataset: %d records, %s tokens"):format(rep.records or 0, tostring(rep.tokens or "?")) })
    emit({ type = "phase", phase = "loading" })
    local model = peft.model.load(cfg.model)
    emit({ type = "phase", phase = "training" })
    local first = true
    local model_path = cfg.model
    cfg.model = model
    cfg.resume = resume or false
    cfg.progress = false
    cfg.on_phase = function(p) emit({ type = "phase", phase = p }) end
    cfg.on_eval = function(i) emit({ type = "eval", step = i.step, val_loss = i.val_loss }) end
    cfg.on_step = function(i)
      if first then
        first = false
        if i.step > 1 then emit({ type = "resume", step = i.step - 1 }) end
      end
      local s = peft.memory.stats()
      emit({ type = "step", step = i.step, total = i.total, loss = i.loss, lr = i.lr, grad_norm = i.grad_norm,
             tokens_per_s = i.tokens_per_s, elapsed = i.elapsed, eta = i.eta, rss = s.rss, rss_peak = s.rss_peak,
             mem = s.total.current, mem_peak = s.total.peak })
      if delay and delay > 0 then proc.sleep(delay) end
    end
    local res = peft.train.run(cfg)
    if res.trainer and res.method == "lora" then
      -- the GGUF LoRA adapter for llama.cpp (--lora) and Ollama (interop)
      emit({ type = "phase", phase = "exporting" })
      local oke, e = pcall(peft.train.export_gguf_adapter, res.trainer, cfg.output .. "/adapter.gguf",
                           { modelfile = model_path:match("%.gguf$") ~= nil, base = model_path:match("%.gguf$") and model_path or nil })
      if not oke then emit({ type = "log", line = "GGUF adapter: " .. tostring(e) }) end
    end
    if export_gguf and res.trainer and res.method == "lora" then
      res.trainer:merge()
      peft.train.export(model, cfg.output .. "/model.gguf", { format = "gguf" })
    end
    emit({ type = "phase", phase = "saving" })
    local rok, rerr = pcall(M.run_report, dir, cfg, res, model_path)
    if not rok then emit({ type = "log", line = "report: " .. tostring(rerr) }) end
    local s = peft.memory.stats()
    emit({ type = "result", steps = res.steps, total = res.total, loss = res.loss, val_loss = res.val_loss,
           elapsed = res.elapsed, tokens = res.tokens, params = res.params, rss_peak = s.rss_peak, mem_peak = s.total.peak })
    if res.trainer then res.trainer:close() end
    model:close()
  end)
  if ok then
    emit({ type = "phase", phase = "done" })
    ev:close()
    return 0
  end
  local msg = tostring(err)
  local pre = dir:gsub("/+$", "") .. "/"
  local at = msg:find(pre, 1, true)
  while at do msg = msg:sub(1, at - 1) .. msg:sub(at + #pre); at = msg:find(pre, 1, true) end   -- paths relative to the run
  if msg:find("interrupted", 1, true) then
    emit({ type = "phase", phase = "stopped", error = msg:gsub("^peft%.train%.run: ", "") })
    ev:close()
    return 0
  end
  emit({ type = "phase", phase = "failed", error = msg })
  ev:close()
  io.stderr:write("peftlua ui worker: ", msg, "\n")
  return 1
end

return M
