#pragma once
// The vocabulary of GGUF, llama.cpp's model file format (version 3, github.com/ggml-org/ggml docs/gguf.md): tensor
// types with their block sizes, and metadata values (13 value types, arrays included).
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace npft::io::gguf {

/// Tensor types this library writes and reads (ggml's numbering). Q4_0, Q4_1 and Q8_0 are blocks of 32 weights:
///   Q4_0: fp16 d, 16 bytes of nibbles; w = d (q - 8); element j in the low nibble of byte j, j + 16 in its high one
///   Q4_1: fp16 d, fp16 m, 16 bytes of nibbles (same order); w = d q + m
///   Q8_0: fp16 d, 32 int8; w = d q
enum class TensorType : std::uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30 };

inline constexpr TensorType all_tensor_types[] = {TensorType::f32, TensorType::f16, TensorType::q4_0,
                                                  TensorType::q4_1, TensorType::q8_0, TensorType::bf16};

inline const char* type_name(TensorType t) {
    switch (t) {
        case TensorType::f32: return "F32";
        case TensorType::f16: return "F16";
        case TensorType::q4_0: return "Q4_0";
        case TensorType::q4_1: return "Q4_1";
        case TensorType::q8_0: return "Q8_0";
        case TensorType::bf16: return "BF16";
    }
    return "unknown";
}

/// Weights per block (1 for the plain float types).
inline std::uint64_t block_size(TensorType t) {
    return (t == TensorType::q4_0 || t == TensorType::q4_1 || t == TensorType::q8_0) ? 32 : 1;
}

/// Bytes per block.
inline std::uint64_t block_bytes(TensorType t) {
    switch (t) {
        case TensorType::f32: return 4;
        case TensorType::f16:
        case TensorType::bf16: return 2;
        case TensorType::q4_0: return 18;
        case TensorType::q4_1: return 20;
        case TensorType::q8_0: return 34;
    }
    return 0;
}

inline double bits_per_weight(TensorType t) { return 8.0 * static_cast<double>(block_bytes(t)) / static_cast<double>(block_size(t)); }

/// The type named `name` ("Q4_0", "f16", ...; case-insensitive), or nullopt.
inline std::optional<TensorType> parse_type(std::string name) {
    for (char& c : name) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    for (const TensorType t : all_tensor_types)
        if (name == type_name(t)) return t;
    return std::nullopt;
}

inline std::optional<TensorType> tensor_type_from_id(std::uint32_t id) {
    for (const TensorType t : all_tensor_types)
        if (static_cast<std::uint32_t>(t) == id) return t;
    return std::nullopt;
}

/// Metadata value types (gguf_metadata_value_type).
enum class ValueType : std::uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };

inline const char* value_type_name(ValueType t) {
    switch (t) {
        case ValueType::u8: return "UINT8";
        case ValueType::i8: return "INT8";
        case ValueType::u16: return "UINT16";
        case ValueType::i16: return "INT16";
        case ValueType::u32: return "UINT32";
        case ValueType::i32: return "INT32";
        case ValueType::f32: return "FLOAT32";
        case ValueType::boolean: return "BOOL";
        case ValueType::string: return "STRING";
        case ValueType::array: return "ARRAY";
        case ValueType::u64: return "UINT64";
        case ValueType::i64: return "INT64";
        case ValueType::f64: return "FLOAT64";
    }
    return "unknown";
}

/// Bytes of a scalar of type t in the file (0 for string and array, whose size depends on the content).
inline std::uint64_t scalar_bytes(ValueType t) {
    switch (t) {
        case ValueType::u8:
        case ValueType::i8:
        case ValueType::boolean: return 1;
        case ValueType::u16:
        case ValueType::i16: return 2;
        case ValueType::u32:
        case ValueType::i32:
        case ValueType::f32: return 4;
        case ValueType::u64:
        case ValueType::i64:
        case ValueType::f64: return 8;
        case ValueType::string:
        case ValueType::array: return 0;
    }
    return 0;
}

