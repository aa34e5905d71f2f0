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
    bool avx512vbmi = false;
    bool avx_vnni = false;  ///< vpdpbusd on 256-bit vectors with a VEX encoding (Alder Lake, Sapphire Rapids, Zen 5)

    /// The AVX2 path needs AVX2, FMA and F16C (Haswell, Zen 1 and later).
    bool has_avx2_path() const { return avx2 && fma && f16c; }
    /// The AVX-512 path needs F, BW and VL (Skylake-X, Ice Lake, Sapphire Rapids, Zen 4 and later).
    bool has_avx512_path() const { return has_avx2_path() && avx512f && avx512bw && avx512vl; }
    /// The small-batch int8 kernel of int8_vbmi.hpp also needs VBMI (vpermb, vpmultishiftqb) and VNNI (vpdpbusd):
    /// Ice Lake, Sapphire Rapids, Zen 4 and later.
    bool has_avx512_vbmi_vnni() const { return has_avx512_path() && avx512vbmi && avx512vnni; }
};

#if NPFT_CPU_X86
namespace detail {

struct CpuidRegisters {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

inline CpuidRegisters cpuid(unsigned leaf, unsigned subleaf = 0) {
    CpuidRegisters r;
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
}

/// XCR0: which register states the OS saves on a context switch. XGETBV written as an instruction, so that it needs
/// no target attribute; only valid when CPUID reports OSXSAVE.
inline unsigned long long xcr0() {
    unsigned low = 0, high = 0;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0u));
    return (static_cast<unsigned long long>(high) << 32) | low;
}

inline bool bit(unsigned word, int position) { return (word >> position) & 1u; }

}  // namespace detail
#endif

/// Probes the CPU once with the CPUID instruction, and XGETBV for what the OS saves on a context switch: a feature is
/// usable only when the CPU has it and the OS preserves its registers (YMM for AVX2, ZMM and mask registers for
/// AVX-512). CPUID rather than __builtin_cpu_supports: clang 14 and 16 reject __builtin_cpu_supports("f16c").
inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#if NPFT_CPU_X86
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    const detail::CpuidRegisters leaf1 = detail::cpuid(1);
    if (!detail::bit(leaf1.ecx, 27)) return f;  // no OSXSAVE: the OS enables no AVX state
    const unsigned long long state = detail::xcr0();
    const bool os_ymm = (state & 0x6u) == 0x6u;    // SSE and AVX state
    const bool os_zmm = (state & 0xE6u) == 0xE6u;  // plus opmask, upper ZMM0-15 and ZMM16-31
    const detail::CpuidRegisters leaf7 = detail::cpuid(7);
    f.avx2 = os_ymm && detail::bit(leaf7.ebx, 5);
    f.fma = os_ymm && detail::bit(leaf1.ecx, 12);
    f.f16c = os_ymm && detail::bit(leaf1.ecx, 29);
    f.avx512f = os_zmm && detail::bit(leaf7.ebx, 16);
    f.avx512bw = os_zmm && detail::bit(leaf7.ebx, 30);
    f.avx512vl = os_zmm && detail::bit(leaf7.ebx, 31);
    f.avx512vnni = os_zmm && detail::bit(leaf7.ecx, 11);
    f.avx512vbmi = os_zmm && detail::bit(leaf7.ecx, 1);
    f.avx_vnni = os_ymm && leaf7.eax >= 1 && detail::bit(detail::cpuid(7, 1).eax, 4);  // leaf 7 subleaf 1 exists
#endif
    return f;
}

/// The features of this CPU, probed on first use.
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect_cpu_features();
    return features;
}

}  // namespace npft::kernels::cpu
