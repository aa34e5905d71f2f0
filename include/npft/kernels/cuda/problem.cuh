#pragma once
// What a dense kernel receives by value: Y[batch][N] = X[batch][K] * W^T (+ addend), W in the tiled layout.
#include "../../core/config.hpp"
#include "dequant.cuh"
#include "index_math.cuh"

namespace npft::cuda {

template <class T>
struct KernelProblem {
    TiledView weights;               ///< N x K, device pointers
    const T* x = nullptr;            ///< [batch][ldx] activations, 16-byte aligned rows
    T* y = nullptr;                  ///< [batch][ldy] outputs
    const float* addend = nullptr;   ///< optional [batch][N] fp32 added before rounding (the sparse outliers' product)
    Index batch = 0;
    Index ldx = 0;
    Index ldy = 0;
    /// Split-K (index_math.cuh): when set, the block of split s (grid.y for the GEMV, grid.z for the GEMM) sums packing
    /// blocks split_k_range(blocks, per_split, s) and writes fp32 partials [split][batch][N] here instead of y (the
    /// addend is then added by the reduction, split_k_reduce_kernel).
    float* partials = nullptr;
    Index per_split = 0;
};

/// Packing blocks the calling block sums: its split's range, or all of K without a split.
template <class T>
NPFT_HOST_DEVICE inline KRange k_range_of(const KernelProblem<T>& p, Index split) {
    if (p.partials == nullptr) return {0, p.weights.shape.blocks};
    return split_k_range(p.weights.shape.blocks, p.per_split, split);
}

}  // namespace npft::cuda
