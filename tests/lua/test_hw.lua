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
  -- The host's start-up choices (src/host/main.c): with nothing set it re-executes itself with a
  -- passive OpenMP wait after a 10,000-spin and, where OpenBLAS chose a weaker kernel family
  -- than the CPU has, with OPENBLAS_CORETYPE set to the stronger one; a user's choices stay.
  host_runtime_choices = function()
    local probe = [[-e 'local h = peft.hw.info(); print(os.getenv("OMP_WAIT_POLICY"), os.getenv("GOMP_SPINCOUNT"), h.blas_core, h.blas_better_core or "-")']]
    local function fields(s) return s:match("^(%S+)\t(%S+)\t(%S+)\t(%S+)") end
    local clean = "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_CORETYPE -u PEFTLUA_NO_REEXEC "
    local rc, out = T.sh(clean .. T.host .. " " .. probe)
    T.eq(rc, 0, out)
    local wait, spin, core, better = fields(out)
    T.eq(wait, "passive", out)
    T.eq(spin, "10000", out)
    T.eq(better, "-", "after the host's choice nothing faster is left: " .. out)
    -- Without the re-exec OpenBLAS keeps its own choice; a weaker one than the CPU's SIMD level
    -- is named, and forcing the oldest family shows it on any x86 machine with AVX2 + FMA.
    local flags = first_line("grep -m1 '^flags' /proc/cpuinfo 2>/dev/null") or ""
    local want = (flags:find(" avx512f") and flags:find(" avx512bw") and flags:find(" avx512dq")
                  and flags:find(" avx512vl")) and "SkylakeX" or (flags:find(" avx2") and flags:find(" fma") and "Haswell")
    if want then
      rc, out = T.sh("env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive PEFTLUA_NO_REEXEC=1 OPENBLAS_CORETYPE=Prescott " .. T.host .. " " .. probe)
      T.eq(rc, 0, out)
      local _, _, c2, b2 = fields(out)
      T.eq(c2, "Prescott", out)
      T.eq(b2, want, out)
      rc, out = T.sh("OMP_WAIT_POLICY=passive PEFTLUA_NO_REEXEC=1 OPENBLAS_CORETYPE=Prescott " .. T.host .. " -e 'print(peft.hw.summary())'")
      T.ok(out:find("OPENBLAS_CORETYPE=" .. want, 1, true), "summary warns: " .. out)
      -- the user's choice is kept (the host does not override a set OPENBLAS_CORETYPE)
      rc, out = T.sh("env -u PEFTLUA_NO_REEXEC OPENBLAS_CORETYPE=Prescott " .. T.host .. " " .. probe)
      T.eq(select(3, fields(out)), "Prescott", out)
    end
    T.ok(core and #core > 0, out)
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
    -- the host refuses a value that is not a size (by name); the library's report still says
    -- what it fell back on for embedders that do not check
    rc, out = T.sh("PEFT_MEMORY_BUDGET=lots " .. T.host .. " -e 'print(peft.hw.info().budget_source)'")
    T.eq(rc, 1, out)
    T.ok(out:find("PEFT_MEMORY_BUDGET='lots' is not a size", 1, true), out)
    rc, out = T.sh("PEFT_THREADS=junk " .. T.host .. " -e 'print(1)'")
    T.eq(rc, 1, out)
    T.ok(out:find("PEFT_THREADS='junk' is not a thread count", 1, true), out)
  end,
}
