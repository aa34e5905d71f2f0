#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based generator.
// The output is a pure function of (counter, key), so any thread, on host or device, can draw element i directly.
#include <array>
#include <cstdint>

#include "config.hpp"

namespace npft {

struct Philox4x32 {
    using Counter = std::array<std::uint32_t, 4>;
    using Key = std::array<std::uint32_t, 2>;
    static constexpr int rounds = 10;

    /// Ten rounds of the Philox bijection of `counter` under `key`.
    NPFT_HOST_DEVICE static constexpr Counter generate(Counter counter, Key key) {
        for (int round = 0; round < rounds; ++round) {
            counter = single_round(counter, key);
            key[0] += kWeyl0;
            key[1] += kWeyl1;
        }
        return counter;
    }

private:
    static constexpr std::uint32_t kMultiplier0 = 0xD2511F53u;
    static constexpr std::uint32_t kMultiplier1 = 0xCD9E8D57u;
    static constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
    static constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

    NPFT_HOST_DEVICE static constexpr Counter single_round(const Counter& c, const Key& k) {
        const std::uint64_t product0 = static_cast<std::uint64_t>(kMultiplier0) * c[0];
        const std::uint64_t product1 = static_cast<std::uint64_t>(kMultiplier1) * c[2];
        const auto hi0 = static_cast<std::uint32_t>(product0 >> 32);
        const auto lo0 = static_cast<std::uint32_t>(product0);
        const auto hi1 = static_cast<std::uint32_t>(product1 >> 32);
        const auto lo1 = static_cast<std::uint32_t>(product1);
        return Counter{hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    }
};

}  // namespace npft
