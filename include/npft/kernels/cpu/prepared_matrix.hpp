#pragma once
// A quantized matrix prepared for the CPU kernels: the matrix itself plus its codes repacked once into the kernels'
// layout, as GPU kernels pre-shuffle their weights. The storage layout (files, QuantizedMatrix) never changes;
// multiply() on a plain QuantizedMatrix keeps working and gives the same bits, only the AVX2 decoder of 3-bit codes is
// faster on the prepared form.
//
//   const npft::kernels::cpu::PreparedMatrix prepared(std::move(w));   // repacks once
//   npft::kernels::cpu::multiply(prepared, x, y, {.threads = 2});
//
// Ownership and threads: the PreparedMatrix owns the matrix and the repacked codes and never changes after
// construction, so one object may be shared by any number of threads calling multiply at once. Preparing is explicit
// (rather than cached lazily on the QuantizedMatrix) so that a const matrix is never written behind the caller's back
// and the extra memory (3 bits per weight for 3-bit matrices, nothing for other widths) is the caller's choice.
//
// Which formats get a kernel layout: 3-bit codes (uniform and LUT) in the plane layout of bit_planes.hpp. 2 and 4-bit
// codes never straddle a byte and are decoded from storage as they are.
#include <cstdint>
#include <utility>
#include <vector>

#include "../../core/config.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "bit_planes.hpp"

namespace npft::kernels::cpu {

class PreparedMatrix {
public:
    /// Takes the matrix (move it in to avoid a copy) and repacks its codes when its width has a kernel layout.
    explicit PreparedMatrix(quant::QuantizedMatrix w) : matrix_(std::move(w)) {
        if (matrix_.bits() != 3 || matrix_.rows() == 0) return;
        require(matrix_.codes().rows() == matrix_.rows() && matrix_.codes().cols() == matrix_.cols() &&
                    matrix_.codes().words().size() ==
                        static_cast<std::size_t>(matrix_.rows() * quant::packed_words_per_row(matrix_.cols(), 3)),
                "weights: packed codes do not match a ", matrix_.rows(), " x ", matrix_.cols(), " matrix of 3-bit codes");
        plane_row_bytes_ = cpu::plane_row_bytes(matrix_.cols());
        planes_.resize(static_cast<std::size_t>(matrix_.rows() * plane_row_bytes_));
        for (Index r = 0; r < matrix_.rows(); ++r)
            repack_row_to_planes(matrix_.codes().row_words(r), matrix_.cols(), planes_.data() + r * plane_row_bytes_);
    }

    const quant::QuantizedMatrix& matrix() const { return matrix_; }
    /// The 3-bit codes in the plane layout, row r at r * plane_row_bytes(); empty for other widths.
    const std::vector<std::uint8_t>& planes() const { return planes_; }
    Index plane_row_bytes() const { return plane_row_bytes_; }
    bool has_planes() const { return !planes_.empty(); }

private:
    quant::QuantizedMatrix matrix_;
    std::vector<std::uint8_t> planes_;
    Index plane_row_bytes_ = 0;
};

}  // namespace npft::kernels::cpu
