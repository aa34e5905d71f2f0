#pragma once
// The safetensors format: its dtypes, shapes and the checks that the reader and the writer share
// (safetensors.hpp reads, safetensors_writer.hpp writes).
//
// Layout (github.com/huggingface/safetensors, README "Format"):
//   bytes [0, 8)        N: little-endian u64, the header length
//   bytes [8, 8 + N)    UTF-8 JSON object, starting with '{', possibly padded with trailing spaces:
//                       {"__metadata__": {"key": "value", ...},
//                        "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...}
//   bytes [8 + N, end)  the data buffer: each tensor's little-endian, row-major bytes at [begin, end) relative to it.
// The tensors must cover the data buffer exactly: no holes, no overlaps, nothing trailing. Empty tensors (a zero in
// the shape, begin == end) and scalars (shape []) are allowed.
//
// The reader trusts nothing: every length, offset, shape and dtype is checked before a byte is touched, and a corrupt
// file gives an npft::Error that names the file and the problem. load() reads the whole file into memory; map() maps it.
#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/checked_math.hpp"
#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "atomic_file.hpp"
#include "json.hpp"
#include "mapped_file.hpp"

namespace npft::io {

/// Element types of the safetensors format. Every one can be read and written as raw bytes; the ones with a C++
/// counterpart (TensorElement) also through typed read/add.
enum class Dtype : std::uint8_t { boolean, u8, i8, f8_e4m3, f8_e5m2, u16, i16, f16, bf16, u32, i32, f32, u64, i64, f64 };

inline constexpr std::array<Dtype, 15> all_dtypes = {Dtype::boolean, Dtype::u8,  Dtype::i8,  Dtype::f8_e4m3, Dtype::f8_e5m2,
                                                     Dtype::u16,     Dtype::i16, Dtype::f16, Dtype::bf16,    Dtype::u32,
                                                     Dtype::i32,     Dtype::f32, Dtype::u64, Dtype::i64,     Dtype::f64};

/// The dtype as the format spells it ("F32", "BF16", "U8", ...).
inline const char* dtype_name(Dtype d) {
    switch (d) {
        case Dtype::boolean: return "BOOL";
        case Dtype::u8: return "U8";
        case Dtype::i8: return "I8";
        case Dtype::f8_e4m3: return "F8_E4M3";
        case Dtype::f8_e5m2: return "F8_E5M2";
        case Dtype::u16: return "U16";
        case Dtype::i16: return "I16";
        case Dtype::f16: return "F16";
        case Dtype::bf16: return "BF16";
        case Dtype::u32: return "U32";
        case Dtype::i32: return "I32";
        case Dtype::f32: return "F32";
        case Dtype::u64: return "U64";
        case Dtype::i64: return "I64";
        case Dtype::f64: return "F64";
    }
    return "unknown";
}

/// Bytes per element.
inline std::size_t dtype_size(Dtype d) {
    switch (d) {
        case Dtype::boolean:
        case Dtype::u8:
        case Dtype::i8:
        case Dtype::f8_e4m3:
        case Dtype::f8_e5m2: return 1;
        case Dtype::u16:
        case Dtype::i16:
        case Dtype::f16:
        case Dtype::bf16: return 2;
        case Dtype::u32:
        case Dtype::i32:
        case Dtype::f32: return 4;
        case Dtype::u64:
        case Dtype::i64:
        case Dtype::f64: return 8;
    }
    return 0;
}

/// The dtype named `name` ("F32", ...), or nullopt for a name the format does not define.
inline std::optional<Dtype> parse_dtype(std::string_view name) {
    for (const Dtype d : all_dtypes)
        if (name == dtype_name(d)) return d;
    return std::nullopt;
}

namespace detail {
template <class T>
constexpr std::optional<Dtype> dtype_for() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::same_as<U, std::uint8_t>) return Dtype::u8;
    else if constexpr (std::same_as<U, std::int8_t>) return Dtype::i8;
    else if constexpr (std::same_as<U, std::uint16_t>) return Dtype::u16;
    else if constexpr (std::same_as<U, std::int16_t>) return Dtype::i16;
    else if constexpr (std::same_as<U, std::uint32_t>) return Dtype::u32;
    else if constexpr (std::same_as<U, std::int32_t>) return Dtype::i32;
    else if constexpr (std::same_as<U, std::uint64_t>) return Dtype::u64;
    else if constexpr (std::same_as<U, std::int64_t>) return Dtype::i64;
    else if constexpr (std::same_as<U, half>) return Dtype::f16;
    else if constexpr (std::same_as<U, bfloat16>) return Dtype::bf16;
    else if constexpr (std::same_as<U, float>) return Dtype::f32;
    else if constexpr (std::same_as<U, double>) return Dtype::f64;
    else return std::nullopt;
}
}  // namespace detail

