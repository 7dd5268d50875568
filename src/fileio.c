/* fileio.c — whole-file read-only mappings, tensors over pieces of them, and atomic file
 * replacement, shared by the GGUF (gguf.c) and safetensors (safetensors.c) readers and
 * writers so that both open, account and write files the same way.
 *
 * Owner: formats. API: include/peftlua/fileio.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peftlua/fileio.h"
#include "peftlua/alloc.h"

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
    if (e) return pl_fail(PL_ERR_IO, "%s: write failed: %s", o->path, strerror(e));
    return PL_OK;
}
