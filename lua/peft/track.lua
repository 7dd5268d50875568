-- lua/peft/track.lua — run records (output/run.json), the MLflow file store and its model
-- registry. Extends the C module peft.track (src/lua/l_track.c), passed as `...`.
-- Owner: track. The formats are MLflow's own (checked with mlflow-skinny in
-- tests/ref/track/check_mlflow.py); docs/tracking.md shows them.
--
--   peft.train.run { ..., tracking = "mlruns" }      -- or PEFT_TRACKING=mlruns in the environment
--   peft.train.run { ..., tracking = { uri = "mlruns", experiment = "sql", run_name = "r8",
--                                      tags = { team = "nlp" } } }
--   local v = peft.track.register(result, "sql-adapter", { alias = "champion" })   --> 1, 2, ...
--
-- Run record (every peft.train.run, output/run.json, replaced atomically): written when the run
-- starts with status "running", rewritten with "finished", "failed" or "killed" (and the error)
-- when it ends: configuration (as given, and resolved with defaults), the trainer's resolved
-- configuration, the batch and rank chosen and why, the model's sha256, each dataset's md5 and
-- size (and its DVC record), peftlua's version and git commit, the machine (peft.hw.info()),
-- start/end times, final metrics, artefact paths, the MLflow run when tracked, warnings.
--
-- MLflow file store (<uri>/<experiment id>/<run id>/): meta.yaml (status RUNNING until the end,
-- then FINISHED / FAILED / KILLED), params/<key> (the resolved configuration), metrics/<key>
-- lines "<timestamp ms> <value> <step>" appended as metrics.jsonl is written, tags/
-- (mlflow.runName, mlflow.source.name, mlflow.source.type, mlflow.user, peftlua.*: model
-- sha256, dataset md5s, version, commit), artifacts/ (adapter/, run.json, metrics.jsonl,
-- memory.json, report.html when present) copied at the end. Keys, values and names are checked
-- against MLflow's rules (mlflow/utils/validation.py) before anything is written.
local M = ...
local fs = require "peft.fs"

M.FORMAT = "peftlua-run/1"

-- JSON --------------------------------------------------------------------------------------

