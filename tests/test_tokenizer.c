/* test_tokenizer.c - the BPE tokenizer against golden ids of the reference
 * encoders, round trips over arbitrary bytes, vocabulary errors, SHA-256,
 * and BPE training.
 *
 * The vocabularies live in build/vocab (made by `make test-data`); the golden
 * ids in tests/fixtures/tokenizer (made by datasets/tools/make_golden.js). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpe_train.h"
#include "sha256.h"
#include "tokenizer.h"

#define LLAMA3_PATH "build/vocab/llama3.tiktoken"
#define CL100K_PATH "build/vocab/cl100k_base.tiktoken"
#define GOLDEN_DIR "tests/fixtures/tokenizer"

/* ---- helpers ------------------------------------------------------------- */

static tokenizer *load(const char *path, tokenizer_kind kind) {
    if (access(path, R_OK) != 0)
        cr_assert_fail("%s is missing: run `make test-data` (it downloads and checks it)", path);
    tokenizer *t;
    ps_error err = {{0}};
    if (tokenizer_load(&t, path, kind, &err) != 0) cr_assert_fail("loading %s: %s", path, err.msg);
    return t;
}

static tokenizer_ids encode(const tokenizer *t, const void *s, size_t n, int allow_special) {
    tokenizer_ids ids = {0};
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_encode(t, s, n, allow_special, &ids, &err), 0, "encode: %s", err.msg);
    return ids;
}

static void assert_round_trip(const tokenizer *t, const unsigned char *s, size_t n, const char *what) {
    tokenizer_ids ids = encode(t, s, n, 0);
    tokenizer_bytes back = {0};
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_decode(t, ids.ids, ids.n, &back, &err), 0, "decode: %s", err.msg);
    cr_assert(back.n == n && (n == 0 || memcmp(back.bytes, s, n) == 0), "%s: %zu bytes came back as %zu", what, n,
              back.n);
    tokenizer_ids_free(&ids);
    tokenizer_bytes_free(&back);
}

static void assert_ids(const tokenizer *t, const char *s, const uint32_t *want, size_t n) {
    tokenizer_ids ids = encode(t, s, strlen(s), 0);
    cr_assert_eq(ids.n, n, "'%s': %zu ids, expected %zu", s, ids.n, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids.ids[i], want[i], "'%s': id %zu is %u, expected %u", s, i, ids.ids[i], want[i]);
    tokenizer_ids_free(&ids);
}

static int b64v(int c) {
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(a, c) : NULL;
    return p ? (int)(p - a) : -1;
}

/* Decodes base64 s[0..n) into out (room n); returns the length. */
static size_t b64(const char *s, size_t n, unsigned char *out) {
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = b64v(s[i]);
        cr_assert(v >= 0, "bad base64 in a golden file");
        acc = acc << 6 | (uint32_t)v, bits += 6;
        if (bits >= 8) out[o++] = (unsigned char)(acc >> (bits -= 8));
    }
    return o;
}

static size_t parse_ids(char *s, uint32_t *out) {
    size_t n = 0;
    for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " ")) out[n++] = (uint32_t)strtoul(tok, NULL, 10);
    return n;
}

/* Prints where the ids first differ; returns 1 when they match. */
static int same_ids(const char *file, size_t line, const char *which, const tokenizer_ids *got, const uint32_t *want,
                    size_t n) {
    size_t i = 0;
    while (i < n && i < got->n && got->ids[i] == want[i]) i++;
    if (i == n && got->n == n) return 1;
    fprintf(stderr, "%s:%zu (%s): first difference at id %zu: got %u, expected %u (%zu vs %zu ids)\n", file, line,
            which, i, i < got->n ? got->ids[i] : 0, i < n ? want[i] : 0, got->n, n);
    return 0;
}

/* Checks every line of a golden file against both vocabularies; returns the
 * number of lines checked. */
