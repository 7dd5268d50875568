/* test_data.c — the data pipeline (owner: data): format detection on the shared datasets,
 * line-numbered issues, skip_bad counting, loss masks against template spans, truncation,
 * the RNG against independently computed values, deterministic shuffling, batching, packing,
 * iterator save/restore and canonical JSON. Uses a byte-level test tokenizer with a
 * ChatML-like template so that every expected id and mask is known by hand.
 * Run from the repository root (it reads ../shared/data/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/data.h"

/* ---------------------------------------------------------------- test tokenizer
 * ids: 1 <s>, 2 </s>, 3 <|im_start|>, 4 <|im_end|>, 0 pad; a byte b is 10 + b. */
static const char *const specials[] = { NULL, "<s>", "</s>", "<|im_start|>", "<|im_end|>" };

static enum pl_status t_encode(void *ctx, const char *s, size_t n, struct pl_data_ids *out)
{
    (void)ctx;
    for (size_t i = 0; i < n;) {
        int sp = 0;
        for (int k = 1; k <= 4; k++) {
            size_t l = strlen(specials[k]);
            if (i + l <= n && memcmp(s + i, specials[k], l) == 0) { sp = k; i += l; break; }
        }
        enum pl_status st = pl_data_ids_push(out, sp ? sp : 10 + (unsigned char)s[i++]);
        if (st) return st;
    }
    return PL_OK;
}

static int t_bytes(void *ctx, int32_t id, char *buf, size_t cap)
{
    (void)ctx;
    if (id >= 1 && id <= 4) {
        size_t l = strlen(specials[id]);
        if (l <= cap) memcpy(buf, specials[id], l);
        return (int)l;
    }
    if (id < 10 || id > 265) return -1;
    if (cap) buf[0] = (char)(id - 10);
    return 1;
}

/* "<|im_start|>role\ncontent<|im_end|>\n" per message; spans: assistant content + <|im_end|> */
static enum pl_status t_chat(void *ctx, const struct pl_data_msg *m, int n, char **text, size_t *len,
                             struct pl_data_span **spans, int *n_spans)
{
    (void)ctx;
    size_t cap = 1;
    for (int i = 0; i < n; i++) cap += strlen(m[i].role) + strlen(m[i].content) + 32;
    char *t = pl_alloc(cap, PL_MEM_DATA);
    struct pl_data_span *sp = pl_alloc((size_t)n * sizeof *sp + 1, PL_MEM_DATA);
    size_t at = 0;
    int ns = 0;
    for (int i = 0; i < n; i++) {
        at += (size_t)sprintf(t + at, "<|im_start|>%s\n", m[i].role);
        size_t b = at;
        at += (size_t)sprintf(t + at, "%s<|im_end|>", m[i].content);
        if (strcmp(m[i].role, "assistant") == 0) { sp[ns].begin = b; sp[ns].end = at; ns++; }
        t[at++] = '\n';
    }
    t[at] = 0;
    *text = t; *len = at; *spans = sp; *n_spans = ns;
    return PL_OK;
}

static const struct pl_data_tokenizer TOK = { NULL, t_encode, t_bytes, t_chat, 1, 2, 0, 1 };

static struct pl_data_file *read_str(const char *name, const char *text, enum pl_data_format f)
{
    struct pl_data_file *df = NULL;
    assert_int_equal(pl_data_read_mem(&df, name, text, strlen(text), f), PL_OK);
    return df;
}

/* ---------------------------------------------------------------- reading */

static void test_detect_shared(void **state)
{
    (void)state;
    struct { const char *path; enum pl_data_format f; int n; int array; } cases[] = {
        { PL_SHARED "/data/wikisql/train.jsonl", PL_DATA_TEXT, 1000, 0 },
        { PL_SHARED "/data/wikisql/valid.jsonl", PL_DATA_TEXT, 100, 0 },
        { PL_SHARED "/data/alpaca-demo/alpaca_en_demo.json", PL_DATA_ALPACA, 999, 1 },
        { PL_SHARED "/data/chat-demo/dummy_conversation.messages.jsonl", PL_DATA_CHAT, 500, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pl_data_file *f = NULL;
        assert_int_equal(pl_data_read(&f, cases[i].path, PL_DATA_AUTO), PL_OK);
        assert_int_equal(f->format, cases[i].f);
        assert_int_equal(f->n_records, cases[i].n);
        assert_int_equal(f->n_issues, 0);
        assert_int_equal(f->is_array, cases[i].array);
        pl_data_file_free(f);
    }
    struct pl_data_file *f = NULL;
    assert_int_equal(pl_data_read(&f, PL_SHARED "/data/nope.jsonl", PL_DATA_AUTO), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), PL_SHARED "/data/nope.jsonl"));
}

