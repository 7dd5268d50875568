/* test_hash.c — MD5 and SHA-256 (src/core/hash.c) against the RFC 1321 / FIPS 180-4 test vectors
 * and Python hashlib values at the padding boundaries (55, 56, 63, 64, 65, 119, 120 bytes),
 * streamed in odd pieces, and over files; the file-system helpers of src/core/fs.c (listing order,
 * mkdir -p, atomic read-only copy). Owner: track.
 */
#include "pl_test.h"
#include "peftlua/fs.h"
#include "peftlua/hash.h"

static void check(enum pl_hash_algo a, const void *p, size_t n, const char *want)
{
    char hex[PL_HASH_HEX_MAX];
    struct pl_hash h;
    pl_hash_init(&h, a);
    pl_hash_update(&h, p, n);
    pl_hash_hex(&h, hex);
    assert_string_equal(hex, want);
    /* the same bytes in pieces of 1, 3, 7, 64, 65 ... bytes */
    static const size_t steps[] = { 1, 3, 7, 63, 64, 65, 1000 };
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        pl_hash_init(&h, a);
        for (size_t off = 0; off < n; off += steps[s])
            pl_hash_update(&h, (const char *)p + off, n - off < steps[s] ? n - off : steps[s]);
        pl_hash_hex(&h, hex);
        assert_string_equal(hex, want);
    }
}

static void test_vectors(void **state)
{
    (void)state;
    check(PL_HASH_MD5, "", 0, "d41d8cd98f00b204e9800998ecf8427e");
    check(PL_HASH_MD5, "abc", 3, "900150983cd24fb0d6963f7d28e17f72");
    check(PL_HASH_MD5, "message digest", 14, "f96b697d7cb7938d525a2f31aaf161d0");
    const char *d80 = "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
    check(PL_HASH_MD5, d80, 80, "57edf4a22be3c955ac49da2e2107b67a");
    check(PL_HASH_SHA256, "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check(PL_HASH_SHA256, "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *s56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(PL_HASH_SHA256, s56, 56, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *mil = malloc(1000000);
    assert_non_null(mil);
    memset(mil, 'a', 1000000);
    check(PL_HASH_MD5, mil, 1000000, "7707d6ae4e027c70eea2a935c2296f21");
    check(PL_HASH_SHA256, mil, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(mil);
}

/* bytes (7i + 3) mod 256; values from Python's hashlib */
static void test_boundaries(void **state)
{
    (void)state;
    static const struct { size_t n; const char *md5, *sha; } v[] = {
        { 55, "52c0e574e1198de5fe3f8f11440dcb1b", "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b" },
        { 56, "46c9907fc908ee68b1e7b8e71286a518", "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27" },
        { 63, "a62f6d59e837867693f042f5b8f5a236", "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055" },
        { 64, "7160b8fb5e9e4023d549c3971fbaeead", "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241" },
        { 65, "70bd662e7aefbda85a0f7244167b7897", "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e" },
        { 119, "e84905d4214f4d1ca56c2cdcc152b143", "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e" },
        { 120, "e3eb5a6c8669ea01a8c185b8abc8a5dc", "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5" },
        { 1000, "10046f077f2082ac19676b8079f1cb1a", "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371" },
    };
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)((i * 7 + 3) & 255);
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        check(PL_HASH_MD5, buf, v[k].n, v[k].md5);
        check(PL_HASH_SHA256, buf, v[k].n, v[k].sha);
    }
}

static void test_file(void **state)
{
    (void)state;
    /* 3 MiB + 5 bytes: crosses the reader's 1 MiB pieces; CRLF bytes hashed as they are */
    size_t n = (3u << 20) + 5;
    char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) b[i] = (i % 3 == 0) ? '\r' : (i % 3 == 1) ? '\n' : 'x';
    pl_test_write(pl_test_tmp("big.bin"), b, n);
    char want[PL_HASH_HEX_MAX], got[PL_HASH_HEX_MAX];
    for (int a = 0; a < 2; a++) {
        struct pl_hash h;
        pl_hash_init(&h, (enum pl_hash_algo)a);
        pl_hash_update(&h, b, n);
        pl_hash_hex(&h, want);
        uint64_t size = 0;
        assert_int_equal(pl_hash_file(pl_test_tmp("big.bin"), (enum pl_hash_algo)a, got, &size), PL_OK);
        assert_string_equal(got, want);
        assert_int_equal(size, n);
    }
    free(b);
    assert_int_equal(pl_hash_file(pl_test_tmp("missing"), PL_HASH_MD5, got, NULL), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "missing: cannot open"));
    assert_int_equal(pl_hash_file(pl_test_dir, PL_HASH_MD5, got, NULL), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "is a directory"));
}

static void test_fs(void **state)
{
    (void)state;
    assert_int_equal(pl_fs_mkdirs(pl_test_tmp("t/b/sub")), PL_OK);
    assert_int_equal(pl_fs_mkdirs(pl_test_tmp("t/b/sub/")), PL_OK);   /* exists: fine */
    assert_int_equal(pl_fs_mkdirs(pl_test_tmp("t/.git/x")), PL_OK);
    pl_test_write(pl_test_tmp("t/b/sub/z"), "z", 1);
    pl_test_write(pl_test_tmp("t/b-c"), "bc", 2);
    pl_test_write(pl_test_tmp("t/a.txt"), "a\r\n", 3);
    pl_test_write(pl_test_tmp("t/.git/x/y"), "skip", 4);
    char **f;
    int n;
    assert_int_equal(pl_fs_list(pl_test_tmp("t"), &f, &n), PL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(f[0], "a.txt");   /* bytewise: '-' (0x2d) < '/' (0x2f) */
    assert_string_equal(f[1], "b-c");
    assert_string_equal(f[2], "b/sub/z");
    pl_fs_list_free(f, n);
    struct pl_fs_stat st;
    assert_int_equal(pl_fs_copy(pl_test_tmp("t/a.txt"), pl_test_tmp("t/copy"), 0444), PL_OK);
    assert_int_equal(pl_fs_stat(pl_test_tmp("t/copy"), &st), PL_OK);
    assert_int_equal(st.type, PL_FS_FILE);
    assert_int_equal(st.size, 3);
    assert_int_equal(st.mode, 0444);
    assert_int_equal(pl_fs_stat(pl_test_tmp("t/nothing"), &st), PL_OK);
    assert_int_equal(st.type, PL_FS_MISSING);
    assert_int_equal(pl_fs_mkdirs(pl_test_tmp("t/a.txt/x")), PL_ERR_IO);
    assert_int_equal(pl_fs_list(pl_test_tmp("t/none"), &f, &n), PL_ERR_IO);
    char *r;
    assert_int_equal(pl_fs_realpath(pl_test_tmp("t/b/../a.txt"), &r), PL_OK);
    assert_true(r[0] == '/' && strstr(r, "/t/a.txt") != NULL && !strstr(r, ".."));
    pl_free(r);
}

int main(void)
{
    const int64_t before = pl_mem_current_total();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_fs),
    };
    return pl_test_leak_check(cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown), before);
}
