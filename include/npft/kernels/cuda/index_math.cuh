#pragma once
// The index math of the CUDA kernels: which thread reads which packed word, holds which fragment element and writes
// which output. Plain C++ (host+device) so that the CPU tests emulate a kernel with exactly these functions.
#include <cstdint>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../quant/bitpack.hpp"
#include "tiled_layout.cuh"

namespace npft::cuda {

inline constexpr int warp_size = 32;

// ---- GEMV (batch 1..8): one output row per lane, the warps of a block split the packing blocks of K ---------------

/// Tile of the GEMV kernel: 32 rows per block (one per lane); `Warps` warps stride over the packing blocks, each
/// loading `Unroll` packing blocks (all their words and scales) before decoding any, so that more loads are in flight.
template <int Warps = 8, int Unroll = 2>
struct GemvTile {
    static_assert(Warps >= 1 && Warps <= 32, "GemvTile: Warps must be between 1 and 32");
    static_assert(Unroll >= 1 && Unroll <= 8, "GemvTile: Unroll must be between 1 and 8");
    static_assert(row_alignment % warp_size == 0, "GemvTile: the layout's row alignment must be whole warps");
    static constexpr int warps = Warps;
    static constexpr int unroll = Unroll;
    static constexpr int rows = warp_size;
    static constexpr int threads = warps * warp_size;
    /// Occupancy design point handed to __launch_bounds__ (four blocks per SM: with 8 warps, at most 64 registers).
    static constexpr int min_blocks_per_sm = 4;
    /// Split-K granule: a split owns a multiple of this many packing blocks (one unrolled step of every warp).
    static constexpr Index split_granule = Index{Warps} * Unroll;
};

/// Output row computed by `lane` of GEMV block `block` (every warp of a block covers the same 32 rows).
NPFT_HOST_DEVICE constexpr Index gemv_row(Index block, int lane) { return block * warp_size + lane; }

/// Blocks of the GEMV grid: one per 32 padded rows.
template <class Tile = GemvTile<>>
NPFT_HOST_DEVICE constexpr Index gemv_blocks(const TiledShape& s) { return s.padded_rows / Tile::rows; }

/// The i-th packing block that warp `warp` of a `warps`-warp block accumulates (i = 0, 1, ... while < blocks).
NPFT_HOST_DEVICE constexpr Index gemv_packing_block(int warp, int warps, Index i) { return warp + i * warps; }

// ---- Tensor-core GEMM: mma.sync m16n8k16, A = activations (row), B = weights (col), fp32 accumulators -----------------

/// Tile policy of the tensor-core GEMM. The k tile is one packing block (32 codes: two mma k-steps).
template <int BlockM = 64, int BlockN = 128, int WarpsM = 2, int WarpsN = 4, int Stages = 3>
struct GemmTile {
    static constexpr int block_m = BlockM;
    static constexpr int block_n = BlockN;
    static constexpr int block_k = static_cast<int>(quant::codes_per_block);
    static constexpr int warps_m = WarpsM;
    static constexpr int warps_n = WarpsN;
    static constexpr int stages = Stages;
    static constexpr int threads = warps_m * warps_n * warp_size;
    /// Occupancy design point handed to __launch_bounds__: two blocks of 256 threads cap registers at 128.
    static constexpr int min_blocks_per_sm = 2;
    static constexpr int warp_m = block_m / warps_m;  ///< rows of the warp tile
    static constexpr int warp_n = block_n / warps_n;  ///< columns (weight rows) of the warp tile
    static constexpr int frags_m = warp_m / 16;
    static constexpr int frags_n = warp_n / 8;
    /// Shared-memory row stride in 16-bit elements: 8 extra keep fragment loads free of bank conflicts.
    static constexpr int smem_stride = block_k + 8;
    /// Threads that decode one weight row of a k tile, and the codes each decodes.
    static constexpr int decode_parts = threads / block_n;
    static constexpr int decode_codes = block_k / (decode_parts > 0 ? decode_parts : 1);

