/* hw.c — hardware report (see hw.h). Platform code is guarded so macOS and Linux both build.
 * Owner: memprof (defaults: thread count, memory budget). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <mach/mach.h>
#endif
#include "peftlua/blas.h"
#include "peftlua/dist.h"
#include "peftlua/hw.h"

#if defined(__APPLE__)
static int64_t pl_sysctl_i64(const char *name)
{
    int64_t v = 0;
    size_t n = sizeof v;
    if (sysctlbyname(name, &v, &n, NULL, 0) != 0) return -1;
    if (n == sizeof(int32_t)) return *(int32_t *)&v;
    return v;
}
#endif

static void pl_hw_cpu(struct pl_hw *hw)
{
#if defined(__APPLE__)
    size_t n = sizeof hw->cpu_model;
    if (sysctlbyname("machdep.cpu.brand_string", hw->cpu_model, &n, NULL, 0) != 0) snprintf(hw->cpu_model, sizeof hw->cpu_model, "unknown");
    hw->apple_silicon = pl_sysctl_i64("hw.optional.arm64") == 1;
    int64_t p = pl_sysctl_i64("hw.physicalcpu");
    hw->physical_cores = p > 0 ? (int)p : hw->logical_cores;
#else
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    int cores_per_socket = 0, sockets_seen = 0;
    char physids[64] = { 0 };
    if (f) {
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            if (!hw->cpu_model[0] && (strncmp(line, "model name", 10) == 0 || strncmp(line, "Model", 5) == 0))
                snprintf(hw->cpu_model, sizeof hw->cpu_model, "%s", v);
            else if (strncmp(line, "cpu cores", 9) == 0) cores_per_socket = atoi(v);
            else if (strncmp(line, "physical id", 11) == 0) {
                int id = atoi(v);
                if (id >= 0 && id < 64 && !physids[id]) { physids[id] = 1; sockets_seen++; }
            }
        }
        fclose(f);
    }
    if (!hw->cpu_model[0]) snprintf(hw->cpu_model, sizeof hw->cpu_model, "unknown");
    int phys = cores_per_socket * (sockets_seen ? sockets_seen : 1);
    hw->physical_cores = phys > 0 && phys <= hw->logical_cores ? phys : hw->logical_cores;
#endif
}

static void pl_hw_simd(struct pl_hw *hw)
{
    char *f = hw->simd_flags;
    size_t n = sizeof hw->simd_flags;
    const char *best = "scalar";
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    struct { const char *name; int on; } lv[] = {
        { "sse4.2", __builtin_cpu_supports("sse4.2") }, { "avx", __builtin_cpu_supports("avx") },
        { "avx2", __builtin_cpu_supports("avx2") }, { "fma", __builtin_cpu_supports("fma") },
        { "avx512f", __builtin_cpu_supports("avx512f") }, { "avx512bw", __builtin_cpu_supports("avx512bw") },
        { "avx512vnni", __builtin_cpu_supports("avx512vnni") },
    };
    for (size_t i = 0; i < sizeof lv / sizeof lv[0]; i++)
        if (lv[i].on) { size_t k = strlen(f); snprintf(f + k, n - k, "%s%s", k ? " " : "", lv[i].name); }
    if (lv[4].on) best = "avx512";
    else if (lv[2].on && lv[3].on) best = "avx2+fma";
    else if (lv[2].on) best = "avx2";
    else if (lv[1].on) best = "avx";
    else if (lv[0].on) best = "sse4.2";
#elif defined(__aarch64__) || defined(__arm64__)
    best = "neon";
    snprintf(f, n, "neon");
#if defined(__ARM_FEATURE_DOTPROD)
    { size_t k = strlen(f); snprintf(f + k, n - k, " dotprod"); }
#endif
#endif
    snprintf(hw->simd, sizeof hw->simd, "%s", best);
}

static void pl_hw_mem(struct pl_hw *hw)
{
    hw->ram_total = hw->ram_available = -1;
#if defined(__APPLE__)
    hw->ram_total = pl_sysctl_i64("hw.memsize");
    vm_statistics64_data_t vs;
    mach_msg_type_number_t cnt = HOST_VM_INFO64_COUNT;
    if (host_statistics64(mach_host_self(), HOST_VM_INFO64, (host_info64_t)&vs, &cnt) == KERN_SUCCESS)
        hw->ram_available = (int64_t)(vs.free_count + vs.inactive_count + vs.purgeable_count) * (int64_t)vm_page_size;
#else
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    if (f) {
        while (fgets(line, sizeof line, f)) {
            long long kb;
            if (sscanf(line, "MemTotal: %lld kB", &kb) == 1) hw->ram_total = kb * 1024;
            else if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) hw->ram_available = kb * 1024;
        }
        fclose(f);
    }
#endif
}

static void pl_hw_os(struct pl_hw *hw)
{
    struct utsname u;
    if (uname(&u) != 0) { snprintf(hw->os, sizeof hw->os, "unknown"); snprintf(hw->arch, sizeof hw->arch, "unknown"); return; }
    snprintf(hw->arch, sizeof hw->arch, "%s", u.machine);
#if defined(__APPLE__)
    char ver[32] = "";
    size_t n = sizeof ver;
    sysctlbyname("kern.osproductversion", ver, &n, NULL, 0);
    snprintf(hw->os, sizeof hw->os, "macOS %s (Darwin %s)", ver, u.release);
#else
    snprintf(hw->os, sizeof hw->os, "%s %s", u.sysname, u.release);
#endif
}

enum pl_status pl_hw_query(struct pl_hw *hw)
{
    memset(hw, 0, sizeof *hw);
    long lc = sysconf(_SC_NPROCESSORS_ONLN);
    hw->logical_cores = lc > 0 ? (int)lc : 1;
    pl_hw_cpu(hw);
    pl_hw_simd(hw);
    pl_hw_mem(hw);
    pl_hw_os(hw);
    snprintf(hw->blas_core, sizeof hw->blas_core, "%s", pl_blas_corename());
    const char *better = pl_blas_better_coretype();
    snprintf(hw->blas_better, sizeof hw->blas_better, "%s", better ? better : "");
    hw->blas_threads = pl_blas_threads();
    hw->ranks = pl_dist_size();
    hw->rank = pl_dist_rank();
    hw->local_ranks = pl_dist_local_size();
    return PL_OK;
}

/* a positive leading integer of an environment variable, else 0 ("4,2" -> 4, as OpenMP) */
static int pl_env_threads(const char *name)
{
    const char *e = getenv(name);
    if (!e) return 0;
    char *end;
    long v = strtol(e, &end, 10);
    return end != e && v > 0 && v <= 4096 ? (int)v : 0;
}

