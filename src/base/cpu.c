// Implements cpu.h: CPUID through the compiler's builtins, asked once per process.
#define _GNU_SOURCE // sched_getaffinity, CPU_COUNT
#include "base/cpu.h"

#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define CPU_X86 1
#else
#define CPU_X86 0
#endif

#if CPU_X86
static enum tw_cpu_isa detect(void)
{
    // F16C is CPUID.1:ECX bit 29 (not every compiler's __builtin_cpu_supports knows it);
    // __builtin_cpu_supports checks the OS's YMM / ZMM state for the AVX flags.
    unsigned a, b, c = 0, d;
    __builtin_cpu_init();
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
    if (!(f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return TW_ISA_SCALAR;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return TW_ISA_AVX512;
    return TW_ISA_AVX2;
}
#endif

// What the CPU supports, asked once (CPUID can trap to the hypervisor in a VM).
enum tw_cpu_isa tw_cpu_isa_have(void)
{
#if CPU_X86
    static _Atomic int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        v = (int)detect();
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return (enum tw_cpu_isa)v;
#else
    return TW_ISA_SCALAR;
#endif
}

#if CPU_X86
// CPUID.(7,0):ECX bit `bit`, on a CPU with AVX-512 as TW_ISA_AVX512 needs it.
static bool leaf7_ecx(unsigned bit)
{
    unsigned a, b, c = 0, d;
    return tw_cpu_isa_have() == TW_ISA_AVX512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
           (c >> bit & 1);
}

// CPUID.(7,1):EAX bit `bit` (leaf 7 has sub-leaf 1 when CPUID.(7,0):EAX >= 1), with AVX-512.
static bool leaf7_1_eax(unsigned bit)
{
    unsigned a = 0, b, c, d;
    return tw_cpu_isa_have() == TW_ISA_AVX512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
           a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> bit & 1);
}

// probe(bit), asked once through *known (-1 until then).
static bool once(_Atomic int *known, bool (*probe)(unsigned), unsigned bit)
{
    int v = atomic_load_explicit(known, memory_order_relaxed);
    if (v < 0) {
        v = probe(bit);
        atomic_store_explicit(known, v, memory_order_relaxed);
    }
    return v != 0;
}
#endif

bool tw_cpu_has_avx512_vnni(void)
{
#if CPU_X86
    static _Atomic int known = -1;
    return once(&known, leaf7_ecx, 11);
#else
    return false;
#endif
}

bool tw_cpu_has_avx512_bf16(void)
{
#if CPU_X86
    static _Atomic int known = -1;
    return once(&known, leaf7_1_eax, 5);
#else
    return false;
#endif
}

bool tw_cpu_has_avx512_gfni(void)
{
#if CPU_X86
    static _Atomic int known = -1;
    return once(&known, leaf7_ecx, 8);
#else
    return false;
#endif
}

size_t tw_cpu_llc_bytes(void)
{
    long l3 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return l3 > 0 ? (size_t)l3 : 0;
}

int tw_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n <= INT_MAX ? (int)n : 1;
}

enum tw_cpu_isa tw_cpu_isa_best(void)
{
    enum tw_cpu_isa isa = tw_cpu_isa_have();
    const char *cap = getenv("TWIN_ISA");
    if (cap) {
        for (int i = TW_ISA_SCALAR; i <= TW_ISA_AVX512; i++) {
            if (strcmp(cap, tw_cpu_isa_name((enum tw_cpu_isa)i)) == 0 && i < (int)isa)
                isa = (enum tw_cpu_isa)i;
        }
    }
    return isa;
}

const char *tw_cpu_isa_name(enum tw_cpu_isa isa)
{
    switch (isa) {
    case TW_ISA_SCALAR:
        return "scalar";
    case TW_ISA_AVX2:
        return "avx2";
    case TW_ISA_AVX512:
        return "avx512";
    }
    return "?";
}