    static_assert(block_m % (16 * warps_m) == 0, "GemmTile: BlockM must be a multiple of 16 * WarpsM");
    static_assert(block_n % (8 * warps_n) == 0, "GemmTile: BlockN must be a multiple of 8 * WarpsN");
    static_assert(row_alignment % block_n == 0, "GemmTile: BlockN must divide the layout's row alignment (128)");
    static_assert(threads % block_n == 0 && decode_parts >= 1 && block_k % decode_parts == 0 && decode_codes % 8 == 0,
                  "GemmTile: the threads must split each weight row of a k tile into whole groups of 8 codes");
    static_assert(stages >= 2, "GemmTile: Stages must be at least 2 (load the next tile while computing this one)");
    /// Split-K granule: a split owns a multiple of this many packing blocks (enough to fill and drain the pipeline).
    static constexpr Index split_granule = 8;
};

/// Blocks of the GEMM grid along N (weight rows) and along M (batch rows).
template <class Tile>
NPFT_HOST_DEVICE constexpr Index gemm_blocks_n(const TiledShape& s) { return s.padded_rows / Tile::block_n; }
template <class Tile>
NPFT_HOST_DEVICE constexpr Index gemm_blocks_m(Index batch) { return (batch + Tile::block_m - 1) / Tile::block_m; }

/// (row, column) of one element of an mma operand or accumulator fragment.
struct FragmentCoord {
    int row = 0;
    int col = 0;
};

/// Element i (0..7) of the A fragment (16x16, row major) held by `lane`: PTX ISA, mma.m16n8k16 .f16/.bf16.
/// Registers a0..a3 hold pairs: a0 (row g, cols 2t..2t+1), a1 (row g+8), a2 (row g, cols +8), a3 (row g+8, cols +8).
NPFT_HOST_DEVICE constexpr FragmentCoord mma_a_coord(int lane, int i) {
    const int g = lane >> 2, t = lane & 3;
    return {g + 8 * ((i >> 1) & 1), 2 * t + (i & 1) + 8 * (i >> 2)};
}

/// Element i (0..3) of the B fragment (16x8, column major: row = k, col = n) held by `lane`.
NPFT_HOST_DEVICE constexpr FragmentCoord mma_b_coord(int lane, int i) {
    const int g = lane >> 2, t = lane & 3;
    return {2 * t + (i & 1) + 8 * (i >> 1), g};
}

/// Element i (0..3) of the fp32 accumulator fragment (16x8) held by `lane`.
NPFT_HOST_DEVICE constexpr FragmentCoord mma_c_coord(int lane, int i) {
    const int g = lane >> 2, t = lane & 3;
    return {g + 8 * (i >> 1), 2 * t + (i & 1)};
}

/// Origin (row in the M tile, column in the N tile) of warp `warp`'s tile inside a block tile.
template <class Tile>
NPFT_HOST_DEVICE constexpr FragmentCoord gemm_warp_origin(int warp) {
    return {(warp % Tile::warps_m) * Tile::warp_m, (warp / Tile::warps_m) * Tile::warp_n};
}

/// 16-byte piece `chunk` of the activation k tile: (row in the M tile, first column); 4 pieces per 32-column row.
NPFT_HOST_DEVICE constexpr FragmentCoord gemm_x_chunk(int chunk) { return {chunk / 4, (chunk % 4) * 8}; }

/// 16-byte piece `chunk` of the packed weight k tile: (word plane w in 0..bits-1, first of its 4 rows in the N tile).
template <class Tile>
NPFT_HOST_DEVICE constexpr FragmentCoord gemm_w_chunk(int chunk) {
    return {chunk / (Tile::block_n / 4), (chunk % (Tile::block_n / 4)) * 4};
}

/// The codes thread `thread` decodes into the shared weight tile: (row in the N tile, first code of its part).
template <class Tile>
NPFT_HOST_DEVICE constexpr FragmentCoord gemm_decode_assignment(int thread) {
    return {thread % Tile::block_n, (thread / Tile::block_n) * Tile::decode_codes};
}

// ---- Split-K: when the output tiles alone cannot fill the GPU, blocks also split the packing blocks of K ----------------
//
// Split s of `splits` owns packing blocks [s * per_split, min((s + 1) * per_split, blocks)); each writes fp32 partial
// sums to a workspace [split][batch][N] and a second kernel adds the splits in order 0, 1, ... (deterministic: the
// same inputs give the same bits, whatever the scheduling).

/// Packing blocks [begin, end) of one split.
struct KRange {
    Index begin = 0;
    Index end = 0;
};

NPFT_HOST_DEVICE constexpr KRange split_k_range(Index blocks, Index per_split, Index split) {
    const Index begin = split * per_split;
    const Index end = begin + per_split < blocks ? begin + per_split : blocks;
    return {begin, end};
}

/// How K is split: `splits` slices of `per_split` packing blocks (the last one possibly shorter, none empty).
struct KSplit {
    Index splits = 1;
    Index per_split = 0;
};

/// The split of `blocks` packing blocks for a grid of `tiles` output tiles on a GPU holding `slots` resident blocks
/// (SMs x blocks per SM): none when the tiles fill at least half the slots (measured on an H200: two splits of such a
/// grid make 1.3-1.6 waves and lose 0-16%, docs/cuda.md); otherwise enough splits to fill the slots, each a multiple
/// of `granule` packing blocks (and at least one granule).
NPFT_HOST_DEVICE constexpr KSplit choose_k_split(Index tiles, Index blocks, Index slots, Index granule) {
    const KSplit none{1, blocks};
    if (tiles <= 0 || blocks <= 0 || granule <= 0 || 2 * tiles > slots) return none;
    const Index wanted = (slots + tiles - 1) / tiles;
    Index per_split = (blocks + wanted - 1) / wanted;
    per_split = (per_split + granule - 1) / granule * granule;
    const Index splits = (blocks + per_split - 1) / per_split;
    if (splits <= 1) return none;
    return {splits, per_split};
}

/// Floats of the split-K workspace: one fp32 partial sum per (split, batch row, output row); 0 without a split.
NPFT_HOST_DEVICE constexpr Index split_k_workspace_floats(const KSplit& split, Index batch, Index rows) {
    return split.splits > 1 ? split.splits * batch * rows : 0;
}

/// Index of the partial sum of (split, batch row m, output row n) in the workspace.
NPFT_HOST_DEVICE constexpr Index split_k_partial_index(Index split, Index m, Index n, Index batch, Index rows) {
    return (split * batch + m) * rows + n;
}

// ---- Which kernel and which split gemm() picks ------------------------------------------------------------------

/// Largest batch served by the GEMV kernel; larger batches run on tensor cores.
inline constexpr Index gemv_max_batch = 8;
/// GEMV tiles: batch 1 has registers to spare for four packing blocks in flight per warp, batches 2..8 take two
/// (the unroll made no measurable difference on an H200, docs/cuda.md; kept as measured).
using SingleRowGemvTile = GemvTile<8, 4>;
using SmallBatchGemvTile = GemvTile<8, 2>;
/// Batches up to this run the tensor-core kernel with MidBatchTile (BlockM 32: less of the M tile is padding).
inline constexpr Index mid_batch_max = 32;
using MidBatchTile = GemmTile<32, 128, 1, 8, 3>;
using LargeBatchTile = GemmTile<>;

/// The K split of gemm()'s kernel for this shape and batch on a GPU with `sms` multiprocessors: the kernel's
/// resident blocks per SM give the slots to fill, its split granule the slice size.
NPFT_HOST_DEVICE constexpr KSplit gemm_k_split(const TiledShape& s, Index batch, Index sms) {
    if (batch == 1)
        return choose_k_split(gemv_blocks<SingleRowGemvTile>(s), s.blocks, sms * SingleRowGemvTile::min_blocks_per_sm,
                              SingleRowGemvTile::split_granule);
    if (batch <= gemv_max_batch)
        return choose_k_split(gemv_blocks<SmallBatchGemvTile>(s), s.blocks, sms * SmallBatchGemvTile::min_blocks_per_sm,
                              SmallBatchGemvTile::split_granule);
    if (batch <= mid_batch_max)
        return choose_k_split(gemm_blocks_n<MidBatchTile>(s) * gemm_blocks_m<MidBatchTile>(batch), s.blocks,
                              sms * MidBatchTile::min_blocks_per_sm, MidBatchTile::split_granule);
    return choose_k_split(gemm_blocks_n<LargeBatchTile>(s) * gemm_blocks_m<LargeBatchTile>(batch), s.blocks,
                          sms * LargeBatchTile::min_blocks_per_sm, LargeBatchTile::split_granule);
}

}  // namespace npft::cuda
