#pragma once
// Weight-only GEMV for small batches (1..8): memory bound, so every packed word is read once, coalesced.
// Block = 32 output rows (one per lane) x Tile::warps warps; warp w accumulates packing blocks w, w + warps, ... of
// its K range (all of K, or one split-K slice: index_math.cuh), Tile::unroll of them per step, reading its rows' words
// plane by plane (one 128-byte transaction per plane), decoding in fp32 exactly as the reference does, and multiplying
// by the activations, which every lane of a warp reads at the same address (a broadcast). The warps' partial sums are
// added in shared memory; fp32 throughout, rounded once at the end (or written as fp32 split-K partials).
#include <cstdint>

#include "../../quant/bitpack.hpp"
#include "dequant.cuh"
#include "device_ops.cuh"
#include "index_math.cuh"
#include "problem.cuh"

namespace npft::cuda {

/// Bits: 2..4; Lut: table format (else uniform, symmetric when weights.zeros is null); Batch: compile-time upper
/// bound of problem.batch (the rows past problem.batch are skipped).
template <int Bits, bool Lut, int Batch, ActivationType T, class Tile = GemvTile<>>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks_per_sm) gemv_kernel(KernelProblem<T> problem) {
    constexpr int table_size = Lut ? (warp_size << Bits) : 1;
    __shared__ float table[table_size];  // [q][lane]: lanes hit distinct banks
    __shared__ float partial[Tile::warps][Batch][warp_size];

    const TiledView& w = problem.weights;
    const int lane = static_cast<int>(threadIdx.x) % warp_size;
    const int warp = static_cast<int>(threadIdx.x) / warp_size;
    const Index row = gemv_row(blockIdx.x, lane);

    if constexpr (Lut) {
        for (int i = static_cast<int>(threadIdx.x); i < table_size; i += Tile::threads) {
            const Index table_row = gemv_row(blockIdx.x, i % warp_size);
            table[i] = half::to_float(w.lut[(table_row << Bits) + i / warp_size].bits);
        }
        __syncthreads();
    }

    float acc[Batch] = {};
    const Index cols = w.shape.cols;
    const KRange range = k_range_of(problem, blockIdx.y);
    for (Index i = 0;; i += Tile::unroll) {
        // All words and scales of the next Tile::unroll packing blocks are requested before any is decoded.
        std::uint32_t words[Tile::unroll][Bits];
        AffineParams params[Tile::unroll];
        bool live[Tile::unroll];
#pragma unroll
        for (int u = 0; u < Tile::unroll; ++u) {
            const Index kb = range.begin + gemv_packing_block(warp, Tile::warps, i + u);
            live[u] = kb < range.end;
            if (live[u]) {
                load_block_words<Bits>(w, kb, row, words[u]);
                if constexpr (!Lut) params[u] = affine_params(w, kb, row);
            }
        }
        if (!live[0]) break;

#pragma unroll
        for (int u = 0; u < Tile::unroll; ++u) {
            if (!live[u]) break;
            const Index kb = range.begin + gemv_packing_block(warp, Tile::warps, i + u);
#pragma unroll
            for (int chunk = 0; chunk < 4; ++chunk) {  // 8 codes per chunk: one 16-byte load of activations per batch row
                const Index k = kb * quant::codes_per_block + chunk * 8;
                if (k >= cols) break;  // cols % 8 == 0 (can_implement), so a chunk is all in or all out
                float weight[8];
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const std::uint32_t q = quant::unpack_code(words[u], chunk * 8 + j, Bits);
                    if constexpr (Lut) weight[j] = table[q * warp_size + lane];
                    else weight[j] = decode_uniform(q, params[u]);
                }
#pragma unroll
                for (int m = 0; m < Batch; ++m) {
                    if (m >= problem.batch) break;
                    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(problem.x + m * problem.ldx + k));
                    const std::uint32_t packed[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        acc[m] += weight[2 * j] * Activation<T>::to_float(static_cast<std::uint16_t>(packed[j] & 0xffffu));
                        acc[m] += weight[2 * j + 1] * Activation<T>::to_float(static_cast<std::uint16_t>(packed[j] >> 16));
                    }
                }
            }
        }
    }

#pragma unroll
    for (int m = 0; m < Batch; ++m) partial[warp][m][lane] = acc[m];
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < Batch * warp_size; i += Tile::threads) {
        const int m = i / warp_size, out_lane = i % warp_size;
        const Index out_row = gemv_row(blockIdx.x, out_lane);
        if (m >= problem.batch || out_row >= w.shape.rows) continue;
        float sum = 0.0f;
        for (int v = 0; v < Tile::warps; ++v) sum += partial[v][m][out_lane];
        if (problem.partials != nullptr) {
            problem.partials[split_k_partial_index(blockIdx.y, m, out_row, problem.batch, w.shape.rows)] = sum;
            continue;
        }
        if (problem.addend != nullptr) sum += problem.addend[m * w.shape.rows + out_row];
        problem.y[m * problem.ldy + out_row] = T::from_bits(Activation<T>::from_float(sum));
    }
}

/// Grid of the GEMV kernel: one block per 32 (padded) rows, times the K splits along y.
template <class Tile = GemvTile<>>
inline dim3 gemv_grid(const TiledShape& shape, Index splits = 1) {
    return dim3(static_cast<unsigned>(gemv_blocks<Tile>(shape)), static_cast<unsigned>(splits));
}

}  // namespace npft::cuda