static void test_formats_and_override(void **state)
{
    (void)state;
    struct pl_data_file *f = read_str("pc.jsonl", "{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n\n{\"prompt\":\"\",\"completion\":\"x\"}\n", 0);
    assert_int_equal(f->format, PL_DATA_COMPLETION);
    assert_int_equal(f->n_records, 2);
    assert_string_equal(f->records[0].a, "2+2=");
    assert_string_equal(f->records[1].b, "x");
    assert_int_equal(f->records[1].line, 3);
    pl_data_file_free(f);
    /* forcing text on a prompt/completion file reports the missing key on every line */
    f = read_str("pc.jsonl", "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"t\"}\n", PL_DATA_TEXT);
    assert_int_equal(f->n_records, 1);
    assert_int_equal(f->n_issues, 1);
    assert_string_equal(f->issues[0].msg, "pc.jsonl:1: missing key 'text'");
    pl_data_file_free(f);
    assert_int_equal(pl_data_format_from_name("messages"), PL_DATA_CHAT);
    assert_int_equal(pl_data_format_from_name("alpaca"), PL_DATA_ALPACA);
    assert_int_equal(pl_data_format_from_name("xml"), -1);
}

static void test_bad_lines(void **state)
{
    (void)state;
    const char *text =
        "{\"prompt\":\"a\",\"completion\":\"b\"}\n"           /* 1 ok: sets the format */
        "{\"prompt\":\"a\"}\n"                                 /* 2 missing completion */
        "{\"prompt\": 5, \"completion\":\"b\"}\n"              /* 3 wrong type */
        "{\"prompt\":\"a\",\"completion\":\"   \"}\n"          /* 4 empty */
        "{\"pro\n"                                             /* 5 invalid JSON */
        "[1,2]\n"                                              /* 6 not an object */
        "{\"text\":\"mixed\"}\n"                               /* 7 other format */
        "{\"prompt\":\"a\",\"completion\":\"b\"} tail\n"       /* 8 trailing text */
        "{\"prompt\":\"\xC3\x28\",\"completion\":\"b\"}\n"     /* 9 invalid UTF-8 */
        "{\"id\":1}\n"                                         /* 10 no known keys */
        "{\"prompt\":\"x\",\"completion\":\"y\"}\n";           /* 11 ok */
    struct pl_data_file *f = read_str("train.jsonl", text, 0);
    assert_int_equal(f->n_seen, 11);
    assert_int_equal(f->n_records, 2);
    assert_int_equal(f->n_issues, 9);
    const char *want[] = {
        "train.jsonl:2: missing key 'completion'",
        "train.jsonl:3: 'prompt' must be a string",
        "train.jsonl:4: empty 'completion'",
        "train.jsonl:5: invalid JSON at column 6 (unexpected end of line)",
        "train.jsonl:6: not a JSON object",
        "train.jsonl:7: a text record (keys \"text\") in a completion file (format detected from line 1); mixed formats are not supported",
        "train.jsonl:8: invalid JSON at column 33 (text after the value)",
        "train.jsonl:9: invalid UTF-8 at column 12",
        "train.jsonl:10: no known keys (expected \"text\", \"prompt\"/\"completion\", \"messages\" or \"instruction\"/\"input\"/\"output\")",
    };
    for (int i = 0; i < 9; i++) assert_string_equal(f->issues[i].msg, want[i]);
    pl_data_file_free(f);

    f = read_str("empty.jsonl", "  \n\n", 0);
    assert_int_equal(f->n_issues, 1);
    assert_string_equal(f->issues[0].msg, "empty.jsonl: empty file (no records)");
    pl_data_file_free(f);
}

