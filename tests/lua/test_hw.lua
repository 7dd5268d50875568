-- peft.hw against what the OS itself says.
local T = require "testlib"
local function first_line(cmd) local p = io.popen(cmd); local s = p:read("l"); p:close(); return s end
return {
  info_matches_the_os = function()
    local hw = peft.hw.info()
    local nproc = tonumber(first_line("getconf _NPROCESSORS_ONLN"))
    T.eq(hw.cores, nproc, "logical cores")
    T.ok(hw.physical_cores >= 1 and hw.physical_cores <= hw.cores, "physical cores in 1..logical")
    T.ok(hw.ram_total > 0 and hw.ram_available > 0 and hw.ram_available <= hw.ram_total, "RAM figures")
    T.ok(hw.memory_budget > 0 and hw.memory_budget < hw.ram_total, "default budget below RAM")
    T.eq(hw.arch, first_line("uname -m"))
    T.ok(#hw.cpu > 0 and hw.cpu ~= "unknown", "CPU model read")
    T.ok(#hw.blas_core > 0 and hw.blas_core ~= "unknown", "OpenBLAS core name: " .. hw.blas_core)
    local forced = os.getenv("OPENBLAS_CORETYPE")
    if forced and forced ~= "" then T.eq(hw.blas_core:lower(), forced:lower(), "OPENBLAS_CORETYPE honoured and reported") end
    if first_line("uname -s") == "Linux" then
      local mt = tonumber(first_line("awk '/MemTotal/ {print $2}' /proc/meminfo"))
      T.eq(hw.ram_total, mt * 1024, "MemTotal")
      local flags = first_line("grep -m1 '^flags' /proc/cpuinfo") or ""
      if flags:find(" avx512f") then T.eq(hw.simd, "avx512") elseif flags:find(" avx2") then T.ok(hw.simd:find("avx2")) end
    end
  end,
  env_overrides = function()
    local rc, out = T.sh("PEFT_THREADS=3 PEFT_MEMORY_BUDGET=2G " .. T.host .. " -e 'local h = peft.hw.info(); print(h.threads, h.memory_budget)'")
    T.eq(rc, 0, out)
    T.eq(out, "3\t2147483648\n")
  end,
  summary_line = function()
    local s = peft.hw.summary()
    T.ok(s:find("threads", 1, true) and s:find("OpenBLAS", 1, true), s)
  end,
  threads_set_and_get = function()
    local before = peft.hw.threads()
    T.eq(peft.hw.threads(1), 1)
    peft.hw.threads(before)
    T.raises(function() peft.hw.threads(0) end, "thread count")
  end,
  -- With nothing set, the engine runs on the physical cores; each variable, in its order of
  -- precedence, overrides that; report() shows the defaults and where they came from.
  default_threads_from_the_report = function()
    local clean = "env -u PEFT_THREADS -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS "
    local probe = " -e 'local h = peft.hw.info(); print(peft.hw.threads(), h.physical_cores, h.threads_source)'"
    local rc, out = T.sh(clean .. T.host .. probe)
    T.eq(rc, 0, out)
    local n, phys, src = out:match("^(%d+)\t(%d+)\t([^\n]+)")
    T.eq(n, phys, "threads = physical cores: " .. out)
    T.eq(src, "physical cores")
    for _, case in ipairs {
      { "OPENBLAS_NUM_THREADS=1", "1", "OPENBLAS_NUM_THREADS" },
      { "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=3", "1", "OMP_NUM_THREADS" },
      { "PEFT_THREADS=3 OMP_NUM_THREADS=1", "3", "PEFT_THREADS" },
      { "PEFT_THREADS=junk OMP_NUM_THREADS=1", "1", "OMP_NUM_THREADS" },
    } do
      rc, out = T.sh(clean .. case[1] .. " " .. T.host .. probe)
      T.eq(rc, 0, out)
      local got, _, s = out:match("^(%d+)\t(%d+)\t([^\n]+)")
      T.eq(got, case[2], case[1])
      T.eq(s, case[3], case[1])
    end
  end,
  report_shows_defaults = function()
    local h = peft.hw.info()
    local r = peft.hw.report()
    T.ok(r:find(string.format("threads  %d (%s); in use %d", h.threads, h.threads_source, peft.hw.threads()), 1, true), r)
    local gib, src = r:match("\nbudget   ([%d.]+) GiB %(([^)]+)%)")
    T.eq(src, h.budget_source, r)
    -- MemAvailable moves between the two reads: the figure within 0.2 GiB
    T.near(tonumber(gib), h.memory_budget / 2^30, 0.2, r)
    local rc, out = T.sh("PEFT_MEMORY_BUDGET=1.5G " .. T.host .. " -e 'print(peft.hw.report())'")
    T.eq(rc, 0, out)
    T.ok(out:find("budget   1.5 GiB (PEFT_MEMORY_BUDGET)", 1, true), out)
    rc, out = T.sh("PEFT_MEMORY_BUDGET=lots " .. T.host .. " -e 'print(peft.hw.info().budget_source)'")
    T.ok(out:find("PEFT_MEMORY_BUDGET is not a size", 1, true), out)
  end,
}
