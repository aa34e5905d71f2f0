// half and bfloat16 conversions against independent references: exhaustive round trips and brute-force nearest search.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <npft/npft.hpp>

namespace npft_test {
using namespace npft;

namespace {

float from_bits32(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
std::uint32_t to_bits32(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// Reference half decoding straight from the IEEE definition, in double.
double half_value(std::uint16_t h) {
    const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
    double magnitude;
    if (exponent == 0) magnitude = std::ldexp(mantissa, -24);
    else if (exponent == 31) magnitude = mantissa ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else magnitude = std::ldexp(1024 + mantissa, exponent - 25);
    return sign ? -magnitude : magnitude;
}

// Reference float -> half: the nearest of all finite halves by search, ties to the even bit pattern, and Inf from
// 65520 = 65504 + half an ulp on (where the tie goes to the "even" 2^16, which does not exist).
std::uint16_t reference_half(float x) {
    static const std::vector<double> positive = [] {
        std::vector<double> v;
        for (std::uint16_t h = 0; h <= 0x7bff; ++h) v.push_back(half_value(h));
        return v;
    }();
    const std::uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
    const double a = std::abs(static_cast<double>(x));
    if (a >= 65520.0) return sign | 0x7c00u;
    const auto upper = std::lower_bound(positive.begin(), positive.end(), a);
    if (upper == positive.begin()) return sign;
    const auto lower = upper - 1;
    std::uint16_t pick;
    if (upper == positive.end()) pick = 0x7bff;
    else if (a - *lower < *upper - a) pick = static_cast<std::uint16_t>(lower - positive.begin());
    else if (a - *lower > *upper - a) pick = static_cast<std::uint16_t>(upper - positive.begin());
    else pick = static_cast<std::uint16_t>(((lower - positive.begin()) % 2 == 0 ? lower : upper) - positive.begin());
    return sign | pick;
}

// Reference float -> bfloat16: the two candidates that truncate or round the low 16 bits away, nearest wins, ties even.
std::uint16_t reference_bfloat16(float x) {
    const std::uint32_t u = to_bits32(x);
    const std::uint32_t down = u & 0xffff0000u;
    const std::uint32_t up = down + 0x10000u;  // the next bfloat16 away from zero (may carry into the exponent: Inf)
    const double d_down = std::abs(static_cast<double>(from_bits32(down)) - x);
    const double d_up = std::isinf(from_bits32(up)) && !std::isinf(x)
                            ? std::abs(std::ldexp(1.0, 128) - std::abs(static_cast<double>(x)))  // Inf counts as 2^128
                            : std::abs(static_cast<double>(from_bits32(up)) - x);
    if (d_down < d_up) return static_cast<std::uint16_t>(down >> 16);
    if (d_up < d_down) return static_cast<std::uint16_t>(up >> 16);
    return static_cast<std::uint16_t>(((down >> 16) & 1u) ? up >> 16 : down >> 16);
}

// Floats spread over every binade from below the half subnormals to beyond the half range.
float random_float(std::uint64_t i, int min_exponent, int max_exponent) {
    const auto w = random_words({77, 1}, i);
    const int exponent = min_exponent + static_cast<int>(w[0] % static_cast<std::uint32_t>(max_exponent - min_exponent + 1));
    const float mantissa = 1.0f + static_cast<float>(w[1] >> 9) * (1.0f / 8388608.0f);
    const float magnitude = std::ldexp(mantissa, exponent);
    return (w[2] & 1u) ? -magnitude : magnitude;
}

}  // namespace

TEST_CASE("half: every bit pattern round-trips through float", "[core][dtype]") {
    int mismatches = 0;
    for (std::uint32_t b = 0; b <= 0xffffu; ++b) {
        const half h = half::from_bits(static_cast<std::uint16_t>(b));
        const float f = static_cast<float>(h);
        const double expected = half_value(static_cast<std::uint16_t>(b));
        if (std::isnan(expected)) {
            mismatches += !std::isnan(f) || !std::isnan(static_cast<float>(half(f)));
            mismatches += (half(f).bits & 0x8000u) != (b & 0x8000u);  // NaN keeps its sign
        } else {
            mismatches += static_cast<double>(f) != expected || std::signbit(f) != std::signbit(expected);
            mismatches += half(f).bits != b;
        }
    }
    CHECK(mismatches == 0);
}

TEST_CASE("half: random floats round to the nearest half, ties to even", "[core][dtype]") {
    int mismatches = 0;
    for (std::uint64_t i = 0; i < 100000; ++i) {
        const float x = random_float(i, -27, 17);
        if (half(x).bits != reference_half(x)) {
            if (++mismatches < 5) FAIL_CHECK("half(" << x << ") = " << half(x).bits << ", reference " << reference_half(x));
        }
    }
    CHECK(mismatches == 0);
    // Exact midpoints between neighbouring halves, normal and subnormal: ties go to the even pattern.
    for (std::uint16_t h = 0; h < 0x7bff; h = static_cast<std::uint16_t>(h + 37)) {
        const float mid = static_cast<float>(0.5 * (half_value(h) + half_value(static_cast<std::uint16_t>(h + 1))));
        CHECK(half(mid).bits == (h % 2 == 0 ? h : h + 1));
        CHECK(half(mid).bits == reference_half(mid));
    }
}

TEST_CASE("half: special values", "[core][dtype]") {
    CHECK(half(65504.0f).bits == 0x7bffu);
    CHECK(half(65519.996f).bits == 0x7bffu);
    CHECK(half(65520.0f).bits == 0x7c00u);  // overflow to Inf
    CHECK(half(-1e10f).bits == 0xfc00u);
    CHECK(half(std::numeric_limits<float>::infinity()).bits == 0x7c00u);
    CHECK(std::isnan(static_cast<float>(half(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(half(-0.0f).bits == 0x8000u);
    CHECK(half(5.9604644775390625e-8f).bits == 0x0001u);  // smallest subnormal, 2^-24
    CHECK(half(2.98023223876953125e-8f).bits == 0x0000u);  // 2^-25: tie between 0 and 2^-24 goes to even 0
    CHECK(half(2.98023259e-8f).bits == 0x0001u);            // just above the tie
    CHECK(half(8.940696716308594e-8f).bits == 0x0002u);     // 1.5 * 2^-24: tie goes to even 2
    CHECK(half(6.097555160522461e-5f).bits == 0x03ffu);     // largest subnormal
    CHECK(half(6.103515625e-5f).bits == 0x0400u);           // smallest normal
    CHECK(static_cast<float>(half(1.0f / 3.0f)) == 0.333251953125f);
}

TEST_CASE("bfloat16: random floats and bit patterns round to nearest even", "[core][dtype]") {
    int mismatches = 0;
    for (std::uint64_t i = 0; i < 100000; ++i) {
        const float x = i % 2 ? random_float(i, -140, 127) : from_bits32(random_words({78, 1}, i)[0]);
        if (std::isnan(x)) {
            mismatches += !std::isnan(static_cast<float>(bfloat16(x)));
            continue;
        }
        mismatches += bfloat16(x).bits != reference_bfloat16(x);
    }
    CHECK(mismatches == 0);
    // Every bfloat16 is a float: exhaustive round trip.
    int roundtrip = 0;
    for (std::uint32_t b = 0; b <= 0xffffu; ++b) {
        const float f = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(b)));
        roundtrip += std::isnan(f) ? !std::isnan(static_cast<float>(bfloat16(f))) : bfloat16(f).bits != b;
    }
    CHECK(roundtrip == 0);
    CHECK(bfloat16(1.00390625f).bits == 0x3f80u);  // 1 + 2^-8: tie, goes to even 1.0
    CHECK(bfloat16(1.01171875f).bits == 0x3f82u);  // 1 + 3 * 2^-8: tie, goes to even 1 + 2^-6
    CHECK(bfloat16(std::numeric_limits<float>::max()).bits == 0x7f80u);  // overflow to Inf
    CHECK(bfloat16(-0.0f).bits == 0x8000u);
    // A NaN whose payload sits only in the low bits stays NaN (truncation alone would make it Inf).
    CHECK(std::isnan(static_cast<float>(bfloat16(from_bits32(0x7f800001u)))));
}

TEST_CASE("storage element helpers", "[core][dtype]") {
    CHECK(to_float(half(0.5f)) == 0.5f);
    CHECK(to_float(bfloat16(-2.0f)) == -2.0f);
    CHECK(to_float(3.25f) == 3.25f);
    CHECK(from_float<half>(0.1f) == half(0.1f));
    CHECK(from_float<const bfloat16>(0.1f) == bfloat16(0.1f));
    CHECK(std::string(dtype_name<float>()) == "F32");
    CHECK(std::string(dtype_name<const half>()) == "F16");
    CHECK(std::string(dtype_name<bfloat16>()) == "BF16");
    STATIC_REQUIRE(StorageElement<const float>);
    STATIC_REQUIRE_FALSE(StorageElement<double>);
}

}  // namespace npft_test
