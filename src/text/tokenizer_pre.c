/* tokenizer_pre.c — the BPE pre-tokenizers: split text into words the way llama.cpp's
 * unicode_regex_split() does for each vocabulary's regex list (owner: tokenizer).
 *
 * No regex engine: every regex the supported vocabularies use is a hand-written scanner over
 * code points and their Unicode categories (src/core/unicode.c). The regexes of a vocabulary are
 * applied in turn; each one splits every piece the previous ones produced, and text between
 * matches stays as its own piece (nothing is dropped). The scanners reproduce:
 *   GPT2      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 *   LLAMA3    (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+
 *             |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (qwen2: \p{N})
 * and the simple leftmost-first patterns (class runs, optional leading \s, [0-9]{3}, \s+$)
 * that the std::regex fallback handles in llama.cpp. \s is the White_Space property, which
 * is what llama.cpp's collapsed-text std::regex sees as well.
 * Invalid UTF-8 decodes to U+FFFD (one byte), as in llama.cpp, so such bytes do not survive.
 */
#include <string.h>
#include "tokenizer_internal.h"
#include "peftlua/alloc.h"
#include "peftlua/unicode.h"

/* ---- growable list of piece lengths (in code points) ---- */
struct offs { size_t *v; size_t n, cap; int oom; };

static void offs_push(struct offs *o, size_t len)
{
    if (o->oom || len == 0) return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        size_t *nv = pl_realloc(o->v, nc * sizeof *nv);
        if (!nv) { o->oom = 1; return; }
        o->v = nv; o->cap = nc;
    }
    o->v[o->n++] = len;
}

struct cps { const uint32_t *c; const unsigned *f; size_t ini, end; };
#define OOR 0xFFFFFFFFu
static uint32_t cp_at(const struct cps *s, size_t i) { return (i >= s->ini && i < s->end) ? s->c[i] : OOR; }
static unsigned fl_at(const struct cps *s, size_t i) { return (i >= s->ini && i < s->end) ? s->f[i] : 0; }

#define IS_L(f) ((f) & PL_UCAT_LETTER)
#define IS_N(f) ((f) & PL_UCAT_NUMBER)
#define IS_P(f) ((f) & PL_UCAT_PUNCT)
#define IS_S(f) ((f) & PL_UCAT_SPACE)

static uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d (case-folded when fold): length matched at pos or 0 */
static size_t match_contraction(const struct cps *s, size_t pos, int fold)
{
    if (cp_at(s, pos) != '\'' || pos + 1 >= s->end) return 0;
    uint32_t a = cp_at(s, pos + 1);
    if (fold) a = ascii_lower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < s->end) {
        uint32_t b = cp_at(s, pos + 2);
        if (fold) b = ascii_lower(b);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

static void split_gpt2(const uint32_t *c, const unsigned *f, const struct offs *in, struct offs *out)
{
    size_t start = 0;
    for (size_t k = 0; k < in->n; k++) {
        struct cps s = { c, f, start, start + in->v[k] };
        start = s.end;
        size_t prev = s.ini;
        for (size_t pos = s.ini; pos < s.end;) {
            uint32_t cp = cp_at(&s, pos);
            unsigned fl = fl_at(&s, pos);
            size_t m = match_contraction(&s, pos, 0);
            if (m) { pos += m; offs_push(out, pos - prev); prev = pos; continue; }
            unsigned f2 = (cp == ' ') ? fl_at(&s, pos + 1) : fl;
            if (IS_L(f2)) {
                pos += (cp == ' ');
                while (IS_L(f2)) f2 = fl_at(&s, ++pos);
                offs_push(out, pos - prev); prev = pos; continue;
            }
            if (IS_N(f2)) {
                pos += (cp == ' ');
                while (IS_N(f2)) f2 = fl_at(&s, ++pos);
                offs_push(out, pos - prev); prev = pos; continue;
            }
            if (!(IS_S(f2) || IS_L(f2) || IS_N(f2)) && f2) {
                pos += (cp == ' ');
                while (!(IS_S(f2) || IS_L(f2) || IS_N(f2)) && f2) f2 = fl_at(&s, ++pos);
                offs_push(out, pos - prev); prev = pos; continue;
            }
            size_t nws = 0;
            while (IS_S(fl_at(&s, pos + nws))) nws++;
            if (nws > 1 && cp_at(&s, pos + nws) != OOR) {       /* \s+(?!\S) */
                pos += nws - 1;
                offs_push(out, pos - prev); prev = pos; continue;
            }
            if (nws > 0) { pos += nws; offs_push(out, pos - prev); prev = pos; continue; }
            pos++;
            offs_push(out, pos - prev); prev = pos;
        }
    }
}

static void split_llama3(const uint32_t *c, const unsigned *f, const struct offs *in, struct offs *out,
                         size_t max_digits)
{
    size_t start = 0;
    for (size_t k = 0; k < in->n; k++) {
        struct cps s = { c, f, start, start + in->v[k] };
        start = s.end;
        size_t prev = s.ini;
#define EMIT(p) do { offs_push(out, (p) - prev); prev = (p); } while (0)
        for (size_t pos = s.ini; pos < s.end;) {
            uint32_t cp = cp_at(&s, pos);
            unsigned fl = fl_at(&s, pos);
            size_t m = match_contraction(&s, pos, 1);
            if (m) { pos += m; EMIT(pos); continue; }
            /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            if (!(cp == '\r' || cp == '\n' || IS_N(fl))) {
                if (IS_L(fl) || IS_L(fl_at(&s, pos + 1))) {
                    pos++;
                    while (IS_L(fl_at(&s, pos))) pos++;
                    EMIT(pos); continue;
                }
            }
            /* \p{N}{1,max} */
            if (IS_N(fl)) {
                size_t ini = pos;
                while (IS_N(fl_at(&s, pos))) {
                    if (++pos - ini >= max_digits) { EMIT(pos); ini = pos; }
                }
                EMIT(pos); continue;
            }
            /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
            unsigned f2 = (cp == ' ') ? fl_at(&s, pos + 1) : fl;
            if (!(IS_S(f2) || IS_L(f2) || IS_N(f2)) && fl) {
                pos += (cp == ' ');
                while (!(IS_S(f2) || IS_L(f2) || IS_N(f2)) && f2) f2 = fl_at(&s, ++pos);
                uint32_t c2 = cp_at(&s, pos);
                while (c2 == '\r' || c2 == '\n') c2 = cp_at(&s, ++pos);
                EMIT(pos); continue;
            }
            size_t nws = 0, last_rn = 0;
            while (IS_S(fl_at(&s, pos + nws))) {
                uint32_t c2 = cp_at(&s, pos + nws);
                if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
                nws++;
            }
            if (last_rn > 0) { pos = last_rn; EMIT(pos); continue; }       /* \s*[\r\n]+ */
            if (nws > 1 && cp_at(&s, pos + nws) != OOR) { pos += nws - 1; EMIT(pos); continue; }
            if (nws > 0) { pos += nws; EMIT(pos); continue; }
            pos++; EMIT(pos);
        }
#undef EMIT
    }
}

/* ---- simple leftmost-first patterns ---- */
enum pat {
    PAT_N1,            /* \p{N}            */
    PAT_NPLUS,         /* \p{N}+           */
    PAT_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`]+ */
    PAT_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|]+  */
    PAT_DIGIT3,        /* [0-9][0-9][0-9]  */
    PAT_CRLF,          /* [\r\n]           */
    PAT_SP_LETTERS,    /* \s?\p{L}+        */
    PAT_SP_PUNCT,      /* \s?\p{P}+        */
    PAT_CJK,           /* [一-龥ࠀ-一가-퟿]+ */
    PAT_SP_DSLETTERS,  /* \s?[A-Za-zµÀ-Ö...]+ (deepseek-llm's explicit letter list) */
    PAT_SP_DSPUNCT,    /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    PAT_TRAILING_WS    /* \s+$             */
};

/* deepseek-llm's letter ranges, as written in its regex (code points, inclusive) */
static const uint32_t ds_letters[][2] = {
    {0x0041,0x005A}, {0x0061,0x007A}, {0x00B5,0x00B5}, {0x00C0,0x00D6}, {0x00D8,0x00F6},
    {0x00F8,0x01BA}, {0x01BC,0x01BF}, {0x01C4,0x0293}, {0x0295,0x02AF}, {0x0370,0x0373},
    {0x0376,0x0377}, {0x037B,0x037D}, {0x037F,0x037F}, {0x0386,0x0386},
    {0x0388,0x038A}, {0x038C,0x038C}, {0x038E,0x03A1}, {0x03A3,0x03F5}, {0x03F7,0x0481},
    {0x048A,0x052F}, {0x0531,0x0556}, {0x10A0,0x10C5}, {0x13A0,0x13F5}, {0x13F8,0x13FD},
    {0x1C90,0x1CBA}, {0x1CBD,0x1CBF}, {0x1D00,0x1D2B}, {0x1D6B,0x1D77}, {0x1D79,0x1D9A},
    {0x1E00,0x1F15}, {0x1F18,0x1F1D}, {0x1F20,0x1F45}, {0x1F48,0x1F4D}, {0x1F50,0x1F57},
    {0x1F59,0x1F59}, {0x1F5B,0x1F5B}, {0x1F5D,0x1F5D}, {0x1F5F,0x1F7D}, {0x1F80,0x1FB4},
    {0x1FB6,0x1FBC}, {0x1FBE,0x1FBE}, {0x1FC2,0x1FC4}, {0x1FC6,0x1FCC}, {0x1FD0,0x1FD3},
    {0x1FD6,0x1FDB}, {0x1FE0,0x1FEC}, {0x1FF2,0x1FF4}, {0x1FF6,0x1FFC}, {0x2102,0x2102},
    {0x2107,0x2107}, {0x210A,0x2113}, {0x2115,0x2115}, {0x2119,0x211D}, {0x2124,0x2124},
    {0x2126,0x2126}, {0x2128,0x2128}, {0x212A,0x212D}, {0x212F,0x2134}, {0x2139,0x2139},
    {0x213C,0x213F}, {0x2145,0x2149}, {0x214E,0x214E}, {0x2183,0x2184},
    {0x2C00,0x2C7B}, {0x2C7E,0x2CE4}, {0x2CEB,0x2CEE}, {0x2CF2,0x2CF3},
    {0xA640,0xA66D}, {0xA680,0xA69B}, {0xA722,0xA76F}, {0xA771,0xA787}, {0xA78B,0xA78E},
    {0xAB70,0xABBF}, {0xFB00,0xFB06}, {0xFB13,0xFB17}, {0xFF21,0xFF3A}, {0xFF41,0xFF5A},
    {0x10400,0x1044F}, {0x104B0,0x104D3}, {0x104D8,0x104FB}, {0x10C80,0x10CB2},
    {0x10CC0,0x10CF2}, {0x118A0,0x118DF}, {0x1E900,0x1E943},
};

static int in_ds_letters(uint32_t c)
{
    for (size_t i = 0; i < sizeof ds_letters / sizeof ds_letters[0]; i++)
        if (c >= ds_letters[i][0] && c <= ds_letters[i][1]) return 1;
    return 0;
}

/* Does code point c (flags fl) belong to the class of pattern p? The deepseek-llm explicit
 * classes run in llama.cpp on text where non-ASCII white space was replaced by 0x0B, so a
 * white-space code point never matches them (matters for U+3000 in the punctuation class). */
static int in_class(enum pat p, uint32_t c, unsigned fl)
{
    switch (p) {
    case PAT_N1: case PAT_NPLUS: return IS_N(fl) != 0;
    case PAT_PUNCT_FALCON:
        if (c == '`') return 1;
        /* fallthrough */
    case PAT_PUNCT_DEFAULT:
        return IS_P(fl) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
               c == '~' || c == '|';
    case PAT_DIGIT3: return c >= '0' && c <= '9';
    case PAT_CRLF: return c == '\r' || c == '\n';
    case PAT_SP_LETTERS: return IS_L(fl) != 0;
    case PAT_SP_PUNCT: return IS_P(fl) != 0;
    case PAT_CJK: return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) ||
                         (c >= 0xAC00 && c <= 0xD7FF);
    case PAT_SP_DSLETTERS: return !(c > 0x7F && IS_S(fl)) && in_ds_letters(c);
    case PAT_SP_DSPUNCT:
        if (c > 0x7F && IS_S(fl)) return 0;
        return (c >= '!' && c <= '/') || (c >= ':' && c <= '~') || (c >= 0xFF01 && c <= 0xFF0F) ||
               (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) ||
               (c >= 0x3000 && c <= 0x3002);
    case PAT_TRAILING_WS: return IS_S(fl) != 0;
    }
    return 0;
}

