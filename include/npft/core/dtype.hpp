#pragma once
// Storage element types: float, IEEE half (binary16) and bfloat16. Storage only: arithmetic happens in float.
// Conversions round to nearest even and are usable on host and device.
#include <concepts>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "config.hpp"

namespace npft {

namespace detail {
NPFT_HOST_DEVICE inline std::uint32_t float_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
NPFT_HOST_DEVICE inline float bits_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace detail

/// IEEE 754 binary16, stored as its 16 bits.
struct half {
    std::uint16_t bits = 0;

    half() = default;
    NPFT_HOST_DEVICE explicit half(float f) : bits(from_float(f)) {}
    NPFT_HOST_DEVICE explicit operator float() const { return to_float(bits); }
    NPFT_HOST_DEVICE static half from_bits(std::uint16_t b) {
        half h;
        h.bits = b;
        return h;
    }
    friend bool operator==(half, half) = default;

    NPFT_HOST_DEVICE static std::uint16_t from_float(float f) {
        const std::uint32_t x = detail::float_bits(f);
        const std::uint32_t sign = (x >> 16) & 0x8000u;
        const std::uint32_t abs = x & 0x7fffffffu;
        if (abs >= 0x7f800000u) {  // Inf or NaN: keep NaN quiet and non-zero
            return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x0200u : 0u));
        }
        if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
        if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
            if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half of the smallest subnormal
            const std::uint32_t exponent = abs >> 23;
            const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
            const std::uint32_t shift = 126u - exponent;  // so that the result counts units of 2^-24
            std::uint32_t value = mantissa >> shift;
            const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
            const std::uint32_t halfway = 1u << (shift - 1u);
            if (rest > halfway || (rest == halfway && (value & 1u))) ++value;
            return static_cast<std::uint16_t>(sign | value);
        }
        // Normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, ties to even.
        std::uint32_t value = ((abs >> 13) - (112u << 10));
        const std::uint32_t rest = abs & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (value & 1u))) ++value;
        return static_cast<std::uint16_t>(sign | value);
    }

    NPFT_HOST_DEVICE static float to_float(std::uint16_t h) {
        const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
        const std::uint32_t exponent = (h >> 10) & 0x1fu;
        const std::uint32_t mantissa = h & 0x3ffu;
        if (exponent == 0x1fu) return detail::bits_float(sign | 0x7f800000u | (mantissa << 13));
        if (exponent == 0) {
            // Subnormal or zero: exact in float as mantissa * 2^-24.
            const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
            return sign ? -magnitude : magnitude;
        }
        return detail::bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }
};

/// bfloat16: the upper 16 bits of an IEEE float, rounded to nearest even.
struct bfloat16 {
    std::uint16_t bits = 0;

    bfloat16() = default;
    NPFT_HOST_DEVICE explicit bfloat16(float f) : bits(from_float(f)) {}
    NPFT_HOST_DEVICE explicit operator float() const { return detail::bits_float(static_cast<std::uint32_t>(bits) << 16); }
    NPFT_HOST_DEVICE static bfloat16 from_bits(std::uint16_t b) {
        bfloat16 h;
        h.bits = b;
        return h;
    }
    friend bool operator==(bfloat16, bfloat16) = default;

    NPFT_HOST_DEVICE static std::uint16_t from_float(float f) {
        const std::uint32_t x = detail::float_bits(f);
        if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
        const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
        return static_cast<std::uint16_t>((x + rounding) >> 16);
    }
};

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2, "half and bfloat16 must be 2-byte storage types");

/// The element types a tensor view may hold (const-qualified or not).
template <class T>
concept StorageElement = std::same_as<std::remove_const_t<T>, float> || std::same_as<std::remove_const_t<T>, half> ||
                         std::same_as<std::remove_const_t<T>, bfloat16>;

/// Reads any storage element as float.
template <StorageElement T>
NPFT_HOST_DEVICE inline float to_float(T value) {
    if constexpr (std::same_as<std::remove_const_t<T>, float>) {
        return value;
    } else {
        return static_cast<float>(value);
    }
}

/// Writes a float into a storage element, rounding to nearest even.
template <StorageElement T>
NPFT_HOST_DEVICE inline std::remove_const_t<T> from_float(float value) {
    if constexpr (std::same_as<std::remove_const_t<T>, float>) {
        return value;
    } else {
        return std::remove_const_t<T>(value);
    }
}

/// Name of an element type, for messages and file headers ("F32", "F16", "BF16" as safetensors spells them).
template <StorageElement T>
constexpr const char* dtype_name() {
    if constexpr (std::same_as<std::remove_const_t<T>, float>) return "F32";
    else if constexpr (std::same_as<std::remove_const_t<T>, half>) return "F16";
    else return "BF16";
}

}  // namespace npft
