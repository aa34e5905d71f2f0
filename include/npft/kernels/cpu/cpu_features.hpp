#pragma once
// Run-time detection of the x86 vector extensions the CPU kernels use. Kernels are compiled for their ISA with
// function-level target attributes, so one binary carries every path and picks at run time: never assume the
// build machine is the run machine.
#include "../../core/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define NPFT_CPU_X86 1
#else
#define NPFT_CPU_X86 0
#endif

// Complete unrolling of the small token/accumulator loops, so that their arrays of vectors live in registers.
// nvcc's front end (this header is reachable from .cu files through npft.hpp) does not know the pragma.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define NPFT_UNROLL4 _Pragma("GCC unroll 4")
#define NPFT_UNROLL8 _Pragma("GCC unroll 8")
#else
#define NPFT_UNROLL4
#define NPFT_UNROLL8
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

/// Probes the CPU once. GCC and Clang's __builtin_cpu_supports also check that the OS saves the wide registers.
inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#if NPFT_CPU_X86
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = __builtin_cpu_supports("f16c");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#endif
    return f;
}

/// The features of this CPU, probed on first use.
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect_cpu_features();
    return features;
}

}  // namespace npft::kernels::cpu
