#pragma once
// Keyed random draws: every value is a pure function of (seed, stream, index), so results never depend on
// thread count, iteration order or device. Streams separate independent uses (e.g. one per tensor and draw).
#include <cmath>
#include <cstdint>

#include "config.hpp"
#include "philox.hpp"

namespace npft {

/// Identifies one random value: the run's seed, an independent stream (tensor, step, purpose...), and the element index.
struct RandomKey {
    std::uint64_t seed = 0;
    std::uint64_t stream = 0;
};

/// Combines several small identifiers (e.g. draw number, tensor number, purpose tag) into one stream id.
NPFT_HOST_DEVICE constexpr std::uint64_t make_stream(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0) {
    // splitmix64-style mixing so that nearby tuples land on unrelated streams.
    std::uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                      (c + 0x94D049BB133111EBull) * 0xD6E8FEB86659FD93ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return x;
}

/// The four 32-bit words Philox gives for element `index` of `key`'s stream.
NPFT_HOST_DEVICE inline Philox4x32::Counter random_words(RandomKey key, std::uint64_t index) {
    const Philox4x32::Counter counter{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                                      static_cast<std::uint32_t>(key.stream), static_cast<std::uint32_t>(key.stream >> 32)};
    const Philox4x32::Key k{static_cast<std::uint32_t>(key.seed), static_cast<std::uint32_t>(key.seed >> 32)};
    return Philox4x32::generate(counter, k);
}

/// 24 random bits as a float in [0, 1), exactly representable (multiples of 2^-24).
NPFT_HOST_DEVICE inline float bits_to_unit_float(std::uint32_t bits) {
    return static_cast<float>(bits >> 8) * 5.9604644775390625e-8f;
}

/// Uniform in [0, 1).
NPFT_HOST_DEVICE inline float uniform01(RandomKey key, std::uint64_t index) {
    return bits_to_unit_float(random_words(key, index)[0]);
}

/// Uniform in [low, high).
NPFT_HOST_DEVICE inline float uniform(RandomKey key, std::uint64_t index, float low, float high) {
    return low + (high - low) * uniform01(key, index);
}

/// +1 or -1 with equal probability.
NPFT_HOST_DEVICE inline float rademacher(RandomKey key, std::uint64_t index) {
    return (random_words(key, index)[0] & 1u) ? 1.0f : -1.0f;
}

/// Standard normal by Box-Muller on two of the four words (computed in double so the tails are accurate).
NPFT_HOST_DEVICE inline float gaussian(RandomKey key, std::uint64_t index) {
    const auto words = random_words(key, index);
    // u1 in (0, 1]: never 0, so the log is finite.
    const double u1 = (static_cast<double>(words[0]) + 1.0) * (1.0 / 4294967296.0);
    const double u2 = static_cast<double>(words[1]) * (1.0 / 4294967296.0);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace npft
