#pragma once
// Overflow-checked integer arithmetic for sizes that come from files or callers: a product that wraps (to 0, or to a
// small number that then passes every later check) must be an npft::Error, never undefined behaviour or a wrong
// allocation. checked_* return nullopt on overflow; *_or_fail throw an npft::Error whose message names the quantity.
#include <concepts>
#include <optional>

#include "error.hpp"

namespace npft {

/// a * b, or nullopt if it does not fit in T.
template <std::integral T>
constexpr std::optional<T> checked_mul(T a, T b) {
    T result{};
    if (__builtin_mul_overflow(a, b, &result)) return std::nullopt;
    return result;
}

/// a + b, or nullopt if it does not fit in T.
template <std::integral T>
constexpr std::optional<T> checked_add(T a, T b) {
    T result{};
    if (__builtin_add_overflow(a, b, &result)) return std::nullopt;
    return result;
}

/// a * b; throws "<what...>: a * b overflows" if it does not fit in T.
template <std::integral T, class... What>
constexpr T mul_or_fail(T a, T b, const What&... what) {
    const std::optional<T> result = checked_mul(a, b);
    if (!result) fail(what..., ": ", a, " * ", b, " overflows a ", sizeof(T) * 8, "-bit integer");
    return *result;
}

/// a + b; throws "<what...>: a + b overflows" if it does not fit in T.
template <std::integral T, class... What>
constexpr T add_or_fail(T a, T b, const What&... what) {
    const std::optional<T> result = checked_add(a, b);
    if (!result) fail(what..., ": ", a, " + ", b, " overflows a ", sizeof(T) * 8, "-bit integer");
    return *result;
}

}  // namespace npft
