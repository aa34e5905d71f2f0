#pragma once
// Second pass of split-K (index_math.cuh): y[m][n] = round(sum over splits s = 0, 1, ... of partials[s][m][n] + addend).
// The splits are added in a fixed order by one thread per output, so the result does not depend on which split block
// finished first: same inputs, same bits.
#include "device_ops.cuh"
#include "index_math.cuh"

namespace npft::cuda {

inline constexpr int split_k_reduce_threads = 256;

template <ActivationType T>
__global__ void __launch_bounds__(split_k_reduce_threads)
    split_k_reduce_kernel(const float* partials, Index splits, Index batch, Index rows, const float* addend, T* y, Index ldy) {
    const Index outputs = batch * rows;
    const Index stride = static_cast<Index>(gridDim.x) * split_k_reduce_threads;
    for (Index i = static_cast<Index>(blockIdx.x) * split_k_reduce_threads + threadIdx.x; i < outputs; i += stride) {
        const Index m = i / rows, n = i % rows;
        float sum = 0.0f;
        for (Index s = 0; s < splits; ++s) sum += partials[split_k_partial_index(s, m, n, batch, rows)];
        if (addend != nullptr) sum += addend[i];
        y[m * ldy + n] = T::from_bits(Activation<T>::from_float(sum));
    }
}

/// Grid of the reduction: one thread per output, at most 65535 blocks (then grid-strided).
inline dim3 split_k_reduce_grid(Index batch, Index rows) {
    const Index blocks = (batch * rows + split_k_reduce_threads - 1) / split_k_reduce_threads;
    return dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535));
}

}  // namespace npft::cuda
