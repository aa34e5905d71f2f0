#pragma once
// Tensor data in GGUF's encodings: fp32 matrices as F32/F16/BF16, npft's packed quant::QuantizedMatrix as ggml blocks
// (only where a block type represents it exactly, otherwise refused with the nearest lossless choice named), and the
// reference decoding of every type back to fp32 (ggml's dequantize_row_* formulas).
//
// A matrix [rows, cols] is a ggml tensor with ne = {cols, rows}: ne[0] is the contiguous dimension, so each row is a run
// of cols / 32 blocks.
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "../quant/quantized_matrix.hpp"
#include "gguf_types.hpp"

namespace npft::io::gguf {

namespace detail {
inline void put_u16(std::byte* out, std::uint16_t v) {
    out[0] = static_cast<std::byte>(v & 0xffu);
    out[1] = static_cast<std::byte>(v >> 8);
}
inline std::uint16_t get_u16(const std::byte* in) {
    return static_cast<std::uint16_t>(static_cast<unsigned>(in[0]) | (static_cast<unsigned>(in[1]) << 8));
}
inline float half_at(const std::byte* in) { return static_cast<float>(half::from_bits(get_u16(in))); }
}  // namespace detail

/// A fp32 matrix as F32, F16 or BF16 (the last two round to nearest even).
inline std::vector<std::byte> encode_float(MatrixView<const float> m, TensorType type) {
    require(type == TensorType::f32 || type == TensorType::f16 || type == TensorType::bf16, "encode_float writes F32, F16 or BF16, not ",
            type_name(type));
    const std::size_t size = block_bytes(type);
    std::vector<std::byte> out(static_cast<std::size_t>(m.size()) * size);
    std::byte* p = out.data();
    for (Index r = 0; r < m.rows(); ++r) {
        for (Index c = 0; c < m.cols(); ++c, p += size) {
            const float v = m(r, c);
            if (type == TensorType::f32) {
                std::uint32_t bits;
                std::memcpy(&bits, &v, 4);
                for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>((bits >> (8 * i)) & 0xffu);
            } else if (type == TensorType::f16) {
                detail::put_u16(p, half(v).bits);
            } else {
                detail::put_u16(p, bfloat16(v).bits);
            }
        }
    }
    return out;
}

/// Why `m` cannot be stored as `type` without changing a single dequantized weight, or nullopt when it can.
inline std::optional<std::string> why_not_lossless(const quant::QuantizedMatrix& m, TensorType type) {
    if (type == TensorType::f32) return std::nullopt;  // every dequantized weight is an fp32 value
    if (m.format() == quant::Format::lut) {
        if (type == TensorType::f16) return std::nullopt;  // the table entries are fp16
        if (type == TensorType::bf16) {
            for (const half h : m.lut())
                if (static_cast<float>(bfloat16(static_cast<float>(h))) != static_cast<float>(h))
                    return std::string("a lookup-table entry is not a bfloat16 value");
            return std::nullopt;
        }
        return std::string("GGUF has no type for non-uniform lookup-table levels (Q4_0, Q4_1 and Q8_0 are uniform)");
    }
    if (type == TensorType::f16 || type == TensorType::bf16) {
        for (Index r = 0; r < m.rows(); ++r) {
            for (Index c = 0; c < m.cols(); ++c) {
                const float w = m.dequantize_at(r, c);
                const float stored = type == TensorType::f16 ? static_cast<float>(half(w)) : static_cast<float>(bfloat16(w));
                if (stored != w) return "weight (" + std::to_string(r) + ", " + std::to_string(c) + ") is not a " + type_name(type) + " value";
            }
        }
        return std::nullopt;
    }
    // Block types: one scale per block of 32 inputs, so groups must be whole blocks.
    if (m.group_size() % 32 != 0)
        return "groups of " + std::to_string(m.group_size()) + " inputs are not whole blocks of 32";
    const int lo = type == TensorType::q8_0 ? -128 : (type == TensorType::q4_0 ? -8 : 0);
    const int hi = type == TensorType::q8_0 ? 127 : (type == TensorType::q4_0 ? 7 : 15);
    for (Index r = 0; r < m.rows(); ++r) {
        for (Index g = 0; g < m.groups(); ++g) {
            const quant::UniformParams p = m.uniform_params(r, g);
            if (type == TensorType::q4_1) {
                // w = d q + m with d = scale, q = code, m = -scale * zero: exact when m is an fp16 value.
                const float offset = -p.scale * p.zero;
                if (quant::round_to_half(offset) != offset)
                    return "the offset -scale * zero = " + std::to_string(offset) + " of row " + std::to_string(r) + ", group " +
                           std::to_string(g) + " is not an fp16 value";
            }
            for (Index j = g * m.group_size(); j < (g + 1) * m.group_size(); ++j) {
                const int code = static_cast<int>(m.codes().get(r, j));
                const int q = type == TensorType::q4_1 ? code : code - static_cast<int>(p.zero);
                if (q < lo || q > hi)
                    return "weight (" + std::to_string(r) + ", " + std::to_string(j) + ") is level " + std::to_string(q) +
                           ", outside " + type_name(type) + "'s [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
            }
        }
    }
    return std::nullopt;
}

/// The smallest GGUF type that stores `m` exactly (F32 always does).
inline TensorType nearest_lossless_type(const quant::QuantizedMatrix& m) {
    for (const TensorType t : {TensorType::q4_0, TensorType::q4_1, TensorType::q8_0, TensorType::f16, TensorType::bf16})
        if (!why_not_lossless(m, t)) return t;
    return TensorType::f32;
}

/// `m` in `type`, bit-exact: every weight llama.cpp's reference dequantizer decodes equals m.dequantize_at(). Throws
/// naming `name`, the reason and the nearest lossless type otherwise.
inline std::vector<std::byte> encode_quantized(const quant::QuantizedMatrix& m, TensorType type, std::string_view name) {
    m.validate();
    if (const auto reason = why_not_lossless(m, type)) {
        fail("tensor '", name, "': a ", m.bits(), "-bit ", quant::format_name(m.format()), " matrix (group ", m.group_size(),
             ") cannot be stored as ", type_name(type), " without loss: ", *reason, "; the nearest lossless GGUF type is ",
             type_name(nearest_lossless_type(m)));
    }
    if (type == TensorType::f32 || type == TensorType::f16 || type == TensorType::bf16) {
        const Matrix w = m.dequantize();
        return encode_float(as_matrix_view(w), type);
    }
    const Index blocks_per_row = m.cols() / 32;
    const std::size_t size = block_bytes(type);
    std::vector<std::byte> out(static_cast<std::size_t>(m.rows() * blocks_per_row) * size);
    std::byte* p = out.data();
    for (Index r = 0; r < m.rows(); ++r) {
        for (Index b = 0; b < blocks_per_row; ++b, p += size) {
            const Index first = b * 32;
            const std::size_t at = static_cast<std::size_t>(r * m.groups() + first / m.group_size());
            const quant::UniformParams params = m.uniform_params(r, first / m.group_size());
            detail::put_u16(p, m.scales()[at].bits);
            const auto level = [&](Index j) { return static_cast<int>(m.codes().get(r, first + j)) - static_cast<int>(params.zero); };
            if (type == TensorType::q8_0) {
                for (Index j = 0; j < 32; ++j) p[2 + j] = static_cast<std::byte>(static_cast<std::uint8_t>(static_cast<std::int8_t>(level(j))));
                continue;
            }
            std::byte* nibbles = p + 2;
            if (type == TensorType::q4_1) {
                detail::put_u16(p + 2, half(params.zero == 0.0f ? 0.0f : -params.scale * params.zero).bits);
                nibbles = p + 4;
            }
            const auto nibble = [&](Index j) {
                return type == TensorType::q4_1 ? static_cast<unsigned>(m.codes().get(r, first + j)) : static_cast<unsigned>(level(j) + 8);
            };
            // Element j shares byte j with element j + 16 (the high nibble).
            for (Index j = 0; j < 16; ++j) nibbles[j] = static_cast<std::byte>(nibble(j) | (nibble(j + 16) << 4));
        }
    }
    return out;
}

/// Decodes `count` weights of `type` from `bytes` into `out` (ggml's reference dequantization).
inline void decode(TensorType type, std::span<const std::byte> bytes, std::span<float> out) {
    const std::uint64_t count = out.size();
    require(count % block_size(type) == 0, type_name(type), " holds whole blocks of ", block_size(type), " weights, got ", count);
    require(bytes.size() == count / block_size(type) * block_bytes(type), type_name(type), " data of ", count, " weights needs ",
            count / block_size(type) * block_bytes(type), " bytes, got ", bytes.size());
    const std::byte* p = bytes.data();
    switch (type) {
        case TensorType::f32:
            for (std::uint64_t i = 0; i < count; ++i, p += 4) {
                std::uint32_t bits = 0;
                for (int k = 3; k >= 0; --k) bits = (bits << 8) | static_cast<std::uint32_t>(p[k]);
                std::memcpy(&out[i], &bits, 4);
            }
            return;
        case TensorType::f16:
            for (std::uint64_t i = 0; i < count; ++i, p += 2) out[i] = detail::half_at(p);
            return;
        case TensorType::bf16:
            for (std::uint64_t i = 0; i < count; ++i, p += 2) out[i] = static_cast<float>(bfloat16::from_bits(detail::get_u16(p)));
            return;
        case TensorType::q8_0:
            for (std::uint64_t b = 0; b < count / 32; ++b, p += 34) {
                const float d = detail::half_at(p);
                for (int j = 0; j < 32; ++j)
                    out[b * 32 + static_cast<std::uint64_t>(j)] = static_cast<float>(static_cast<std::int8_t>(static_cast<std::uint8_t>(p[2 + j]))) * d;
            }
            return;
        case TensorType::q4_0:
        case TensorType::q4_1:
            for (std::uint64_t b = 0; b < count / 32; ++b, p += block_bytes(type)) {
                const float d = detail::half_at(p);
                const bool offset = type == TensorType::q4_1;
                const float m = offset ? detail::half_at(p + 2) : 0.0f;
                const std::byte* nibbles = p + (offset ? 4 : 2);
                for (int j = 0; j < 16; ++j) {
                    const int low = static_cast<int>(static_cast<unsigned>(nibbles[j]) & 0xfu);
                    const int high = static_cast<int>(static_cast<unsigned>(nibbles[j]) >> 4);
                    float* o = out.data() + b * 32;
                    if (offset) {
                        const float x0 = static_cast<float>(low) * d, x1 = static_cast<float>(high) * d;
                        o[j] = x0 + m;
                        o[j + 16] = x1 + m;
                    } else {
                        o[j] = static_cast<float>(low - 8) * d;
                        o[j + 16] = static_cast<float>(high - 8) * d;
                    }
                }
            }
            return;
    }
}

}  // namespace npft::io::gguf