inline bool is_unsigned(ValueType t) { return t == ValueType::u8 || t == ValueType::u16 || t == ValueType::u32 || t == ValueType::u64; }
inline bool is_signed(ValueType t) { return t == ValueType::i8 || t == ValueType::i16 || t == ValueType::i32 || t == ValueType::i64; }
inline bool is_float(ValueType t) { return t == ValueType::f32 || t == ValueType::f64; }

/// One metadata value. Integers keep their exact value in `uint` or `sint`, floats in `real` (f32 values are exactly
/// representable in double), strings in `text`; an array has an element type and `items` of that type.
struct Value {
    ValueType type = ValueType::u32;
    std::uint64_t uint = 0;
    std::int64_t sint = 0;
    double real = 0.0;
    bool flag = false;
    std::string text;
    ValueType element = ValueType::u8;  ///< arrays only
    std::vector<Value> items;           ///< arrays only

    static Value u8(std::uint8_t v) { return unsigned_of(ValueType::u8, v); }
    static Value u16(std::uint16_t v) { return unsigned_of(ValueType::u16, v); }
    static Value u32(std::uint32_t v) { return unsigned_of(ValueType::u32, v); }
    static Value u64(std::uint64_t v) { return unsigned_of(ValueType::u64, v); }
    static Value i8(std::int8_t v) { return signed_of(ValueType::i8, v); }
    static Value i16(std::int16_t v) { return signed_of(ValueType::i16, v); }
    static Value i32(std::int32_t v) { return signed_of(ValueType::i32, v); }
    static Value i64(std::int64_t v) { return signed_of(ValueType::i64, v); }
    static Value f32(float v) { return real_of(ValueType::f32, v); }
    static Value f64(double v) { return real_of(ValueType::f64, v); }
    static Value boolean(bool v) {
        Value x;
        x.type = ValueType::boolean;
        x.flag = v;
        return x;
    }
    static Value string(std::string v) {
        Value x;
        x.type = ValueType::string;
        x.text = std::move(v);
        return x;
    }
    /// An array of `element` values; every item must have that type.
    static Value array(ValueType element, std::vector<Value> items) {
        for (const Value& v : items)
            require(v.type == element, "GGUF array of ", value_type_name(element), " cannot hold a ", value_type_name(v.type));
        Value x;
        x.type = ValueType::array;
        x.element = element;
        x.items = std::move(items);
        return x;
    }
    static Value strings(const std::vector<std::string>& values) {
        std::vector<Value> items;
        items.reserve(values.size());
        for (const std::string& s : values) items.push_back(string(s));
        return array(ValueType::string, std::move(items));
    }
    static Value f32s(const std::vector<float>& values) {
        std::vector<Value> items;
        items.reserve(values.size());
        for (const float v : values) items.push_back(f32(v));
        return array(ValueType::f32, std::move(items));
    }
    static Value i32s(const std::vector<std::int32_t>& values) {
        std::vector<Value> items;
        items.reserve(values.size());
        for (const std::int32_t v : values) items.push_back(i32(v));
        return array(ValueType::i32, std::move(items));
    }

    /// The value as an unsigned integer; throws unless it is a non-negative integer of any width.
    std::uint64_t as_uint() const {
        if (is_unsigned(type)) return uint;
        require(is_signed(type) && sint >= 0, "GGUF value of type ", value_type_name(type), " is not a non-negative integer");
        return static_cast<std::uint64_t>(sint);
    }
    /// The value as a double; throws unless it is a number.
    double as_real() const {
        if (is_float(type)) return real;
        if (is_unsigned(type)) return static_cast<double>(uint);
        require(is_signed(type), "GGUF value of type ", value_type_name(type), " is not a number");
        return static_cast<double>(sint);
    }
    const std::string& as_string() const {
        require(type == ValueType::string, "GGUF value of type ", value_type_name(type), " is not a string");
        return text;
    }

private:
    static Value unsigned_of(ValueType t, std::uint64_t v) {
        Value x;
        x.type = t;
        x.uint = v;
        return x;
    }
    static Value signed_of(ValueType t, std::int64_t v) {
        Value x;
        x.type = t;
        x.sint = v;
        return x;
    }
    static Value real_of(ValueType t, double v) {
        Value x;
        x.type = t;
        x.real = v;
        return x;
    }
};

}  // namespace npft::io::gguf
