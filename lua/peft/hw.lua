-- lua/peft/hw.lua — peft.hw.report(): the hardware report as text, with the defaults it drives.
-- Owner: memprof. Extends the C module (src/lua/l_hw.c), passed as `...`.
--
--   print(peft.hw.report())
--   cpu      AMD EPYC (x86_64), 2 logical / 2 physical cores, avx512
--   memory   23.5 GiB total, 20.1 GiB available
--   os       Linux 6.1.0
--   blas     OpenBLAS Haswell
--   threads  2 (physical cores); in use 2
--   budget   17.1 GiB (85% of available RAM)
--   ranks    1 (one process; mpirun -np N for more, docs/distributed.md)
local M = ...

local function gib(b)
  if not b or b < 0 then return "unknown" end
  return string.format("%.1f GiB", b / 2^30)
end

function M.report()
  local h = M.info()
  return table.concat({
    string.format("cpu      %s (%s), %d logical / %d physical cores, %s", h.cpu, h.arch, h.cores,
                  h.physical_cores, h.simd),
    string.format("memory   %s total, %s available", gib(h.ram_total), gib(h.ram_available)),
    string.format("os       %s", h.os),
    string.format("blas     OpenBLAS %s", h.blas_core),
    string.format("threads  %d (%s); in use %d", h.threads, h.threads_source, h.threads_in_use),
    string.format("budget   %s (%s)", gib(h.memory_budget), h.budget_source),
    string.format("ranks    %d%s", h.ranks, h.ranks > 1 and string.format(" (this is rank %d; %d on this machine)",
                  h.rank, h.local_ranks) or " (one process; mpirun -np N for more, docs/distributed.md)"),
  }, "\n")
end

return M
