#pragma once
// Build-wide definitions shared by host and device code.
#include <cstddef>

// -ffast-math (and -ffinite-math-only, which it implies) lets the compiler assume that no value is NaN or infinite and
// reassociate float arithmetic: the library's checks for non-finite weights and activations are then optimised away
// and the quantizers' round-to-nearest gives wrong codes, silently. Refuse such a build instead of computing garbage.
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "npft does not support -ffast-math or -ffinite-math-only: they remove its NaN/Inf checks and break the quantizers' rounding. Build the files that include npft without them (add -fno-fast-math)."
#endif

#if defined(__CUDACC__)
#define NPFT_HOST_DEVICE __host__ __device__
#else
#define NPFT_HOST_DEVICE
#endif

namespace npft {
/// Signed index type for shapes, strides and loop counters (mixes with Eigen::Index without casts).
using Index = std::ptrdiff_t;
/// The former name; it clashes with POSIX ::index under `using namespace npft;`.
using index [[deprecated("use npft::Index (npft::index clashes with POSIX ::index)")]] = Index;
}  // namespace npft
