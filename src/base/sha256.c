// Implements sha256.h after FIPS 180-4, "Secure Hash Standard" (NIST, August 2015):
// functions 4.1.2, constants 4.2.2, padding 5.1.1, initial value 5.3.3, computation 6.2.
// Whole blocks are compressed straight from the caller's buffer, read a byte at a time
// (big-endian), so the input's alignment does not matter.
#include "base/sha256.h"

#include <string.h>

// 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

// 5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes.
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// 4.1.2: Ch, Maj, the upper-case Sigma0/1 (BSIG) and the lower-case sigma0/1 (SSIG).
#define CH(x, y, z)  (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x)     (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22))
#define BSIG1(x)     (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25))
#define SSIG0(x)     (rotr(x, 7) ^ rotr(x, 18) ^ ((x) >> 3))
#define SSIG1(x)     (rotr(x, 17) ^ rotr(x, 19) ^ ((x) >> 10))

// One round of 6.2.2 step 3, with W(t) given as the expression wt. Instead of shifting a..h
// down one place, the next round gets them rotated by one: the new a lands in h's variable
// and the new e in d's, so nothing is copied.
#define ROUND(a, b, c, d, e, f, g, h, t, wt)                    \
    do {                                                        \
        uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K[t] + (wt); \
        uint32_t t2 = BSIG0(a) + MAJ(a, b, c);                  \
        d += t1;                                                \
        h = t1 + t2;                                            \
    } while (0)

// Rounds t..t+7; W(t) comes from W_AT(t).
#define ROUNDS8(t, W_AT)                                       \
    do {                                                       \
        ROUND(a, b, c, d, e, f, g, h, (t) + 0, W_AT((t) + 0)); \
        ROUND(h, a, b, c, d, e, f, g, (t) + 1, W_AT((t) + 1)); \
        ROUND(g, h, a, b, c, d, e, f, (t) + 2, W_AT((t) + 2)); \
        ROUND(f, g, h, a, b, c, d, e, (t) + 3, W_AT((t) + 3)); \
        ROUND(e, f, g, h, a, b, c, d, (t) + 4, W_AT((t) + 4)); \
        ROUND(d, e, f, g, h, a, b, c, (t) + 5, W_AT((t) + 5)); \
        ROUND(c, d, e, f, g, h, a, b, (t) + 6, W_AT((t) + 6)); \
        ROUND(b, c, d, e, f, g, h, a, (t) + 7, W_AT((t) + 7)); \
    } while (0)

// The message schedule (6.2.2 step 1) in a ring of 16 words: W(t) for t < 16 is the block's
// t-th big-endian word; after that w[t % 16] holds W(t - 16) until it becomes W(t).
static inline uint32_t w_next(uint32_t w[16], int t)
{
    w[t & 15] += SSIG1(w[(t - 2) & 15]) + w[(t - 7) & 15] + SSIG0(w[(t - 15) & 15]);
    return w[t & 15];
}
#define W_LOAD(t) (w[t] = load_be32(p + 4 * (t)))
#define W_NEXT(t) w_next(w, t)

// 6.2.2 on n 64-byte blocks at p.
static void compress(uint32_t st[8], const uint8_t *p, size_t n)
{
    uint32_t w[16];
    for (; n > 0; n--, p += 64) {
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
        uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
        ROUNDS8(0, W_LOAD);
        ROUNDS8(8, W_LOAD);
        for (int t = 16; t < 64; t += 16) {
            ROUNDS8(t, W_NEXT);
            ROUNDS8(t + 8, W_NEXT);
        }
        st[0] += a, st[1] += b, st[2] += c, st[3] += d;
        st[4] += e, st[5] += f, st[6] += g, st[7] += h;
    }
}

void tw_sha256_init(struct tw_sha256 *ctx)
{
    memcpy(ctx->h, H0, sizeof H0);
    ctx->len = 0;
}

void tw_sha256_update(struct tw_sha256 *ctx, const void *data, size_t len)
{
    if (len == 0)
        return;
    const uint8_t *p = data;
    size_t have = (size_t)(ctx->len % 64);
    ctx->len += len;
    if (have > 0) {
        size_t take = len < 64 - have ? len : 64 - have;
        memcpy(ctx->buf + have, p, take);
        p += take;
        len -= take;
        if (have + take < 64)
            return;
        compress(ctx->h, ctx->buf, 1);
    }
    compress(ctx->h, p, len / 64);
    memcpy(ctx->buf, p + len / 64 * 64, len % 64);
}

// 5.1.1: a 1 bit, zeros up to 56 bytes mod 64, then the length in bits as 64 bits big-endian.
void tw_sha256_final(struct tw_sha256 *ctx, uint8_t out[TW_SHA256_LEN])
{
    uint64_t bits = ctx->len * 8;
    size_t have = (size_t)(ctx->len % 64);
    ctx->buf[have++] = 0x80;
    if (have > 56) {
        memset(ctx->buf + have, 0, 64 - have);
        compress(ctx->h, ctx->buf, 1);
        have = 0;
    }
    memset(ctx->buf + have, 0, 56 - have);
    for (int i = 0; i < 8; i++)
        ctx->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress(ctx->h, ctx->buf, 1);
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, ctx->h[i]);
}

void tw_sha256(const void *data, size_t len, uint8_t out[TW_SHA256_LEN])
{
    struct tw_sha256 ctx;
    tw_sha256_init(&ctx);
    tw_sha256_update(&ctx, data, len);
    tw_sha256_final(&ctx, out);
}

void tw_sha256_hex(const uint8_t d[TW_SHA256_LEN], char out[2 * TW_SHA256_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < TW_SHA256_LEN; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * TW_SHA256_LEN] = '\0';
}
