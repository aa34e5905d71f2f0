#pragma once
// The 2-thread (or n-thread) split of the CPU kernels: contiguous ranges of output rows, one per thread.
// Every output element is computed by exactly one thread in the same order as with one thread, so the result is
// bit-identical for any thread count.
#include <algorithm>
#include <thread>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

namespace npft::kernels::cpu {

/// Runs body(begin, end) over [0, rows) split into at most `threads` contiguous ranges. Range boundaries are
/// multiples of `align` (except the last), so that row-tiled kernels see whole tiles. The calling thread runs the
/// first range. body must not throw.
template <class Body>
void parallel_rows(index rows, int threads, index align, Body&& body) {
    require(threads >= 1, "threads must be at least 1, got ", threads);
    const index tiles = (rows + align - 1) / align;
    const index workers = std::max<index>(1, std::min<index>(threads, tiles));
    if (workers == 1) {
        body(index{0}, rows);
        return;
    }
    const index tiles_per_worker = (tiles + workers - 1) / workers;
    const auto range = [&](index w) {
        const index begin = std::min(rows, w * tiles_per_worker * align);
        const index end = std::min(rows, (w + 1) * tiles_per_worker * align);
        return std::pair<index, index>(begin, end);
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(workers - 1));
    for (index w = 1; w < workers; ++w) {
        const auto [begin, end] = range(w);
        if (begin < end) pool.emplace_back([&body, begin, end] { body(begin, end); });
    }
    const auto [begin, end] = range(0);
    body(begin, end);
    for (std::thread& t : pool) t.join();
}

}  // namespace npft::kernels::cpu
