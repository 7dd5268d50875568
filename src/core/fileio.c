/* fileio.c — whole-file read-only mappings, tensors over pieces of them, THE atomic file
 * writer (every checkpoint, adapter, export, report, chart and tuner history goes through
 * pl_file_replace_begin/end or pl_file_write_atomic: temporary file, fsync, rename, fsync of
 * the directory), and the output-directory lock.
 *
 * Owner: formats. API: include/peftlua/fileio.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peftlua/fileio.h"
#include "peftlua/alloc.h"

static int pl_map_exact;
void pl_file_map_exact(int on) { pl_map_exact = on != 0; }

/* The exact-size heap copy the fuzzers read through (one byte past the end is caught). */
static enum pl_status map_copy(int fd, const char *path, uint64_t n, const uint8_t **map)
{
    uint8_t *buf = malloc((size_t)n);
    if (!buf) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, (size_t)n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { free(buf); return pl_fail(PL_ERR_IO, "%s: short read", path); }
        got += (size_t)r;
    }
    *map = buf;
    return PL_OK;
}

enum pl_status pl_file_map(const char *path, const uint8_t **map, uint64_t *size)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        const int e = errno;
        close(fd);
        return pl_fail(PL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return pl_fail(PL_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {   /* mmap refuses a zero length */
        close(fd);
        return PL_OK;
    }
    if (pl_map_exact) {
        enum pl_status st = map_copy(fd, path, (uint64_t)sb.st_size, map);
        close(fd);
        if (st == PL_OK) *size = (uint64_t)sb.st_size;
        return st;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int e = errno;
    close(fd);
    if (m == MAP_FAILED) return pl_fail(PL_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    *map = m;
    *size = (uint64_t)sb.st_size;
    pl_mem_track(PL_MEM_MAPPED, (int64_t)*size);
    return PL_OK;
}

void pl_file_unmap(const uint8_t *map, uint64_t size)
{
    if (!map) return;
    if (pl_map_exact) { free((void *)map); return; }
    munmap((void *)map, (size_t)size);
    pl_mem_track(PL_MEM_MAPPED, -(int64_t)size);
}

struct pl_tensor *pl_file_tensor(const void *data, uint64_t nbytes, enum pl_dtype dtype, int ndim,
                                 const int64_t *shape, void (*release)(struct pl_storage *), void *owner,
                                 const char *file, const char *name)
{
    struct pl_storage *s = pl_storage_wrap((void *)data, (size_t)nbytes, PL_MEM_MAPPED, release, owner);
    if (!s) {
        /* give back the caller's reference the way the storage would have */
        struct pl_storage none = { .owner = owner };
        release(&none);
        return NULL;
    }
    struct pl_tensor *x = pl_tensor_over(s, 0, dtype, ndim, shape);
    pl_storage_release(s);   /* the tensor holds its own reference (or, on failure, none) */
    if (!x) {
        char why[256];
        snprintf(why, sizeof why, "%s", pl_last_error());
        pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': %s", file, name, why);
    }
    return x;
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;              /* nothing we may sync (no read permission): not an error */
    int r = fsync(fd);
    if (r != 0 && (errno == EINVAL || errno == EROFS)) r = 0;   /* file systems without it */
    const int e = errno;
    close(fd);
    errno = e;
    return r;
}

enum pl_status pl_file_replace_begin(struct pl_file_out *o, const char *path)
{
    o->f = NULL;
    o->path = path;
    const size_t plen = strlen(path);
    o->tmp = pl_alloc(plen + 16, PL_MEM_WORKSPACE);
    if (!o->tmp) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    snprintf(o->tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        const int e = errno;
        pl_free(o->tmp);
        o->tmp = NULL;
        return pl_fail(PL_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    /* mkstemp makes the file 0600; give it what a plain new file would get */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        const int e = errno;
        close(fd);
        unlink(o->tmp);
        pl_free(o->tmp);
        o->tmp = NULL;
        return pl_fail(PL_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return PL_OK;
}

enum pl_status pl_file_replace_end(struct pl_file_out *o, int err)
{
    int e = err;
    if (!e && fflush(o->f) != 0) e = errno;
    if (!e && fsync(fileno(o->f)) != 0) e = errno;
    if (fclose(o->f) != 0 && !e) e = errno;
    o->f = NULL;
    if (!e && rename(o->tmp, o->path) != 0) e = errno;
    if (e) unlink(o->tmp);
    pl_free(o->tmp);
    o->tmp = NULL;
    if (e) return pl_fail(PL_ERR_IO, "%s: write failed: %s%s", o->path, strerror(e),
                          e == ENOSPC || e == EFBIG || e == EDQUOT ? " (the previous file, if any, is unchanged)" : "");
    /* the rename is durable only once the directory entry is */
    if (fsync_dir_of(o->path) != 0) {
        e = errno;
        return pl_fail(PL_ERR_IO, "%s: cannot sync its directory: %s", o->path, strerror(e));
    }
    return PL_OK;
}

enum pl_status pl_file_write_atomic(const char *path, const void *const *parts, const size_t *sizes,
                                    int nparts)
{
    struct pl_file_out o;
    enum pl_status st = pl_file_replace_begin(&o, path);
    if (st != PL_OK) return st;
    int err = 0;
    for (int i = 0; i < nparts && !err; i++)
        if (sizes[i] && fwrite(parts[i], 1, sizes[i], o.f) != sizes[i]) err = errno ? errno : EIO;
    return pl_file_replace_end(&o, err);
}

/* ------------------------------------------------------------------ output-directory lock */

#define LOCK_NAME "peftlua.lock"

static int pid_alive(long pid)
{
    if (pid <= 0 || pid > 0x7fffffffL) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return 0;
    /* a zombie (exited, not yet reaped: an MPI rank killed with its job) holds nothing */
    char p[64], buf[256];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

enum pl_status pl_dir_lock_wait(const char *dir, struct pl_dir_lock *lk, int wait_ms)
{
    for (int waited = 0;; waited += 100) {
        enum pl_status st = pl_dir_lock(dir, lk);
        if (st != PL_ERR_STATE || waited >= wait_ms) return st;
        usleep(100000);   /* the holder may be winding down (a resumed run right after a crash) */
    }
}

enum pl_status pl_dir_lock(const char *dir, struct pl_dir_lock *lk)
{
    lk->path = NULL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return pl_fail(PL_ERR_IO, "%s: cannot create the output directory: %s", dir, strerror(errno));
    size_t n = strlen(dir) + sizeof LOCK_NAME + 2;
    char *path = pl_alloc(n, PL_MEM_WORKSPACE);
    if (!path) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(path, n, "%s/%s", dir, LOCK_NAME);
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
            int bad = write(fd, buf, (size_t)len) != len;
            bad |= fsync(fd) != 0;
            bad |= close(fd) != 0;
            if (bad) {
                const int e = errno;
                unlink(path);
                pl_free(path);
                return pl_fail(PL_ERR_IO, "%s/%s: cannot write the lock file: %s", dir, LOCK_NAME, strerror(e));
            }
            lk->path = path;
            return PL_OK;
        }
        if (errno != EEXIST) {
            const int e = errno;
            pl_free(path);
            return pl_fail(PL_ERR_IO, "%s/%s: cannot create the lock file: %s", dir, LOCK_NAME, strerror(e));
        }
        /* held: by a live process (refuse) or left by one that died (stale: take it over) */
        char buf[32] = {0};
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) continue;                 /* removed meanwhile: try again */
        ssize_t r = read(rfd, buf, sizeof buf - 1);
        close(rfd);
        char *end = NULL;
        long pid = r > 0 ? strtol(buf, &end, 10) : 0;
        if (r > 0 && end != buf && pid_alive(pid)) {
            pl_free(path);
            return pl_fail(PL_ERR_STATE, "%s: output directory is in use by another run (pid %ld holds %s/%s); "
                           "wait for it to finish, choose another output, or remove the lock file if that "
                           "process is not peftlua", dir, pid, dir, LOCK_NAME);
        }
        if (r == 0 && attempt == 0) {           /* being written right now: look again */
            usleep(100000);
            continue;
        }
        unlink(path);                          /* stale */
    }
    pl_free(path);
    return pl_fail(PL_ERR_STATE, "%s/%s: cannot take the lock (another run keeps taking it)", dir, LOCK_NAME);
}

void pl_dir_unlock(struct pl_dir_lock *lk)
{
    if (!lk || !lk->path) return;
    /* remove it only while it is still ours */
    char buf[32] = {0};
    int fd = open(lk->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r > 0 && strtol(buf, NULL, 10) == (long)getpid()) unlink(lk->path);
    }
    pl_free(lk->path);
    lk->path = NULL;
}
