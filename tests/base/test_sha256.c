// Tests sha256.c: the FIPS 180-2 / NIST example vectors, digests at the padding boundaries
// (checked against GNU coreutils' sha256sum), and that feeding any input in random pieces,
// from any alignment, gives the one-shot digest.
#include <stdint.h>
#include <string.h>

#include "base/sha256.h"
#include "check.h"

static const char *hex_of(const void *data, size_t len)
{
    static char hex[2 * TW_SHA256_LEN + 1];
    uint8_t d[TW_SHA256_LEN];
    tw_sha256(data, len, d);
    tw_sha256_hex(d, hex);
    return hex;
}

// FIPS 180-2, Appendix B (one-, two- and long-message examples) and NIST's published
// examples for the empty string and the 896-bit message.
static void test_vectors(void)
{
    static const struct {
        const char *msg, *hex;
    } v[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
          "klmnopqrlmnopqrsmnopqrstnopqrstu",
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK_EQ_STR(hex_of(v[i].msg, strlen(v[i].msg)), v[i].hex);
    CHECK_EQ_STR(hex_of(NULL, 0), v[0].hex);
}

static uint8_t million[1000000];

static void test_million_a(void)
{
    const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    memset(million, 'a', sizeof million);
    CHECK_EQ_STR(hex_of(million, sizeof million), want);

    struct tw_sha256 ctx;
    uint8_t d[TW_SHA256_LEN];
    char hex[2 * TW_SHA256_LEN + 1];
    tw_sha256_init(&ctx);
    for (int i = 0; i < 1000; i++)
        tw_sha256_update(&ctx, million, 1000);
    tw_sha256_final(&ctx, d);
    tw_sha256_hex(d, hex);
    CHECK_EQ_STR(hex, want);
}

// n 'a's for n around one block: the 0x80 byte and the length land on either side of the
// 56- and 64-byte marks. Expected values from `head -c n /dev/zero | tr '\0' a | sha256sum`.
static void test_padding_boundaries(void)
{
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
        { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
        { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
        { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
        { 65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
    };
    char a[65];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK_EQ_STR(hex_of(a, v[i].n), v[i].hex);
}

// The digest of data[0..len) fed in random pieces of 0..200 bytes (mostly 1..200).
static void digest_in_pieces(const uint8_t *data, size_t len, uint64_t *rng, uint8_t out[32])
{
    struct tw_sha256 ctx;
    tw_sha256_init(&ctx);
    size_t off = 0;
    while (off < len) {
        size_t piece = check_rand(rng) % 16 == 0 ? 0 : 1 + check_rand(rng) % 200;
        if (piece > len - off)
            piece = len - off;
        tw_sha256_update(&ctx, data + off, piece);
        off += piece;
    }
    tw_sha256_final(&ctx, out);
}

static void test_random_splits(void)
{
    static const size_t lens[] = { 0,   1,   2,   54,  55,  56,  57,  63,  64,  65,  119, 120,
                                   121, 127, 128, 129, 191, 192, 193, 255, 256, 257, 1000 };
    uint64_t rng = 42;
    uint8_t data[1000 + 8], aligned[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)check_rand(&rng);

    int mismatches = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0] + 50; li++) {
        size_t len = li < sizeof lens / sizeof lens[0] ? lens[li] : check_rand(&rng) % 1001;
        for (size_t shift = 0; shift < 8; shift++) { // unaligned starts
            uint8_t want[32], got[32];
            memcpy(aligned, data + shift, len);
            tw_sha256(aligned, len, want);
            for (int trial = 0; trial < 20; trial++) {
                digest_in_pieces(data + shift, len, &rng, got);
                mismatches += memcmp(want, got, 32) != 0;
            }
        }
    }
    CHECK_EQ_INT(mismatches, 0);
}

static void test_byte_at_a_time_and_reuse(void)
{
    uint8_t data[300], want[32], got[32];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    tw_sha256(data, sizeof data, want);

    struct tw_sha256 ctx;
    tw_sha256_init(&ctx);
    tw_sha256_update(&ctx, "junk", 4);
    tw_sha256_final(&ctx, got);
    tw_sha256_init(&ctx); // reuse after final
    for (size_t i = 0; i < sizeof data; i++)
        tw_sha256_update(&ctx, data + i, 1);
    tw_sha256_final(&ctx, got);
    CHECK(memcmp(want, got, 32) == 0);
}

static void test_hex(void)
{
    uint8_t d[32];
    char hex[65];
    for (int i = 0; i < 32; i++)
        d[i] = (uint8_t)(i * 8 + (i & 1 ? 0xf : 0));
    memset(hex, 'x', sizeof hex);
    tw_sha256_hex(d, hex);
    CHECK_EQ_STR(hex, "00171027203730474057506760777087809790a7a0b7b0c7c0d7d0e7e0f7f007");
    CHECK_EQ_INT(strlen(hex), 64);
}

int main(void)
{
    test_vectors();
    test_million_a();
    test_padding_boundaries();
    test_random_splits();
    test_byte_at_a_time_and_reuse();
    test_hex();
    return check_report("sha256");
}