static size_t check_golden(const char *name, int allow_special) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    tokenizer *llama = load(LLAMA3_PATH, TOKENIZER_LLAMA3), *cl = load(CL100K_PATH, TOKENIZER_CL100K);
    size_t cap = 1 << 20, lineno = 0, bad = 0;
    char *line = malloc(cap);
    unsigned char *text = malloc(cap);
    uint32_t *want = malloc(cap * sizeof *want);
    while (fgets(line, (int)cap, f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        cr_assert(tab2, "%s:%zu: expected three tab-separated fields", path, lineno);
        *tab1 = *tab2 = 0;
        size_t n = b64(line, strlen(line), text);
        const tokenizer *toks[2] = {llama, cl};
        char *fields[2] = {tab1 + 1, tab2 + 1};
        for (int k = 0; k < 2; k++) {
            size_t nw = parse_ids(fields[k], want);
            tokenizer_ids got = encode(toks[k], text, n, allow_special);
            bad += !same_ids(path, lineno, k ? "cl100k" : "llama3", &got, want, nw);
            tokenizer_ids_free(&got);
            if (!allow_special) assert_round_trip(toks[k], text, n, path);
        }
    }
    fclose(f);
    free(line), free(text), free(want);
    tokenizer_free(llama);
    tokenizer_free(cl);
    cr_assert_eq(bad, 0, "%s: %zu encodings differ from the references (listed above)", path, bad);
    return lineno;
}

/* ---- reference vectors ----------------------------------------------------- */

Test(tokenizer, llama3_known_vectors) {
    tokenizer *t = load(LLAMA3_PATH, TOKENIZER_LLAMA3);
    assert_ids(t, "grabbed", (uint32_t[]){59312, 2788}, 2);
    assert_ids(t, " grabbed", (uint32_t[]){30418}, 1);
    assert_ids(t, "\n", (uint32_t[]){198}, 1);
    assert_ids(t, "\xf0\x9f\xa6\x99", (uint32_t[]){9468, 99, 247}, 3); /* the llama emoji */
    assert_ids(t, "This is a test sentence.", (uint32_t[]){2028, 374, 264, 1296, 11914, 13}, 6);
    assert_ids(t, "", NULL, 0);
    cr_assert_str_eq(tokenizer_sha256(t), TOKENIZER_LLAMA3_SHA256);
    tokenizer_free(t);
}

Test(tokenizer, golden_ordinary, .timeout = 120) { cr_assert_gt(check_golden("golden.tsv", 0), 3000); }

Test(tokenizer, golden_special, .timeout = 60) { cr_assert_gt(check_golden("special.tsv", 1), 100); }

/* ---- special tokens ------------------------------------------------------- */

Test(tokenizer, llama3_specials) {
    tokenizer *t = load(LLAMA3_PATH, TOKENIZER_LLAMA3);
    static const struct {
        const char *name;
        int64_t id;
    } want[] = {
        {"<|begin_of_text|>", 128000},           {"<|end_of_text|>", 128001},
        {"<|reserved_special_token_0|>", 128002}, {"<|reserved_special_token_1|>", 128003},
        {"<|finetune_right_pad_id|>", 128004},    {"<|reserved_special_token_2|>", 128005},
        {"<|start_header_id|>", 128006},          {"<|end_header_id|>", 128007},
        {"<|eom_id|>", 128008},                   {"<|eot_id|>", 128009},
        {"<|python_tag|>", 128010},               {"<|reserved_special_token_3|>", 128011},
        {"<|reserved_special_token_247|>", 128255}, {"<|reserved_special_token_248|>", -1},
        {"<|endoftext|>", -1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert_eq(tokenizer_special_id(t, want[i].name), want[i].id, "%s", want[i].name);
    cr_assert_eq(tokenizer_vocab_size(t), 128256);
    cr_assert_eq(tokenizer_n_ordinary(t), 128000);
    /* Every id 128000..128255 is a special with a distinct name. */
    for (uint32_t id = 128000; id < 128256; id++) {
        size_t len;
        const unsigned char *p = tokenizer_token(t, id, &len);
        cr_assert_not_null(p, "id %u", id);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)len, (const char *)p);
        cr_assert_eq(tokenizer_special_id(t, name), id, "%s", name);
    }
    size_t len;
    cr_assert_null(tokenizer_token(t, 128256, &len));
    /* Ordinary text never yields a special id; allowed, the name does. */
    const char *s = "<|begin_of_text|>Hi<|eot_id|>";
    tokenizer_ids plain = encode(t, s, strlen(s), 0), special = encode(t, s, strlen(s), 1);
    for (size_t i = 0; i < plain.n; i++) cr_assert_lt(plain.ids[i], 128000);
    cr_assert_eq(special.n, 3);
    cr_assert_eq(special.ids[0], 128000);
    cr_assert_eq(special.ids[2], 128009);
    tokenizer_ids_free(&plain);
    tokenizer_ids_free(&special);
    tokenizer_free(t);
}

