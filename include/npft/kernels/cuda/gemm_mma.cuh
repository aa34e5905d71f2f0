#pragma once
// Weight-only GEMM on tensor cores for larger batches: Y[M][N] = X[M][K] * W^T with mma.sync m16n8k16, fp32 accumulate.
// Per k tile (one packing block, 32 codes) a block
//   1. receives its activation tile (BlockM x 32) and packed weight tile (bits planes x BlockN words) through a
//      Tile::stages-deep cp.async pipeline,
//   2. decodes the packed tile into a shared BlockN x 32 tile of the activation type (each thread a few codes of one
//      row: gemm_decode_assignment), with the reference fp32 formula rounded once to T,
//   3. runs two k16 steps of mma.sync per warp over its warp tile (fragments gathered with mma_a/b_coord).
// Rows of X past the batch are zero-filled by cp.async; outputs past batch or N are not written. With split-K
// (grid.z > 1) a block walks only its slice of the packing blocks and writes fp32 partials (problem.cuh).
#include <cstdint>

#include "../../quant/bitpack.hpp"
#include "dequant.cuh"
#include "device_ops.cuh"
#include "index_math.cuh"
#include "problem.cuh"

namespace npft::cuda {

template <int Bits, bool Lut, ActivationType T, class Tile = GemmTile<>>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks_per_sm) gemm_mma_kernel(KernelProblem<T> problem) {
    constexpr int block_m = Tile::block_m, block_n = Tile::block_n, stride = Tile::smem_stride;
    constexpr int table_size = Lut ? (block_n << Bits) : 1;
    __shared__ alignas(16) std::uint16_t x_tiles[Tile::stages][block_m * stride];          // (m, k) per stage
    __shared__ alignas(16) std::uint32_t packed_tiles[Tile::stages][Bits * block_n];       // (plane, n) per stage
    __shared__ alignas(16) std::uint16_t w_tile[block_n * stride];                         // (n, k) decoded
    __shared__ float table[table_size];                                                    // (q, n)

    const TiledView& w = problem.weights;
    const int thread = static_cast<int>(threadIdx.x);
    const int lane = thread % warp_size;
    const int warp = thread / warp_size;
    const Index m0 = static_cast<Index>(blockIdx.y) * block_m;
    const Index n0 = static_cast<Index>(blockIdx.x) * block_n;
    const KRange range = k_range_of(problem, blockIdx.z);
    const Index blocks = range.end - range.begin;  // k tiles of this block; tile t is packing block range.begin + t

    if constexpr (Lut) {
        for (int i = thread; i < table_size; i += Tile::threads)
            table[i] = half::to_float(w.lut[((n0 + i % block_n) << Bits) + i / block_n].bits);
    }

    auto load_tile = [&](Index kb, int stage) {
        for (int c = thread; c < block_m * 4; c += Tile::threads) {
            const FragmentCoord at = gemm_x_chunk(c);
            const Index m = m0 + at.row, k = kb * Tile::block_k + at.col;
            const bool inside = m < problem.batch && k < w.shape.cols;
            const T* source = inside ? problem.x + m * problem.ldx + k : problem.x;
            cp_async_16(&x_tiles[stage][at.row * stride + at.col], source, inside ? 16 : 0);
        }
        for (int c = thread; c < Bits * block_n / 4; c += Tile::threads) {
            const FragmentCoord at = gemm_w_chunk<Tile>(c);
            cp_async_16(&packed_tiles[stage][at.row * block_n + at.col],
                        w.codes + tiled_word_index(w.shape, kb, at.row, n0 + at.col), 16);
        }
    };

    for (int s = 0; s < Tile::stages - 1; ++s) {
        if (s < blocks) load_tile(range.begin + s, s);
        cp_async_commit();  // committed even when empty, so that wait_group counts stay uniform
    }

    float acc[Tile::frags_m][Tile::frags_n][4] = {};
    const FragmentCoord origin = gemm_warp_origin<Tile>(warp);
    const FragmentCoord decode = gemm_decode_assignment<Tile>(thread);
    // The decode's scale and zero point come from global memory: fetched one k tile ahead, so that their latency
    // overlaps a tile of work instead of stalling the decode.
    AffineParams next_params;
    if constexpr (!Lut)
        if (blocks > 0) next_params = affine_params(w, range.begin, n0 + decode.row);

    for (Index t = 0; t < blocks; ++t) {
        const Index kb = range.begin + t;
        const int stage = static_cast<int>(t % Tile::stages);
        AffineParams params;
        if constexpr (!Lut) {
            params = next_params;
            if (t + 1 < blocks) next_params = affine_params(w, kb + 1, n0 + decode.row);
        }
        cp_async_wait<Tile::stages - 2>();
        __syncthreads();  // tile kb has landed for every thread, and the previous w_tile is no longer read

        {  // decode this thread's codes of row decode.row into w_tile
            std::uint32_t words[Bits];
#pragma unroll
            for (int p = 0; p < Bits; ++p) words[p] = packed_tiles[stage][p * block_n + decode.row];
            // The part is a branch over compile-time offsets so that every code position, hence every word index and
            // shift, is a constant: a run-time offset would put words[] in local memory.
#pragma unroll
            for (int part = 0; part < Tile::decode_parts; ++part) {
                if (part * Tile::decode_codes != decode.col) continue;
#pragma unroll
                for (int j = 0; j < Tile::decode_codes; j += 8) {
                    std::uint32_t pairs[4];
#pragma unroll
                    for (int p = 0; p < 4; ++p) {
                        std::uint32_t halves = 0;
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const std::uint32_t q = quant::unpack_code(words, part * Tile::decode_codes + j + 2 * p + e, Bits);
                            const float value =
                                Lut ? table[static_cast<int>(q) * block_n + decode.row] : decode_uniform(q, params);
                            halves |= static_cast<std::uint32_t>(Activation<T>::from_float(value)) << (16 * e);
                        }
                        pairs[p] = halves;
                    }
                    *reinterpret_cast<uint4*>(&w_tile[decode.row * stride + decode.col + j]) =
                        make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
                }
            }
        }
        __syncthreads();

        if (t + Tile::stages - 1 < blocks)
            load_tile(kb + Tile::stages - 1, static_cast<int>((t + Tile::stages - 1) % Tile::stages));
        cp_async_commit();

#pragma unroll
        for (int ks = 0; ks < Tile::block_k; ks += 16) {
            std::uint32_t a[Tile::frags_m][4];
            std::uint32_t b[Tile::frags_n][2];
#pragma unroll
            for (int fm = 0; fm < Tile::frags_m; ++fm)
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const FragmentCoord at = mma_a_coord(lane, 2 * r);  // elements 2r, 2r+1 are adjacent in k
                    a[fm][r] = *reinterpret_cast<const std::uint32_t*>(
                        &x_tiles[stage][(origin.row + fm * 16 + at.row) * stride + ks + at.col]);
                }
#pragma unroll
            for (int fn = 0; fn < Tile::frags_n; ++fn)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const FragmentCoord at = mma_b_coord(lane, 2 * r);  // (k, n); k and k+1 are adjacent in w_tile
                    b[fn][r] = *reinterpret_cast<const std::uint32_t*>(&w_tile[(origin.col + fn * 8 + at.col) * stride + ks + at.row]);
                }
