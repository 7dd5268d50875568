/* fileio.h — the file plumbing shared by the weight-file readers and writers (GGUF,
 * safetensors): a read-only mapping of a whole file, a tensor viewing part of such a
 * mapping, and replacing a file atomically.
 *
 *     const uint8_t *map; uint64_t size;
 *     if (pl_file_map(path, &map, &size) != PL_OK) return PL_ERR_IO;   // message set
 *     ... validate map[0 .. size) ...
 *     pl_file_unmap(map, size);
 *
 *     struct pl_file_out out;
 *     if (pl_file_replace_begin(&out, path) != PL_OK) return ...;
 *     int err = fwrite(...) != n ? errno : 0;                          // write to out.f
 *     return pl_file_replace_end(&out, err);                           // fsync + rename
 *
 * Implemented in src/core/fileio.c.
 */
#ifndef PEFTLUA_FILEIO_H
#define PEFTLUA_FILEIO_H

#include <stdint.h>
#include <stdio.h>

#include "peftlua/status.h"
#include "peftlua/tensor.h"

/* Maps the regular file at path read-only (private) and accounts it under PL_MEM_MAPPED.
 * An empty file is not mapped: *map = NULL, *size = 0, PL_OK (the caller decides whether
 * that is an error). Errors (PL_ERR_IO): "<path>: cannot open: …", "<path>: cannot stat: …",
 * "<path>: not a regular file", "<path>: cannot map: …". */
enum pl_status pl_file_map(const char *path, const uint8_t **map, uint64_t *size);

/* Undoes pl_file_map (NULL map is fine). */
void pl_file_unmap(const uint8_t *map, uint64_t size);

/* A contiguous tensor over nbytes at data, a piece of a mapping owned by owner. The caller
 * hands over one reference it holds on owner: release(storage) runs, with storage->owner ==
 * owner, when the last tensor over it goes, or at once when this fails. On failure returns
 * NULL with the message "<file>: tensor '<name>': <why>" (or the allocator's message). */
struct pl_tensor *pl_file_tensor(const void *data, uint64_t nbytes, enum pl_dtype dtype, int ndim,
                                 const int64_t *shape, void (*release)(struct pl_storage *), void *owner,
                                 const char *file, const char *name);

/* For the fuzzers: read files into exact-size heap copies instead of mapping them (a read one
 * byte past the end is then caught by AddressSanitizer). Off by default. */
void pl_file_map_exact(int on);

/* Atomic replacement — the one writer every output file goes through (checkpoints, adapters,
 * exports, GGUF/safetensors, reports, charts, tuner histories): the bytes go to "<path>.tmp.XXXXXX" beside the target (created with the
 * permissions a new file would get), which pl_file_replace_end flushes, fsyncs and renames
 * over path, or removes on any error, so an interrupted write never leaves half a file. */
struct pl_file_out {
    FILE *f;
    char *tmp;
    const char *path;
};

/* Errors: "<path>: out of memory", "<path>: cannot create a temporary file: …",
 * "<path>: write failed: …" when the stream cannot be opened; nothing is left behind. */
enum pl_status pl_file_replace_begin(struct pl_file_out *o, const char *path);

/* err: 0, or the errno of a failed write. Closes o->f and frees o->tmp in every case.
 * Error: "<path>: write failed: <strerror>". */
enum pl_status pl_file_replace_end(struct pl_file_out *o, int err);

/* The same for a file made of parts (n of them, concatenated); the directory entry is synced
 * after the rename. A full disk (ENOSPC) or a file-size limit (EFBIG) gives
 * "<path>: write failed: <strerror> (the previous file, if any, is unchanged)". */
enum pl_status pl_file_write_atomic(const char *path, const void *const *parts, const size_t *sizes,
                                    int nparts);

/* Output-directory lock: <dir>/peftlua.lock holds the holder's pid. A second run on the same
 * directory gets PL_ERR_STATE "<dir>: output directory is in use by another run (pid N ...)";
 * a lock whose pid no longer exists is stale and taken over. Creates dir if needed. */
struct pl_dir_lock { char *path; };
enum pl_status pl_dir_lock(const char *dir, struct pl_dir_lock *lk);
void pl_dir_unlock(struct pl_dir_lock *lk);   /* removes the file if it is still ours; NULL ok */
/* The same, waiting up to wait_ms for a live holder to let go (a resumed run started while the
 * crashed run's last process is still exiting); then the same refusal. */
enum pl_status pl_dir_lock_wait(const char *dir, struct pl_dir_lock *lk, int wait_ms);

#endif