Test(tokenizer, cl100k_specials) {
    tokenizer *t = load(CL100K_PATH, TOKENIZER_CL100K);
    cr_assert_eq(tokenizer_special_id(t, "<|endoftext|>"), 100257);
    cr_assert_eq(tokenizer_special_id(t, "<|fim_prefix|>"), 100258);
    cr_assert_eq(tokenizer_special_id(t, "<|fim_middle|>"), 100259);
    cr_assert_eq(tokenizer_special_id(t, "<|fim_suffix|>"), 100260);
    cr_assert_eq(tokenizer_special_id(t, "<|endofprompt|>"), 100276);
    cr_assert_eq(tokenizer_special_id(t, "<|im_start|>"), -1);
    cr_assert_eq(tokenizer_vocab_size(t), 100277);
    cr_assert_str_eq(tokenizer_sha256(t), TOKENIZER_CL100K_SHA256);
    /* 100256 and 100261..100275 are holes: decoding them is an error. */
    uint32_t hole = 100261;
    tokenizer_bytes out = {0};
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_decode(t, &hole, 1, &out, &err), -1);
    cr_assert(strstr(err.msg, "100261") && strstr(err.msg, "position 0"), "%s", err.msg);
    tokenizer_bytes_free(&out);
    tokenizer_free(t);
}

/* ---- round trips and robustness ------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void) { /* xorshift64*: reproducible, no library */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* Random bytes biased towards what breaks tokenizers: UTF-8 lead and
 * continuation bytes, whitespace, digits, quotes, and "<|". */
static size_t random_bytes(unsigned char *buf, size_t max) {
    static const char spice[] = " \t\r\n0123456789'<|>sSlL";
    size_t n = next_rand() % (max + 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = next_rand();
        switch (r % 4) {
        case 0: buf[i] = (unsigned char)(r >> 8); break;
        case 1: buf[i] = (unsigned char)(0x80 + (r >> 8) % 0x80); break;
        case 2: buf[i] = (unsigned char)spice[(r >> 8) % (sizeof spice - 1)]; break;
        default: buf[i] = (unsigned char)('a' + (r >> 8) % 26); break;
        }
    }
    return n;
}

Test(tokenizer, random_bytes_round_trip, .timeout = 120) {
    tokenizer *toks[2] = {load(LLAMA3_PATH, TOKENIZER_LLAMA3), load(CL100K_PATH, TOKENIZER_CL100K)};
    unsigned char buf[600];
    for (int i = 0; i < 5000; i++) {
        size_t n = random_bytes(buf, i % 10 == 9 ? sizeof buf : 60);
        for (int k = 0; k < 2; k++) assert_round_trip(toks[k], buf, n, "random bytes");
    }
    for (int k = 0; k < 2; k++) tokenizer_free(toks[k]);
}

Test(tokenizer, invalid_utf8_is_its_own_piece) {
    tokenizer *t = load(LLAMA3_PATH, TOKENIZER_LLAMA3);
    /* The valid text around invalid bytes encodes as it would alone. */
    const char *s = "abc\xff\xfe def";
    tokenizer_ids all = encode(t, s, strlen(s), 0), abc = encode(t, "abc", 3, 0), def = encode(t, " def", 4, 0);
    cr_assert_eq(all.ids[0], abc.ids[0]);
    cr_assert_eq(all.ids[all.n - 1], def.ids[0]);
    assert_round_trip(t, (const unsigned char *)s, strlen(s), "invalid UTF-8");
    /* A truncated character at the end of a buffer. */
    assert_round_trip(t, (const unsigned char *)"caf\xc3", 4, "truncated UTF-8");
    tokenizer_ids_free(&all), tokenizer_ids_free(&abc), tokenizer_ids_free(&def);
    tokenizer_free(t);
}

/* Long runs go through the heap merge; they must stay fast and exact. */
Test(tokenizer, long_runs_are_fast, .timeout = 30) {
    tokenizer *t = load(LLAMA3_PATH, TOKENIZER_LLAMA3);
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    const char fills[] = " 7a\n\xe4";
    for (size_t f = 0; f < sizeof fills - 1; f++) {
        memset(buf, fills[f], n);
        clock_t start = clock();
        assert_round_trip(t, buf, n, "a long run");
        double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
        cr_assert_lt(secs, 5.0, "a 1 MiB run of 0x%02x took %.1f s", (unsigned char)fills[f], secs);
    }
    free(buf);
    tokenizer_free(t);
}