/* Length of the match of p starting exactly at pos (0 = no match). */
static size_t match_at(enum pat p, const struct cps *s, size_t pos)
{
    size_t i = pos;
    switch (p) {
    case PAT_N1: case PAT_CRLF:
        return in_class(p, s->c[pos], s->f[pos]) ? 1 : 0;
    case PAT_DIGIT3:
        if (pos + 3 > s->end) return 0;
        for (int k = 0; k < 3; k++) if (!in_class(p, s->c[pos + k], s->f[pos + k])) return 0;
        return 3;
    case PAT_SP_LETTERS: case PAT_SP_PUNCT: case PAT_SP_DSLETTERS: case PAT_SP_DSPUNCT:
        /* \s? greedy: take the white space if a class run follows it */
        if (IS_S(s->f[i]) && i + 1 < s->end && in_class(p, s->c[i + 1], s->f[i + 1])) i++;
        /* fallthrough */
    case PAT_NPLUS: case PAT_PUNCT_FALCON: case PAT_PUNCT_DEFAULT: case PAT_CJK:
        if (!in_class(p, s->c[i], s->f[i])) return 0;
        while (i < s->end && in_class(p, s->c[i], s->f[i])) i++;
        return i - pos;
    case PAT_TRAILING_WS:
        while (i < s->end && IS_S(s->f[i])) i++;
        return (i > pos && i == s->end) ? i - pos : 0;
    }
    return 0;
}

