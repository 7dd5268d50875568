/* unicode.c — UTF-8 coding, category lookup and White_Space for the tokenizers' scanners
 * (owner: tokenizer). The category table is src/core/unicode_data.c (generated). */
#include "peftlua/unicode.h"

int pl_uni_is_space(uint32_t cp)
{
    /* PropList.txt White_Space */
    if (cp >= 0x09 && cp <= 0x0D) return 1;
    if (cp >= 0x2000 && cp <= 0x200A) return 1;
    switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000: return 1;
    default: return 0;
    }
}

unsigned pl_ucat(uint32_t cp)
{
    if (cp > 0x10FFFF) return 0;
    int lo = 0, hi = pl_ucat_nranges - 1;
    while (lo < hi) {            /* last range whose start <= cp */
        int mid = (lo + hi + 1) / 2;
        if (pl_ucat_ranges[mid].start <= cp) lo = mid; else hi = mid - 1;
    }
    unsigned f = pl_ucat_ranges[lo].flags;
    if (pl_uni_is_space(cp)) f |= PL_UCAT_SPACE;
    return f;
}

int pl_utf8_len(unsigned char lead)
{
    static const int len[16] = {1,1,1,1,1,1,1,1,1,1,1,1,2,2,3,4};
    return len[lead >> 4];
}

uint32_t pl_utf8_decode(const char *s, size_t n, size_t *pos)
{
    const unsigned char *u = (const unsigned char *)s + *pos;
    size_t left = n - *pos;
    if (!(u[0] & 0x80)) { *pos += 1; return u[0]; }
    if (!(u[0] & 0x40)) goto bad;                       /* stray continuation byte */
    if (!(u[0] & 0x20)) {
        if (left < 2 || (u[1] & 0xC0) != 0x80) goto bad;
        *pos += 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (!(u[0] & 0x10)) {
        if (left < 3 || (u[1] & 0xC0) != 0x80 || (u[2] & 0xC0) != 0x80) goto bad;
        *pos += 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    if (!(u[0] & 0x08)) {
        if (left < 4 || (u[1] & 0xC0) != 0x80 || (u[2] & 0xC0) != 0x80 || (u[3] & 0xC0) != 0x80)
            goto bad;
        *pos += 4;
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
               ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    }
bad:
    *pos += 1;
    return 0xFFFD;
}

int pl_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = 0xC0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3F); o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F); o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

uint32_t pl_uni_tolower(uint32_t cp)
{
    int lo = 0, hi = pl_ulower_npairs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (pl_ulower_pairs[mid][0] == cp) return pl_ulower_pairs[mid][1];
        if (pl_ulower_pairs[mid][0] < cp) lo = mid + 1; else hi = mid - 1;
    }
    return cp;
}

uint32_t pl_uni_nfd_first(uint32_t cp)
{
    int lo = 0, hi = pl_unfd_nranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < pl_unfd_ranges[mid][0]) hi = mid - 1;
        else if (cp > pl_unfd_ranges[mid][1]) lo = mid + 1;
        else return pl_unfd_ranges[mid][2];
    }
    return cp;
}

int pl_utf8_seq(const char *s, size_t left)
{
    const unsigned char *u = (const unsigned char *)s;
    if (left == 0) return 0;
    if (u[0] < 0x80) return 1;
    if (u[0] < 0xC2 || u[0] > 0xF4) return 0;          /* continuation, overlong lead, > U+10FFFF */
    int len = u[0] < 0xE0 ? 2 : u[0] < 0xF0 ? 3 : 4;
    if (left < (size_t)len) return 0;
    for (int i = 1; i < len; i++) if ((u[i] & 0xC0) != 0x80) return 0;
    if (u[0] == 0xE0 && u[1] < 0xA0) return 0;          /* overlong 3-byte */
    if (u[0] == 0xED && u[1] > 0x9F) return 0;          /* surrogates */
    if (u[0] == 0xF0 && u[1] < 0x90) return 0;          /* overlong 4-byte */
    if (u[0] == 0xF4 && u[1] > 0x8F) return 0;          /* past U+10FFFF */
    return len;
}

size_t pl_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int l = pl_utf8_seq(s + i, n - i);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}
