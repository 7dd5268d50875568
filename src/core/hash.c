/* hash.c — MD5 (RFC 1321) and SHA-256 (FIPS 180-4), streamed over 64-byte blocks, and the
 * file hasher built on them. Checked against the RFC/FIPS test vectors and md5sum/sha256sum in
 * tests/c/test_hash.c. Owner: track. API: include/peftlua/hash.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "peftlua/alloc.h"
#include "peftlua/hash.h"

static uint32_t rol(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }
static uint32_t ror(uint32_t x, int c) { return (x >> c) | (x << (32 - c)); }

/* MD5: four rounds of 16 operations; a = b + ((a + F(b,c,d) + M[g] + K[i]) <<< s[i]),
 * K[i] = floor(|sin(i + 1)| · 2^32), words little-endian. */
static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
static const uint8_t md5_s[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void md5_block(uint32_t st[4], const uint8_t *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16)      { f = (b & c) | (~b & d); g = i; }
        else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) & 15; }
        else if (i < 48) { f = b ^ c ^ d;          g = (3 * i + 5) & 15; }
        else             { f = c ^ (b | ~d);       g = (7 * i) & 15; }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rol(a + f + md5_k[i] + m[g], md5_s[i]);
        a = t;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d;
}

/* SHA-256: 64 rounds over the message schedule W (big-endian words),
 * K = first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void sha256_block(uint32_t st[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(e, 6) ^ ror(e, 11) ^ ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + sha_k[i] + w[i];
        uint32_t S0 = ror(a, 2) ^ ror(a, 13) ^ ror(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

static void hash_block(struct pl_hash *h, const uint8_t *p)
{
    if (h->algo == PL_HASH_MD5) md5_block(h->state, p);
    else sha256_block(h->state, p);
}

void pl_hash_init(struct pl_hash *h, enum pl_hash_algo algo)
{
    static const uint32_t md5_iv[4] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 };
    static const uint32_t sha_iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memset(h, 0, sizeof *h);
    h->algo = algo;
    if (algo == PL_HASH_MD5) memcpy(h->state, md5_iv, sizeof md5_iv);
    else memcpy(h->state, sha_iv, sizeof sha_iv);
}

void pl_hash_update(struct pl_hash *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    h->length += n;
    if (h->used) {
        size_t take = 64 - h->used < n ? 64 - h->used : n;
        memcpy(h->block + h->used, p, take);
        h->used += (uint32_t)take;
        p += take;
        n -= take;
        if (h->used < 64) return;
        hash_block(h, h->block);
        h->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) hash_block(h, p);
    memcpy(h->block, p, n);
    h->used = (uint32_t)n;
}

/* Both pad with 0x80, zeros, then the message length in bits as 64 bits: little-endian for
 * MD5, big-endian for SHA-256; the digest is the state in the same byte order. */
int pl_hash_hex(struct pl_hash *h, char hex[PL_HASH_HEX_MAX])
{
    const uint64_t bits = h->length * 8;
    const int md5 = h->algo == PL_HASH_MD5;
    uint8_t pad[72] = { 0x80 };
    size_t npad = (h->used < 56 ? 56 : 120) - h->used;
    for (int i = 0; i < 8; i++)
        pad[npad + (size_t)i] = (uint8_t)(bits >> (md5 ? 8 * i : 56 - 8 * i));
    const uint64_t keep = h->length;
    pl_hash_update(h, pad, npad + 8);
    h->length = keep;
    const int words = md5 ? 4 : 8;
    static const char digits[] = "0123456789abcdef";
    for (int w = 0; w < words; w++)
        for (int b = 0; b < 4; b++) {
            uint8_t byte = (uint8_t)(h->state[w] >> (md5 ? 8 * b : 24 - 8 * b));
            hex[8 * w + 2 * b] = digits[byte >> 4];
            hex[8 * w + 2 * b + 1] = digits[byte & 15];
        }
    hex[8 * words] = 0;
    return 4 * words;
}

int pl_hash_algo_from_name(const char *name)
{
    if (strcmp(name, "md5") == 0) return PL_HASH_MD5;
    if (strcmp(name, "sha256") == 0) return PL_HASH_SHA256;
    return -1;
}

const char *pl_hash_algo_name(enum pl_hash_algo algo) { return algo == PL_HASH_MD5 ? "md5" : "sha256"; }

enum pl_status pl_hash_file(const char *path, enum pl_hash_algo algo, char hex[PL_HASH_HEX_MAX],
                            uint64_t *size)
{
    enum { CHUNK = 1 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return pl_fail(PL_ERR_IO, "%s: is a directory", path);
    }
    uint8_t *buf = pl_alloc(CHUNK, PL_MEM_WORKSPACE);
    if (!buf) { fclose(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory for the read buffer", path); }
    struct pl_hash h;
    pl_hash_init(&h, algo);
    enum pl_status rc = PL_OK;
    for (;;) {
        size_t got = fread(buf, 1, CHUNK, f);
        pl_hash_update(&h, buf, got);
        if (got < CHUNK) {
            if (ferror(f)) rc = pl_fail(PL_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if ((rc = pl_interrupt_check()) != PL_OK) break;
    }
    pl_free(buf);
    fclose(f);
    if (rc != PL_OK) return rc;
    if (size) *size = h.length;
    pl_hash_hex(&h, hex);
    return PL_OK;
}
