#pragma once
// CSR SpMV for the fp16 outliers of the dense-and-sparse decomposition: out[m][r] += sum_j value * x[m][column].
// Load balance is by merge path (the algorithm of the former cub::DeviceSpmv, which CCCL 3 removed): the path of
// rows + nnz steps is cut into equal pieces, one per thread, so a long outlier row is spread over many threads and a
// run of empty rows costs one step each. Split rows are combined with fp32 atomics in the output, which the dense
// kernel then adds before rounding (KernelProblem::addend).
#include <cstdint>
#include <vector>

#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "device_ops.cuh"
#include "index_math.cuh"
#include "runtime.cuh"

namespace npft::cuda {

/// Non-owning CSR view (device pointers): rows = output channels, cols = inputs.
struct SparseView {
    index rows = 0;
    index cols = 0;
    index nnz = 0;
    const std::int32_t* row_offsets = nullptr;  ///< rows + 1 entries
    const std::int32_t* columns = nullptr;      ///< nnz entries
    const half* values = nullptr;               ///< nnz fp16 entries
};

/// CSR outliers on the device. Built from any host CSR with members rows, cols, row_offsets, columns, values
/// (npft's SparseOutliers among them).
class DeviceSparseOutliers {
public:
    template <class Csr>
    explicit DeviceSparseOutliers(const Csr& csr)
        : rows_(static_cast<index>(csr.rows)), cols_(static_cast<index>(csr.cols)), row_offsets_(csr.row_offsets),
          columns_(csr.columns), values_(csr.values) {
        require(csr.row_offsets.size() == static_cast<std::size_t>(rows_ + 1), "CSR row_offsets must have rows + 1 = ",
                rows_ + 1, " entries, got ", csr.row_offsets.size());
        require(csr.columns.size() == csr.values.size(), "CSR columns and values must have the same length, got ",
                csr.columns.size(), " and ", csr.values.size());
        require(!csr.row_offsets.empty() && csr.row_offsets.front() == 0 &&
                    static_cast<std::size_t>(csr.row_offsets.back()) == csr.values.size(),
                "CSR row_offsets must start at 0 and end at nnz = ", csr.values.size());
    }

    SparseView view() const {
        return {rows_, cols_, static_cast<index>(values_.size()), row_offsets_.data(), columns_.data(), values_.data()};
    }
    index rows() const { return rows_; }
    index cols() const { return cols_; }
    index nnz() const { return static_cast<index>(values_.size()); }
    std::size_t bytes() const { return row_offsets_.bytes() + columns_.bytes() + values_.bytes(); }

private:
    index rows_ = 0;
    index cols_ = 0;
    DeviceBuffer<std::int32_t> row_offsets_;
    DeviceBuffer<std::int32_t> columns_;
    DeviceBuffer<half> values_;
};

/// Merge-path steps per thread and threads per block of the SpMV kernel.
template <int Threads = 256, int ItemsPerThread = 8>
struct SpmvTile {
    static constexpr int threads = Threads;
    static constexpr int items = ItemsPerThread;
};

/// One merge-path piece per thread; grid.y is the batch row. out must be zeroed (or hold values to add to).
template <ActivationType T, class Tile = SpmvTile<>>
__global__ void __launch_bounds__(Tile::threads) spmv_merge_path_kernel(SparseView s, const T* x, index ldx, float* out) {
    const index m = blockIdx.y;
    const index path = s.rows + s.nnz;
    const index begin = (static_cast<index>(blockIdx.x) * Tile::threads + threadIdx.x) * Tile::items;
    if (begin >= path) return;
    const index end = begin + Tile::items < path ? begin + Tile::items : path;
    const T* x_row = x + m * ldx;
    float* out_row = out + m * s.rows;
    merge_path_walk(
        s.row_offsets, s.columns, s.values, s.rows, s.nnz, begin, end,
        [&](std::int32_t column) { return Activation<T>::to_float(x_row[column].bits); },
        [&](index row, float sum) { atomicAdd(out_row + row, sum); });
}

/// out[batch][rows] += outliers * x^T on `stream`.
template <ActivationType T, class Tile = SpmvTile<>>
void spmv_add(const SparseView& s, const T* x, index batch, index ldx, float* out, cudaStream_t stream) {
    const index path = s.rows + s.nnz;
    const index per_block = static_cast<index>(Tile::threads) * Tile::items;
    const dim3 grid(static_cast<unsigned>((path + per_block - 1) / per_block), static_cast<unsigned>(batch));
    if (path == 0 || batch == 0) return;
    spmv_merge_path_kernel<T, Tile><<<grid, Tile::threads, 0, stream>>>(s, x, ldx, out);
    check(cudaGetLastError(), "spmv_merge_path_kernel launch");
}

}  // namespace npft::cuda
