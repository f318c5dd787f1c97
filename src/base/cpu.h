// The CPU's instruction sets, asked once: which SIMD kernels (the tensor backend's dot
// products, the index's distances) may run, and the TWIN_ISA cap that tests and benchmarks use
// to compare them.
#ifndef TW_BASE_CPU_H
#define TW_BASE_CPU_H

#include <stdbool.h>
#include <stddef.h>

// The instruction sets the kernels come in, in increasing order. TW_ISA_AVX2 needs AVX2, FMA
// and F16C; TW_ISA_AVX512 needs AVX-512 F, BW and VL (and F16C).
enum tw_cpu_isa { TW_ISA_SCALAR, TW_ISA_AVX2, TW_ISA_AVX512 };

// The best ISA this CPU (and its OS) supports, lowered to the value of the environment
// variable TWIN_ISA when that is set to "scalar", "avx2" or "avx512" (a cap: TWIN_ISA=avx512
// on an AVX2 machine gives TW_ISA_AVX2; any other value is ignored). The CPU is asked once;
// the variable is read at every call, so callers that pick kernels call this once and keep it.
enum tw_cpu_isa tw_cpu_isa_best(void);
// What the CPU supports, without TWIN_ISA's cap (asked once).
enum tw_cpu_isa tw_cpu_isa_have(void);
// Whether the CPU has AVX-512 (as TW_ISA_AVX512 needs it) and AVX-512 VNNI.
bool tw_cpu_has_avx512_vnni(void);
// Whether the CPU has AVX-512 (as TW_ISA_AVX512 needs it) and AVX-512 BF16 (VDPBF16PS).
bool tw_cpu_has_avx512_bf16(void);
// Whether the CPU has AVX-512 (as TW_ISA_AVX512 needs it) and GFNI (its 512-bit forms).
bool tw_cpu_has_avx512_gfni(void);
// The last-level cache's bytes as the C library reports them (glibc's _SC_LEVEL3_CACHE_SIZE),
// 0 when it does not.
size_t tw_cpu_llc_bytes(void);
// The CPUs this process may run on: the count of the calling thread's affinity mask (the
// process's, which threads inherit: taskset, a container's cpuset), or the online CPUs where
// the mask cannot be read; at least 1. The default number of
// threads of the engine's teams and pools: more would share CPUs, where threads that spin
// while they wait slow each other (8 threads confined to one CPU of the development VM decoded
// SmolLM2 at 0.8 times one thread's speed).
int tw_cpu_count(void);
// "scalar", "avx2", "avx512"; "?" for a value that is not an ISA.
const char *tw_cpu_isa_name(enum tw_cpu_isa isa);
#endif
