#pragma once
// Run-time detection of the x86 vector extensions the CPU kernels use. Kernels are compiled for their ISA with
// function-level target attributes, so one binary carries every path and picks at run time: never assume the
// build machine is the run machine.
#include "../../core/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define NPFT_CPU_X86 1
#include <cpuid.h>
#else
#define NPFT_CPU_X86 0
#endif

// Complete unrolling of the small token/accumulator loops, so that their arrays of vectors live in registers.
// nvcc's front end (this header is reachable from .cu files through npft.hpp) does not know the pragma.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define NPFT_UNROLL4 _Pragma("GCC unroll 4")
#else
#define NPFT_UNROLL4
#endif

namespace npft::kernels::cpu {

/// What the running CPU (and OS: register state enabled through XCR0) supports.
struct CpuFeatures {
    bool avx2 = false;
    bool fma = false;
    bool f16c = false;
    bool avx512f = false;
    bool avx512bw = false;
    bool avx512vl = false;
    bool avx512vnni = false;

    /// The AVX2 path needs AVX2, FMA and F16C (Haswell, Zen 1 and later).
    bool has_avx2_path() const { return avx2 && fma && f16c; }
    /// The AVX-512 path needs F, BW and VL (Skylake-X, Ice Lake, Sapphire Rapids, Zen 4 and later).
    bool has_avx512_path() const { return has_avx2_path() && avx512f && avx512bw && avx512vl; }
};

/// Probes the CPU once with the CPUID instruction, and XGETBV for what the OS saves on a context switch: a feature is
/// usable only when the CPU has it and the OS preserves its registers (YMM for AVX2, ZMM and mask registers for
/// AVX-512). CPUID rather than __builtin_cpu_supports: clang 14 and 16 reject __builtin_cpu_supports("f16c").
inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#if NPFT_CPU_X86
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(1, 0, eax, ebx, ecx, edx);
    const bool osxsave = (ecx >> 27) & 1u;
    const bool cpu_fma = (ecx >> 12) & 1u;
    const bool cpu_f16c = (ecx >> 29) & 1u;
    if (!osxsave) return f;
    unsigned xcr0_low = 0, xcr0_high = 0;
    // XGETBV with ECX = 0 reads XCR0. Written as an instruction so that no target attribute is needed.
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0u));
    const bool os_ymm = (xcr0_low & 0x6u) == 0x6u;    // SSE and AVX state
    const bool os_zmm = (xcr0_low & 0xE6u) == 0xE6u;  // plus opmask, upper ZMM0-15 and ZMM16-31
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = os_ymm && ((ebx >> 5) & 1u);
    f.fma = os_ymm && cpu_fma;
    f.f16c = os_ymm && cpu_f16c;
    f.avx512f = os_zmm && ((ebx >> 16) & 1u);
    f.avx512bw = os_zmm && ((ebx >> 30) & 1u);
    f.avx512vl = os_zmm && ((ebx >> 31) & 1u);
    f.avx512vnni = os_zmm && ((ecx >> 11) & 1u);
#endif
    return f;
}

/// The features of this CPU, probed on first use.
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect_cpu_features();
    return features;
}

}  // namespace npft::kernels::cpu
