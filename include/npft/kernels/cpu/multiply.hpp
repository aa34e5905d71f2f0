#pragma once
// The public entry of the CPU kernels: y = x W^T for a packed QuantizedMatrix W (N x K) and fp32 activations
// x (M x K, M tokens), picking the fastest path this CPU supports. fp32 accumulation on every path.
//
//   npft::kernels::cpu::multiply(w, x, y);                              // best path, 1 thread
//   npft::kernels::cpu::multiply(w, x, y, {.threads = 2});              // rows split over 2 threads, same bits
//   npft::kernels::cpu::multiply(w, x, y, {.path = Path::portable});    // the reference path
//   const PreparedMatrix p(std::move(w));                               // codes repacked once (prepared_matrix.hpp)
//   npft::kernels::cpu::multiply(p, x, y);                              // the same bits as multiply(w, x, y)
//
// Paths differ only in summation order (the SIMD paths also fold the zero point out: sum q x - z sum x), so each is
// within gamma(n) * sum_j |s| (|q_j| + |z|) |x_j| of the exact product, n = 2 K + 2 groups + 32, gamma(n) = n u / (1 - n u),
// u = 2^-24 (tests/test_kernels_cpu_multiply.cpp checks it). A path gives the same bits for any thread count; the SIMD
// paths tile tokens, so a token's result can differ in the last bits between batch sizes. Calls whose activations are
// infinite, NaN or beyond simd_activation_limit(K) run the portable path, so that every path returns its +-Inf, NaN
// or finite result.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/eigen.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor_view.hpp"
#include "../../quant/dense_sparse.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "argument_checks.hpp"
#include "avx2.hpp"
#include "avx512.hpp"
#include "cpu_features.hpp"
#include "int8_activations.hpp"
#include "int8_gemm.hpp"
#include "int8_gemm_256.hpp"
#include "int8_vbmi.hpp"
#include "portable.hpp"
#include "prepared_matrix.hpp"
#include "problem.hpp"
#include "sparse.hpp"
#include "threading.hpp"