-- The shortest of %.15g, %.16g, %.17g that reads back as the same double.
local function num(v)
  for _, f in ipairs { "%.15g", "%.16g" } do
    local s = string.format(f, v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end
M.number = num

local function json_str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" elseif c == "\n" then return "\\n" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- Values as JSON: tables with only 1..n keys as arrays, others as objects with sorted keys;
-- non-finite numbers as null; functions and userdata left out (or as their tostring in arrays).
function M.json(v, indent, cur)
  cur = cur or ""
  local t = type(v)
  if v == nil then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type(v) == "integer" then return tostring(v) end
    return num(v)
  elseif t == "string" then return json_str(v)
  elseif t == "table" then
    local nl, ind = indent and "\n" or "", indent and (cur .. indent) or ""
    local sep = indent and ": " or ":"
    if next(v) == nil then return is_array(v) and "[]" or "{}" end
    local parts = {}
    if is_array(v) then
      for _, x in ipairs(v) do
        local tx = type(x)
        parts[#parts + 1] = ind .. M.json((tx == "function" or tx == "userdata") and tostring(x) or x, indent, ind)
      end
      return "[" .. nl .. table.concat(parts, "," .. nl) .. nl .. (indent and cur or "") .. "]"
    end
    local keys = {}
    for k, x in pairs(v) do
      local tx = type(x)
      if tx ~= "function" and tx ~= "userdata" and tx ~= "thread" then keys[#keys + 1] = tostring(k) end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local x = v[k]
      if x == nil then x = v[math.tointeger(tonumber(k)) or k] end
      parts[#parts + 1] = ind .. json_str(k) .. sep .. M.json(x, indent, ind)
    end
    return "{" .. nl .. table.concat(parts, "," .. nl) .. nl .. (indent and cur or "") .. "}"
  end
  return json_str(tostring(v))
end

-- files -------------------------------------------------------------------------------------

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end
local function basename(p) return p:match("([^/]*)$") end

-- peft.fs.write, fileio's one atomic writer (temporary, fsync, rename, directory fsync): a full
-- disk gives nil, "<path>: write failed: ..." and leaves the previous file as it was
local function write_atomic(path, text) return fs.write(path, text) end

local function read_file(path) return (fs.read(path)) end   -- nil when it cannot be read

local function iso_utc(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

-- MLflow's rules (mlflow/utils/validation.py, mlflow 3.x) -----------------------------------

local LIMITS = { key = 250, param = 6000, tag = 8000, experiment = 500, alias = 255 }
M.LIMITS = LIMITS

-- Param, metric and tag keys: alphanumerics, _ - . space : /, at most 250 characters, and a
-- path that normalises to itself (no "..", no leading or doubled "/", not ".").
function M.check_key(kind, key)
  if type(key) ~= "string" or key == "" then
    error(string.format("peft.track: %s key must be a non-empty string", kind), 0)
  end
  if #key > LIMITS.key then
    error(string.format("peft.track: %s key '%s...' is %d characters; MLflow allows %d", kind,
      key:sub(1, 40), #key, LIMITS.key), 0)
  end
  if key:find("[^%w_%-%. :/]") then
    error(string.format("peft.track: %s key '%s' has a character MLflow refuses (allowed: letters, digits, _ - . space : /)",
      kind, key), 0)
  end
  local bad = key:sub(1, 1) == "/" or key:sub(-1) == "/" or key:find("//", 1, true) or key == "."
  for part in key:gmatch("[^/]+") do if part == "." or part == ".." then bad = true end end
  if bad then
    error(string.format("peft.track: %s key '%s' is not a normalised relative path (MLflow stores it as a file)", kind, key), 0)
  end
  return key
end

local function check_value(kind, key, v, limit)
  v = tostring(v)
  if #v > limit then
    error(string.format("peft.track: %s '%s' is %d characters long; MLflow allows %d", kind, key, #v, limit), 0)
  end
  if v:find("\0", 1, true) then error(string.format("peft.track: %s '%s' contains a NUL byte", kind, key), 0) end
  return v
end

-- Registered model names: not empty, no '/', ':' or '%', a normalised path component.
function M.check_model_name(name)
  if type(name) ~= "string" or not name:find("%S") then error("peft.track.register: a model name is required", 0) end
  if name:find("[/:%%]") then
    error(string.format("peft.track.register: model name '%s' may not contain '/', ':' or '%%'", name), 0)
  end
  if name == "." or name == ".." or name:find("%c") then
    error(string.format("peft.track.register: model name '%s' is not usable as a directory name", name), 0)
  end
  return name
end

-- Aliases: letters, digits, _ and -, at most 255; not "latest" nor "v<digits>" (reserved).
function M.check_alias(alias)
  if type(alias) ~= "string" or alias == "" or alias:find("[^%w_%-]") or #alias > LIMITS.alias then
    error(string.format("peft.track.register: alias '%s' must be 1..255 letters, digits, _ or -", tostring(alias)), 0)
  end
  if alias:lower() == "latest" or alias:match("^[vV]%d+$") then
    error(string.format("peft.track.register: alias '%s' is reserved by MLflow", alias), 0)
  end
  return alias
end

-- YAML (the subset MLflow's meta.yaml files use) ------------------------------------------

local function yq(s)   -- a string as a single-quoted YAML scalar (always read back as a string)
  s = tostring(s)
  if s:find("[%c]") then error(string.format("peft.track: %q: control characters cannot go into meta.yaml", s), 0) end
  return "'" .. s:gsub("'", "''") .. "'"
end

local function yaml(fields)   -- fields: list of {key, value}; value: raw YAML text
  local out = {}
  for _, kv in ipairs(fields) do out[#out + 1] = kv[1] .. ": " .. kv[2] end
  return table.concat(out, "\n") .. "\n"
end

local function yaml_scalar(v)
  v = v:gsub("%s+$", "")
  if v:sub(1, 1) == "'" then return (v:sub(2, -2):gsub("''", "'")) end
  if v:sub(1, 1) == '"' then
    return (v:sub(2, -2):gsub("\\(.)", { n = "\n", t = "\t", ['"'] = '"', ["\\"] = "\\" }))
  end
  if v == "null" or v == "~" then return nil end
  return v
end

local function yaml_read(path)   -- top-level "key: scalar" lines
  local s = read_file(path)
  if not s then return nil end
  local t = {}
  for line in s:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+):%s*(.-)%s*$")
    if k and v ~= "" then t[k] = yaml_scalar(v) end
  end
  return t
end

-- MLflow file store --------------------------------------------------------------------------

local STATUS = { RUNNING = 1, SCHEDULED = 2, FINISHED = 3, FAILED = 4, KILLED = 5 }

local function must(ok, err) if not ok then error("peft.track: " .. tostring(err), 0) end return ok end

-- "mlruns" | "file:///abs/mlruns" | "file:mlruns" → absolute directory (made when missing)
local function store_root(uri)
  if type(uri) ~= "string" or uri == "" then error("peft.track: tracking uri must be a path or file: URI", 0) end
  local path = uri
  if uri:match("^file:") then
    path = uri:gsub("^file://", ""):gsub("^file:", "")
    path = path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  elseif uri:match("^%a[%w+.-]*://") then
    error(string.format("peft.track: tracking uri '%s': only a local directory or file: URI (MLflow's file store) is written", uri), 0)
  end
  must(fs.mkdir(path))
  return must(fs.realpath(path))
end

local function file_uri(abs)
  return "file://" .. abs:gsub("[^%w/%._~%-]", function(c) return string.format("%%%02X", c:byte()) end)
end

local function experiment_meta(root, id, name, now)
  return yaml {
    { "artifact_location", yq(file_uri(root .. "/" .. id)) }, { "creation_time", now },
    { "experiment_id", yq(id) }, { "last_update_time", now }, { "lifecycle_stage", "active" },
    { "name", yq(name) },
  }
end

-- The id of the experiment named name in root, made when missing ("Default" is id 0).
function M.mlflow_experiment(root, name)
  name = name or "Default"
  if type(name) ~= "string" or not name:find("%S") or #name > LIMITS.experiment then
    error("peft.track: experiment name must be 1..500 characters", 0)
  end
  for _, e in ipairs(fs.dir(root) or {}) do
    if e ~= ".trash" and e ~= "models" then
      local meta = yaml_read(root .. "/" .. e .. "/meta.yaml")
      if meta and meta.name == name and meta.experiment_id == e then
        if meta.lifecycle_stage == "deleted" then
          error(string.format("peft.track: experiment '%s' is deleted in %s (restore it or choose another name)", name, root), 0)
        end
        return e
      end
    end
  end
  local id = name == "Default" and "0" or tostring(math.tointeger(tonumber(M.random_hex(7), 16)))
  local dir = root .. "/" .. id
  must(fs.mkdir(dir))
  must(write_atomic(dir .. "/meta.yaml", experiment_meta(root, id, name, M.now_ms())))
  return id
end

local Run = {}
Run.__index = Run

local function run_meta(r, status, end_ms)
  return yaml {
    { "artifact_uri", yq(file_uri(r.dir .. "/artifacts")) }, { "end_time", end_ms and tostring(end_ms) or "null" },
    { "entry_point_name", "''" }, { "experiment_id", yq(r.experiment_id) }, { "lifecycle_stage", "active" },
    { "run_id", r.run_id }, { "run_name", yq(r.run_name) }, { "source_name", "''" }, { "source_type", "4" },
    { "source_version", "''" }, { "start_time", tostring(r.start_ms) }, { "status", tostring(STATUS[status]) },
    { "tags", "[]" }, { "user_id", yq(r.user) },
  }
end

-- A new run in the store at uri: { uri, root, experiment_id, run_id, run_name, dir, ... }.
function M.mlflow_run(uri, opts)
  opts = opts or {}
  local root = store_root(uri)
  local r = setmetatable({ root = root, uri = file_uri(root), start_ms = opts.start_ms or M.now_ms(),
                           user = opts.user or os.getenv("USER") or "unknown" }, Run)
  r.experiment_id = M.mlflow_experiment(root, opts.experiment or os.getenv("MLFLOW_EXPERIMENT_NAME"))
  r.run_id = M.random_hex(16)
  r.run_name = opts.run_name or ("peftlua-" .. r.run_id:sub(1, 8))
  check_value("tag", "mlflow.runName", r.run_name, LIMITS.tag)
  r.dir = root .. "/" .. r.experiment_id .. "/" .. r.run_id
  r.artifact_uri = file_uri(r.dir .. "/artifacts")
  for _, sub in ipairs { "metrics", "params", "artifacts", "tags" } do must(fs.mkdir(r.dir .. "/" .. sub)) end
  must(write_atomic(r.dir .. "/meta.yaml", run_meta(r, "RUNNING")))
  r:set_tags({ ["mlflow.runName"] = r.run_name, ["mlflow.user"] = r.user, ["mlflow.source.type"] = "LOCAL" })
  return r
end

-- Keys are checked first, so nothing is written when one is bad.
function Run:log_params(t)
  local keys = {}
  for k, v in pairs(t) do M.check_key("param", k); check_value("param", k, v, LIMITS.param); keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    must(fs.mkdir(dirname(self.dir .. "/params/" .. k)))
    must(write_atomic(self.dir .. "/params/" .. k, tostring(t[k])))
  end
end

function Run:set_tags(t)
  for k, v in pairs(t) do M.check_key("tag", k); check_value("tag", k, v, LIMITS.tag) end
  for k, v in pairs(t) do
    must(fs.mkdir(dirname(self.dir .. "/tags/" .. k)))
    must(write_atomic(self.dir .. "/tags/" .. k, tostring(v)))
  end
end

-- Appends "<timestamp ms> <value> <step>" to metrics/<key> for each finite number in t.
function Run:log_metrics(t, step, ts)
  ts = ts or M.now_ms()
  for k, v in pairs(t) do
    if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
      M.check_key("metric", k)
      local path = self.dir .. "/metrics/" .. k
      if k:find("/", 1, true) then must(fs.mkdir(dirname(path))) end
      local f = must(io.open(path, "ab"))
      f:write(string.format("%d %s %d\n", ts, math.type(v) == "integer" and tostring(v) or num(v), step))
      f:close()
    end
  end
end

-- Copies a file or a directory tree into artifacts/<dest>.
function Run:log_artifact(src, dest)
  local st = fs.stat(src)
  if not st then return false end
  local base = self.dir .. "/artifacts/" .. (dest or basename(src))
  if st.type == "dir" then
    for _, rel in ipairs(fs.list(src)) do
      must(fs.mkdir(dirname(base .. "/" .. rel)))
      must(fs.copy(src .. "/" .. rel, base .. "/" .. rel, tonumber("644", 8)))
    end
  else
    must(fs.mkdir(dirname(base)))
    must(fs.copy(src, base, tonumber("644", 8)))
  end
  return true
end

function Run:terminate(status, end_ms)
  assert(STATUS[status], "peft.track: status must be RUNNING, FINISHED, FAILED or KILLED")
  self.status = status
  must(write_atomic(self.dir .. "/meta.yaml", run_meta(self, status, end_ms or M.now_ms())))
end

-- Model registry -------------------------------------------------------------------------------

-- Adds a version of the registered model `name` (made when missing) whose source is the run's
-- adapter artefact; opts.alias (a string or a list) points aliases at it. run: the result of
-- peft.train.run, a run.json path, or a table from peft.track.mlflow_run. Returns the version.
function M.register(run, name, opts)
  opts = opts or {}
  M.check_model_name(name)
  local aliases = opts.alias
  if type(aliases) == "string" then aliases = { aliases } end
  for _, a in ipairs(aliases or {}) do M.check_alias(a) end
  local ml
  if type(run) == "string" then
    local doc = peft.memory.read_json(run)
    if not doc then error("peft.track.register: " .. run .. ": not a readable run.json", 2) end
    ml = doc.mlflow
  elseif type(run) == "table" then
    ml = run.mlflow or (run.run_id and run) or nil
  end
  if not ml or not ml.run_id or not ml.root then
    error("peft.track.register: the run was not tracked (train with tracking = \"mlruns\" or PEFT_TRACKING)", 2)
  end
  local root, rid = ml.root, ml.run_id
  local artifacts = root .. "/" .. ml.experiment_id .. "/" .. rid .. "/artifacts"
  local sub = opts.artifact or "adapter"
  if not fs.stat(artifacts .. "/" .. sub) then
    error(string.format("peft.track.register: run %s has no '%s' artefact to register", rid, sub), 2)
  end
  local source = file_uri(artifacts .. "/" .. sub)
  if opts.description ~= nil then check_value("description", name, opts.description, 5000) end
  local mdir = root .. "/models/" .. name
  local now = M.now_ms()
  local existing = yaml_read(mdir .. "/meta.yaml")
  local created = existing and existing.creation_timestamp or tostring(now)
  must(fs.mkdir(mdir))
  -- the next version: one more than the highest version-N present
  local version = 0
  for _, e in ipairs(fs.dir(mdir) or {}) do
    local n = math.tointeger(tonumber(e:match("^version%-(%d+)$")))
    if n and n > version then version = n end
  end
  repeat version = version + 1 until not fs.stat(mdir .. "/version-" .. version)
  local vdir = mdir .. "/version-" .. version
  must(fs.mkdir(vdir))
  must(write_atomic(vdir .. "/meta.yaml", yaml {
    { "creation_timestamp", now }, { "current_stage", "None" },
    { "description", opts.description and yq(opts.description) or "null" },
    { "last_updated_timestamp", now }, { "name", yq(name) }, { "run_id", yq(rid) }, { "run_link", "null" },
    { "source", yq(source) }, { "status", "READY" }, { "status_message", "null" },
    { "storage_location", yq(source) }, { "user_id", "null" }, { "version", version },
  }))
  -- aliases: one file each (aliases/<alias> holding the version), and the map in meta.yaml
  for _, a in ipairs(aliases or {}) do
    must(fs.mkdir(mdir .. "/aliases"))
    must(write_atomic(mdir .. "/aliases/" .. a, tostring(version)))
  end
  local amap = {}
  for _, a in ipairs(fs.dir(mdir .. "/aliases") or {}) do
    amap[#amap + 1] = "  " .. a .. ": " .. yq((read_file(mdir .. "/aliases/" .. a) or ""):gsub("%s+$", ""))
  end
  local desc = existing and existing.description
  must(write_atomic(mdir .. "/meta.yaml",
    (#amap > 0 and ("aliases:\n" .. table.concat(amap, "\n") .. "\n") or "") .. yaml {
      { "creation_timestamp", created }, { "description", desc and yq(desc) or "null" },
      { "last_updated_timestamp", now }, { "name", yq(name) },
    }))
  return version
end

-- Run records ----------------------------------------------------------------------------------

local sha_cache = {}   -- path -> {size, mtime_ns, sha256}: a process hashes each model file once

local function file_digest(path, algo)
  local st = fs.stat(path)
  if not st then return nil end
  if st.type == "dir" then
    -- a model or data directory: the digest of "<digest>  <relpath>\n" lines (sha256sum's form)
    local lines, total = {}, 0
    for _, rel in ipairs(fs.list(path)) do
      local h, size = fs.hash(path .. "/" .. rel, algo)
      lines[#lines + 1] = (h or "?") .. "  " .. rel .. "\n"
      total = total + (size or 0)
    end
    return fs.hash_string(table.concat(lines), algo), total, #lines
  end
  local key = algo .. ":" .. path
  local c = sha_cache[key]
  if c and c.size == st.size and c.mtime_ns == st.mtime_ns then return c.hex, st.size end
  local hex, size = fs.hash(path, algo)
  if hex then sha_cache[key] = { size = size, mtime_ns = st.mtime_ns, hex = hex } end
  return hex, size
end

local Record = {}
Record.__index = Record

local function plain_config(cfg)
  local t = {}
  for k, v in pairs(cfg) do
    local tv = type(v)
    if tv == "function" then t[k] = "<function>"
    elseif tv == "userdata" then t[k] = tostring(v)
    elseif k ~= "tracking" then t[k] = v end
  end
  return t
end

-- tracking: cfg.tracking (string | table | false) or PEFT_TRACKING
local function tracking_opts(cfg)
  local t = cfg.tracking
  if t == false then return nil end
  if t == nil then
    local env = os.getenv("PEFT_TRACKING")
    if not env or env == "" then return nil end
    t = env
  end
  if type(t) == "string" then t = { uri = t } end
  if type(t) ~= "table" then error("peft.train.run: tracking must be a path, a table or false", 0) end
  for k in pairs(t) do
    if not ({ uri = 1, experiment = 1, run_name = 1, tags = 1 })[k] then
      error(string.format("peft.train.run: tracking: unknown key '%s' (uri, experiment, run_name, tags)", tostring(k)), 0)
    end
  end
  if not t.uri then error("peft.train.run: tracking needs uri (the mlruns directory)", 0) end
  return t
end

local function warn(rec, msg)
  rec.doc.warnings[#rec.doc.warnings + 1] = msg
  if not rec.quiet then io.stderr:write("warning: ", msg, "\n") end
end

-- peft.train.run's record: run.json in cfg.output (status "running"), the data's digests and DVC
-- state, and the MLflow run when tracking is asked for.
function M.start(cfg)
  local out = cfg.output
  local start = M.now_ms()
  local build = M.build()
  local rec = setmetatable({ out = out, path = out .. "/run.json", quiet = cfg.quiet, start_ms = start }, Record)
  must(fs.mkdir(out))
  local hw_ok, hw = pcall(peft.hw.info)
  rec.doc = {
    format = M.FORMAT, status = "running",
    peftlua = { version = (peft._VERSION or "peftlua"):gsub("^peftlua ", ""), commit = build.commit or "none" },
    start_time = iso_utc(start), start_ms = start,
    command = arg and arg[0] or nil,
    config = plain_config(cfg), machine = hw_ok and hw or { error = tostring(hw) }, warnings = {},
    artifacts = { run = rec.path },
  }
  -- model
  local mpath = type(cfg.model) == "string" and cfg.model or nil
  if not mpath and type(cfg.model) == "userdata" then
    local ok, card = pcall(function() return cfg.model:card() end)
    if ok and card then mpath = card.path end
  end
  rec.doc.model = { path = mpath }
  if mpath then
    local sha, size = file_digest(mpath, "sha256")
    rec.doc.model.sha256, rec.doc.model.size = sha, size
  end
  -- data: md5 and size of each file, and what its .dvc record says
  rec.doc.data = {}
  for _, role in ipairs { "dataset", "valid" } do
    local p = cfg[role]
    if type(p) == "string" then
      local md5, size = file_digest(p, "md5")
      local d = { role = role == "dataset" and "train" or "valid", path = p, md5 = md5, size = size }
      local ok, c = pcall(require("peft.dvc").check, p)
      if ok and c then
        d.dvc = { file = c.dvcfile, md5 = c.recorded, changed = c.changed }
        if c.changed then
          warn(rec, string.format("%s differs from the version %s records (md5 %s there, %s now): " ..
            "`dvc checkout %s` restores it, `peftlua data add %s` records the new one",
            p, c.dvcfile, tostring(c.recorded), tostring(c.md5), c.dvcfile, p))
        end
      end
      rec.doc.data[#rec.doc.data + 1] = d
    end
  end
  -- MLflow
  local t = tracking_opts(cfg)
  if t then
    local name = t.run_name or basename(out:gsub("/+$", ""))
    local r = M.mlflow_run(t.uri, { experiment = t.experiment, run_name = name, start_ms = start })
    rec.ml = r
    rec.doc.mlflow = { tracking_uri = r.uri, root = r.root, experiment_id = r.experiment_id, run_id = r.run_id,
                       artifact_uri = r.artifact_uri }
    local tags = {
      ["mlflow.source.name"] = rec.doc.command or "peftlua",
      ["peftlua.version"] = rec.doc.peftlua.version, ["peftlua.commit"] = rec.doc.peftlua.commit,
      ["peftlua.output"] = out,
    }
    if mpath then tags["peftlua.model.path"] = mpath end
    if rec.doc.model.sha256 then tags["peftlua.model.sha256"] = rec.doc.model.sha256 end
    for _, d in ipairs(rec.doc.data) do
      if d.md5 then tags["peftlua.data." .. d.role .. ".md5"] = d.md5 end
      tags["peftlua.data." .. d.role .. ".path"] = d.path
    end
    for k, v in pairs(t.tags or {}) do tags[k] = tostring(v) end
    r:set_tags(tags)
  end
  rec:save()
  return rec
end

function Record:save()
  local ok, err = write_atomic(self.path, M.json(self.doc, "  ") .. "\n")
  if not ok then io.stderr:write("warning: cannot write ", self.path, ": ", tostring(err), "\n") end
end

-- The memory planner's choice of batch (peft.memory.autosize) and its reason.
function Record:fit(fit, cfg)
  local c = {}
  if cfg.batch_size then
    c.batch_size = { value = cfg.batch_size, reason = "given" }
  else
    c.batch_size = { value = fit.batch_size, grad_accum = fit.grad_accum, reason = string.format(
      "peft.memory.autosize: batch %d x %d tokens, accumulation %d fits the %.1f MiB budget (predicted peak %.1f MiB)",
      fit.batch_size, fit.seq_len, fit.grad_accum, fit.budget / 2^20, fit.total / 2^20) }
  end
  c.seq_len = { value = fit.seq_len, reason = cfg.max_seq_len and fit.seq_len == cfg.max_seq_len and "given"
    or string.format("the model's context (at most 512) fitted to the %.1f MiB budget", fit.budget / 2^20) }
  self.doc.choices = c
end

-- The resolved configuration once the trainer exists: the trainer's own (defaults filled in),
-- the run's settings, the rank's reason; written to run.json and as MLflow params.
function Record:resolved(tr, run)
  local tc = tr:config()
  self.doc.trainer = tc
  local at = tr:stats().step
  if at > 0 then self.doc.resumed_from_step = at end   -- resume = true continued a checkpoint
  local r = {}
  for k, v in pairs(self.doc.config) do r[k] = v end
  for k, v in pairs(run) do r[k] = v end
  for _, k in ipairs { "method", "optimizer", "batch_size", "grad_accum", "learning_rate", "weight_decay",
                       "schedule", "warmup", "min_lr_ratio", "max_grad_norm", "seed", "lora_rank", "lora_alpha",
                       "lora_dropout", "rslora", "targets", "layers", "checkpointing", "precision", "momentum",
                       "loss_scale", "growth_interval" } do
    if tc[k] ~= nil then r[k] = tc[k] end
  end
  r.max_seq_len = tc.seq_len
  self.doc.resolved = r
  local c = self.doc.choices or {}
  if tc.lora_rank then
    c.lora_rank = self.rank_choice or { value = tc.lora_rank, reason = self.doc.config.lora_rank and "given" or "default (pl_lora_defaults: 8)" }
  end
  self.doc.choices = c
  self:save()
  if self.ml then
    local p = {}
    for k, v in pairs(r) do
      local tv = type(v)
      if tv == "table" then p[k] = M.json(v)
      elseif tv == "string" and v == "<function>" then p[k] = nil
      elseif tv == "number" and math.type(v) == "float" then p[k] = num(v)
      elseif tv ~= "userdata" then p[k] = tostring(v) end
    end
    self.ml:log_params(p)
  end
end

-- metrics.jsonl as train.lua writes it, each line also sent to MLflow (its numeric top-level
-- fields as metrics at its step; event lines are skipped).
function Record:metrics(f)
  if not self.ml then return f end
  local rec = self
  local proxy = {}
  function proxy.write(_, ...)
    f:write(...)
    for _, s in ipairs { ... } do
      for line in tostring(s):gmatch("[^\n]+") do
        local doc = peft.memory.decode_json(line)
        if type(doc) == "table" and doc.step and not doc.event then
          local m = {}
          for k, v in pairs(doc) do if k ~= "step" and type(v) == "number" then m[k] = v end end
          rec.ml:log_metrics(m, doc.step)
        end
      end
    end
    return proxy
  end
  function proxy.close() return f:close() end
  function proxy.setvbuf(_, ...) return f:setvbuf(...) end
  function proxy.flush() return f:flush() end
  return proxy
end

-- The end: ok and the run's result, or not ok and the error. Status: finished, killed (an
-- interruption), failed (anything else, with the message).
function Record:finish(ok, res)
  local now = M.now_ms()
  local d = self.doc
  d.end_time, d.end_ms, d.duration_s = iso_utc(now), now, (now - self.start_ms) / 1000
  if ok then
    d.status = "finished"
    d.metrics = { steps = res.steps, total_steps = res.total, loss = res.loss, val_loss = res.val_loss,
                  best_val_loss = res.best_val_loss, tokens = res.tokens, elapsed_s = res.elapsed,
                  params = res.params, stopped = res.stopped }
    res.run = self.path
    res.mlflow = d.mlflow
  else
    local msg = tostring(res)
    d.status = msg:find("interrupted", 1, true) and "killed" or "failed"
    d.error = msg
  end
  local a = d.artifacts
  for k, p in pairs { metrics = "metrics.jsonl", memory = "memory.json", adapter = "adapter", checkpoint = "checkpoint",
                      best = "best", report = "report.html" } do
    if fs.stat(self.out .. "/" .. p) then a[k] = self.out .. "/" .. p end
  end
  if self.ml then
    d.mlflow.status = ({ finished = "FINISHED", failed = "FAILED", killed = "KILLED" })[d.status]
  end
  self:save()
  if self.ml then
    local okc, err = pcall(function()
      if ok then
        local final = {}
        for _, k in ipairs { "best_val_loss" } do final[k] = d.metrics[k] end
        self.ml:log_metrics(final, d.metrics.steps or 0, now)
      end
      for _, k in ipairs { "adapter", "metrics", "memory", "report" } do
        if a[k] then self.ml:log_artifact(a[k]) end
      end
      self.ml:log_artifact(self.path)
      self.ml:terminate(d.mlflow.status, now)
    end)
    if not okc then io.stderr:write("warning: MLflow run ", self.ml.run_id, ": ", tostring(err), "\n") end
  end
end

return M
