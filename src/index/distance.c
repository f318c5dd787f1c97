// The index's distance kernels: the scalar reference of f32 dot product, squared L2 and int8
// dot product, and the choice among them and the AVX2 / AVX-512 versions at run time (the ISA
// detection of base/cpu.h, TWIN_ISA included). Also the CRC-32C of the file format.
#include "index/index_int.h"

static float dot_scalar(const float *a, const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float l2_scalar(const float *a, const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

static int32_t dot8_scalar(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (int32_t)a[i] * b[i];
    return s;
}

void tw_ix_kernels_get(enum tw_cpu_isa isa, struct tw_ix_kernels *k)
{
    k->dot = dot_scalar;
    k->l2 = l2_scalar;
    k->dot8 = dot8_scalar;
    enum tw_cpu_isa have = tw_cpu_isa_have();
    if (isa > have)
        isa = have;
    if (isa >= TW_ISA_AVX512 && tw_ix_kernels_avx512(k))
        return;
    if (isa >= TW_ISA_AVX2)
        tw_ix_kernels_avx2(k);
}

// CRC-32C, bytewise with a table built on first use (the table is the same from any thread,
// so a race to build it writes equal values).
static uint32_t crc_table[256];
static volatile int crc_ready;

uint32_t tw_ix_crc32c(uint32_t crc, const void *data, size_t n)
{
    if (!crc_ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int j = 0; j < 8; j++)
                c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
            crc_table[i] = c;
        }
        __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
