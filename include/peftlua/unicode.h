/* unicode.h — the small Unicode layer the tokenizers need (owner: tokenizer).
 *
 * UTF-8 decoding that never fails (invalid bytes become U+FFFD, one byte consumed, as
 * llama.cpp does), UTF-8 encoding, general-category flags (\p{L}, \p{N}, \p{P}, ...) from
 * a table generated from Python's unicodedata by scripts/gen_unicode.py, and the
 * White_Space property (\s).
 */
#ifndef PEFTLUA_UNICODE_H
#define PEFTLUA_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    PL_UCAT_UNDEFINED = 0x01,  /* Cn */
    PL_UCAT_NUMBER    = 0x02,  /* \p{N} */
    PL_UCAT_LETTER    = 0x04,  /* \p{L} */
    PL_UCAT_SEPARATOR = 0x08,  /* \p{Z} */
    PL_UCAT_MARK      = 0x10,  /* \p{M} */
    PL_UCAT_PUNCT     = 0x20,  /* \p{P} */
    PL_UCAT_SYMBOL    = 0x40,  /* \p{S} */
    PL_UCAT_CONTROL   = 0x80,  /* \p{C} except Cn */
    PL_UCAT_SPACE     = 0x100  /* White_Space property (added by pl_ucat, not in the table) */
};

struct pl_ucat_range { uint32_t start; uint16_t flags; };
extern const struct pl_ucat_range pl_ucat_ranges[];
extern const int pl_ucat_nranges;

extern const uint32_t pl_ulower_pairs[][2];   /* {cp, lowercase}, sorted */
extern const int pl_ulower_npairs;
extern const uint32_t pl_unfd_ranges[][3];    /* {first, last, NFD's first code point}, sorted */
extern const int pl_unfd_nranges;

/* Simple lowercase (first code point of Python's str.lower()); cp itself if none. */
uint32_t pl_uni_tolower(uint32_t cp);
/* First code point of cp's NFD decomposition (a precomposed letter without its accents). */
uint32_t pl_uni_nfd_first(uint32_t cp);

/* Category flags of a code point (0 for cp > 0x10FFFF), with PL_UCAT_SPACE or'ed in. */
unsigned pl_ucat(uint32_t cp);
int pl_uni_is_space(uint32_t cp);

/* Length of the UTF-8 sequence a lead byte announces, from its top 4 bits (1..4; a stray
 * continuation byte counts 1) — llama.cpp's unicode_len_utf8. */
int pl_utf8_len(unsigned char lead);
/* Decode one code point at s[*pos] (n bytes total); advances *pos. Invalid or truncated
 * sequences give 0xFFFD and advance one byte. */
uint32_t pl_utf8_decode(const char *s, size_t n, size_t *pos);
/* Encode cp into out (4 bytes room); returns the byte count. */
int pl_utf8_encode(uint32_t cp, char *out);
/* Strict UTF-8 (RFC 3629: no overlong forms, surrogates or code points past U+10FFFF): the
 * length of the well-formed sequence at s (left bytes available), or 0 if there is none. */
int pl_utf8_seq(const char *s, size_t left);
/* Offset of the first byte that does not start a well-formed sequence; n if all are valid. */
size_t pl_utf8_valid(const char *s, size_t n);

#endif