#pragma unroll
            for (int fm = 0; fm < Tile::frags_m; ++fm)
#pragma unroll
                for (int fn = 0; fn < Tile::frags_n; ++fn) mma_m16n8k16<T>(acc[fm][fn], a[fm], b[fn]);
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int fm = 0; fm < Tile::frags_m; ++fm)
#pragma unroll
        for (int fn = 0; fn < Tile::frags_n; ++fn)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const FragmentCoord at = mma_c_coord(lane, i);
                const Index m = m0 + origin.row + fm * 16 + at.row;
                const Index n = n0 + origin.col + fn * 8 + at.col;
                if (m >= problem.batch || n >= w.shape.rows) continue;
                float value = acc[fm][fn][i];
                if (problem.partials != nullptr) {
                    problem.partials[split_k_partial_index(blockIdx.z, m, n, problem.batch, w.shape.rows)] = value;
                    continue;
                }
                if (problem.addend != nullptr) value += problem.addend[m * w.shape.rows + n];
                problem.y[m * problem.ldy + n] = T::from_bits(Activation<T>::from_float(value));
            }
}

/// Grid of the GEMM kernel: (N tiles over the padded rows, M tiles over the batch, K splits).
template <class Tile = GemmTile<>>
inline dim3 gemm_grid(const TiledShape& shape, Index batch, Index splits = 1) {
    return dim3(static_cast<unsigned>(gemm_blocks_n<Tile>(shape)), static_cast<unsigned>(gemm_blocks_m<Tile>(batch)),
                static_cast<unsigned>(splits));
}

}  // namespace npft::cuda
