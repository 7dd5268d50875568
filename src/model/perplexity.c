/* perplexity.c — the perplexity of a model over a file (model.h pl_model_perplexity_file):
 * a text file of documents separated by a separator, or JSONL records with a text field,
 * each document encoded with the model's BOS default and scored by pl_llama_score_stream.
 * Used by peft.model's m:perplexity and `peftlua eval`; C programs call it directly.
 */
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/fs.h"
#include "peftlua/json.h"
#include "peftlua/model.h"
#include "peftlua/tokenizer.h"

/* Score one text (encoded with the model's BOS default) and add to the totals. */
static enum pl_status score_text(struct pl_model *m, const char *text, size_t len, int max_len,
                                 int stride, double *sum, int64_t *count)
{
    int32_t *ids = NULL;
    size_t n = 0;
    enum pl_status st = pl_tokenizer_encode(m->tok, text, len, PL_TOK_DEFAULT_SPECIAL, &ids, &n);
    if (st != PL_OK) return st;
    double s = 0;
    int64_t c = 0;
    st = pl_llama_score_stream(m, ids, (int64_t)n, max_len, stride, &s, &c);
    pl_free(ids);
    *sum += s;
    *count += c;
    return st;
}

static int is_space(char c) { return c == '\n' || c == ' ' || c == '\r' || c == '\t'; }

enum pl_status pl_model_perplexity_file(struct pl_model *m, const char *path,
                                        const struct pl_ppl_opts *o, double *nll_sum, int64_t *count)
{
    *nll_sum = 0;
    *count = 0;
    if (!m->tok) return pl_fail(PL_ERR_ARG, "%s: the model has no tokenizer", m->path);
    int max_len = o->max_seq_len, stride = o->stride ? o->stride : o->max_seq_len;
    if (max_len < 2 || max_len > m->cfg.seq_len)
        return pl_fail(PL_ERR_ARG, "perplexity: max_seq_len %d must be in 2..%d", max_len, m->cfg.seq_len);
    char *data;
    size_t n;
    enum pl_status st = pl_fs_read(path, &data, &n);
    if (st != PL_OK) return st;
    if (!o->jsonl) {
        /* Documents separated by the separator are scored as separate sequences, each trimmed
         * of surrounding whitespace. */
        const char *sep = o->separator ? o->separator : "";
        size_t sl = strlen(sep);
        for (char *p = data; p && st == PL_OK;) {
            char *e = sl ? strstr(p, sep) : NULL;
            size_t len = e ? (size_t)(e - p) : strlen(p);
            while (len && is_space(*p)) { p++; len--; }
            while (len && is_space(p[len - 1])) len--;
            if (len) st = score_text(m, p, len, max_len, stride, nll_sum, count);
            p = e ? e + sl : NULL;
        }
    } else {
        /* One record per line; each record's field is scored as its own sequence. */
        const char *field = o->field ? o->field : "text";
        char *line = data;
        int lineno = 0, records = 0;
        while (st == PL_OK && line < data + n && (!o->limit || records < o->limit)) {
            char *end = memchr(line, '\n', (size_t)(data + n - line));
            size_t ll = end ? (size_t)(end - line) : (size_t)(data + n - line);
            lineno++;
            int blank = 1;
            for (size_t i = 0; i < ll; i++)
                if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') { blank = 0; break; }
            if (!blank) {
                char what[512];
                snprintf(what, sizeof what, "%s:%d", path, lineno);
                struct pl_json *j = pl_json_parse(line, ll, what);
                if (!j) { st = PL_ERR_FORMAT; break; }
                const char *s = pl_json_get_str(j, field);
                if (!s) {
                    pl_json_free(j);
                    st = pl_fail(PL_ERR_FORMAT, "%s:%d: no string field \"%s\"", path, lineno, field);
                    break;
                }
                st = score_text(m, s, strlen(s), max_len, stride, nll_sum, count);
                pl_json_free(j);
                records++;
            }
            line += ll + 1;
        }
    }
    pl_free(data);
    return st;
}
