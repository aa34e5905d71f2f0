#pragma once
// Host launch API of the quantized kernels: Y[batch][N] = X[batch][K] * dequant(W)^T (+ sparse outliers * X^T).
//
//   npft::cuda::DeviceQuantizedMatrix w(npft::cuda::to_tiled(quantized));  // offline layout (tiled_conversion.cuh), upload
//   npft::cuda::GemmArguments<npft::half> args{&w, x, batch, 0, y, 0};
//   if (auto support = npft::cuda::can_implement(args); !support) std::cerr << support.reason;
//   npft::cuda::DeviceBuffer<float> workspace(npft::cuda::gemm_workspace_size(args));  // split-K partials (may be 0)
//   npft::cuda::gemm(args, workspace, stream); // GEMV for batch <= 8, tensor cores above; K split to fill the SMs
//   npft::cuda::gemm(args, stream);            // the same without a workspace: never splits K
//
// Every shape or format the kernels cannot run is rejected by can_implement with a sentence naming the argument;
// gemm() throws npft::Error with that sentence instead of launching.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../../core/error.hpp"
#include "../../quant/params.hpp"
#include "dequant.cuh"
#include "device_ops.cuh"
#include "gemm_mma.cuh"
#include "gemv.cuh"
#include "problem.cuh"
#include "runtime.cuh"
#include "spmv.cuh"
#include "split_k.cuh"
#include "tiled_layout.cuh"

namespace npft::cuda {

/// A quantized matrix in the tiled layout, on the device (build the host TiledWeights with to_tiled()).
class DeviceQuantizedMatrix {
public:
    explicit DeviceQuantizedMatrix(const TiledWeights& t)
        : format_(t.format), shape_(t.shape), codes_(t.codes), scales_(t.scales), zeros_(t.zeros), lut_(t.lut) {}

