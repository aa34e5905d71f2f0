#pragma once
// Build-wide definitions shared by host and device code.
#include <cstddef>

#if defined(__CUDACC__)
#define NPFT_HOST_DEVICE __host__ __device__
#else
#define NPFT_HOST_DEVICE
#endif

namespace npft {
/// Signed index type for shapes, strides and loop counters (mixes with Eigen::Index without casts).
using index = std::ptrdiff_t;
}  // namespace npft