static void test_chat_roles(void **state)
{
    (void)state;
    const char *text =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"A\"}]}\n"
        "{\"messages\":[]}\n"
        "{\"messages\":[{\"role\":\"assistant\",\"content\":\"A\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"user\",\"content\":\"U\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"U\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"bot\",\"content\":\"B\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"system\",\"content\":\"S\"}]}\n"
        "{\"messages\":{\"role\":\"user\"}}\n";
    struct pl_data_file *f = read_str("chat.jsonl", text, 0);
    assert_int_equal(f->format, PL_DATA_CHAT);
    assert_int_equal(f->n_records, 1);
    assert_int_equal(f->records[0].n_msgs, 3);
    assert_string_equal(f->records[0].msgs[0].role, "system");
    const char *want[] = {
        "chat.jsonl:2: empty 'messages'",
        "chat.jsonl:3: messages[0]: role 'assistant' where 'user' was expected (user and assistant turns alternate, starting with user)",
        "chat.jsonl:4: messages[1]: role 'user' where 'assistant' was expected (user and assistant turns alternate, starting with user)",
        "chat.jsonl:5: the last message must be from the assistant (it is 'user')",
        "chat.jsonl:6: messages[1]: empty 'content'",
        "chat.jsonl:7: messages[1]: unknown role 'bot' (expected system, user or assistant)",
        "chat.jsonl:8: messages[1]: a system message is only allowed first",
        "chat.jsonl:9: 'messages' must be an array",
    };
    assert_int_equal(f->n_issues, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(f->issues[i].msg, want[i]);
    pl_data_file_free(f);
    /* long conversations are fine: 1 system + 150 turns */
    char *big = malloc(20000);
    size_t at = (size_t)sprintf(big, "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"}");
    for (int i = 0; i < 150; i++)
        at += (size_t)sprintf(big + at, ",{\"role\":\"%s\",\"content\":\"m%d\"}", i % 2 ? "assistant" : "user", i);
    sprintf(big + at, "]}\n");
    f = read_str("long.jsonl", big, 0);
    free(big);
    assert_int_equal(f->n_issues, 0);
    assert_int_equal(f->records[0].n_msgs, 151);
    assert_string_equal(f->records[0].msgs[150].content, "m149");
    pl_data_file_free(f);
}

static void test_array_lines(void **state)
{
    (void)state;
    const char *text =
        "[\n"
        "  {\"instruction\": \"I1\", \"input\": \"\", \"output\": \"O1\"},\n"
        "  {\"instruction\": \"I2\",\n"
        "   \"output\": \"O2\"},\n"
        "  {\"instruction\": \"I3\", \"input\": \"x\", \"output\": },\n"
        "  {\"instruction\": \"\", \"output\": \"O4\"}\n"
        "]\n";
    struct pl_data_file *f = read_str("a.json", text, 0);
    assert_int_equal(f->is_array, 1);
    assert_int_equal(f->format, PL_DATA_ALPACA);
    assert_int_equal(f->n_records, 2);
    assert_int_equal(f->records[1].line, 3);
    assert_string_equal(f->records[1].b, "");
    assert_int_equal(f->n_issues, 2);
    assert_string_equal(f->issues[0].msg, "a.json:5: invalid JSON at column 49");
    assert_string_equal(f->issues[1].msg, "a.json:6: empty 'instruction'");
    pl_data_file_free(f);
    f = read_str("b.json", "[{\"text\":\"a\"},\n{\"text\":\"b\"}", 0);
    assert_int_equal(f->n_records, 2);
    assert_int_equal(f->n_issues, 1);
    assert_string_equal(f->issues[0].msg, "b.json:2: unterminated JSON array (missing ']')");
    pl_data_file_free(f);
}

/* The malformed-file corpus under tests/data/bad: every problem is reported with its line. */
static void test_bad_corpus(void **state)
{
    (void)state;
    static const struct { const char *file; int records; const char *issues[4]; } cases[] = {
        { "broken_array.json", 2, { ":3: 'text' must be a string", ":4: unterminated JSON array (missing ']')" } },
        { "broken_json.jsonl", 2, { ":2: invalid JSON at column 19 (unexpected end of line)", ":4: invalid JSON at column 9",
                                    ":5: invalid JSON at column 21 (text after the value)" } },
        { "empty.jsonl", 0, { ": empty file (no records)" } },
        { "empty_messages.jsonl", 1, { ":2: empty 'messages'", ":3: messages[0]: empty 'content'", ":4: messages[1]: empty 'content'" } },
        { "invalid_utf8.jsonl", 1, { ":2: invalid UTF-8 at column 15", ":3: invalid UTF-8 at column 21", ":4: invalid UTF-8 at column 20" } },
        { "missing_fields.jsonl", 1, { ":2: missing key 'output'", ":3: missing key 'instruction'" } },
        { "mixed_formats.jsonl", 1, { ":2: a completion record (keys \"prompt\", \"completion\") in a text file (format detected from line 1); mixed formats are not supported",
                                      ":3: a chat record (keys \"messages\") in a text file (format detected from line 1); mixed formats are not supported" } },
        { "not_object.jsonl", 1, { ":2: not a JSON object", ":3: not a JSON object", ":4: not a JSON object" } },
        { "nul_byte.jsonl", 1, { ":2: NUL byte at column 14" } },
        { "roles_out_of_order.jsonl", 1, { ":2: messages[0]: role 'assistant' where 'user' was expected (user and assistant turns alternate, starting with user)",
                                           ":3: messages[1]: a system message is only allowed first",
                                           ":4: messages[2]: role 'assistant' where 'user' was expected (user and assistant turns alternate, starting with user)" } },
        { "wrong_types.jsonl", 1, { ":2: 'prompt' must be a string", ":3: 'completion' must be a string", ":4: 'completion' must be a string" } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[256], want[512];
        snprintf(path, sizeof path, "tests/data/bad/%s", cases[c].file);
        struct pl_data_file *f = NULL;
        assert_int_equal(pl_data_read(&f, path, PL_DATA_AUTO), PL_OK);
        assert_int_equal(f->n_records, cases[c].records);
        int n = 0;
        while (n < 4 && cases[c].issues[n]) n++;
        assert_int_equal(f->n_issues, n);
        for (int i = 0; i < n; i++) {
            snprintf(want, sizeof want, "%s%s", path, cases[c].issues[i]);
            assert_string_equal(f->issues[i].msg, want);
        }
        /* and building refuses the file, naming the first problem */
        struct pl_dataset *ds = NULL;
        struct pl_data_build_opts o = pl_data_build_defaults();
        assert_int_equal(pl_dataset_build(&ds, NULL, f, NULL, &TOK, &o), PL_ERR_FORMAT);
        snprintf(want, sizeof want, "%s%s", path, cases[c].issues[0]);
        assert_memory_equal(pl_last_error(), want, strlen(want));
        /* skip_bad builds from what is left (chat needs a template: the test one) */
        o.skip_bad = 1;
        enum pl_status st = pl_dataset_build(&ds, NULL, f, NULL, &TOK, &o);
        if (cases[c].records > 0) {
            assert_int_equal(st, PL_OK);
            assert_int_equal(ds->n, cases[c].records);
            assert_int_equal(ds->skipped, f->n_seen - cases[c].records);
            pl_dataset_free(ds);
        } else {
            assert_int_equal(st, PL_ERR_FORMAT);
        }
        pl_data_file_free(f);
    }
}

/* A 10 MB line is an error on its line; the lines around it still read. */
static void test_huge_line(void **state)
{
    (void)state;
    char path[] = "/tmp/pl_data_hugeXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "wb");
    fputs("{\"text\": \"before\"}\n{\"text\": \"", fp);
    for (int i = 0; i < 10 << 20; i++) fputc('a' + i % 26, fp);
    fputs("\"}\n{\"text\": \"after\"}\n", fp);
    /* and an unterminated 10 MB string at the end, without a newline */
    fputs("{\"text\": \"", fp);
    for (int i = 0; i < 10 << 20; i++) fputc('z', fp);
    fclose(fp);
    struct pl_data_file *f = NULL;
    assert_int_equal(pl_data_read(&f, path, PL_DATA_AUTO), PL_OK);
    remove(path);
    assert_int_equal(f->n_records, 2);
    assert_string_equal(f->records[1].a, "after");
    assert_int_equal(f->records[1].line, 3);
    assert_int_equal(f->n_issues, 2);
    char want[256];
    snprintf(want, sizeof want, "%s:2: record is %d bytes, over the 8 MiB limit", path, (10 << 20) + 12);
    assert_string_equal(f->issues[0].msg, want);
    assert_int_equal(f->issues[1].line, 4);
    pl_data_file_free(f);
}

/* ---------------------------------------------------------------- rendering */

static void test_render_masks(void **state)
{
    (void)state;
    struct pl_data_file *f = read_str("c.jsonl",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"},"
        "{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n", 0);
    struct pl_data_ids ids = { 0 };
    uint8_t *mask = NULL;
    assert_int_equal(pl_data_render(&ids, &mask, f->format, &f->records[0], &TOK, 0), PL_OK);
    /* BOS (add_bos, template has none), then the ChatML text; loss on "yo<|im_end|>" and "a<|im_end|>" */
    char expect_text[] = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
                         "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n";
    struct pl_data_ids want = { 0 };
    pl_data_ids_push(&want, 1);
    t_encode(NULL, expect_text, strlen(expect_text), &want);
    assert_int_equal(ids.n, want.n);
    for (int64_t i = 0; i < ids.n; i++) assert_int_equal(ids.v[i], want.v[i]);
    /* the loss tokens, in order */
    int32_t loss[16];
    int nl = 0;
    for (int64_t i = 0; i < ids.n; i++) if (mask[i]) { assert_true(nl < 16); loss[nl++] = ids.v[i]; }
    int32_t expect_loss[] = { 10 + 'y', 10 + 'o', 4, 10 + 'a', 4 };
    assert_int_equal(nl, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(loss[i], expect_loss[i]);
    /* train_on_prompt: everything but the BOS */
    assert_int_equal(pl_data_render(&ids, &mask, f->format, &f->records[0], &TOK, 1), PL_OK);
    assert_int_equal(mask[0], 0);
    for (int64_t i = 1; i < ids.n; i++) assert_int_equal(mask[i], 1);
    pl_data_ids_free(&want);
    pl_data_file_free(f);

    /* completion: BOS prompt completion EOS; loss on completion + EOS */
    f = read_str("p.jsonl", "{\"prompt\":\"ab\",\"completion\":\"cd\"}\n", 0);
    assert_int_equal(pl_data_render(&ids, &mask, f->format, &f->records[0], &TOK, 0), PL_OK);
    int32_t eid[] = { 1, 10 + 'a', 10 + 'b', 10 + 'c', 10 + 'd', 2 };
    uint8_t em[] = { 0, 0, 0, 1, 1, 1 };
    assert_int_equal(ids.n, 6);
    for (int i = 0; i < 6; i++) { assert_int_equal(ids.v[i], eid[i]); assert_int_equal(mask[i], em[i]); }
    pl_data_file_free(f);

    /* alpaca: instruction + blank line + input as the user turn */
    f = read_str("al.jsonl", "{\"instruction\":\"I\",\"input\":\"X\",\"output\":\"O\"}\n", 0);
    assert_int_equal(pl_data_render(&ids, &mask, f->format, &f->records[0], &TOK, 0), PL_OK);
    const char *at = "<|im_start|>user\nI\n\nX<|im_end|>\n<|im_start|>assistant\nO<|im_end|>\n";
    struct pl_data_ids w2 = { 0 };
    pl_data_ids_push(&w2, 1);
    t_encode(NULL, at, strlen(at), &w2);
    assert_int_equal(ids.n, w2.n);
    for (int64_t i = 0; i < ids.n; i++) {
        assert_int_equal(ids.v[i], w2.v[i]);
        assert_int_equal(mask[i], i >= ids.n - 3 && i < ids.n - 1);   /* "O", <|im_end|> */
    }
    pl_data_ids_free(&w2);
    pl_data_file_free(f);

    /* without token_bytes the segment fallback gives the same ids and mask here */
    struct pl_data_tokenizer seg = TOK;
    seg.token_bytes = NULL;
    f = read_str("p.jsonl", "{\"prompt\":\"ab\",\"completion\":\"cd\"}\n", 0);
    assert_int_equal(pl_data_render(&ids, &mask, f->format, &f->records[0], &seg, 0), PL_OK);
    for (int i = 0; i < 6; i++) { assert_int_equal(ids.v[i], eid[i]); assert_int_equal(mask[i], em[i]); }
    pl_data_file_free(f);
    pl_data_ids_free(&ids);
    pl_free(mask);
}

static void test_build_truncation_skip_dups(void **state)
{
    (void)state;
    const char *text =
        "{\"prompt\":\"ab\",\"completion\":\"cd\"}\n"        /* 6 tokens */
        "{\"prompt\":\"abcdefgh\",\"completion\":\"ij\"}\n"  /* 12 tokens: cut to 8, keeps no target */
        "{\"prompt\":\"a\",\"completion\":\"bcdefghij\"}\n"  /* 12 tokens: cut to 8, 6 targets */
        "{\"prompt\":\"a\"}\n"                               /* bad */
        "{\"prompt\":\"ab\",\"completion\":\"cd\"}\n";       /* duplicate of line 1 */
    struct pl_data_file *f = read_str("t.jsonl", text, 0);
    struct pl_data_build_opts o = pl_data_build_defaults();
    o.max_seq_len = 8;
    struct pl_dataset *ds = NULL, *vs = NULL;
    assert_int_equal(pl_dataset_build(&ds, &vs, f, NULL, &TOK, &o), PL_ERR_FORMAT);
    assert_string_equal(pl_last_error(), "t.jsonl:4: missing key 'completion'");
    o.skip_bad = 1;
    assert_int_equal(pl_dataset_build(&ds, &vs, f, NULL, &TOK, &o), PL_OK);
    assert_null(vs);
    assert_int_equal(ds->skipped, 1);
    assert_int_equal(ds->n_issues, 1);
    assert_int_equal(ds->n_seen, 5);
    assert_int_equal(ds->n, 3);                 /* line 2 has no target left */
    assert_int_equal(ds->stats.no_target, 1);
    assert_int_equal(ds->stats.truncated, 2);
    assert_int_equal(ds->stats.truncated_tokens, 8);
    assert_int_equal(ds->stats.min, 6);
    assert_int_equal(ds->stats.max, 8);
    assert_int_equal(ds->stats.median, 6);
    assert_int_equal(ds->duplicates, 1);
    assert_int_equal(ds->dup_pairs[0][0], 5);
    assert_int_equal(ds->dup_pairs[0][1], 1);
    assert_int_equal(ds->ex[1].line, 3);
    assert_int_equal(ds->ex[1].n_target, 6);    /* b..h of "bcdefghij" survive the cut */
    pl_dataset_free(ds);
    pl_data_file_free(f);
}

static void test_split_fraction(void **state)
{
    (void)state;
    char text[4096];
    size_t at = 0;
    for (int i = 0; i < 40; i++) at += (size_t)sprintf(text + at, "{\"text\":\"row %d\"}\n", i);
    struct pl_data_file *f = read_str("s.jsonl", text, 0);
    struct pl_data_build_opts o = pl_data_build_defaults();
    o.valid_fraction = 0.25;
    o.seed = 3;
    struct pl_dataset *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(pl_dataset_build(&a, &b, f, NULL, &TOK, &o), PL_OK);
    assert_int_equal(a->n, 30);
    assert_int_equal(b->n, 10);
    assert_int_equal(a->overlap + b->overlap, 0);
    assert_int_equal(pl_dataset_build(&c, &d, f, NULL, &TOK, &o), PL_OK);
    int differs_from_head = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(b->ex[i].line, d->ex[i].line);         /* same seed, same split */
        if (b->ex[i].line != i + 1) differs_from_head = 1;
        for (int k = 0; k < 30; k++) assert_int_not_equal(a->ex[k].line, b->ex[i].line);
    }
    assert_true(differs_from_head);
    pl_dataset_free(a); pl_dataset_free(b); pl_dataset_free(c); pl_dataset_free(d);
    /* a validation file: overlap between the two is counted */
    struct pl_data_file *v = read_str("v.jsonl", "{\"text\":\"row 3\"}\n{\"text\":\"new\"}\n", 0);
    o.valid_fraction = 0;
    assert_int_equal(pl_dataset_build(&a, &b, f, v, &TOK, &o), PL_OK);
    assert_int_equal(a->n, 40);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->overlap, 1);
    assert_int_equal(b->ex[0].file, 1);
    pl_dataset_free(a); pl_dataset_free(b);
    pl_data_file_free(v);
    pl_data_file_free(f);
}

/* ---------------------------------------------------------------- RNG and batches */

static void test_rng(void **state)
{
    (void)state;
    /* reference values: splitmix64 seeding + xoshiro256**, computed in Python from the
     * published algorithms (see data_batch.c) */
    struct pl_data_rng r;
    pl_data_rng_seed(&r, 42);
    assert_true(pl_data_rng_next(&r) == 0x15780b2e0c2ec716ull);
    assert_true(pl_data_rng_next(&r) == 0x6104d9866d113a7eull);
    assert_true(pl_data_rng_next(&r) == 0xae17533239e499a1ull);
    pl_data_rng_seed(&r, 7);
    int32_t v[10];
    for (int i = 0; i < 10; i++) v[i] = i;
    pl_data_shuffle_i32(&r, v, 10);
    int32_t want[10] = { 8, 3, 9, 0, 7, 2, 1, 6, 5, 4 };
    for (int i = 0; i < 10; i++) assert_int_equal(v[i], want[i]);
    for (int i = 0; i < 1000; i++) {
        double u = pl_data_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        assert_true(pl_data_rng_below(&r, 3) < 3);
    }
}

static struct pl_dataset *make_ds(int n, struct pl_data_file **fo)
{
    char *text = malloc((size_t)n * 64 + 1);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        at += (size_t)sprintf(text + at, "{\"prompt\":\"p%d\",\"completion\":\"", i);
        for (int k = 0; k <= i % 7; k++) text[at++] = 'x';
        at += (size_t)sprintf(text + at, "\"}\n");
    }
    text[at] = 0;
    *fo = read_str("b.jsonl", text, 0);
    free(text);
    struct pl_data_build_opts o = pl_data_build_defaults();
    struct pl_dataset *ds = NULL;
    assert_int_equal(pl_dataset_build(&ds, NULL, *fo, NULL, &TOK, &o), PL_OK);
    return ds;
}

