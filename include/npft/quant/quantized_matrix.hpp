#pragma once
// A quantized weight matrix: packed codes plus the fp16 metadata of its format. This is the object kernels run,
// files store, and bits-per-weight figures count (docs/formats.md gives the byte layout).
#include <cstdint>
#include <new>
#include <stdexcept>
#include <vector>

#include "../core/checked_math.hpp"
#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "bitpack.hpp"
#include "params.hpp"

namespace npft::quant {

/// Array sizes of a quantized matrix, in elements.
struct QuantizedSizes {
    Index words_per_row = 0;  ///< packed 32-bit code words per row
    Index code_words = 0;     ///< rows * words_per_row
    Index groups = 0;         ///< groups per row (uniform formats)
    Index metadata = 0;       ///< fp16 scales (and as many zeros), or lut entries: rows * groups or rows * 2^bits
};

/// Checks a quantized matrix's description (bits in 2..8, a non-empty shape, a group size that divides cols, one table
/// per row for lut) and returns its array sizes, all computed with overflow checks, without allocating anything. The
/// group size is checked before any size is derived from it, so a bad one never sizes an allocation.
inline QuantizedSizes quantized_sizes(Format format, int bits, Index rows, Index cols, Index group_size) {
    require_valid_bits(bits);
    require(rows > 0 && cols > 0, "a quantized matrix must be non-empty, got ", rows, " x ", cols);
    require(group_size > 0 && cols % group_size == 0, "group size ", group_size, " does not divide the input dimension ", cols);
    require(format != Format::lut || group_size == cols, "the lut format has one table per row: group size must be ", cols,
            ", got ", group_size);
    QuantizedSizes s;
    s.words_per_row = checked_packed_words_per_row(cols, bits);
    s.code_words = mul_or_fail(rows, s.words_per_row, "packed codes of a ", rows, " x ", cols, " matrix");
    s.groups = cols / group_size;
    s.metadata = format == Format::lut ? mul_or_fail(rows, Index{1} << bits, "lut entries of ", rows, " rows")
                                       : mul_or_fail(rows, s.groups, "scales of ", rows, " rows x ", s.groups, " groups");
    const Index bytes = add_or_fail(mul_or_fail(s.code_words, Index{4}, "code bytes"),
                                    mul_or_fail(s.metadata, Index{6}, "metadata bytes"), "bytes of a quantized matrix");
    (void)bytes;  // only checked: every byte count derived from these sizes fits in an index
    return s;
}

class QuantizedMatrix {
public:
    QuantizedMatrix() = default;

    /// An all-zero-code matrix with zeroed metadata of the right sizes; fill with set_group / set_lut and codes().
    /// Everything is checked (quantized_sizes) before anything is allocated; a matrix too large for memory is an
    /// npft::Error too.
    QuantizedMatrix(Format format, int bits, Index rows, Index cols, Index group_size)
        : format_(format), bits_(bits), rows_(rows), cols_(cols), group_size_(group_size) {
        const QuantizedSizes sizes = quantized_sizes(format, bits, rows, cols, group_size);
        try {
            codes_ = PackedCodes(rows, cols, bits);
            if (format == Format::lut) {
                lut_.assign(static_cast<std::size_t>(sizes.metadata), half(0.0f));
            } else {
                scales_.assign(static_cast<std::size_t>(sizes.metadata), half(0.0f));
                if (format == Format::uniform_asymmetric) zeros_.assign(scales_.size(), half(0.0f));
            }
        } catch (const std::bad_alloc&) {
            fail("cannot allocate a ", rows, " x ", cols, " quantized matrix of ", bits, "-bit codes: ", sizes.code_words * 4,
                 " bytes of codes and ", sizes.metadata * 2, " bytes per metadata array do not fit in memory");
        } catch (const std::length_error&) {
            fail("a ", rows, " x ", cols, " quantized matrix of ", bits, "-bit codes is larger than a vector can hold");
        }
    }

    Format format() const { return format_; }
    int bits() const { return bits_; }
    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    /// Inputs per group; equals cols() for one scale per output channel.
    Index group_size() const { return group_size_; }
    Index groups() const { return cols_ / group_size_; }
    bool is_uniform() const { return format_ != Format::lut; }

    const PackedCodes& codes() const { return codes_; }
    PackedCodes& codes() { return codes_; }
    /// fp16 scales, [rows][groups] row-major (uniform formats).
    const std::vector<half>& scales() const { return scales_; }
    /// fp16 integer zero points, [rows][groups] row-major (asymmetric format only).
    const std::vector<half>& zeros() const { return zeros_; }
    /// fp16 tables, [rows][2^bits] row-major (lut format only).
    const std::vector<half>& lut() const { return lut_; }
    std::vector<half>& scales() { return scales_; }
    std::vector<half>& zeros() { return zeros_; }
    std::vector<half>& lut() { return lut_; }

