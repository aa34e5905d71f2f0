#pragma once
// npft's CUDA kernels and their host API (include from .cu files compiled by nvcc with -std=c++20; docs/cuda.md).
// Deliberately not npft.hpp: nvcc compiles every included host header too, and the kernels need none of it.
#include "kernels/cuda/cublas.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/device_ops.cuh"
#include "kernels/cuda/gemm_mma.cuh"
#include "kernels/cuda/gemv.cuh"
#include "kernels/cuda/index_math.cuh"
#include "kernels/cuda/problem.cuh"
#include "kernels/cuda/quantized_gemm.cuh"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/spmv.cuh"
#include "kernels/cuda/tiled_conversion.cuh"
#include "kernels/cuda/tiled_layout.cuh"