/// A C++ type with a safetensors dtype: fixed-width integers, half, bfloat16, float, double. (BOOL and the F8 types
/// have no C++ counterpart here: use add_raw / raw.)
template <class T>
concept TensorElement = detail::dtype_for<T>().has_value();

/// The safetensors dtype of T.
template <TensorElement T>
inline constexpr Dtype dtype_of = *detail::dtype_for<T>();

/// A shape as text: "[2, 3]", "[]" for a scalar.
inline std::string shape_string(std::span<const Index> shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) out += ", ";
        out += std::to_string(shape[i]);
    }
    return out + "]";
}

/// Element count of a shape; throws on a negative dimension or on overflow. (A scalar, shape [], has one element.)
inline std::size_t shape_numel(std::span<const Index> shape) {
    std::size_t n = 1;
    for (const Index d : shape) {
        require(d >= 0, "shape ", shape_string(shape), " has a negative dimension");
        const auto u = static_cast<std::size_t>(d);
        require(u == 0 || n <= std::numeric_limits<std::size_t>::max() / u, "shape ", shape_string(shape),
                " has too many elements to address");
        n *= u;
    }
    return n;
}

/// What the header says about one tensor.
struct TensorInfo {
    Dtype dtype = Dtype::f32;
    std::vector<Index> shape;
    std::size_t begin = 0;  ///< byte offsets into the data buffer: the tensor is [begin, end)
    std::size_t end = 0;

    std::size_t numel() const { return shape_numel(shape); }
    std::size_t bytes() const { return end - begin; }
};

namespace detail {
// Element-wise little-endian copies: a memcpy on little-endian hosts, a byte swap per element elsewhere.
template <class T>
void store_le(std::byte* dst, const T* src, std::size_t count) {
    std::memcpy(dst, static_cast<const void*>(src), count * sizeof(T));
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
        for (std::size_t i = 0; i < count; ++i) std::reverse(dst + i * sizeof(T), dst + (i + 1) * sizeof(T));
    }
}
template <class T>
void load_le(T* dst, const std::byte* src, std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T>, "tensor elements are copied as bytes");
    std::memcpy(static_cast<void*>(dst), src, count * sizeof(T));
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
        auto* bytes = reinterpret_cast<unsigned char*>(dst);
        for (std::size_t i = 0; i < count; ++i) std::reverse(bytes + i * sizeof(T), bytes + (i + 1) * sizeof(T));
    }
}
inline std::uint64_t load_u64_le(const std::byte* src) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(src[i]);
    return v;
}

// Headers larger than this are rejected, as the reference implementation does, so a corrupt length cannot make the
// reader parse gigabytes of JSON.
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
inline constexpr std::string_view metadata_key = "__metadata__";

inline bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = json::detail::utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// `s` with every byte that is not part of valid UTF-8 shown as \\xNN, so that an error message about a bad name stays
// readable (and is itself valid UTF-8).
inline std::string printable(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = json::detail::utf8_sequence_length(s, i);
        if (n == 0) {
            const auto b = static_cast<unsigned char>(s[i]);
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 0xf];
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

// The writer's side of the reader's rules for one tensor: a valid UTF-8, non-empty, non-reserved name and a shape
// whose byte size fits in 64 bits (checked product: a shape like [2^62] of F32 must not wrap to 0 bytes). Returns the
// byte size.
inline std::size_t checked_tensor_bytes(std::string_view name, std::span<const Index> shape, Dtype dtype) {
    require(!name.empty(), "tensor name must be non-empty");
    require(is_valid_utf8(name), "tensor name '", printable(name), "' is not valid UTF-8 (the format's header is UTF-8 JSON)");
    require(name != metadata_key, "tensor name '__metadata__' is reserved for the metadata");
    // The same order of checks as the reader's parse_tensor: the element count dimension by dimension, then the bytes.
    std::optional<std::size_t> numel = 1;
    for (const Index d : shape) {
        require(d >= 0, "tensor '", name, "': shape ", shape_string(shape), " has a negative dimension");
        if (numel) numel = checked_mul(*numel, static_cast<std::size_t>(d));
    }
    const std::optional<std::size_t> bytes = numel ? checked_mul(*numel, dtype_size(dtype)) : std::nullopt;
    require(bytes.has_value(), "tensor '", name, "': shape ", shape_string(shape), " of ", dtype_name(dtype),
            " has a byte size that overflows 64 bits");
    return *bytes;
}
}  // namespace detail


}  // namespace npft::io
