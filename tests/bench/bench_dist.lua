-- tests/bench/bench_dist.lua — data-parallel scaling figures (make bench; never fails on time).
-- SmolLM2-135M LoRA on wikisql rows, the same global batch (4 rows of up to 128 tokens per
-- step) run as 1 process x 1 thread, 2 processes x 1 thread (mpirun, grad_accum 1 each) and
-- 1 process x 2 threads; tokens/s over the steps after the first, the bytes each rank moved per
-- step, and what full fine-tuning would move. Needs MPI in the build and mpirun; otherwise it
-- prints the one-process figures only. Usage: build/peftlua tests/bench/bench_dist.lua [steps]
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/bench/") or "."
local MODEL = here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
local DATA = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/data/wikisql/train.jsonl"

if arg[1] == "child" then
  -- one run: arg = child, output dir, grad_accum, steps [, model, method]
  local out, ga, steps = arg[2], tonumber(arg[3]), tonumber(arg[4])
  local model, method = arg[5] or MODEL, arg[6] or "lora"
  local step_t = {}
  local r = peft.train.run {
    model = model, method = method, dataset = DATA, output = out, max_iters = steps, batch_size = 2, grad_accum = ga,
    max_seq_len = 128, lora_rank = 8, targets = { "q_proj", "v_proj" }, learning_rate = 1e-4, seed = 5,
    quiet = true, progress = false, save_adapter = false,
    on_step = function(info) step_t[info.step] = peft.train.now() end,
  }
  local st = peft.dist.stats()
  -- target tokens (the loss's count) of steps 2..n over their wall time, from rank 0's metrics
  -- (written by rank 0 alone: the other ranks only report their bytes)
  local tps = 0
  if peft.dist.rank() == 0 then
    local tok = {}
    local f = assert(io.open(out .. "/metrics.jsonl"))
    for line in f:lines() do
      local s, t = line:match('^{"step":(%d+),.-"tokens":(%d+)')
      if s then tok[tonumber(s)] = tonumber(t) end
    end
    f:close()
    tps = (tok[steps] - tok[1]) / (step_t[steps] - step_t[1])
  end
  local step_s = (step_t[steps] - step_t[1]) / (steps - 1)
  io.write(string.format("RESULT step_s=%.3f rank=%d ranks=%d threads=%d tps=%.1f sent=%d recv=%d reductions=%d reduce_s=%.4f params=%d\n",
    step_s, peft.dist.rank(), peft.dist.size(), peft.hw.threads(), tps, st.bytes_sent, st.bytes_recv, st.reductions,
    st.reduce_seconds, r.params))
  return
end

local steps = tonumber(arg[1]) or 5
local f = io.open(MODEL, "rb")
if not f then print("bench_dist: " .. MODEL .. " missing (make model); skipped") return end
f:close()
local host = os.getenv("PEFT_HOST") or (here .. "/build/peftlua")
-- Each process in its own session where setsid exists: Linux's autogroup scheduling shares the
-- CPU among sessions, so ranks started in one session would split one share between them (on a
-- busy machine) where ranks on separate cores each get their own.
local SESSION = os.execute("command -v setsid >/dev/null 2>&1") and "setsid -w " or ""
local me = here .. "/tests/bench/bench_dist.lua"
local tmp = here .. "/build/tmp"
os.execute("mkdir -p '" .. tmp .. "'")
print("bench_dist: " .. peft.hw.summary() .. (SESSION ~= "" and " | each process in its own session" or ""))
print(string.format("SmolLM2-135M LoRA r=8 q,v; global batch 4 rows x <=128 tokens; %d steps (target tokens/s over steps 2..%d)", steps, steps))

local function run(label, prefix, ga, model, method)
  local out = tmp .. "/bench_dist_" .. label:gsub("%W", "_")
  os.execute("rm -rf '" .. out .. "'")
  local p = io.popen(string.format("%s %snice -n 19 %s %s child %s %d %d %s %s 2>&1", prefix, SESSION, host, me, out, ga, steps,
    model or MODEL, method or "lora"))
  local txt = p:read("a")
  p:close()
  local rows = {}
  for line in txt:gmatch("RESULT ([^\n]+)") do
    local r = {}
    for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
    rows[#rows + 1] = r
  end
  if #rows == 0 then print(string.format("  %-26s failed: %s", label, txt:sub(1, 300))) return end
  table.sort(rows, function(a, b) return a.rank < b.rank end)
  local r0 = rows[1]
  local per = r0.reductions > 0 and r0.reductions or 1
  print(string.format("  %-26s %8.1f tokens/s  %6.2f s/step  ranks %d  per step: rank 0 sent %d B, received %d B%s",
    label, r0.tps, r0.step_s, r0.ranks, r0.sent // per, r0.recv // per,
    rows[2] and string.format("; rank 1 sent %d B, received %d B; reduction %.2f ms", rows[2].sent // per, rows[2].recv // per,
      1000 * r0.reduce_s / per) or ""))
  return r0
end

local one = run("1 process x 1 thread", "OMP_NUM_THREADS=1", 2)
local mpi = peft.dist.compiled() and os.execute("command -v mpirun >/dev/null 2>&1")
local MPIRUN = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2"
if mpi then
  run("2 processes x 1 thread", MPIRUN, 1)
else
  print("  2 processes x 1 thread     not run (" .. (peft.dist.compiled() and "mpirun not found" or "built without MPI") .. ")")
end
run("1 process x 2 threads", "OMP_NUM_THREADS=2", 2)
local full = peft.model.load(MODEL):card().params
if one then
  print(string.format("  gradient sent per rank per step: LoRA %d f32 = %.2f MiB; full fine-tuning of this model: %d f32 = %.1f MiB",
    one.params, one.params * 4 / 2^20, full, full * 4 / 2^20))
end
if mpi then
  -- full fine-tuning sends every weight's gradient: measured on the small model
  local small = (os.getenv("PEFT_SHARED") or (here .. "/../shared")) .. "/models/stories260K/stories260K.gguf"
  run("stories260K full, 2 x 1", MPIRUN, 1, small, "full")
end
