#pragma once
// Host side of the outlier SpMV (plain C++, shared with the kernel in spmv.cuh and tested on the CPU): the row index of
// every nonzero, built once from the CSR offsets (offline, like the tiled layout); the partition of the nonzeros into
// equal tiles, one per thread block; the grid; and the segmented-sum operator the block scan runs on the products.
#include <cstdint>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

namespace npft::cuda {

/// Row of every nonzero of a CSR matrix, in storage order: nondecreasing, empty rows absent. It is the key of the
/// kernel's segmented reduction. Throws npft::Error unless row_offsets has rows + 1 nondecreasing entries from 0 to nnz.
inline std::vector<std::int32_t> coo_rows(const std::vector<std::int32_t>& row_offsets, Index rows, Index nnz) {
    require(rows >= 0 && row_offsets.size() == static_cast<std::size_t>(rows + 1), "CSR row_offsets must have rows + 1 = ",
            rows + 1, " entries, got ", row_offsets.size());
    require(row_offsets.front() == 0 && row_offsets.back() == nnz, "CSR row_offsets must start at 0 and end at nnz = ", nnz,
            ", got ", row_offsets.front(), " and ", row_offsets.back());
    std::vector<std::int32_t> out(static_cast<std::size_t>(nnz));
    for (Index r = 0; r < rows; ++r) {
        const std::int32_t begin = row_offsets[static_cast<std::size_t>(r)], end = row_offsets[static_cast<std::size_t>(r + 1)];
        require(begin <= end, "CSR row_offsets must be nondecreasing, got ", begin, " then ", end, " at row ", r);
        for (std::int32_t k = begin; k < end; ++k) out[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(r);
    }
    return out;
}

/// Nonzeros [begin, end) of one tile.
struct NnzRange {
    Index begin = 0;
    Index end = 0;
};

/// Tiles of `per_tile` consecutive nonzeros covering nnz (0 when nnz is 0).
NPFT_HOST_DEVICE constexpr Index spmv_tiles(Index nnz, Index per_tile) { return (nnz + per_tile - 1) / per_tile; }

/// The nonzeros of tile `tile`: every tile holds per_tile of them except the last, whatever the row lengths.
NPFT_HOST_DEVICE constexpr NnzRange spmv_tile_range(Index tile, Index nnz, Index per_tile) {
    const Index begin = tile * per_tile;
    return {begin, begin + per_tile < nnz ? begin + per_tile : nnz};
}

/// Largest grid.y: batch rows beyond it are strided over by the blocks (grid.y = min(batch, max_grid_y)).
inline constexpr Index spmv_max_grid_y = 65535;

/// The kernel's grid: x = tiles (nonzeros), y = batch rows handled in parallel.
struct SpmvGrid {
    Index tiles = 0;
    Index batch_rows = 0;
    bool empty() const { return tiles == 0 || batch_rows == 0; }
};

inline SpmvGrid spmv_grid(Index nnz, Index batch, Index per_tile) {
    return {spmv_tiles(nnz, per_tile), batch < spmv_max_grid_y ? batch : spmv_max_grid_y};
}

/// Partial sum of a run of consecutive nonzeros of one row.
struct RowSum {
    std::int32_t row = 0;
    float sum = 0.0f;
};

/// Segmented sum: the right operand's row, adding the left sum only if it is the same row. Associative on any
/// nondecreasing sequence of rows (a scan only combines contiguous pieces of one), so an inclusive scan gives, at each
/// nonzero, the sum of its row's nonzeros so far in the tile, and the last nonzero of a run holds the run's sum.
struct RowSumOp {
    NPFT_HOST_DEVICE RowSum operator()(const RowSum& a, const RowSum& b) const {
        return b.row == a.row ? RowSum{b.row, a.sum + b.sum} : b;
    }
};

/// Row key of the slots past nnz in the last tile: above every row, so it never joins a real run and is never written.
NPFT_HOST_DEVICE constexpr std::int32_t spmv_padding_row(Index rows) { return static_cast<std::int32_t>(rows); }

/// Flag operator of the run ends (cub::BlockDiscontinuity::FlagTails): a nonzero ends a run where the next row differs.
struct RowChanges {
    NPFT_HOST_DEVICE bool operator()(std::int32_t a, std::int32_t b) const { return a != b; }
};

}  // namespace npft::cuda