/* A piece over 64 bytes goes through the heap merge. Whatever follows it
 * (", " and the piece again) must not change its ids, and the golden long
 * runs check the ids themselves. */
Test(tokenizer, long_piece_matches_in_context) {
    tokenizer *t = load(LLAMA3_PATH, TOKENIZER_LLAMA3);
    char word[400];
    for (size_t n = 60; n < 300; n += 7) {
        for (size_t i = 0; i < n; i++) word[i] = (char)('a' + (i * i + 3 * i) % 26);
        word[n] = 0;
        char text[820];
        snprintf(text, sizeof text, "%s, %s", word, word);
        tokenizer_ids one = encode(t, word, n, 0), two = encode(t, text, strlen(text), 0);
        cr_assert_geq(two.n, 2 * one.n);
        for (size_t i = 0; i < one.n; i++) cr_assert_eq(one.ids[i], two.ids[i], "n=%zu id %zu", n, i);
        tokenizer_ids_free(&one), tokenizer_ids_free(&two);
    }
    tokenizer_free(t);
}

/* A loaded tokenizer is read-only: threads encoding at once agree with one
 * thread (this runs under the sanitizers and valgrind too). */
typedef struct encode_job {
    const tokenizer *t;
    const unsigned char *text;
    size_t n;
    tokenizer_ids ids;
    int rc;
} encode_job;

static void *encode_thread(void *arg) {
    encode_job *j = arg;
    ps_error err;
    j->rc = 0;
    for (int r = 0; r < 3 && j->rc == 0; r++) {
        j->ids.n = 0;
        j->rc = tokenizer_encode(j->t, j->text, j->n, r & 1, &j->ids, &err);
    }
    return NULL;
}

Test(tokenizer, threads_share_a_tokenizer, .timeout = 60) {
    tokenizer *t = load(CL100K_PATH, TOKENIZER_CL100K);
    FILE *f = fopen(GOLDEN_DIR "/train.txt", "rb");
    cr_assert_not_null(f);
    static unsigned char text[1 << 16];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    tokenizer_ids want = encode(t, text, n, 0);
    encode_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (encode_job){t, text, n, {0}, -1};
        cr_assert_eq(pthread_create(&th[i], NULL, encode_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jobs[i].rc, 0);
        cr_assert_eq(jobs[i].ids.n, want.n);
        cr_assert_eq(memcmp(jobs[i].ids.ids, want.ids, want.n * sizeof *want.ids), 0, "thread %d differs", i);
        tokenizer_ids_free(&jobs[i].ids);
    }
    tokenizer_ids_free(&want);
    tokenizer_free(t);
}

/* ---- the pre-tokeniser ------------------------------------------------------ */

typedef struct pieces {
    char buf[1024];
    size_t n, count;
} pieces;

static int collect(void *ctx, const unsigned char *p, size_t n) {
    pieces *c = ctx;
    c->n += (size_t)snprintf(c->buf + c->n, sizeof c->buf - c->n, "[%.*s]", (int)n, (const char *)p);
    c->count++;
    return 0;
}

Test(tokenizer, splitter_pieces) {
    tokenizer_splitter *s;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_splitter_new(&s, &err), 0, "%s", err.msg);
    pieces c = {{0}, 0, 0};
    const char *text = "He'LL pay 12345 dollars!!\n\n  x  \t";
    cr_assert_eq(tokenizer_split(s, text, strlen(text), collect, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.buf, "[He]['LL][ pay][ ][123][45][ dollars][!!\n\n][ ][ x][  \t]");
    tokenizer_splitter_free(s);
}

static int count_only(void *ctx, const unsigned char *p, size_t n) {
    (void)p, (void)n;
    ++*(size_t *)ctx;
    return 0;
}

/* PCRE2's default match limit stopped the whitespace alternatives from
 * backtracking through runs over about 10 MB; the splitter lifts it. */
