/* json.h — the JSON layer: the only place cJSON is included is src/core/json.c.
 *
 * A parsed document is a tree of struct pl_json nodes owned by its root; free the root with
 * pl_json_free(). Readers return NULL/defaults for missing keys or wrong types, so call
 * sites check what they need and report the key by name.
 */
#ifndef PEFTLUA_JSON_H
#define PEFTLUA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

struct pl_json;  /* opaque */

enum pl_json_type { PL_JSON_INVALID, PL_JSON_NULL, PL_JSON_BOOL, PL_JSON_NUMBER, PL_JSON_STRING,
                    PL_JSON_ARRAY, PL_JSON_OBJECT };

/* Parse text of length n. On failure NULL, with the message naming `what` (a file name) and
 * the line of the error. */
struct pl_json *pl_json_parse(const char *text, size_t n, const char *what);
struct pl_json *pl_json_parse_file(const char *path);
void pl_json_free(struct pl_json *j);

enum pl_json_type pl_json_type(const struct pl_json *j);
struct pl_json *pl_json_get(const struct pl_json *obj, const char *key);   /* object member */
struct pl_json *pl_json_at(const struct pl_json *arr, int i);              /* array element */
int         pl_json_len(const struct pl_json *j);                          /* array/object size */
const char *pl_json_key(const struct pl_json *member);                     /* key of an object member */
struct pl_json *pl_json_first(const struct pl_json *j);                    /* iterate children */
struct pl_json *pl_json_next(const struct pl_json *j);
const char *pl_json_str(const struct pl_json *j);                          /* NULL if not a string */
double      pl_json_num(const struct pl_json *j, double dflt);
int         pl_json_bool(const struct pl_json *j, int dflt);
/* Convenience: member lookups with defaults. */
const char *pl_json_get_str(const struct pl_json *obj, const char *key);
double      pl_json_get_num(const struct pl_json *obj, const char *key, double dflt);
/* Integers read from files, never cast unchecked: 1 with *out = the value when j is a number
 * that is an integer in [lo, hi]; 0 with *out = dflt when j is NULL (absent key) or JSON null;
 * -1 (*out untouched) otherwise — the caller reports "<file>: \"key\" = ... out of range". */
int pl_json_int(const struct pl_json *j, int64_t lo, int64_t hi, int64_t dflt, int64_t *out);
int pl_json_get_int(const struct pl_json *obj, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                    int64_t *out);

/* Building and printing. Builders return the new node (attached to parent when given). */
struct pl_json *pl_json_new_object(void);
struct pl_json *pl_json_new_array(void);
struct pl_json *pl_json_add_object(struct pl_json *parent, const char *key);  /* key NULL for arrays */
struct pl_json *pl_json_add_array(struct pl_json *parent, const char *key);
void pl_json_add_str(struct pl_json *parent, const char *key, const char *v);
void pl_json_add_num(struct pl_json *parent, const char *key, double v);
void pl_json_add_bool(struct pl_json *parent, const char *key, int v);
void pl_json_add_null(struct pl_json *parent, const char *key);
/* Serialise; caller frees with pl_free(). pretty: indented. */
char *pl_json_print(const struct pl_json *j, int pretty);

#endif
