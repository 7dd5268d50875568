/* html.c — HTML escaping and base64 for self-contained reports (see html.h).
 *
 * Owner: report (issue 6). Escaping covers text and quoted attribute values alike, so one
 * function serves every user-provided string in a report; invalid UTF-8 and control bytes are
 * replaced rather than passed through, so a report is always well-formed UTF-8.
 */
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/html.h"

static const char REPL[] = "\xEF\xBF\xBD";   /* U+FFFD */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

enum pl_status pl_html_escape(const char *s, size_t n, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    /* worst case: every byte becomes "&quot;" (6) or U+FFFD (3) */
    if (n > ((size_t)-1 - 1) / 6) return pl_fail(PL_ERR_ARG, "html: %zu bytes to escape is too many", n);
    char *o = pl_alloc(6 * n + 1, PL_MEM_WORKSPACE);
    if (!o) return pl_fail(PL_ERR_NOMEM, "html: out of memory escaping %zu bytes", n);
    const unsigned char *u = (const unsigned char *)s;
    size_t m = 0, i = 0;
    while (i < n) {
        unsigned c = u[i];
        const char *rep = NULL;
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep) {
            size_t l = strlen(rep);
            memcpy(o + m, rep, l);
            m += l;
            i++;
            continue;
        }
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
            memcpy(o + m, REPL, 3);
            m += 3;
            i++;
            continue;
        }
        size_t l = utf8_len(u + i, n - i);
        if (!l) {
            memcpy(o + m, REPL, 3);
            m += 3;
            i++;
            continue;
        }
        memcpy(o + m, u + i, l);
        m += l;
        i += l;
    }
    o[m] = 0;
    *out = o;
    *outlen = m;
    return PL_OK;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

enum pl_status pl_base64_encode(const void *data, size_t n, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n > ((size_t)-1 / 4) * 3 - 3) return pl_fail(PL_ERR_ARG, "base64: %zu bytes is too many", n);
    size_t m = (n + 2) / 3 * 4;
    char *o = pl_alloc(m + 1, PL_MEM_WORKSPACE);
    if (!o) return pl_fail(PL_ERR_NOMEM, "base64: out of memory for %zu bytes", m);
    const unsigned char *p = data;
    size_t j = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        o[j++] = B64[v >> 18];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = B64[(v >> 6) & 63];
        o[j++] = B64[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        o[j++] = B64[v >> 18];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = '=';
        o[j++] = '=';
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        o[j++] = B64[v >> 18];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = B64[(v >> 6) & 63];
        o[j++] = '=';
    }
    o[j] = 0;
    *out = o;
    *outlen = j;
    return PL_OK;
}

enum pl_status pl_base64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    unsigned char *o = pl_alloc(n / 4 * 3 + 3, PL_MEM_WORKSPACE);
    if (!o) return pl_fail(PL_ERR_NOMEM, "base64: out of memory decoding %zu characters", n);
    unsigned v = 0;
    int bits = 0, pad = 0;
    size_t m = 0, nch = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') { pad++; nch++; continue; }
        const char *q = c ? strchr(B64, c) : NULL;
        if (!q || pad) {
            pl_free(o);
            return pl_fail(PL_ERR_FORMAT, "base64: bad character 0x%02x at offset %zu", (unsigned char)c, i);
        }
        v = (v << 6) | (unsigned)(q - B64);
        bits += 6;
        nch++;
        if (bits >= 8) { bits -= 8; o[m++] = (unsigned char)(v >> bits); v &= (1u << bits) - 1; }
    }
    if (nch % 4 != 0 || pad > 2) {
        pl_free(o);
        return pl_fail(PL_ERR_FORMAT, "base64: length %zu is not a multiple of 4", nch);
    }
    *out = o;
    *outlen = m;
    return PL_OK;
}
