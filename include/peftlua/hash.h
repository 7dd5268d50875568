/* hash.h — MD5 and SHA-256, streamed, for identifying files: a run records its model's
 * SHA-256 and its datasets' MD5 (the digest DVC keys its cache by), and DVC-compatible dataset
 * versions name their cache objects by MD5. Neither is used for security here.
 *
 *     char hex[PL_HASH_HEX_MAX];
 *     uint64_t size;
 *     if (pl_hash_file("train.jsonl", PL_HASH_MD5, hex, &size) != PL_OK) ... pl_last_error()
 *
 *     struct pl_hash h;                       // or incrementally, any number of updates
 *     pl_hash_init(&h, PL_HASH_SHA256);
 *     pl_hash_update(&h, buf, n);
 *     pl_hash_hex(&h, hex);                   // lowercase hex, NUL-terminated
 *
 * Files are read in 1 MiB pieces (no mapping, so any size and pipes work); the bytes are hashed
 * as they are (no newline conversion: DVC 3 hashes CRLF files as-is too).
 * Implemented in src/core/hash.c.
 */
#ifndef PEFTLUA_HASH_H
#define PEFTLUA_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

enum pl_hash_algo { PL_HASH_MD5, PL_HASH_SHA256 };

#define PL_HASH_HEX_MAX 65   /* 64 hex digits of SHA-256 + NUL (MD5 uses 33) */

struct pl_hash {
    enum pl_hash_algo algo;
    uint32_t state[8];       /* MD5 uses the first 4 */
    uint64_t length;         /* bytes hashed so far */
    uint8_t block[64];
    uint32_t used;           /* bytes waiting in block */
};

void pl_hash_init(struct pl_hash *h, enum pl_hash_algo algo);
void pl_hash_update(struct pl_hash *h, const void *data, size_t n);
/* Finishes h (it must be initialised again before reuse); hex gets 32 (MD5) or 64 (SHA-256)
 * lowercase digits and a NUL. Returns the digest length in bytes (16 or 32). */
int pl_hash_hex(struct pl_hash *h, char hex[PL_HASH_HEX_MAX]);

/* "md5" | "sha256" → algo; -1 when unknown. */
int pl_hash_algo_from_name(const char *name);
const char *pl_hash_algo_name(enum pl_hash_algo algo);

/* Hashes the file at path (size may be NULL). Errors (PL_ERR_IO): "<path>: cannot open: …",
 * "<path>: is a directory", "<path>: read failed: …"; PL_ERR_INTERRUPTED when Ctrl-C arrives
 * during a long file. */
enum pl_status pl_hash_file(const char *path, enum pl_hash_algo algo, char hex[PL_HASH_HEX_MAX],
                            uint64_t *size);

#endif
