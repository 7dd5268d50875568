/* hw.h — what machine are we on: CPU, cores, SIMD, memory, OS, BLAS.
 *
 * Read once per call (cheap); drives defaults: thread count and the memory budget.
 * Linux reads /proc; macOS uses sysctl (Apple Silicon detected via hw.optional.arm64).
 */
#ifndef PEFTLUA_HW_H
#define PEFTLUA_HW_H

#include <stdint.h>
#include "peftlua/status.h"

struct pl_hw {
    char    cpu_model[128];
    char    arch[80];          /* "x86_64", "arm64", ... */
    char    os[160];           /* "Linux 6.1.0", "macOS 14.5 (Darwin 23.5.0)" */
    char    simd[64];          /* best level: "avx512", "avx2+fma", "neon", ... */
    char    simd_flags[160];   /* every level found, space separated */
    int     logical_cores;
    int     physical_cores;    /* best effort; = logical when unknown */
    int     apple_silicon;     /* 1 on Apple M-series */
    int64_t ram_total;         /* bytes */
    int64_t ram_available;     /* bytes: MemAvailable on Linux, free+inactive on macOS */
    char    blas_core[64];     /* OpenBLAS core type in use ("Haswell", "SkylakeX", ...) */
    int     blas_threads;
    char    blas_better[32];   /* a faster core type this CPU could use ("SkylakeX"), or "" */
    int     ranks;             /* MPI processes in the job (dist.h; 1 without MPI) */
    int     rank;              /* this one */
    int     local_ranks;       /* of them on this machine: the default threads and budget are
                                  this machine's divided by it */
};

enum pl_status pl_hw_query(struct pl_hw *hw);
/* Threads peftlua uses by default: the first of PEFT_THREADS, OMP_NUM_THREADS (its first
 * number), OPENBLAS_NUM_THREADS that is set to a positive number, else the physical cores.
 * The host (src/host/main.c) applies it at start-up (pl_blas_set_threads: the OpenMP team that
 * runs every kernel, BLAS pieces included). source (may be NULL) receives where it came from:
 * the variable's name or "physical cores". */
int pl_hw_default_threads(const struct pl_hw *hw);
int pl_hw_default_threads_src(const struct pl_hw *hw, const char **source);
/* Default memory budget for training: PEFT_MEMORY_BUDGET (bytes, or with K/M/G suffix) if set,
 * else 85% of available RAM (of total RAM when the available figure is unknown). source (may
 * be NULL): "PEFT_MEMORY_BUDGET" or "85% of available RAM". */
int64_t pl_hw_default_budget(const struct pl_hw *hw);
int64_t pl_hw_default_budget_src(const struct pl_hw *hw, const char **source);
/* One line: "AMD EPYC ... | 2 threads | avx512 | OpenBLAS Haswell" for benchmark headers. */
void pl_hw_summary(const struct pl_hw *hw, int threads, char *buf, int n);

#endif
