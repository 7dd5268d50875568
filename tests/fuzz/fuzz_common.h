/* fuzz_common.h — shared plumbing of the libFuzzer harnesses in tests/fuzz/.
 *
 * Every reader takes a path, so a harness writes the input to a file in a private temporary
 * directory and calls the reader on it. The readers then see the bytes as exact-size heap
 * copies, not page-rounded mappings (pl_file_map_exact), and every engine block is exact-size
 * (pl_mem_set_exact): a read one byte past the end of anything is caught by AddressSanitizer.
 *
 * Inputs made of several files (adapter config + weights, manifest + state) are split at the
 * line FZ_SPLIT; the seed corpora (tests/fuzz/make_seeds.sh) are built that way.
 *
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined, and by `make
 * fuzz-replay` with the C compiler, ASan+UBSan and replay_main.c (every file of the
 * committed corpora run once as a plain input, no clang needed).
 */
#ifndef PL_FUZZ_COMMON_H
#define PL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peftlua/peftlua.h"
#include "peftlua/fileio.h"

#ifndef PL_FUZZ_ROOT
#define PL_FUZZ_ROOT "."
#endif

#define FZ_SPLIT "\n--PEFTLUA-FUZZ-SPLIT--\n"

#include <ftw.h>

static char fz_dir[256];

static inline int fz_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static inline void fz_cleanup(void) { if (fz_dir[0]) nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS); }

static inline void fz_init(void)
{
    if (fz_dir[0]) return;
    pl_mem_set_exact(1);
    pl_file_map_exact(1);
    const char *base = getenv("TMPDIR");
    if (access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    snprintf(fz_dir, sizeof fz_dir, "%s/peftlua-fuzz-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(fz_dir)) { perror("mkdtemp"); exit(1); }
    atexit(fz_cleanup);
}

/* fz_dir/name with the given bytes; returns the path (static buffer per slot). */
static inline const char *fz_write(const char *name, const uint8_t *data, size_t n)
{
    static char paths[4][512];
    static int slot;
    char *p = paths[slot++ & 3];
    snprintf(p, 512, "%s/%s", fz_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    if (n && fwrite(data, 1, n, f) != n) { perror(p); exit(1); }
    fclose(f);
    return p;
}

static inline const char *fz_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", fz_dir, name);
    return p;
}

/* A file of the project or of ../shared (seeds and fixed companions). */
static inline const char *fz_root(const char *rel)
{
    static char p[1024];
    const char *r = getenv("PEFTLUA_ROOT");
    snprintf(p, sizeof p, "%s/%s", r ? r : PL_FUZZ_ROOT, rel);
    return p;
}

/* Split data at FZ_SPLIT into up to max parts; returns the number of parts. */
static inline int fz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max)
{
    const size_t sl = sizeof FZ_SPLIT - 1;
    int k = 0;
    const uint8_t *p = data, *end = data + n;
    while (k < max - 1) {
        const uint8_t *q = memmem(p, (size_t)(end - p), FZ_SPLIT, sl);
        if (!q) break;
        part[k] = p; len[k] = (size_t)(q - p); k++;
        p = q + sl;
    }
    part[k] = p; len[k] = (size_t)(end - p);
    return k + 1;
}

/* An exact-size heap copy of data, NUL-terminated only when asked (nul = 1). */
static inline char *fz_copy(const uint8_t *data, size_t n, int nul)
{
    char *c = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul));
    if (!c) exit(1);
    memcpy(c, data, n);
    if (nul) c[n] = 0;
    return c;
}

#endif
