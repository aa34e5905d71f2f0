#pragma once
// Bit-packed storage of b-bit codes (b in 2..8, 3 included: not rounded up to 4).
//
// Layout (docs/formats.md): each row is a little-endian bit stream of 32-bit words. Code j of a row occupies stream
// bits [j*b, j*b + b), where stream bit k is bit (k % 32) of word (k / 32). Rows are padded with zero codes to a
// multiple of 32 codes, so every block of 32 codes is exactly b words and a row is b * ceil(cols / 32) words.
// A code may straddle two words (b = 3, 5, 6, 7) but never leaves its block's b words.
#include <cstdint>
#include <vector>

#include "../core/checked_math.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::quant {

/// Codes per packing block: a block of 32 b-bit codes is exactly b 32-bit words.
inline constexpr Index codes_per_block = 32;

/// Throws unless 2 <= bits <= 8.
inline void require_valid_bits(int bits) {
    require(bits >= 2 && bits <= 8, "bits must be between 2 and 8, got ", bits);
}

/// Words per packed row of `cols` codes of `bits` bits (rows padded to whole blocks of 32 codes).
NPFT_HOST_DEVICE constexpr Index packed_words_per_row(Index cols, int bits) {
    return ((cols + codes_per_block - 1) / codes_per_block) * bits;
}

/// packed_words_per_row with the arguments checked (non-negative cols, valid bits) and overflow-checked arithmetic.
inline Index checked_packed_words_per_row(Index cols, int bits) {
    require_valid_bits(bits);
    require(cols >= 0, "packed code rows must have a non-negative length, got ", cols);
    const Index blocks = cols / codes_per_block + (cols % codes_per_block != 0 ? 1 : 0);
    return mul_or_fail(blocks, Index{bits}, "packed words per row of ", cols, " ", bits, "-bit codes");
}

/// Code j of a packed row. Shared by the CPU reference, the CPU kernels and the CUDA kernels.
NPFT_HOST_DEVICE inline std::uint32_t unpack_code(const std::uint32_t* row_words, Index j, int bits) {
    const Index bit = j * bits;
    const Index word = bit >> 5;
    const unsigned offset = static_cast<unsigned>(bit & 31);
    const std::uint32_t mask = (1u << bits) - 1u;
    std::uint64_t window = row_words[word] >> offset;
    if (offset + static_cast<unsigned>(bits) > 32u) window |= static_cast<std::uint64_t>(row_words[word + 1]) << (32u - offset);
    return static_cast<std::uint32_t>(window) & mask;
}

/// Writes code j of a packed row (the code's bits are cleared first, so rewriting is allowed).
NPFT_HOST_DEVICE inline void pack_code(std::uint32_t* row_words, Index j, int bits, std::uint32_t code) {
    const Index bit = j * bits;
    const Index word = bit >> 5;
    const unsigned offset = static_cast<unsigned>(bit & 31);
    const std::uint32_t mask = (1u << bits) - 1u;
    code &= mask;
    row_words[word] = (row_words[word] & ~(mask << offset)) | (code << offset);
    if (offset + static_cast<unsigned>(bits) > 32u) {
        const unsigned spill = 32u - offset;  // bits of the code that fit in the first word
        row_words[word + 1] = (row_words[word + 1] & ~(mask >> spill)) | (code >> spill);
    }
}

/// Packs a whole row of `count` codes (each below 2^bits) into its packed_words_per_row(count, bits) words, padding
/// included: the bulk path of the quantizer, equal to pack_code for every j but without per-code read-modify-write.
inline void pack_row(const std::uint8_t* codes, Index count, int bits, std::uint32_t* row_words) {
    const Index words = packed_words_per_row(count, bits);
    std::uint64_t pending = 0;  // stream bits not yet written, lowest first
    unsigned filled = 0;
    Index w = 0;
    for (Index j = 0; j < count; ++j) {
        pending |= static_cast<std::uint64_t>(codes[j]) << filled;
        filled += static_cast<unsigned>(bits);
        if (filled >= 32u) {
            row_words[w++] = static_cast<std::uint32_t>(pending);
            pending >>= 32;
            filled -= 32u;
        }
    }
    for (; w < words; ++w) {
        row_words[w] = static_cast<std::uint32_t>(pending);
        pending >>= 32;
    }
}

/// A rows x cols matrix of b-bit codes in the packed layout above.
class PackedCodes {
public:
    PackedCodes() = default;
    PackedCodes(Index rows, Index cols, int bits) : rows_(rows), cols_(cols), bits_(bits) {
        require_valid_bits(bits);
        require(rows >= 0 && cols >= 0, "packed code shape must be non-negative, got ", rows, " x ", cols);
        words_per_row_ = checked_packed_words_per_row(cols, bits);
        const Index words = mul_or_fail(rows, words_per_row_, "packed codes of a ", rows, " x ", cols, " matrix");
        mul_or_fail(words, Index{sizeof(std::uint32_t)}, "bytes of the packed codes of a ", rows, " x ", cols, " matrix");
        words_.assign(static_cast<std::size_t>(words), 0u);
    }

    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    int bits() const { return bits_; }
    Index words_per_row() const { return words_per_row_; }
    const std::vector<std::uint32_t>& words() const { return words_; }
    std::vector<std::uint32_t>& words() { return words_; }
    const std::uint32_t* row_words(Index r) const { return words_.data() + r * words_per_row_; }
    std::uint32_t* row_words(Index r) { return words_.data() + r * words_per_row_; }
    std::size_t bytes() const { return words_.size() * sizeof(std::uint32_t); }

    std::uint32_t get(Index r, Index j) const { return unpack_code(row_words(r), j, bits_); }
    void set(Index r, Index j, std::uint32_t code) {
        require(code < (1u << bits_), "code ", code, " does not fit in ", bits_, " bits");
        pack_code(row_words(r), j, bits_, code);
    }

private:
    Index rows_ = 0;
    Index cols_ = 0;
    int bits_ = 0;
    Index words_per_row_ = 0;
    std::vector<std::uint32_t> words_;
};

}  // namespace npft::quant