Test(tokenizer, splitter_long_whitespace_run) {
    size_t n = 12u << 20, count = 0;
    unsigned char *buf = malloc(n);
    memset(buf, ' ', n);
    buf[0] = '\n', buf[n - 1] = 'x';
    tokenizer_splitter *s;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_splitter_new(&s, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_split(s, buf, n, count_only, &count, &err), 0, "%s", err.msg);
    cr_assert_eq(count, 3, "'\\n', the spaces but one, ' x': got %zu pieces", count);
    tokenizer_splitter_free(s);
    free(buf);
}

/* ---- vocabulary errors ------------------------------------------------------ */

/* Writes a vocabulary of all 256 single bytes (rank = byte), then extra. */
static void write_vocab(const char *path, const char *extra, int skip_byte) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int b = 0; b < 256; b++)
        if (b != skip_byte) fprintf(f, "%c%c== %d\n", a[b >> 2], a[(b & 3) << 4], b);
    fputs(extra, f);
    fclose(f);
}

static void expect_load_error(const char *extra, int skip_byte, tokenizer_kind kind, const char *want) {
    char path[] = "/tmp/presight_vocab_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    write_vocab(path, extra, skip_byte);
    tokenizer *t;
    ps_error err = {{0}};
    int rc = tokenizer_load(&t, path, kind, &err);
    unlink(path);
    cr_assert_eq(rc, -1, "loading '%s' should fail", extra);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, want), "message '%s' lacks '%s' or the path", err.msg, want);
}

Test(tokenizer, malformed_vocab_names_file_and_line) {
    expect_load_error("YWI=\n", -1, TOKENIZER_PLAIN, ":257: expected 'base64 rank'");
    expect_load_error("YW*= 256\n", -1, TOKENIZER_PLAIN, ":257: 'YW*=' is not a base64 token");
    expect_load_error("YWI= 25x\n", -1, TOKENIZER_PLAIN, ":257: rank '25x'");
    expect_load_error("YWI= \n", -1, TOKENIZER_PLAIN, ":257: the rank is missing");
    expect_load_error("YWI= 9999999999\n", -1, TOKENIZER_PLAIN, ":257: rank '9999999999' is not a number below 2^30");
    expect_load_error("YWI= 256\nYWM= 256\n", -1, TOKENIZER_PLAIN, ":258: rank 256 already given on line 257");
    expect_load_error("YWI= 256\nYWI= 257\n", -1, TOKENIZER_PLAIN, ":258: the token of rank 257 repeats rank 256");
    expect_load_error("YWI= 300\n", -1, TOKENIZER_PLAIN, ":257: rank 300, but there are only 257 tokens");
    expect_load_error("YWI= 255\n", 255, TOKENIZER_PLAIN, "no token for the single byte 0xff");
    expect_load_error("", -1, TOKENIZER_LLAMA3, "a llama3 vocabulary has 128000 ordinary tokens, this file has 256");
    tokenizer *t;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_load(&t, "/nonexistent/v.tiktoken", TOKENIZER_PLAIN, &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/v.tiktoken"), "%s", err.msg);
}

Test(tokenizer, plain_vocab_specials_and_bytes) {
    char path[] = "/tmp/presight_vocab_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_vocab(path, "YWI= 256\n\n", -1); /* "ab"; a blank line is allowed */
    tokenizer *t;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_load(&t, path, TOKENIZER_PLAIN, &err), 0, "%s", err.msg);
    unlink(path);
    cr_assert_eq(tokenizer_vocab_size(t), 257 + TOKENIZER_PLAIN_SPECIALS);
    cr_assert_eq(tokenizer_special_id(t, "<|begin_of_text|>"), 257);
    cr_assert_eq(tokenizer_special_id(t, "<|end_of_text|>"), 258);
    assert_ids(t, "abc", (uint32_t[]){256, 'c'}, 2);
    tokenizer_free(t);
}

/* ---- SHA-256 ---------------------------------------------------------------- */

