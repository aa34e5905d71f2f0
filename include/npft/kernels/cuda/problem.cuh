#pragma once
// What a dense kernel receives by value: Y[batch][N] = X[batch][K] * W^T (+ addend), W in the tiled layout.
#include "../../core/config.hpp"
#include "dequant.cuh"

namespace npft::cuda {

template <class T>
struct KernelProblem {
    TiledView weights;               ///< N x K, device pointers
    const T* x = nullptr;            ///< [batch][ldx] activations, 16-byte aligned rows
    T* y = nullptr;                  ///< [batch][ldy] outputs
    const float* addend = nullptr;   ///< optional [batch][N] fp32 added before rounding (the sparse outliers' product)
    index batch = 0;
    index ldx = 0;
    index ldy = 0;
};

}  // namespace npft::cuda
