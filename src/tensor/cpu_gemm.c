// Implements cpu_gemm.h: whether the bf16 GEMM runs here (CPU, compiler, TWIN_NO_BF16_GEMM),
// the size of the packed x and the share of its panels each thread packs. The packing itself
// and the microkernel live in cpu_gemm_avx512.c.
#include "tensor/cpu_gemm.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MR TW_GEMM_BF16_MR

// TWIN_NO_BF16_GEMM, read once: 1 when it is set to anything but "" or "0".
static bool switched_off(void)
{
    static _Atomic int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        const char *s = getenv("TWIN_NO_BF16_GEMM");
        v = s && *s && strcmp(s, "0") != 0;
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v != 0;
}

bool tw_gemm_bf16_usable(enum tw_cpu_isa isa)
{
    return isa >= TW_ISA_AVX512 && tw_cpu_has_avx512_bf16() && tw_gemm_bf16_built_avx512() &&
           !switched_off();
}

static size_t panels(int64_t T)
{
    return (size_t)((T + MR - 1) / MR);
}

size_t tw_gemm_bf16_packed_bytes(int64_t T, int64_t K)
{
    assert(T >= 0 && K >= 1);
    return panels(T) * (size_t)((K + 1) / 2) * MR * sizeof(uint32_t);
}

void tw_gemm_bf16_pack_x(const float *x, int64_t T, int64_t K, void *xp, int part, int parts)
{
    assert(parts >= 1 && part >= 0 && part < parts);
    size_t np = panels(T);
    size_t q0 = np * (size_t)part / (size_t)parts, q1 = np * (size_t)(part + 1) / (size_t)parts;
    tw_gemm_bf16_pack_x_avx512(x, T, K, xp, q0, q1);
}

void tw_gemm_bf16(const void *xp, int64_t T, int64_t K, const uint16_t *w, size_t ldw, int64_t N,
                  float *y, size_t ldy, void *scratch)
{
    tw_gemm_bf16_avx512(xp, T, K, w, ldw, N, y, ldy, scratch);
}
