#pragma once
// CSR SpMV for the fp16 outliers of the dense-and-sparse decomposition: out[m][r] += sum_j value * x[m][column], fp32.
//
// Load balance: every thread block takes the same number of nonzeros (Tile::per_tile), whatever the row lengths, so
// one row holding most outliers is spread over many blocks and empty rows cost nothing (they have no nonzeros). Inside
// a block, CUB does the reduction by row: cub::BlockScan runs a segmented sum (RowSumOp, keyed by the row of each
// nonzero, from the COO row index built offline by coo_rows) and cub::BlockDiscontinuity flags the last nonzero of each
// row run, which adds its run's sum to the output. A row cut by a tile boundary is finished by an fp32 atomic from each
// side, at most two per block. Why block-level rather than cub::DeviceReduce::ReduceByKey: one launch and no global
// temporary storage or run count on the decode path, and the COO keys and tail flags are loaded once per block and
// reused for every batch row. The dense kernel then adds the result before rounding (KernelProblem::addend).
#include <cub/block/block_discontinuity.cuh>
#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <vector>

#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "device_ops.cuh"
#include "runtime.cuh"
#include "spmv_coo.cuh"

namespace npft::cuda {

/// Non-owning COO view of the outliers (device pointers): rows = output channels, cols = inputs; nonzeros sorted by row.
struct SparseView {
    Index rows = 0;
    Index cols = 0;
    Index nnz = 0;
    const std::int32_t* row_of = nullptr;   ///< nnz entries: the row of each nonzero (coo_rows), nondecreasing
    const std::int32_t* columns = nullptr;  ///< nnz entries
    const half* values = nullptr;           ///< nnz fp16 entries
};

/// CSR outliers on the device, with the row index of every nonzero expanded once at upload. Built from any host CSR
/// with members rows, cols, row_offsets, columns, values (npft's SparseOutliers among them).
class DeviceSparseOutliers {
public:
    template <class Csr>
    explicit DeviceSparseOutliers(const Csr& csr)
        : rows_(static_cast<Index>(csr.rows)), cols_(static_cast<Index>(csr.cols)),
          row_of_(validated_rows(csr, static_cast<Index>(csr.rows))), columns_(csr.columns), values_(csr.values) {}

    SparseView view() const {
        return {rows_, cols_, static_cast<Index>(values_.size()), row_of_.data(), columns_.data(), values_.data()};
    }
    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    Index nnz() const { return static_cast<Index>(values_.size()); }
    std::size_t bytes() const { return row_of_.bytes() + columns_.bytes() + values_.bytes(); }

private:
    template <class Csr>
    static std::vector<std::int32_t> validated_rows(const Csr& csr, Index rows) {
        require(csr.columns.size() == csr.values.size(), "CSR columns and values must have the same length, got ",
                csr.columns.size(), " and ", csr.values.size());
        for (const auto column : csr.columns)  // the kernel reads x[m][column] unchecked
            require(column >= 0 && static_cast<Index>(column) < static_cast<Index>(csr.cols), "CSR columns must be in [0, ",
                    csr.cols, "), got ", column);
        return coo_rows(csr.row_offsets, rows, static_cast<Index>(csr.values.size()));
    }

    Index rows_ = 0;
    Index cols_ = 0;
    DeviceBuffer<std::int32_t> row_of_;
    DeviceBuffer<std::int32_t> columns_;
    DeviceBuffer<half> values_;
};

/// Threads per block and nonzeros per thread of the SpMV kernel: a block owns threads * items consecutive nonzeros.
template <int Threads = 256, int ItemsPerThread = 4>
struct SpmvTile {
    static_assert(Threads % 32 == 0 && ItemsPerThread >= 1, "SpmvTile: whole warps and at least one nonzero per thread");
    static constexpr int threads = Threads;
    static constexpr int items = ItemsPerThread;
    static constexpr Index per_tile = Index{Threads} * ItemsPerThread;
    /// Occupancy design point handed to __launch_bounds__ (four 256-thread blocks per SM: at most 64 registers).
    static constexpr int min_blocks_per_sm = 4;
};

/// Block x reduces tile x of the nonzeros (blocked: thread t holds nonzeros t * items ...) for batch rows
/// blockIdx.y, blockIdx.y + gridDim.y, ... out must be zeroed (or hold values to add to).
template <ActivationType T, class Tile = SpmvTile<>>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks_per_sm)
    spmv_kernel(SparseView s, const T* x, Index batch, Index ldx, float* out) {
    using Scan = cub::BlockScan<RowSum, Tile::threads>;
    using Tails = cub::BlockDiscontinuity<std::int32_t, Tile::threads>;
    __shared__ union {
        typename Scan::TempStorage scan;
        typename Tails::TempStorage tails;
    } temp;

    const NnzRange range = spmv_tile_range(blockIdx.x, s.nnz, Tile::per_tile);
    std::int32_t row[Tile::items], column[Tile::items];
    float value[Tile::items];
#pragma unroll
    for (int i = 0; i < Tile::items; ++i) {
        const Index k = range.begin + threadIdx.x * Tile::items + i;
        const bool valid = k < range.end;
        row[i] = valid ? s.row_of[k] : spmv_padding_row(s.rows);
        column[i] = valid ? s.columns[k] : 0;
        value[i] = valid ? Activation<half>::to_float(s.values[k].bits) : 0.0f;
    }
    // The block's last nonzero always ends a run: the next block (or nothing) continues that row.
    int tail[Tile::items];
    Tails(temp.tails).FlagTails(tail, row, RowChanges{});
    __syncthreads();  // temp is reused by the scan

    for (Index m = blockIdx.y; m < batch; m += gridDim.y) {
        const T* x_row = x + m * ldx;
        RowSum product[Tile::items];
#pragma unroll
        for (int i = 0; i < Tile::items; ++i)
            product[i] = {row[i], value[i] * Activation<T>::to_float(x_row[column[i]].bits)};  // padding: x[0] * 0, never flushed
        Scan(temp.scan).InclusiveScan(product, product, RowSumOp{});
#pragma unroll
        for (int i = 0; i < Tile::items; ++i)
            if (tail[i] && product[i].row < s.rows) atomicAdd(out + m * s.rows + product[i].row, product[i].sum);
        __syncthreads();  // before the next batch row's scan reuses temp
    }
}

/// out[batch][rows] += outliers * x^T on `stream` (x: [batch][ldx]).
template <ActivationType T, class Tile = SpmvTile<>>
void spmv_add(const SparseView& s, const T* x, Index batch, Index ldx, float* out, cudaStream_t stream) {
    const SpmvGrid g = spmv_grid(s.nnz, batch, Tile::per_tile);
    if (g.empty()) return;
    const dim3 grid(static_cast<unsigned>(g.tiles), static_cast<unsigned>(g.batch_rows));
    spmv_kernel<T, Tile><<<grid, Tile::threads, 0, stream>>>(s, x, batch, ldx, out);
    check(cudaGetLastError(), "spmv_kernel launch");
}

#if defined(NPFT_CUDA_PRECOMPILED_KERNELS)
// Programs linking npft::cuda_kernels use its compiled instantiations (default tile) instead of compiling them again.
extern template void spmv_add<half>(const SparseView&, const half*, Index, Index, float*, cudaStream_t);
extern template void spmv_add<bfloat16>(const SparseView&, const bfloat16*, Index, Index, float*, cudaStream_t);
#endif

}  // namespace npft::cuda