namespace npft::kernels::cpu {

/// Kernel implementations. `best` picks the widest one the CPU supports.
enum class Path { best, portable, avx2, avx512 };

inline const char* path_name(Path p) {
    switch (p) {
        case Path::best: return "best";
        case Path::portable: return "portable";
        case Path::avx2: return "avx2";
        case Path::avx512: return "avx512";
    }
    return "unknown";
}

/// Precision of the activations inside the kernel. int8 (the default) trades a bounded accuracy cost for 2-4x speed:
/// each activation is replaced by x_hat, its value rounded to a step of max|x| / 127 over its block of 32, so that
/// |y_int8 - y_exact| <= sum_j |w_j| max|x_block(j)| / 254 plus the fp32 rounding bound above (on LUT rows plus the
/// 12-bit table's rounding: int8_activations.hpp). On the demo model this moved perplexity by at most 0.02%
/// (docs/results.md). Activations::fp32 opts out: exact fp32 activations on every path.
enum class Activations { fp32, int8 };

struct MultiplyOptions {
    int threads = 1;          ///< output rows are split over this many threads; the result does not depend on it
    Path path = Path::best;
    /// int8 applies on the avx2/avx512 paths to uniform 2/3/4-bit matrices with group sizes that are multiples of 32
    /// and to LUT 3/4-bit matrices with K a multiple of 32 (int8_kernel_applies), and from int8_gemm_min_batch tokens
    /// on also to uniform 8-bit ones (int8_gemm_covers: the GEMMs only); everything else (and the portable path) runs
    /// in fp32 whatever this says.
    Activations activations = Activations::int8;
};

/// Whether this CPU (and this build: x86 with GCC or Clang) can run path p.
inline bool path_supported(Path p) {
    switch (p) {
        case Path::best:
        case Path::portable: return true;
        case Path::avx2: return NPFT_CPU_X86 && cpu_features().has_avx2_path();
        case Path::avx512: return NPFT_CPU_X86 && cpu_features().has_avx512_path();
    }
    return false;
}

/// The concrete path `requested` means on this CPU. Throws if an explicitly requested SIMD path is not supported.
inline Path resolve_path(Path requested) {
    if (requested == Path::best) {
        if (path_supported(Path::avx512)) return Path::avx512;
        if (path_supported(Path::avx2)) return Path::avx2;
        return Path::portable;
    }
    require(path_supported(requested), "kernel path ", path_name(requested),
            " was requested but this CPU or build does not support it (avx2 needs AVX2+FMA+F16C, avx512 needs "
            "AVX-512 F/BW/VL on x86 with GCC or Clang); use Path::best or Path::portable");
    return requested;
}

/// The path that actually runs w: resolve_path(requested), except that the SIMD paths decode whole bytes of codes
/// and therefore need a group size that is a multiple of 8; other matrices run the portable path.
inline Path kernel_path(const quant::QuantizedMatrix& w, Path requested) {
    const Path path = resolve_path(requested);
    return w.group_size() % 8 == 0 ? path : Path::portable;
}

/// The prompt-processing GEMM that int8 activations take on `path` (a SIMD path) from int8_gemm_min_batch tokens on:
/// AVX-512 VNNI on the AVX-512 path, else the 256-bit GEMM with AVX-VNNI where the CPU has it, else with AVX2. All
/// three give the same bits (int8_gemm_256.hpp) and cover the same formats (int8_gemm_covers: uniform 2/3/4/8-bit and
/// LUT 3/4-bit); `none`: the batch-1 kernel (or, for 8-bit, the fp32 kernels).
enum class Int8Gemm { none, avx512_vnni, avx_vnni, avx2_maddubs };

inline Int8Gemm int8_gemm_for(const quant::QuantizedMatrix& w, Path path) {
    if (path == Path::avx512 && int8_gemm_applies(w)) return Int8Gemm::avx512_vnni;
    if (int8_gemm_256_applies(w, Int8Dot256::avx_vnni)) return Int8Gemm::avx_vnni;
    if (int8_gemm_256_applies(w, Int8Dot256::avx2_maddubs)) return Int8Gemm::avx2_maddubs;
    return Int8Gemm::none;
}

namespace detail {

/// The largest activation magnitude the SIMD paths take. They fold the zero point out (sum q x - z sum x) and sum
/// scaled terms in other orders than the portable path, so +-Inf would give Inf - Inf = NaN and activations near
/// FLT_MAX / (K |s| |q|) would overflow an intermediate sum although the exact product fits. Below this limit no
/// intermediate can overflow (|s|, |level| <= 65504 in fp16, |q|, |z| <= 255, so every partial sum is at most
/// 65504 * 2 * 255 * K * max|x|); calls with larger, infinite or NaN activations run the portable path, which every
/// path then agrees with. Real activations are many orders of magnitude below it (2.5e27 at K = 4096).
inline float simd_activation_limit(Index cols) {
    return std::numeric_limits<float>::max() / (65504.0f * 512.0f * static_cast<float>(cols + 32));
}

/// Whether every activation is finite and at most `limit` in magnitude.
inline bool activations_within(const float* x, Index row_stride, Index batch, Index cols, float limit) {
    bool within = true;
    for (Index m = 0; m < batch; ++m) {
        const float* xm = x + m * row_stride;
        for (Index j = 0; j < cols; ++j) within &= std::abs(xm[j]) <= limit;  // false for NaN
    }
    return within;
}

/// Structural checks only (sizes), so that a call costs nothing per weight; QuantizedMatrix::validate() checks values.
inline void require_multipliable(const quant::QuantizedMatrix& w) {
    require(w.rows() > 0 && w.cols() > 0, "weights must be a non-empty quantized matrix, got ", w.rows(), " x ", w.cols());
    require(w.codes().rows() == w.rows() && w.codes().cols() == w.cols() && w.codes().bits() == w.bits() &&
                w.codes().words().size() == static_cast<std::size_t>(w.rows() * quant::packed_words_per_row(w.cols(), w.bits())),
            "weights: packed codes do not match a ", w.rows(), " x ", w.cols(), " matrix of ", w.bits(), "-bit codes");
    const std::size_t metadata = static_cast<std::size_t>(w.is_uniform() ? w.rows() * w.groups() : w.rows() << w.bits());
    if (w.is_uniform()) {
        require(w.scales().size() == metadata, "weights: scale count must be ", metadata, ", got ", w.scales().size());
        require(w.format() != quant::Format::uniform_asymmetric || w.zeros().size() == metadata,
                "weights: zero-point count must be ", metadata, ", got ", w.zeros().size());
    } else {
        require(w.lut().size() == metadata, "weights: lut size must be ", metadata, ", got ", w.lut().size());
    }
}

/// The shared body of the dense and the dense-and-sparse products (outliers may be null; prepared, when not null, is
/// w's PreparedMatrix).
inline void multiply_impl(const quant::QuantizedMatrix& w, const CsrView* outliers, MatrixView<const float> x,
                          MatrixView<float> y, const MultiplyOptions& options, const PreparedMatrix* prepared = nullptr) {
    require_multipliable(w);
    require_multiply_views(x, y);
    require(x.cols() == w.cols(), "x must have ", w.cols(), " columns (the weights' input dimension), got ", x.cols());
    require_shape(y, x.rows(), w.rows(), "y");
    require(options.threads >= 1, "threads must be at least 1, got ", options.threads);
    Path path = kernel_path(w, options.path);
    const Index batch = x.rows();
    const Index cols = w.cols();
    if (batch == 0) return;

    // Activations as contiguous rows (a copy only when x is strided along K).
    std::vector<float> x_copy;
    const float* x_rows = x.data();
    Index x_row_stride = x.row_stride();
    if (x.col_stride() != 1) {
        x_copy.resize(static_cast<std::size_t>(batch * cols));
        for (Index m = 0; m < batch; ++m)
            for (Index j = 0; j < cols; ++j) x_copy[static_cast<std::size_t>(m * cols + j)] = x(m, j);
        x_rows = x_copy.data();
        x_row_stride = cols;
    }
    if (path != Path::portable && !activations_within(x_rows, x_row_stride, batch, cols, simd_activation_limit(cols)))
        path = Path::portable;

    // Batches of 8+ run a GEMM (weights decoded once per panel, reused across tokens); smaller batches the streaming
    // kernels: AVX-512 VBMI + VNNI where it applies, else AVX2 (8-bit: the fp32 kernels).
    const Int8Gemm gemm = batch >= int8_gemm_min_batch && path != Path::portable ? int8_gemm_for(w, path) : Int8Gemm::none;
    if (options.activations == Activations::int8 && path != Path::portable && (gemm != Int8Gemm::none || int8_kernel_applies(w))) {
#if NPFT_CPU_X86
        const Int8Activations quantized = quantize_activations_int8(x_rows, x_row_stride, batch, cols, w.bits(), options.threads);
        const std::vector<float> sums = int8_activation_sums(w, quantized);
        const Index row_bytes = w.codes().words_per_row() * static_cast<Index>(sizeof(std::uint32_t));
        std::vector<std::uint8_t> last_row(static_cast<std::size_t>(row_bytes + int8_last_row_padding_bytes), 0);
        std::memcpy(last_row.data(), w.codes().row_words(w.rows() - 1), static_cast<std::size_t>(row_bytes));
        Int8Problem problem;
        problem.weights = &w;
        problem.x = &quantized;
        problem.x_sums = sums.data();
        problem.y = y;
        problem.last_row_padded = last_row.data();
        if (prepared != nullptr && prepared->has_planes()) {
            problem.planes = prepared->planes().data();
            problem.plane_row_bytes = prepared->plane_row_bytes();
        }
        const bool vbmi = gemm == Int8Gemm::none && path == Path::avx512 && int8_vbmi_applies(w);
        // The GEMMs' activation tiles, packed once for all threads (and by all of them).
        int8_gemm::PackedActivations packed;
        if (gemm != Int8Gemm::none) {
            const Index tile = gemm == Int8Gemm::avx512_vnni ? Index{int8_gemm::tile_tokens}
                               : gemm == Int8Gemm::avx_vnni  ? int8_gemm_256::tile_tokens_of(Int8Dot256::avx_vnni)
                                                             : int8_gemm_256::tile_tokens_of(Int8Dot256::avx2_maddubs);
            packed = int8_gemm::pack_activations(quantized, tile, options.threads);
        }
        parallel_rows(w.rows(), options.threads, gemm != Int8Gemm::none ? 32 : 16, [&](Index begin, Index end) {
            switch (gemm) {
                case Int8Gemm::avx512_vnni: int8_gemm::multiply_rows(problem, packed, begin, end); break;
                case Int8Gemm::avx_vnni: int8_gemm_256::multiply_rows(problem, packed, begin, end, Int8Dot256::avx_vnni); break;
                case Int8Gemm::avx2_maddubs:
                    int8_gemm_256::multiply_rows(problem, packed, begin, end, Int8Dot256::avx2_maddubs);
                    break;
                case Int8Gemm::none:
                    if (vbmi) {
                        int8_vbmi::multiply_rows(problem, begin, end);
                    } else {
                        int8::multiply_rows(problem, begin, end);
                    }
                    break;
            }
            if (outliers != nullptr) add_sparse_rows(*outliers, x_rows, x_row_stride, batch, y, begin, end);
        });
        return;
#endif
    }

    GemmProblem problem;
    problem.weights = &w;
    problem.x = x_rows;
    problem.x_row_stride = x_row_stride;
    problem.batch = batch;
    problem.y = y;

    std::vector<float> group_sums;
    std::vector<std::uint32_t> last_row;
    if (path != Path::portable) {
        if (w.is_uniform()) {
            const Index groups = w.groups();
            const Index group = w.group_size();
            group_sums.resize(static_cast<std::size_t>(batch * groups));
            for (Index m = 0; m < batch; ++m) {
                const float* xm = x_rows + m * x_row_stride;
                for (Index g = 0; g < groups; ++g) {
                    float sum = 0.0f;
                    for (Index j = g * group; j < (g + 1) * group; ++j) sum += xm[j];
                    group_sums[static_cast<std::size_t>(m * groups + g)] = sum;
                }
            }
            problem.x_group_sums = group_sums.data();
        }
        const Index words = w.codes().words_per_row();
        last_row.assign(static_cast<std::size_t>(words + last_row_padding_words), 0u);
        std::memcpy(last_row.data(), w.codes().row_words(w.rows() - 1), static_cast<std::size_t>(words) * sizeof(std::uint32_t));
        problem.last_row_padded = last_row.data();
    }

    parallel_rows(w.rows(), options.threads, 16, [&](Index begin, Index end) {
        switch (path) {
#if NPFT_CPU_X86
            case Path::avx512: avx512::multiply_rows(problem, begin, end); break;
            case Path::avx2: avx2::multiply_rows(problem, begin, end); break;
#endif
            default: portable::multiply_rows(problem, begin, end); break;
        }
        if (outliers != nullptr) add_sparse_rows(*outliers, x_rows, x_row_stride, batch, y, begin, end);
    });
}

}  // namespace detail

/// y = x W^T: x is M x K (K = w.cols()), y is M x N (N = w.rows()); any strides. y must not overlap x.
/// Throws npft::Error on a shape mismatch, a negative or null view, an output that overlaps x or itself (stride 0,
/// overlapping rows: argument_checks.hpp), on threads < 1, or when options.path names a path this CPU lacks.
inline void multiply(const quant::QuantizedMatrix& w, MatrixView<const float> x, MatrixView<float> y,
                     const MultiplyOptions& options = {}) {
    detail::multiply_impl(w, nullptr, x, y, options);
}

/// The dense-and-sparse product y = x (W + S)^T: the quantized dense part plus fp16 CSR outliers S, added per output
/// row after the dense dot product. S's structure is checked on every call (require_valid_csr: offsets, column range and
/// order; one pass over the outliers, well under 1% of the dense work), so a bad index is an npft::Error, never an
/// out-of-range read. The arrays must hold rows + 1 offsets and row_offsets[rows] entries.
inline void multiply(const quant::QuantizedMatrix& w, const CsrView& outliers, MatrixView<const float> x, MatrixView<float> y,
                     const MultiplyOptions& options = {}) {
    require_valid_csr(outliers, w.rows(), w.cols());
    detail::multiply_impl(w, &outliers, x, y, options);
}

/// The dense-and-sparse product for a quant::DenseSparseMatrix (checks the CSR sizes; DenseSparseMatrix::validate()
/// checks the entries).
inline void multiply(const quant::DenseSparseMatrix& w, MatrixView<const float> x, MatrixView<float> y,
                     const MultiplyOptions& options = {}) {
    const quant::SparseOutliers& s = w.sparse;
    require(s.row_offsets.size() == static_cast<std::size_t>(s.rows + 1) && s.columns.size() == s.values.size() &&
                static_cast<std::size_t>(s.row_offsets.back()) == s.values.size(),
            "sparse outliers: CSR sizes are inconsistent (", s.row_offsets.size(), " row offsets for ", s.rows, " rows, ",
            s.columns.size(), " columns, ", s.values.size(), " values)");
    multiply(w.dense, CsrView{s.rows, s.cols, s.row_offsets.data(), s.columns.data(), s.values.data()}, x, y, options);
}

/// The M x N product x W^T as a new matrix.
inline Matrix multiply(const quant::QuantizedMatrix& w, MatrixView<const float> x, const MultiplyOptions& options = {}) {
    require_well_formed(x, "x");
    Matrix y(x.rows(), w.rows());
    multiply(w, x, MatrixView<float>(as_matrix_view(y)), options);
    return y;
}

/// y = x W^T for a prepared matrix: the same bits as multiply(w.matrix(), ...), from the kernel layout where one exists.
inline void multiply(const PreparedMatrix& w, MatrixView<const float> x, MatrixView<float> y, const MultiplyOptions& options = {}) {
    detail::multiply_impl(w.matrix(), nullptr, x, y, options, &w);
}

inline Matrix multiply(const PreparedMatrix& w, MatrixView<const float> x, const MultiplyOptions& options = {}) {
    require_well_formed(x, "x");
    Matrix y(x.rows(), w.matrix().rows());
    multiply(w, x, MatrixView<float>(as_matrix_view(y)), options);
    return y;
}

/// y = W x for one token: x has K elements, y has N; any strides. W is a QuantizedMatrix or a DenseSparseMatrix.
template <class Weights>
    requires(std::same_as<Weights, quant::QuantizedMatrix> || std::same_as<Weights, quant::DenseSparseMatrix>)
void gemv(const Weights& w, VectorView<const float> x, VectorView<float> y, const MultiplyOptions& options = {}) {
    require(x.size() == w.cols(), "x must have ", w.cols(), " elements (the weights' input dimension), got ", x.size());
    require(y.size() == w.rows(), "y must have ", w.rows(), " elements (the weights' output dimension), got ", y.size());
    multiply(w, MatrixView<const float>(x.data(), 1, x.size(), x.size() * x.stride(), x.stride()),
             MatrixView<float>(y.data(), 1, y.size(), y.size() * y.stride(), y.stride()), options);
}

}  // namespace npft::kernels::cpu