/* Concatenate the example order of `batches` batches. */
static void run_order(struct pl_data_iter *it, int batches, int32_t *out, int *n)
{
    struct pl_data_batch b;
    *n = 0;
    for (int k = 0; k < batches; k++) {
        assert_int_equal(pl_data_iter_next(it, &b), PL_OK);
        for (int e = 0; e < b.n_examples; e++) out[(*n)++] = b.examples[e];
    }
}

static int64_t tg_batch(const struct pl_data_batch *b)
{
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)b->batch * b->seq; i++) n += b->targets[i] != -1;
    return n;
}

static void test_batches(void **state)
{
    (void)state;
    struct pl_data_file *f;
    struct pl_dataset *ds = make_ds(23, &f);
    struct pl_data_iter_opts o = pl_data_iter_defaults();
    o.batch_size = 4;
    o.seed = 11;
    struct pl_data_iter *it = pl_data_iter_new(ds, &o);
    assert_non_null(it);
    assert_int_equal(pl_data_iter_batches_per_epoch(it), 6);
    /* one epoch covers every example once; batches are padded, targets shifted and masked */
    int seen[23] = { 0 };
    struct pl_data_batch b;
    int64_t targets = 0;
    int short_batches = 0;
    for (int k = 0; k < 6; k++) {
        assert_int_equal(pl_data_iter_next(it, &b), PL_OK);
        assert_int_equal(b.epoch, 0);
        assert_int_equal(b.index, k);
        int longest = 0;
        for (int r = 0; r < b.batch; r++) {
            const struct pl_data_example *x = &ds->ex[b.examples[r]];
            seen[b.examples[r]]++;
            if (x->len - 1 > longest) longest = x->len - 1;
            const int32_t *xi = ds->ids + x->off;
            const uint8_t *xm = ds->mask + x->off;
            for (int t = 0; t < b.seq; t++) {
                int32_t id = b.ids[r * b.seq + t], tg = b.targets[r * b.seq + t];
                if (t < x->len - 1) {
                    assert_int_equal(id, xi[t]);
                    assert_int_equal(tg, xm[t + 1] ? xi[t + 1] : -1);
                } else {
                    assert_int_equal(id, ds->pad_id);
                    assert_int_equal(tg, -1);
                }
                targets += tg != -1;
            }
        }
        assert_int_equal(b.seq, longest);
        assert_true(b.batch == 4 || b.batch == 3);
        short_batches += b.batch == 3;
        assert_int_equal(b.n_target, tg_batch(&b));
    }
    assert_int_equal(short_batches, 1);
    int64_t want_targets = 0;
    for (int i = 0; i < 23; i++) { assert_int_equal(seen[i], 1); want_targets += ds->ex[i].n_target; }
    assert_int_equal(targets, want_targets);
    assert_int_equal(pl_data_iter_next(it, &b), PL_OK);
    assert_int_equal(b.epoch, 1);
    assert_int_equal(b.index, 0);
    pl_data_iter_free(it);
    pl_dataset_free(ds);
    pl_data_file_free(f);
}