    TiledView view() const {
        return {shape_, format_, codes_.data(), scales_.empty() ? nullptr : scales_.data(),
                zeros_.empty() ? nullptr : zeros_.data(), lut_.empty() ? nullptr : lut_.data()};
    }
    const TiledShape& shape() const { return shape_; }
    quant::Format format() const { return format_; }
    std::size_t bytes() const { return codes_.bytes() + scales_.bytes() + zeros_.bytes() + lut_.bytes(); }

private:
    quant::Format format_;
    TiledShape shape_;
    DeviceBuffer<std::uint32_t> codes_;
    DeviceBuffer<half> scales_;
    DeviceBuffer<half> zeros_;
    DeviceBuffer<half> lut_;
};

/// One quantized GEMM: row-major activations and outputs with leading dimensions (0 means packed: K and N).
template <ActivationType T>
struct GemmArguments {
    const DeviceQuantizedMatrix* weights = nullptr;
    const T* x = nullptr;  ///< [batch][ldx], rows 16-byte aligned
    Index batch = 0;
    Index ldx = 0;
    T* y = nullptr;  ///< [batch][ldy]
    Index ldy = 0;
    const float* addend = nullptr;  ///< optional [batch][N] fp32 added before rounding
};

/// Whether a problem can run, and if not, why (a sentence naming the argument and the expected value).
struct Support {
    bool ok = true;
    std::string reason;
    explicit operator bool() const { return ok; }
};

namespace detail {
template <class... Parts>
Support unsupported(const Parts&... parts) {
    return {false, npft::detail::concat(parts...)};
}
}  // namespace detail

/// Whether the format is one the kernels are instantiated for: uniform 2/3/4 bit, LUT 3/4 bit.
inline Support supports_format(quant::Format format, int bits) {
    if (format == quant::Format::lut) {
        if (bits == 3 || bits == 4) return {};
        return detail::unsupported("the CUDA kernels support lut tables of 3 or 4 bits, got ", bits, " bits");
    }
    if (bits >= 2 && bits <= 4) return {};
    return detail::unsupported("the CUDA kernels support uniform codes of 2, 3 or 4 bits, got ", bits, " bits");
}

template <ActivationType T>
Support can_implement(const GemmArguments<T>& a) {
    if (a.weights == nullptr) return detail::unsupported("weights must not be null");
    const TiledShape& s = a.weights->shape();
    if (Support f = supports_format(a.weights->format(), s.bits); !f) return f;
    if (s.group_size % quant::codes_per_block != 0 && s.groups != 1)
        return detail::unsupported("group size ", s.group_size, " must be a multiple of 32 or the whole row");
    if (a.x == nullptr || a.y == nullptr) return detail::unsupported("x and y must not be null");
    if (a.batch < 1 || a.batch > 65535 * Index{LargeBatchTile::block_m})
        return detail::unsupported("batch must be between 1 and ", 65535 * Index{LargeBatchTile::block_m}, ", got ", a.batch);
    if (s.cols % 8 != 0)
        return detail::unsupported("the input dimension K = ", s.cols, " must be a multiple of 8 (16-byte activation loads)");
    const Index ldx = a.ldx == 0 ? s.cols : a.ldx;
    const Index ldy = a.ldy == 0 ? s.rows : a.ldy;
    if (ldx < s.cols || ldx % 8 != 0)
        return detail::unsupported("ldx must be a multiple of 8 and at least K = ", s.cols, ", got ", ldx);
    if (ldy < s.rows) return detail::unsupported("ldy must be at least N = ", s.rows, ", got ", ldy);
    if (reinterpret_cast<std::uintptr_t>(a.x) % 16 != 0) return detail::unsupported("x must be 16-byte aligned");
    const int cc = compute_capability();
    if (cc < 80) return detail::unsupported("the CUDA kernels need sm_80 or newer (cp.async, bf16 mma), device is sm_", cc);
    return {};
}

namespace detail {
template <int Bits, bool Lut, ActivationType T>
void launch_dense(const KernelProblem<T>& problem, Index splits, cudaStream_t stream) {
    const TiledShape& s = problem.weights.shape;
    if (problem.batch <= gemv_max_batch) {
        using Tile = SmallBatchGemvTile;
        const dim3 grid = gemv_grid<Tile>(s, splits);
        if (problem.batch == 1)
            gemv_kernel<Bits, Lut, 1, T, SingleRowGemvTile>
                <<<gemv_grid<SingleRowGemvTile>(s, splits), SingleRowGemvTile::threads, 0, stream>>>(problem);
        else if (problem.batch <= 4) gemv_kernel<Bits, Lut, 4, T, Tile><<<grid, Tile::threads, 0, stream>>>(problem);
        else gemv_kernel<Bits, Lut, 8, T, Tile><<<grid, Tile::threads, 0, stream>>>(problem);
        check(cudaGetLastError(), "gemv_kernel launch");
        return;
    }
    if (problem.batch <= mid_batch_max) {
        using Tile = MidBatchTile;
        gemm_mma_kernel<Bits, Lut, T, Tile><<<gemm_grid<Tile>(s, problem.batch, splits), Tile::threads, 0, stream>>>(problem);
    } else {
        using Tile = LargeBatchTile;
        gemm_mma_kernel<Bits, Lut, T, Tile><<<gemm_grid<Tile>(s, problem.batch, splits), Tile::threads, 0, stream>>>(problem);
    }
    check(cudaGetLastError(), "gemm_mma_kernel launch");
}

/// The product with `split` (none when split.splits == 1); `partials` is its workspace.
template <ActivationType T>
void run_gemm(const GemmArguments<T>& a, const KSplit& split, float* partials, cudaStream_t stream) {
    KernelProblem<T> p;
    p.weights = a.weights->view();
    p.x = a.x;
    p.y = a.y;
    p.addend = a.addend;
    p.batch = a.batch;
    p.ldx = a.ldx == 0 ? p.weights.shape.cols : a.ldx;
    p.ldy = a.ldy == 0 ? p.weights.shape.rows : a.ldy;
    if (split.splits > 1) {
        p.partials = partials;
        p.per_split = split.per_split;
    }
    const bool lut = a.weights->format() == quant::Format::lut;
    switch (p.weights.shape.bits * (lut ? -1 : 1)) {
        case 2: launch_dense<2, false>(p, split.splits, stream); break;
        case 3: launch_dense<3, false>(p, split.splits, stream); break;
        case 4: launch_dense<4, false>(p, split.splits, stream); break;
        case -3: launch_dense<3, true>(p, split.splits, stream); break;
        case -4: launch_dense<4, true>(p, split.splits, stream); break;
        default: fail("npft::cuda::gemm: unsupported format");  // unreachable: can_implement checked the format
    }
    if (split.splits > 1) {
        const Index rows = p.weights.shape.rows;
        split_k_reduce_kernel<T><<<split_k_reduce_grid(p.batch, rows), split_k_reduce_threads, 0, stream>>>(
            partials, split.splits, p.batch, rows, p.addend, p.y, p.ldy);
        check(cudaGetLastError(), "split_k_reduce_kernel launch");
    }
}
}  // namespace detail

/// The K split gemm(a, workspace) uses on the current device (index_math.cuh: gemm_k_split). a.weights must be set.
template <ActivationType T>
KSplit gemm_split(const GemmArguments<T>& a) {
    require(a.weights != nullptr, "npft::cuda::gemm_split: weights must not be null");
    return gemm_k_split(a.weights->shape(), a.batch, multiprocessor_count());
}

/// Floats of split-K workspace gemm(a, workspace, stream) needs: 0 when the shape fills the GPU without a split.
template <ActivationType T>
std::size_t gemm_workspace_size(const GemmArguments<T>& a) {
    return static_cast<std::size_t>(split_k_workspace_floats(gemm_split(a), a.batch, a.weights->shape().rows));
}

/// Runs Y = X * dequant(W)^T (+ addend) on `stream` without splitting K (no workspace). Throws npft::Error with
/// can_implement's reason if unsupported.
template <ActivationType T>
void gemm(const GemmArguments<T>& a, cudaStream_t stream = nullptr) {
    const Support support = can_implement(a);
    require(support.ok, "npft::cuda::gemm: ", support.reason);
    detail::run_gemm(a, KSplit{1, a.weights->shape().blocks}, nullptr, stream);
}

/// Same product, splitting K across blocks when the output tiles alone would leave SMs idle (gemm_split): fp32
/// partials go to `workspace` (caller-owned, at least gemm_workspace_size(a) floats) and a second kernel adds them in
/// a fixed order, so the result is deterministic. It agrees with gemm(a) up to the fp32 summation order.
template <ActivationType T>
void gemm(const GemmArguments<T>& a, DeviceBuffer<float>& workspace, cudaStream_t stream = nullptr) {
    const Support support = can_implement(a);
    require(support.ok, "npft::cuda::gemm: ", support.reason);
    const KSplit split = gemm_split(a);
    const auto needed = static_cast<std::size_t>(split_k_workspace_floats(split, a.batch, a.weights->shape().rows));
    require(workspace.size() >= needed, "npft::cuda::gemm: the split-K workspace must hold at least ", needed,
            " floats (gemm_workspace_size), got ", workspace.size());
    detail::run_gemm(a, split, workspace.data(), stream);
}

/// Scratch floats the dense-and-sparse product needs without split-K (caller-owned, like CUB's temp storage).
inline std::size_t dense_sparse_workspace_size(Index batch, Index rows) { return static_cast<std::size_t>(batch * rows); }

/// Scratch floats that also let the dense part split K: the SpMV's batch x N, then gemm_workspace_size(a).
template <ActivationType T>
std::size_t dense_sparse_workspace_size(const GemmArguments<T>& a) {
    return dense_sparse_workspace_size(a.batch, a.weights->shape().rows) + gemm_workspace_size(a);
}

/// Y = X * (dequant(W) + outliers)^T: the CSR SpMV accumulates the outliers in fp32 into `workspace`, and the dense
/// kernel adds them before its single rounding. workspace needs dense_sparse_workspace_size(batch, N) floats; with
/// dense_sparse_workspace_size(a) floats the dense part splits K like gemm(a, workspace).
template <ActivationType T>
void dense_sparse_gemm(const GemmArguments<T>& a, const DeviceSparseOutliers& outliers, DeviceBuffer<float>& workspace,
                       cudaStream_t stream = nullptr) {
    const Support support = can_implement(a);
    require(support.ok, "npft::cuda::dense_sparse_gemm: ", support.reason);
    const TiledShape& s = a.weights->shape();
    require(outliers.rows() == s.rows && outliers.cols() == s.cols, "outliers must be ", s.rows, " x ", s.cols, ", got ",
            outliers.rows(), " x ", outliers.cols());
    const std::size_t sparse_floats = dense_sparse_workspace_size(a.batch, s.rows);
    require(workspace.size() >= sparse_floats, "workspace must hold at least ", sparse_floats, " floats, got ",
            workspace.size());
    check(cudaMemsetAsync(workspace.data(), 0, sparse_floats * sizeof(float), stream), "cudaMemsetAsync(workspace)");
    spmv_add<T>(outliers.view(), a.x, a.batch, a.ldx == 0 ? s.cols : a.ldx, workspace.data(), stream);
    GemmArguments<T> dense = a;
    dense.addend = workspace.data();
    KSplit split = gemm_split(a);
    if (workspace.size() < sparse_floats + static_cast<std::size_t>(split_k_workspace_floats(split, a.batch, s.rows)))
        split = KSplit{1, s.blocks};  // a workspace sized for the SpMV only: the dense part runs unsplit
    detail::run_gemm(dense, split, workspace.data() + sparse_floats, stream);
}

#if defined(NPFT_CUDA_PRECOMPILED_KERNELS)
// Programs linking npft::cuda_kernels use its compiled instantiations instead of compiling the kernels again.
extern template void gemm<half>(const GemmArguments<half>&, cudaStream_t);
extern template void gemm<bfloat16>(const GemmArguments<bfloat16>&, cudaStream_t);
extern template void gemm<half>(const GemmArguments<half>&, DeviceBuffer<float>&, cudaStream_t);
extern template void gemm<bfloat16>(const GemmArguments<bfloat16>&, DeviceBuffer<float>&, cudaStream_t);
extern template void dense_sparse_gemm<half>(const GemmArguments<half>&, const DeviceSparseOutliers&, DeviceBuffer<float>&,
                                             cudaStream_t);
extern template void dense_sparse_gemm<bfloat16>(const GemmArguments<bfloat16>&, const DeviceSparseOutliers&,
                                                 DeviceBuffer<float>&, cudaStream_t);
#endif

}  // namespace npft::cuda
