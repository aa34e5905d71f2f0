#pragma once
// The ablation selector of the study's npft_random arm: as many weights as TopFraction would select, but drawn uniformly
// at random, so that "noise on the Fisher outliers" can be told from "noise on that many weights".
#include <cstdint>
#include <cstring>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/outliers/selector.hpp>

namespace study {

/// Selects count_for_fraction(fraction, rows * cols) distinct positions uniformly at random (a partial Fisher-Yates
/// shuffle). The draw is keyed by `seed` and a hash of the matrix's shape and values, so different matrices get
/// independent masks, the same seed and weights give the same mask, and a selection refreshed on changed weights (a
/// new pipeline stage) is a fresh draw of the same size.
struct RandomFraction {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;

    double fraction = 0.0005;
    std::uint64_t seed = 0;

    npft::outliers::OutlierMask select(const npft::outliers::SelectionInputs& in) const {
        npft::outliers::require_fraction(fraction, "RandomFraction");
        npft::outliers::validate_inputs(in, false, false, "RandomFraction");
        const npft::Index rows = in.weights.rows(), cols = in.weights.cols(), n = rows * cols;
        const npft::Index k = npft::outliers::count_for_fraction(fraction, n);
        const npft::RandomKey key{seed, matrix_hash(in)};
        std::vector<npft::Index> order(static_cast<std::size_t>(n));
        for (npft::Index p = 0; p < n; ++p) order[static_cast<std::size_t>(p)] = p;
        for (npft::Index i = 0; i < k; ++i) {
            // j uniform in [i, n): 64 random bits reduced modulo the range (the bias, range / 2^64, is negligible).
            const auto words = npft::random_words(key, static_cast<std::uint64_t>(i));
            const std::uint64_t r = (static_cast<std::uint64_t>(words[0]) << 32) | words[1];
            const auto j = i + static_cast<npft::Index>(r % static_cast<std::uint64_t>(n - i));
            std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
        }
        order.resize(static_cast<std::size_t>(k));
        return npft::outliers::OutlierMask(rows, cols, std::move(order));
    }

private:
    /// FNV-1a over the shape and the weights' bit patterns (row by row, whatever the layout).
    static std::uint64_t matrix_hash(const npft::outliers::SelectionInputs& in) {
        std::uint64_t h = 0xcbf29ce484222325ull;
        const auto mix = [&h](std::uint64_t v) {
            for (int b = 0; b < 8; ++b) h = (h ^ ((v >> (8 * b)) & 0xffu)) * 0x100000001b3ull;
        };
        mix(static_cast<std::uint64_t>(in.weights.rows()));
        mix(static_cast<std::uint64_t>(in.weights.cols()));
        for (npft::Index r = 0; r < in.weights.rows(); ++r)
            for (npft::Index c = 0; c < in.weights.cols(); ++c) {
                const float v = in.weights(r, c);
                std::uint32_t bits = 0;
                std::memcpy(&bits, &v, sizeof bits);
                mix(bits);
            }
        return h;
    }
};

static_assert(npft::outliers::OutlierSelector<RandomFraction>);

}  // namespace study