static void test_shuffle_determinism_and_resume(void **state)
{
    (void)state;
    struct pl_data_file *f;
    struct pl_dataset *ds = make_ds(37, &f);
    struct pl_data_iter_opts o = pl_data_iter_defaults();
    o.batch_size = 3;
    o.seed = 5;
    int32_t a[400], b[400], c[400];
    int na, nb, nc;
    struct pl_data_iter *i1 = pl_data_iter_new(ds, &o), *i2 = pl_data_iter_new(ds, &o);
    run_order(i1, 40, a, &na);      /* 13 batches an epoch: crosses three epochs */
    run_order(i2, 40, b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    pl_data_iter_free(i2);
    o.seed = 6;
    struct pl_data_iter *i3 = pl_data_iter_new(ds, &o);
    run_order(i3, 40, c, &nc);
    assert_true(memcmp(a, c, (size_t)na * sizeof *a) != 0);
    pl_data_iter_free(i3);
    /* epochs differ from each other */
    assert_true(memcmp(a, a + 37, 30 * sizeof *a) != 0);

    /* save part-way (mid-epoch), continue; a fresh iterator restored there gives the same */
    o.seed = 5;
    struct pl_data_iter *r = pl_data_iter_new(ds, &o);
    int32_t skip[400];
    int ns;
    run_order(r, 17, skip, &ns);
    struct pl_data_iter_state st;
    pl_data_iter_get_state(r, &st);
    assert_int_equal(st.epoch, 1);
    assert_int_equal(st.index, 4);
    run_order(r, 23, b, &nb);
    struct pl_data_iter *q = pl_data_iter_new(ds, &o);
    assert_int_equal(pl_data_iter_set_state(q, &st), PL_OK);
    run_order(q, 23, c, &nc);
    assert_int_equal(nb, nc);
    assert_memory_equal(b, c, (size_t)nb * sizeof *b);
    assert_memory_equal(b, a + ns, (size_t)nb * sizeof *b);   /* and equals the uninterrupted run */
    /* state at an epoch's end resumes into the next epoch */
    struct pl_data_iter *e = pl_data_iter_new(ds, &o);
    run_order(e, 13, skip, &ns);
    pl_data_iter_get_state(e, &st);
    assert_int_equal(st.index, 13);
    struct pl_data_iter *e2 = pl_data_iter_new(ds, &o);
    assert_int_equal(pl_data_iter_set_state(e2, &st), PL_OK);
    run_order(e2, 13, c, &nc);
    assert_memory_equal(c, a + 37, 37 * sizeof *c);
    /* bad states are refused and leave the iterator usable */
    st.index = 99;
    assert_int_equal(pl_data_iter_set_state(e2, &st), PL_ERR_ARG);
    memset(st.rng, 0, sizeof st.rng);
    st.index = 0;
    assert_int_equal(pl_data_iter_set_state(e2, &st), PL_ERR_ARG);
    pl_data_iter_free(e); pl_data_iter_free(e2);
    pl_data_iter_free(r); pl_data_iter_free(q); pl_data_iter_free(i1);
    pl_dataset_free(ds);
    pl_data_file_free(f);
}

static void test_packing_and_fixed(void **state)
{
    (void)state;
    struct pl_data_file *f;
    struct pl_dataset *ds = make_ds(20, &f);
    struct pl_data_iter_opts o = pl_data_iter_defaults();
    o.batch_size = 2;
    o.packing = 1;
    o.seq_len = 24;
    struct pl_data_iter *it = pl_data_iter_new(ds, &o);
    assert_non_null(it);
    int seen[20] = { 0 }, total = 0;
    int64_t nb = pl_data_iter_batches_per_epoch(it);
    struct pl_data_batch b;
    int64_t want_targets = 0, got_targets = 0;
    for (int i = 0; i < ds->n; i++) want_targets += ds->ex[i].n_target;
    for (int64_t k = 0; k < nb; k++) {
        assert_int_equal(pl_data_iter_next(it, &b), PL_OK);
        assert_int_equal(b.seq, 24);
        for (int e = 0; e < b.n_examples; e++) { seen[b.examples[e]]++; total++; }
        got_targets += b.n_target;
        /* each row is full examples back to back: the first row starts with the first example */
        const struct pl_data_example *x = &ds->ex[b.examples[0]];
        for (int t = 0; t + 1 < x->len; t++) assert_int_equal(b.ids[t], ds->ids[x->off + t]);
    }
    assert_int_equal(total, 20);
    for (int i = 0; i < 20; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(got_targets, want_targets);
    assert_true(nb < 10);   /* packing needs fewer batches than 20 rows / 2 */
    pl_data_iter_free(it);
    /* fixed width: too short is refused with the numbers */
    o.packing = 0;
    o.seq_len = 3;
    assert_null(pl_data_iter_new(ds, &o));
    assert_non_null(strstr(pl_last_error(), "seq_len 3 is shorter than the longest example"));
    o.seq_len = 16;
    it = pl_data_iter_new(ds, &o);
    assert_int_equal(pl_data_iter_next(it, &b), PL_OK);
    assert_int_equal(b.seq, 16);
    pl_data_iter_free(it);
    o.batch_size = 0;
    assert_null(pl_data_iter_new(ds, &o));
    pl_dataset_free(ds);
    pl_data_file_free(f);
}

static void test_canonical_json(void **state)
{
    (void)state;
    char *a = pl_data_json_canonical(" {\"b\": 1, \"a\": {\"y\": [1, 2.5, \"s\"], \"x\": null}} ", 47);
    assert_non_null(a);
    assert_string_equal(a, "{\"a\":{\"x\":null,\"y\":[1,2.5,\"s\"]},\"b\":1}");
    char *b = pl_data_json_canonical("{\"a\":{\"y\":[1,2.5,\"s\"],\"x\":null},\"b\":1.0}", 40);
    assert_string_equal(a, b);
    pl_free(a); pl_free(b);
    assert_null(pl_data_json_canonical("{\"a\":1} x", 9));
    assert_null(pl_data_json_canonical("{\"a\":", 5));
    assert_null(pl_data_json_canonical("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_shared),
        cmocka_unit_test(test_formats_and_override),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_chat_roles),
        cmocka_unit_test(test_array_lines),
        cmocka_unit_test(test_bad_corpus),
        cmocka_unit_test(test_huge_line),
        cmocka_unit_test(test_render_masks),
        cmocka_unit_test(test_build_truncation_skip_dups),
        cmocka_unit_test(test_split_fraction),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_shuffle_determinism_and_resume),
        cmocka_unit_test(test_packing_and_fixed),
        cmocka_unit_test(test_canonical_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
