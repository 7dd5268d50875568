/* html.h — the byte-level helpers of self-contained HTML reports: escaping and base64.
 *
 * Report assembly itself is policy and lives in lua/peft/report.lua;
 * these are the parts that must be exact and fast (a chart's PNG is tens of kilobytes).
 * Results come from pl_alloc (PL_MEM_WORKSPACE), NUL-terminated; free with pl_free.
 */
#ifndef PEFTLUA_HTML_H
#define PEFTLUA_HTML_H

#include <stddef.h>
#include "peftlua/status.h"

/* Escape n bytes of s for HTML text and attribute values: & < > " ' become entities, NUL and
 * other C0 controls except tab/newline/CR become U+FFFD, bytes that are not valid UTF-8 become
 * U+FFFD. *out is the escaped text, *outlen its length. */
enum pl_status pl_html_escape(const char *s, size_t n, char **out, size_t *outlen);

/* Standard base64 (RFC 4648, with '=' padding, no line breaks) of n bytes. */
enum pl_status pl_base64_encode(const void *data, size_t n, char **out, size_t *outlen);
/* Decode standard base64 (whitespace ignored); PL_ERR_FORMAT on a bad character or length. */
enum pl_status pl_base64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen);

#endif
