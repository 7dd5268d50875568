-- tests/lua/test_track.lua — run records, the MLflow file store and registry, DVC dataset
-- versions (owner: track). The formats are proven with the real tools: MLflow (mlflow-skinny)
-- reads the store in tests/ref/track/check_mlflow.py, DVC works on the repository in
-- tests/ref/track/check_dvc.py. Where those Python packages are missing the two checks are
-- skipped with a note, except under CI (CI set), where they fail: `make test` installs them.
local T = require "testlib"
local fs, track = peft.fs, peft.track
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"
local DATA = T.shared .. "/data/wikisql/"
local REF = T.root .. "/tests/ref/track"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function write(path, text) local f = assert(io.open(path, "wb")); f:write(text); f:close(); return path end
local function read(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end
local function fresh(name) local d = T.tmp .. "/" .. name; os.execute("rm -rf " .. q(d)); assert(fs.mkdir(d)); return d end
local function json(path) return assert(peft.memory.read_json(path)) end

-- a small slice of wikisql: a few steps train in well under a second on stories260K
local function small_data(dir)
  local function head(src, n, dst)
    local out, k = {}, 0
    for line in io.lines(src) do k = k + 1; if k > n then break end; out[k] = line end
    return write(dst, table.concat(out, "\n") .. "\n")
  end
  return head(DATA .. "train.jsonl", 40, dir .. "/train.jsonl"), head(DATA .. "valid.jsonl", 10, dir .. "/valid.jsonl")
end

local function python_has(mod)
  local rc = T.sh("python3 -c " .. q("import " .. mod))
  if rc == 0 then return true end
  if os.getenv("CI") then error("python3 cannot import " .. mod .. " (scripts/requirements-test.txt; make test installs it)") end
  print("      skipped: python3 cannot import " .. mod .. " (pip install -r scripts/requirements-test.txt)")
  return false
end

local function train(dir, extra)
  assert(fs.mkdir(dir))
  local train_p, valid_p = small_data(dir)
  local cfg = { model = MODEL, dataset = train_p, valid = valid_p, output = dir .. "/out", max_iters = 6,
                max_seq_len = 48, batch_size = 2, eval_every = 3, lora_rank = 4, quiet = true, progress = false }
  for k, v in pairs(extra or {}) do if v == "unset" then cfg[k] = nil else cfg[k] = v end end
  return peft.train.run(cfg), cfg
end

local S = {}

function S.hash_matches_md5sum_and_sha256sum()
  local dir = fresh("track_hash")
  local p = write(dir .. "/crlf.txt", "line one\r\nline two\r\n\r\nno newline at the end")
  local md5, size = fs.hash(p)
  local _, out = T.sh("md5sum " .. q(p))
  T.eq(md5, out:match("^(%x+)"), "md5 = md5sum")
  T.eq(size, 43)
  local sha = fs.hash(p, "sha256")
  _, out = T.sh("sha256sum " .. q(p))
  T.eq(sha, out:match("^(%x+)"), "sha256 = sha256sum")
  T.eq(fs.hash_string("abc", "sha256"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  local none, err = fs.hash(dir .. "/missing")
  T.ok(none == nil and err:find("missing: cannot open"), err)
  T.raises(function() fs.hash(p, "sha1") end, "invalid option")
end

function S.mlflow_names_checked_before_writing()
  T.eq(track.check_key("param", "lora/rank: 1.x"), "lora/rank: 1.x")
  T.raises(function() track.check_key("param", "bad*key") end, "character MLflow refuses")
  T.raises(function() track.check_key("metric", "../up") end, "not a normalised relative path")
  T.raises(function() track.check_key("tag", "a//b") end, "not a normalised")
  T.raises(function() track.check_key("tag", string.rep("k", 251)) end, "MLflow allows 250")
  T.raises(function() track.check_alias("latest") end, "reserved")
  T.raises(function() track.check_alias("v3") end, "reserved")
  T.raises(function() track.check_alias("no spaces") end, "letters, digits")
  T.raises(function() track.check_model_name("a/b") end, "may not contain")
  local dir = fresh("track_names")
  local r = track.mlflow_run(dir .. "/mlruns", { experiment = "names", run_name = "n" })
  T.raises(function() r:log_params { ok = "1", ["bad|key"] = "2" } end, "bad|key")
  T.ok(fs.stat(r.dir .. "/params/ok") == nil, "nothing written when one key is bad")
  T.raises(function() r:log_params { long = string.rep("x", 6001) } end, "MLflow allows 6000")
  r:log_params { ["nested/key"] = "v" }
  T.eq(read(r.dir .. "/params/nested/key"), "v")
  -- the same experiment name gives the same id; "Default" is 0
  T.eq(track.mlflow_experiment(r.root, "names"), r.experiment_id)
  T.eq(track.mlflow_experiment(r.root, "Default"), "0")
end

-- run.json from start to end, the live MLflow run (read by MLflow during the run), failed and
-- killed runs, the registry; then MLflow reads everything (check_mlflow.py).
function S.run_records_and_mlflow_store()
  local dir = fresh("track_mlflow")
  local root = dir .. "/mlruns"
  local have_mlflow = python_has("mlflow")
  local seen_running, live_run
  local a = train(dir .. "/a", {
    tracking = { uri = root, experiment = "peftlua-test", run_name = "rank4" },
    on_step = function(info)
      if info.step == 3 then
        local rec = json(dir .. "/a/out/run.json")
        seen_running = rec.status
        T.eq(rec.mlflow.status, nil)
        T.eq(read(root .. "/" .. rec.mlflow.experiment_id .. "/" .. rec.mlflow.run_id .. "/meta.yaml"):match("status: (%d)"), "1")
        -- the store as it is now, for MLflow to read after the run (one Python start, not two)
        T.eq((T.sh("cp -r " .. q(root) .. " " .. q(dir .. "/live"))), 0)
        live_run = rec.mlflow.run_id
      end
    end })
  T.eq(seen_running, "running", "run.json says running during the run")
  T.ok(live_run, "the store was copied during the run")
  local rec = json(a.run)
  T.eq(rec.status, "finished")
  T.eq(rec.format, "peftlua-run/1")
  T.eq(rec.model.sha256, (fs.hash(MODEL, "sha256")))
  T.eq(rec.data[1].role, "train")
  T.eq(rec.data[1].md5, (fs.hash(dir .. "/a/train.jsonl")))
  T.eq(rec.data[1].size, fs.stat(dir .. "/a/train.jsonl").size)
  T.eq(rec.data[2].role, "valid")
  T.eq(rec.resolved.lora_rank, 4)
  T.eq(rec.resolved.lora_alpha, 8, "the default alpha, 2 x rank, filled in")
  T.eq(rec.resolved.schedule, "cosine")
  T.eq(rec.resolved.max_iters, 6)
  T.eq(rec.trainer.optimizer, "adamw")
  T.eq(rec.choices.batch_size.reason, "given")
  T.eq(rec.choices.lora_rank.reason, "given")
  T.eq(rec.metrics.steps, 6)
  T.near(rec.metrics.loss, a.loss, 1e-12)
  T.ok(rec.machine.cores >= 1 and rec.machine.cpu, "machine")
  T.ok(rec.peftlua.version:match("^%d+%.%d+"), rec.peftlua.version)
  T.ok(type(rec.peftlua.commit) == "string", "commit or none")
  T.ok(rec.end_ms >= rec.start_ms and rec.start_time:match("^%d%d%d%d%-%d%d%-%d%dT"), "times")
  T.eq(rec.artifacts.adapter, dir .. "/a/out/adapter")
  T.eq(rec.mlflow.status, "FINISHED")
  -- a second run with another rank and the batch left to the memory planner
  local b = train(dir .. "/b", { lora_rank = 2, batch_size = "unset", tracking = { uri = root, experiment = "peftlua-test" } })
  local rb = json(b.run)
  T.ok(rb.choices.batch_size.reason:find("peft.memory.autosize", 1, true), rb.choices.batch_size.reason)
  T.eq(rb.choices.lora_rank.value, 2)
  -- failed: an error raised from on_step; killed: SIGTERM part-way
  local _, err = pcall(train, dir .. "/c", { tracking = { uri = root, experiment = "peftlua-test" },
    on_step = function(info) if info.step == 2 then error("boom at step 2") end end })
  T.ok(tostring(err):find("boom at step 2"), err)
  local rc_ = json(dir .. "/c/out/run.json")
  T.eq(rc_.status, "failed")
  T.ok(rc_.error:find("boom at step 2"), rc_.error)
  local pid = tonumber(read("/proc/self/stat"):match("^(%d+)"))
  _, err = pcall(train, dir .. "/d", { tracking = { uri = root, experiment = "peftlua-test" },
    on_step = function(info) if info.step == 2 then os.execute("kill -TERM " .. pid) end end })
  T.ok(tostring(err):find("interrupted"), err)
  local rd = json(dir .. "/d/out/run.json")
  T.eq(rd.status, "killed")
  -- registry: two versions, the alias on the first
  T.eq(track.register(a, "stories-sql", { alias = "champion" }), 1)
  T.eq(track.register(b.run, "stories-sql"), 2)
  T.raises(function() track.register({}, "x") end, "not tracked")
  T.raises(function() track.register(a, "bad/name") end, "may not contain")
  local v1 = read(root .. "/models/stories-sql/version-1/meta.yaml")
  T.ok(v1:find("source: 'file://" .. root, 1, true) and v1:find("/artifacts/adapter'", 1, true), v1)
  T.eq(read(root .. "/models/stories-sql/aliases/champion"), "1")
  if have_mlflow then
    local manifest = write(dir .. "/manifest.json", track.json {
      root = assert(fs.realpath(root)), experiment = "peftlua-test", model = "stories-sql", alias = "champion",
      registered_run = a.mlflow.run_id, alias_version = 1, versions = 2,
      live = { root = assert(fs.realpath(dir .. "/live")), run_id = live_run, steps = 3 },
      runs = {
        { run_id = a.mlflow.run_id, output = dir .. "/a/out", status = "FINISHED", lora_rank = 4 },
        { run_id = b.mlflow.run_id, output = dir .. "/b/out", status = "FINISHED", lora_rank = 2 },
        { run_id = rc_.mlflow.run_id, output = dir .. "/c/out", status = "FAILED", lora_rank = 4 },
        { run_id = rd.mlflow.run_id, output = dir .. "/d/out", status = "KILLED", lora_rank = 4 },
      } })
    local rc, out = T.sh(string.format("python3 %s %s", q(REF .. "/check_mlflow.py"), q(manifest)))
    io.write(out)
    T.eq(rc, 0, out)
    T.ok(out:find("checks passed"), out)
  end
end

function S.runs_without_tracking_write_no_store()
  local dir = fresh("track_plain")
  local old = os.getenv("PEFT_TRACKING")
  T.ok(old == nil or old == "", "PEFT_TRACKING is not set for the tests")
  local r = train(dir)
  local rec = json(r.run)
  T.eq(rec.mlflow, nil)
  T.eq(rec.status, "finished")
  T.eq(fs.stat(dir .. "/mlruns"), nil)
  T.raises(function() train(dir, { tracking = { uri = dir .. "/m", colour = "red" } }) end, "unknown key 'colour'")
  T.raises(function() train(dir, { tracking = "http://localhost:5000" }) end, "only a local directory")
end

-- peftlua data add on a git repository: .dvc files, the read-only cache, .gitignore; runs warn
-- when the data changed since; then DVC itself works on it (check_dvc.py).
function S.dvc_data_versions()
  local dir = fresh("track_dvc")
  local repo = dir .. "/repo"
  assert(fs.mkdir(repo .. "/data/sub"))
  T.eq((T.sh("cd " .. q(repo) .. " && git init -q")), 0)
  write(repo .. "/data/crlf.jsonl", '{"text": "one"}\r\n{"text": "two"}\r\n')
  write(repo .. "/data/sub/b.txt", "b\n")
  write(repo .. "/data/a-b.txt", "dash\n")
  write(repo .. "/data/caf\u{e9} \u{1F600}.txt", "unicode name\n")
  write(repo .. "/train.jsonl", read(DATA .. "train.jsonl"))
  local rc, out = T.sh(string.format("cd %s && %s data add train.jsonl data", q(repo), q(T.host)))
  T.eq(rc, 0, out)
  T.ok(out:find("train.jsonl: md5 %x+, %d+ bytes %-> train.jsonl.dvc"), out)
  local md5 = fs.hash(repo .. "/train.jsonl")
  T.eq(read(repo .. "/train.jsonl.dvc"), string.format("outs:\n- md5: %s\n  size: %d\n  hash: md5\n  path: train.jsonl\n",
    md5, fs.stat(repo .. "/train.jsonl").size))
  local d = read(repo .. "/data.dvc")
  T.ok(d:find("md5: %x+%.dir\n  size: 54\n  nfiles: 4\n  hash: md5\n  path: data\n"), d)
  local obj = repo .. "/.dvc/cache/files/md5/" .. md5:sub(1, 2) .. "/" .. md5:sub(3)
  T.eq(fs.stat(obj).mode, tonumber("444", 8), "cache objects are read-only")
  T.eq(fs.hash(obj), md5)
  T.eq(read(repo .. "/.gitignore"), "/train.jsonl\n/data\n")
  -- again: same files, no second .gitignore line
  local v = peft.data.version(repo .. "/train.jsonl")
  T.eq(v.md5, md5); T.eq(v.cached, 0)
  T.eq(read(repo .. "/.gitignore"), "/train.jsonl\n/data\n")
  T.raises(function() peft.data.version(repo .. "/nothing") end, "no such file")
  -- DVC itself: status clean, checkout restores deleted data, md5 = md5sum (CRLF included)
  if python_has("dvc") then
    rc, out = T.sh(string.format("python3 %s %s train.jsonl data", q(REF .. "/check_dvc.py"), q(repo)))
    io.write(out)
    T.eq(rc, 0, out)
    T.ok(out:find("checks passed"), out)
  end
  -- a run on changed data warns and records both digests
  T.eq(peft.dvc.check(repo .. "/data/sub/b.txt").changed, false)
  write(repo .. "/data/sub/b.txt", "changed\n")
  local c = peft.dvc.check(repo .. "/data/sub/b.txt")
  T.eq(c.changed, true); T.eq(c.dvcfile, assert(fs.realpath(repo)) .. "/data.dvc")
  local lines = {}
  for l in io.lines(DATA .. "train.jsonl") do lines[#lines + 1] = l; if #lines == 30 then break end end
  write(repo .. "/train.jsonl", table.concat(lines, "\n") .. "\n")
  local r = peft.train.run { model = MODEL, dataset = repo .. "/train.jsonl", output = dir .. "/out", max_iters = 1,
                             max_seq_len = 32, batch_size = 1, quiet = true, progress = false }
  local rec = json(r.run)
  T.eq(rec.data[1].dvc.changed, true)
  T.eq(rec.data[1].dvc.md5, md5)
  T.eq(rec.data[1].md5, (fs.hash(repo .. "/train.jsonl")))
  T.ok(rec.warnings[1]:find("differs from the version", 1, true), rec.warnings[1])
end

return S