static void split_simple(enum pat p, const uint32_t *c, const unsigned *f, const struct offs *in,
                         struct offs *out)
{
    size_t start = 0;
    for (size_t k = 0; k < in->n; k++) {
        struct cps s = { c, f, start, start + in->v[k] };
        start = s.end;
        size_t prev = s.ini;
        for (size_t pos = s.ini; pos < s.end;) {
            size_t m = match_at(p, &s, pos);
            if (!m) { pos++; continue; }
            offs_push(out, pos - prev);
            offs_push(out, m);
            pos += m;
            prev = pos;
        }
        offs_push(out, s.end - prev);
    }
}

enum step { S_GPT2 = 100, S_LLAMA3, S_QWEN2 };

static int steps_for(enum pl_tok_pre pre, int *st)
{
    switch (pre) {
    case PL_PRE_GPT2: st[0] = S_GPT2; return 1;
    case PL_PRE_STARCODER: st[0] = PAT_N1; st[1] = S_GPT2; return 2;
    case PL_PRE_FALCON: st[0] = PAT_PUNCT_FALCON; st[1] = S_GPT2; st[2] = PAT_DIGIT3; return 3;
    case PL_PRE_DEEPSEEK_CODER:
        st[0] = PAT_CRLF; st[1] = PAT_SP_LETTERS; st[2] = PAT_SP_PUNCT; st[3] = PAT_CJK; st[4] = PAT_N1;
        return 5;
    case PL_PRE_DEEPSEEK_LLM:
        st[0] = PAT_CRLF; st[1] = PAT_SP_DSLETTERS; st[2] = PAT_SP_DSPUNCT; st[3] = PAT_TRAILING_WS;
        st[4] = PAT_CJK; st[5] = PAT_NPLUS;
        return 6;
    case PL_PRE_LLAMA3: st[0] = S_LLAMA3; return 1;
    case PL_PRE_QWEN2: st[0] = S_QWEN2; return 1;
    case PL_PRE_DEFAULT:
        st[0] = PAT_PUNCT_DEFAULT; st[1] = S_GPT2; st[2] = PAT_NPLUS; st[3] = PAT_DIGIT3;
        return 4;
    }
    return 0;
}