Test(tokenizer, sha256_vectors) {
    char hex[65];
    sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a' fed in uneven pieces crosses every block boundary case. */
    sha256_ctx c;
    unsigned char chunk[1000], d[32];
    memset(chunk, 'a', sizeof chunk);
    sha256_init(&c);
    for (size_t fed = 0, k = 1; fed < 1000000; k = k % 997 + 1) {
        size_t n = 1000000 - fed < k ? 1000000 - fed : k;
        sha256_update(&c, chunk, n);
        fed += n;
    }
    sha256_final(&c, d);
    char got[65];
    for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
    cr_assert_str_eq(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* ---- BPE training ------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_token(const tokenizer *t, uint32_t id, const char *want) {
    size_t len;
    const unsigned char *p = tokenizer_token(t, id, &len);
    cr_assert(p && len == strlen(want) && memcmp(p, want, len) == 0, "token %u is '%.*s', expected '%s'", id,
              p ? (int)len : 0, p ? (const char *)p : "", want);
}

/* Pieces: "ab" x1, " ab" x4, " cd" x2. Pair counts: (a,b) 5, then (' ',ab)
 * 4, then (' ',c) and (c,d) tie at 2: the smaller pair, (' ',c), first. */
Test(bpe_train, first_merges_are_the_most_frequent_pairs) {
    char text[] = "/tmp/presight_bpe_text_XXXXXX", vocab[] = "/tmp/presight_bpe_vocab_XXXXXX";
    close(mkstemp(text));
    close(mkstemp(vocab));
    write_text(text, "ab ab ab cd ab cd ab");
    const char *files[] = {text};
    bpe_train_stats st;
    ps_error err = {{0}};
    cr_assert_eq(bpe_train(files, 1, 300, 0, vocab, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.pieces, 7);
    cr_assert_eq(st.unique_pieces, 3);
    cr_assert_eq(st.tokens, 260, "the text runs out of pairs after 4 merges, got %zu tokens", st.tokens);
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, vocab, TOKENIZER_PLAIN, &err), 0, "%s", err.msg);
    assert_token(t, 'a', "a");
    assert_token(t, 256, "ab");
    assert_token(t, 257, " ab");
    assert_token(t, 258, " c");
    assert_token(t, 259, " cd");
    assert_ids(t, "ab cd ab", (uint32_t[]){256, 259, 257}, 3);
    cr_assert_eq(tokenizer_special_id(t, "<|end_of_text|>"), 261);
    tokenizer_free(t);
    unlink(text);
    unlink(vocab);
}

Test(bpe_train, trained_vocab_loads_and_round_trips, .timeout = 60) {
    char vocab[] = "/tmp/presight_bpe_vocab_XXXXXX";
    close(mkstemp(vocab));
    const char *files[] = {GOLDEN_DIR "/train.txt"};
    bpe_train_stats st;
    ps_error err = {{0}};
    cr_assert_eq(bpe_train(files, 1, 1000, 0, vocab, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.tokens, 1000);
    cr_assert_gt(st.bytes_read, 40000);
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, vocab, TOKENIZER_PLAIN, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_vocab_size(t), 1000 + TOKENIZER_PLAIN_SPECIALS);
    /* The learnt vocabulary compresses its own text well below a byte a token. */
    FILE *f = fopen(files[0], "rb");
    static unsigned char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tokenizer_ids ids = encode(t, buf, n, 0);
    cr_assert_lt(ids.n * 3, n, "%zu tokens for %zu bytes", ids.n, n);
    tokenizer_ids_free(&ids);
    assert_round_trip(t, buf, n, "train.txt");
    unsigned char rnd[300];
    for (int i = 0; i < 500; i++) {
        size_t m = random_bytes(rnd, sizeof rnd);
        assert_round_trip(t, rnd, m, "random bytes, trained vocabulary");
    }
    tokenizer_free(t);
    /* max_bytes stops the reading at a line end. */
    cr_assert_eq(bpe_train(files, 1, 300, 1000, vocab, &st, &err), 0, "%s", err.msg);
    cr_assert_leq(st.bytes_read, 1000);
    cr_assert_gt(st.bytes_read, 900);
    cr_assert_eq(buf[st.bytes_read - 1], '\n');
    unlink(vocab);
}

Test(bpe_train, errors) {
    const char *missing[] = {"/nonexistent/corpus.txt"};
    ps_error err = {{0}};
    cr_assert_eq(bpe_train(missing, 1, 300, 0, "/tmp/presight_never_written", NULL, &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/corpus.txt"), "%s", err.msg);
    cr_assert_eq(access("/tmp/presight_never_written", F_OK), -1);
    cr_assert_eq(bpe_train(missing, 1, 100, 0, "/tmp/presight_never_written", NULL, &err), -1);
    cr_assert(strstr(err.msg, "vocab_size 100"), "%s", err.msg);
}

/* A naive trainer to check the incremental one against: recount every pair
 * of every word after each merge. */
typedef struct naive {
    unsigned char *pieces[20000];
    size_t lens[20000];
    size_t n;
} naive;

static int naive_piece(void *ctx, const unsigned char *p, size_t n) {
    naive *c = ctx;
    cr_assert_lt(c->n, 20000);
    c->pieces[c->n] = malloc(n);
    memcpy(c->pieces[c->n], p, n);
    c->lens[c->n++] = n;
    return 0;
}

Test(bpe_train, matches_a_naive_trainer, .timeout = 120) {
    enum { VOCAB = 420 };
    const char *path = GOLDEN_DIR "/train.txt";
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static unsigned char text[16000];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    while (n && text[n - 1] != '\n') n--; /* bpe_train cuts max_bytes at a line end too */
    static naive c;
    tokenizer_splitter *sp;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_splitter_new(&sp, &err), 0);
    cr_assert_eq(tokenizer_split(sp, text, n, naive_piece, &c, &err), 0);
    tokenizer_splitter_free(sp);
    /* Every piece occurrence is its own word here (counts are implicit). */
    static uint32_t syms[16000], len[20000], start[20000], tok_len[VOCAB];
    static unsigned char tok[VOCAB][64];
    size_t at = 0;
    for (size_t w = 0; w < c.n; w++) {
        start[w] = (uint32_t)at, len[w] = (uint32_t)c.lens[w];
        for (size_t i = 0; i < c.lens[w]; i++) syms[at++] = c.pieces[w][i];
        free(c.pieces[w]);
    }
    for (int b = 0; b < 256; b++) tok[b][0] = (unsigned char)b, tok_len[b] = 1;
    static uint32_t counts[VOCAB][VOCAB];
    size_t n_tok = 256;
    while (n_tok < VOCAB) {
        memset(counts, 0, sizeof counts);
        for (size_t w = 0; w < c.n; w++)
            for (size_t i = 0; i + 1 < len[w]; i++) counts[syms[start[w] + i]][syms[start[w] + i + 1]]++;
        uint32_t ba = 0, bb = 0, best = 0;
        for (uint32_t a = 0; a < n_tok; a++)
            for (uint32_t b = 0; b < n_tok; b++)
                if (counts[a][b] > best) best = counts[a][b], ba = a, bb = b;
        if (!best) break;
        cr_assert_lt(tok_len[ba] + tok_len[bb], 64);
        memcpy(tok[n_tok], tok[ba], tok_len[ba]);
        memcpy(tok[n_tok] + tok_len[ba], tok[bb], tok_len[bb]);
        tok_len[n_tok] = tok_len[ba] + tok_len[bb];
        uint32_t id = (uint32_t)n_tok;
        for (uint32_t k = 0; k < n_tok; k++)
            if (tok_len[k] == tok_len[n_tok] && !memcmp(tok[k], tok[n_tok], tok_len[k])) id = k;
        if (id == n_tok) n_tok++;
        for (size_t w = 0; w < c.n; w++) {
            uint32_t *s = syms + start[w], o = 0;
            for (uint32_t r = 0; r < len[w];)
                if (r + 1 < len[w] && s[r] == ba && s[r + 1] == bb) s[o++] = id, r += 2;
                else s[o++] = s[r++];
            len[w] = o;
        }
    }
    char vocab[] = "/tmp/presight_bpe_vocab_XXXXXX";
    close(mkstemp(vocab));
    const char *files[] = {path};
    cr_assert_eq(bpe_train(files, 1, VOCAB, n, vocab, NULL, &err), 0, "%s", err.msg);
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, vocab, TOKENIZER_PLAIN, &err), 0, "%s", err.msg);
    unlink(vocab);
    cr_assert_eq(tokenizer_n_ordinary(t), n_tok);
    for (uint32_t id = 256; id < n_tok; id++) {
        size_t l;
        const unsigned char *p = tokenizer_token(t, id, &l);
        cr_assert(l == tok_len[id] && !memcmp(p, tok[id], l), "merge %u: '%.*s' vs naive '%.*s'", id - 256, (int)l,
                  (const char *)p, (int)tok_len[id], (const char *)tok[id]);
    }
    tokenizer_free(t);
}
