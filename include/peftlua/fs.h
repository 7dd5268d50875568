/* fs.h — the file-system steps that versioning and run tracking need and C's stdio lacks:
 * what a path is, the files under a directory, making directories, an atomic copy with the
 * mode chosen, and absolute paths (MLflow stores file:// URIs).
 *
 *     struct pl_fs_stat st;
 *     if (pl_fs_stat("data", &st) == PL_OK && st.type == PL_FS_DIR) ...
 *     char **files; int n;
 *     pl_fs_list("data", &files, &n);          // relative paths of the regular files under it
 *     ... pl_fs_list_free(files, n);
 *
 * Implemented in src/core/fs.c.
 */
#ifndef PEFTLUA_FS_H
#define PEFTLUA_FS_H

#include <stdint.h>
#include "peftlua/status.h"

enum pl_fs_type { PL_FS_MISSING = 0, PL_FS_FILE, PL_FS_DIR, PL_FS_OTHER };

struct pl_fs_stat {
    enum pl_fs_type type;   /* after following symbolic links */
    uint64_t size;
    uint32_t mode;          /* permission bits */
    int64_t mtime_ns;
};

/* A missing path is not an error: st->type = PL_FS_MISSING. Other failures: PL_ERR_IO. */
enum pl_status pl_fs_stat(const char *path, struct pl_fs_stat *st);

/* Every regular file below dir (symbolic links followed), as paths relative to dir with '/'
 * separators, sorted bytewise; directories named ".git" or ".dvc" are skipped. *files is
 * allocated (free with pl_fs_list_free). Errors: "<path>: cannot read the directory: …",
 * "<path>: neither a regular file nor a directory". */
enum pl_status pl_fs_list(const char *dir, char ***files, int *n);
void pl_fs_list_free(char **files, int n);
/* The names directly in dir (any type, "." and ".." left out), sorted bytewise; free with
 * pl_fs_list_free. */
enum pl_status pl_fs_entries(const char *dir, char ***names, int *n);

/* mkdir -p, with mode 0777 & ~umask. */
enum pl_status pl_fs_mkdirs(const char *path);

/* Copies src to dst through a temporary file beside dst renamed over it (dst is never seen
 * half-written), then sets dst's permission bits to mode (e.g. 0444 for a read-only cache
 * object). */
enum pl_status pl_fs_copy(const char *src, const char *dst, uint32_t mode);

/* The absolute, symlink-free path of an existing path (realpath(3)); *out allocated with
 * pl_alloc (pl_free it). */
enum pl_status pl_fs_realpath(const char *path, char **out);
/* The whole file at path into *out (pl_alloc'd, PL_MEM_DATA, one NUL byte after the *n bytes;
 * free with pl_free). PL_ERR_IO naming the path when it cannot be read. Writing a whole file
 * atomically: pl_file_write_atomic (fileio.h). */
enum pl_status pl_fs_read(const char *path, char **out, size_t *n);

#endif