enum pl_status pl_tok_pretokenize(enum pl_tok_pre pre, const char *text, size_t len,
                                  struct pl_tok_words *w)
{
    memset(w, 0, sizeof *w);
    uint32_t *c = pl_alloc((len + 1) * sizeof *c, PL_MEM_WORKSPACE);
    unsigned *f = pl_alloc((len + 1) * sizeof *f, PL_MEM_WORKSPACE);
    struct offs a = {0}, b = {0};
    enum pl_status st = PL_OK;
    if (!c || !f) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory splitting %zu bytes", len); goto out; }
    size_t n = 0;
    for (size_t pos = 0; pos < len;) { c[n] = pl_utf8_decode(text, len, &pos); f[n] = pl_ucat(c[n]); n++; }
    offs_push(&a, n);
    int steps[8];
    int ns = steps_for(pre, steps);
    for (int i = 0; i < ns; i++) {
        b.n = 0;
        if (steps[i] == S_GPT2) split_gpt2(c, f, &a, &b);
        else if (steps[i] == S_LLAMA3) split_llama3(c, f, &a, &b, 3);
        else if (steps[i] == S_QWEN2) split_llama3(c, f, &a, &b, 1);
        else split_simple((enum pat)steps[i], c, f, &a, &b);
        struct offs t = a; a = b; b = t;
        if (a.oom) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory splitting text"); goto out; }
    }
    /* words as UTF-8 byte strings (re-encoded: invalid input became U+FFFD) */
    w->bytes = pl_alloc(n * 4 + 1, PL_MEM_WORKSPACE);
    w->ends = pl_alloc((a.n + 1) * sizeof *w->ends, PL_MEM_WORKSPACE);
    if (!w->bytes || !w->ends) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); goto out; }
    size_t bi = 0, ci = 0;
    for (size_t k = 0; k < a.n; k++) {
        for (size_t j = 0; j < a.v[k]; j++) bi += (size_t)pl_utf8_encode(c[ci++], w->bytes + bi);
        w->ends[k] = bi;
    }
    w->n = a.n;
out:
    if (st != PL_OK) pl_tok_words_free(w);
    pl_free(a.v); pl_free(b.v); pl_free(c); pl_free(f);
    return st;
}

void pl_tok_words_free(struct pl_tok_words *w)
{
    pl_free(w->bytes); pl_free(w->ends);
    memset(w, 0, sizeof *w);
}

int pl_tok_pre_from_name(const char *name)
{
    static const struct { const char *name; enum pl_tok_pre pre; } map[] = {
        {"gpt-2", PL_PRE_GPT2}, {"gpt2", PL_PRE_GPT2}, {"mpt", PL_PRE_GPT2}, {"olmo", PL_PRE_GPT2},
        {"jais", PL_PRE_GPT2}, {"trillion", PL_PRE_GPT2},
        {"starcoder", PL_PRE_STARCODER}, {"refact", PL_PRE_STARCODER}, {"smollm", PL_PRE_STARCODER},
        {"command-r", PL_PRE_STARCODER}, {"codeshell", PL_PRE_STARCODER}, {"exaone", PL_PRE_STARCODER},
        {"minerva-7b", PL_PRE_STARCODER},
        {"falcon", PL_PRE_FALCON},
        {"deepseek-coder", PL_PRE_DEEPSEEK_CODER}, {"deepseek-llm", PL_PRE_DEEPSEEK_LLM},
        {"llama3", PL_PRE_LLAMA3}, {"llama-bpe", PL_PRE_LLAMA3},
        {"dbrx", PL_PRE_LLAMA3}, {"smaug-bpe", PL_PRE_LLAMA3},
        {"qwen2", PL_PRE_QWEN2}, {"stablelm2", PL_PRE_QWEN2},
        {"default", PL_PRE_DEFAULT},
    };
    if (!name || !*name) return PL_PRE_DEFAULT;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, name) == 0) return (int)map[i].pre;
    return -1;
}
