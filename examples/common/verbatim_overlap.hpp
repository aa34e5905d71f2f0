#pragma once
// How much of a held-out text a model could have memorised: the share of its bytes that lie inside some span of
// `span` bytes occurring verbatim in the training text. A test split whose books repeat training passages (the
// synoptic gospels, Kings and Chronicles) measures recall as much as language modelling; this number says how much.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include <npft/core/error.hpp>

namespace corpus {

/// Share (0..1) of the bytes of `text` covered by a window of `span` bytes that also occurs in `reference`. Windows
/// are matched by a rolling hash and confirmed byte by byte, so the figure is exact. Deterministic; O((n + m) log m).
inline double verbatim_share(std::string_view text, std::string_view reference, std::size_t span = 32) {
    npft::require(span >= 1, "verbatim span must be at least 1 byte, got ", span);
    if (text.empty()) return 0.0;
    if (text.size() < span || reference.size() < span) return 0.0;

    // Polynomial hash mod 2^64 of each window, rolled: h(i+1) = (h(i) - b[i] * base^(span-1)) * base + b[i+span].
    constexpr std::uint64_t base = 0x100000001b3ull;
    std::uint64_t top = 1;  // base^(span-1)
    for (std::size_t i = 1; i < span; ++i) top *= base;
    const auto byte = [](std::string_view s, std::size_t i) { return static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])); };
    const auto for_each_window = [&](std::string_view s, auto&& visit) {
        std::uint64_t h = 0;
        for (std::size_t i = 0; i < span; ++i) h = h * base + byte(s, i);
        for (std::size_t i = 0;; ++i) {
            visit(i, h);
            if (i + span >= s.size()) break;
            h = (h - byte(s, i) * top) * base + byte(s, i + span);
        }
    };

    std::vector<std::pair<std::uint64_t, std::size_t>> windows;  // (hash, position in reference)
    windows.reserve(reference.size() - span + 1);
    for_each_window(reference, [&](std::size_t i, std::uint64_t h) { windows.emplace_back(h, i); });
    std::sort(windows.begin(), windows.end());

    std::size_t covered = 0, covered_to = 0;  // bytes [0, covered_to) of text already counted
    for_each_window(text, [&](std::size_t i, std::uint64_t h) {
        auto it = std::lower_bound(windows.begin(), windows.end(), std::make_pair(h, std::size_t{0}));
        for (; it != windows.end() && it->first == h; ++it) {
            if (std::memcmp(text.data() + i, reference.data() + it->second, span) != 0) continue;  // a hash collision
            const std::size_t from = std::max(i, covered_to);
            covered += i + span - from;
            covered_to = i + span;
            break;
        }
    });
    return static_cast<double>(covered) / static_cast<double>(text.size());
}

}  // namespace corpus