int pl_hw_default_threads_src(const struct pl_hw *hw, const char **source)
{
    static const char *const vars[] = { "PEFT_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int n = pl_env_threads(vars[i]);
        if (n > 0) {
            if (source) *source = vars[i];
            return n;
        }
    }
    const int cores = hw->physical_cores > 0 ? hw->physical_cores : 1;
    if (hw->local_ranks > 1) {
        /* several ranks on this machine share its cores */
        if (source) *source = "physical cores / ranks on this machine";
        return cores / hw->local_ranks > 0 ? cores / hw->local_ranks : 1;
    }
    if (source) *source = "physical cores";
    return cores;
}

int pl_hw_default_threads(const struct pl_hw *hw) { return pl_hw_default_threads_src(hw, NULL); }

int64_t pl_hw_default_budget(const struct pl_hw *hw) { return pl_hw_default_budget_src(hw, NULL); }

int64_t pl_hw_default_budget_src(const struct pl_hw *hw, const char **source)
{
    const char *e = getenv("PEFT_MEMORY_BUDGET");
    int bad = 0;
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        switch (*end) {
        case 'k': case 'K': v *= 1024.0; end++; break;
        case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
        case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
        case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024; end++; break;
        default: break;
        }
        if (*end == 'i' || *end == 'I') end++;   /* "2GiB" */
        if (*end == 'b' || *end == 'B') end++;
        if (*end == 0 && v >= 1 && v < 9.0e18) {
            if (source) *source = "PEFT_MEMORY_BUDGET";
            return (int64_t)v;
        }
        bad = 1;
    }
    int64_t avail = hw->ram_available > 0 ? hw->ram_available : hw->ram_total;
    const int share = hw->local_ranks > 1 ? hw->local_ranks : 1;   /* ranks on this machine */
    if (source) {
        if (bad) *source = hw->ram_available > 0 ? "85% of available RAM (PEFT_MEMORY_BUDGET is not a size)"
                                                 : "85% of total RAM (PEFT_MEMORY_BUDGET is not a size)";
        else if (share > 1) *source = hw->ram_available > 0 ? "85% of available RAM / ranks on this machine"
                                                             : "85% of total RAM / ranks on this machine";
        else *source = hw->ram_available > 0 ? "85% of available RAM" : "85% of total RAM";
    }
    return avail > 0 ? avail / 100 * 85 / share : 0;
}

void pl_hw_summary(const struct pl_hw *hw, int threads, char *buf, int n)
{
    char warn[96] = "";
    if (hw->blas_better[0])
        snprintf(warn, sizeof warn, "; slow kernels, OPENBLAS_CORETYPE=%s is faster", hw->blas_better);
    snprintf(buf, (size_t)n, "%s | %d threads | %s | OpenBLAS %s (%d threads%s) | %s | %d rank%s",
             hw->cpu_model, threads, hw->simd, hw->blas_core, hw->blas_threads, warn, hw->os,
             hw->ranks, hw->ranks == 1 ? "" : "s");
}