    /// The parameters of (row, group) as fitted values.
    UniformParams uniform_params(Index r, Index g) const {
        const std::size_t at = static_cast<std::size_t>(r * groups() + g);
        UniformParams p;
        p.bits = bits_;
        p.scale = static_cast<float>(scales_[at]);
        p.zero = format_ == Format::uniform_asymmetric ? static_cast<float>(zeros_[at]) : static_cast<float>(1u << (bits_ - 1));
        return p;
    }
    LutParams lut_params(Index r) const {
        LutParams p;
        p.bits = bits_;
        const Index n = Index{1} << bits_;
        for (Index i = 0; i < n; ++i) p.levels[static_cast<std::size_t>(i)] = static_cast<float>(lut_[static_cast<std::size_t>(r * n + i)]);
        return p;
    }
    /// Stores fitted parameters (they must already be fp16-representable; see params.hpp).
    void set_group(Index r, Index g, const UniformParams& p) {
        const std::size_t at = static_cast<std::size_t>(r * groups() + g);
        scales_[at] = half(p.scale);
        if (format_ == Format::uniform_asymmetric) zeros_[at] = half(p.zero);
    }
    void set_lut(Index r, const LutParams& p) {
        const Index n = Index{1} << bits_;
        for (Index i = 0; i < n; ++i) lut_[static_cast<std::size_t>(r * n + i)] = half(p.levels[static_cast<std::size_t>(i)]);
    }

    /// The reference dequantized value of element (r, j): what every kernel must reproduce.
    float dequantize_at(Index r, Index j) const {
        const std::uint32_t code = codes_.get(r, j);
        if (format_ == Format::lut) return static_cast<float>(lut_[static_cast<std::size_t>((r << bits_) + code)]);
        const std::size_t at = static_cast<std::size_t>(r * groups() + j / group_size_);
        const float zero =
            format_ == Format::uniform_asymmetric ? static_cast<float>(zeros_[at]) : static_cast<float>(1u << (bits_ - 1));
        return dequantize_uniform(code, static_cast<float>(scales_[at]), zero);
    }

    /// The whole matrix in fp32 (for reference and tests; kernels never materialize it).
    Matrix dequantize() const {
        Matrix out(rows_, cols_);
        for (Index r = 0; r < rows_; ++r)
            for (Index j = 0; j < cols_; ++j) out(r, j) = dequantize_at(r, j);
        return out;
    }

    /// Bytes of storage: packed codes (rows padded to 32 codes) plus all metadata.
    std::size_t bytes() const {
        return codes_.bytes() + (scales_.size() + zeros_.size() + lut_.size()) * sizeof(half);
    }
    /// Storage bits per weight, every byte of metadata included.
    double bits_per_weight() const { return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_); }

    /// Checks internal consistency (sizes, finite metadata, integral zero points in range): call after loading from a file.
    void validate() const {
        const QuantizedSizes sizes = quantized_sizes(format_, bits_, rows_, cols_, group_size_);
        require(codes_.rows() == rows_ && codes_.cols() == cols_ && codes_.bits() == bits_ &&
                    codes_.words().size() == static_cast<std::size_t>(sizes.code_words),
                "packed codes do not match a ", rows_, " x ", cols_, " matrix of ", bits_, "-bit codes");
        const auto metadata = static_cast<std::size_t>(sizes.metadata);
        if (format_ == Format::lut) {
            require(lut_.size() == metadata && scales_.empty() && zeros_.empty(), "lut table size must be ", metadata, ", got ",
                    lut_.size());
        } else {
            require(scales_.size() == metadata, "scale count must be ", metadata, ", got ", scales_.size());
            require(zeros_.size() == (format_ == Format::uniform_asymmetric ? metadata : 0u), "zero-point count must be ",
                    format_ == Format::uniform_asymmetric ? metadata : 0u, ", got ", zeros_.size());
        }
        // Symmetric scales may be negative (llama.cpp's Q4_0 convention, quant/ggml_grids.hpp); asymmetric ones may not.
        for (const half h : scales_) {
            const float s = static_cast<float>(h);
            if (format_ == Format::uniform_symmetric) require(s - s == 0.0f, "scale ", s, " is not a finite number");
            else require(s - s == 0.0f && s >= 0.0f, "scale ", s, " is not a finite non-negative number");
        }
        for (const half h : zeros_) {
            const float z = static_cast<float>(h);
            require(z == std::nearbyint(z) && z >= 0.0f && z <= static_cast<float>((1u << bits_) - 1u), "zero point ", z,
                    " is not an integer code in [0, ", (1u << bits_) - 1u, "]");
        }
        for (const half h : lut_) {
            const float v = static_cast<float>(h);
            require(v - v == 0.0f, "lut entry ", v, " is not finite");
        }
    }

private:
    Format format_ = Format::uniform_asymmetric;
    int bits_ = 0;
    Index rows_ = 0;
    Index cols_ = 0;
    Index group_size_ = 0;
    PackedCodes codes_;
    std::vector<half> scales_;
    std::vector<half> zeros_;
    std::vector<half> lut_;
};

}  // namespace npft::quant
