#pragma once
// The read bandwidth the kernels aim at, measured in the benchmark program itself: a vectorized sum over 1 GiB.
//
//   memory_read_benchmark(state, threads)   a Google Benchmark body (bytes_per_second: the bandwidth)
//   measured_read_bandwidth(threads)        bytes per second, the best of a few passes, measured once per count
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include <npft/core/config.hpp>
#include <npft/kernels/cpu/cpu_features.hpp>
#include <npft/kernels/cpu/threading.hpp>

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft_bench {

using npft::Index;

/// Sum of n 64-bit words. The AVX2 version reads pieces of 64 MiB as four sequential streams (the quarters of the
/// piece) with software prefetch: the fastest read found on the development machine (one stream: 12-15 GB/s; four
/// streams 16 MiB apart: 17-20 GB/s; four streams 256 MiB apart: 7 GB/s). The kernels read the same way.
#if NPFT_CPU_X86
__attribute__((target("avx2"))) inline std::uint64_t sum_words_avx2(const std::uint64_t* p, Index n) {
    constexpr Index streams = 4;
    constexpr Index ahead = 128;             // words prefetched ahead in each stream (1 KiB)
    constexpr Index piece = Index{1} << 23;  // words (64 MiB)
    __m256i acc[streams];
    for (Index s = 0; s < streams; ++s) acc[s] = _mm256_setzero_si256();
    Index done = 0;
    while (n - done >= 4 * streams) {
        const Index part = std::min(piece, n - done) / streams / 4 * 4;
        const std::uint64_t* base = p + done;
        for (Index i = 0; i < part; i += 4)
            for (Index s = 0; s < streams; ++s) {
                const std::uint64_t* at = base + s * part + i;
                _mm_prefetch(reinterpret_cast<const char*>(at + ahead), _MM_HINT_T0);
                acc[s] = _mm256_add_epi64(acc[s], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
            }
        done += streams * part;
    }
    alignas(32) std::uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3])));
    std::uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (Index i = done; i < n; ++i) sum += p[i];
    return sum;
}
#endif

inline std::uint64_t sum_words(const std::uint64_t* p, Index n) {
#if NPFT_CPU_X86
    if (npft::kernels::cpu::cpu_features().avx2) return sum_words_avx2(p, n);
#endif
    std::uint64_t s = 0;
    for (Index i = 0; i < n; ++i) s += p[i];
    return s;
}

/// The 1 GiB of words every measurement reads (allocated and touched on first use).
inline const std::vector<std::uint64_t>& read_buffer() {
    static const std::vector<std::uint64_t> buffer(std::size_t{1} << 27, 1);
    return buffer;
}

/// One pass over the buffer, split over threads like the kernels' rows.
inline void read_pass(int threads, std::vector<std::uint64_t>& partial) {
    const std::vector<std::uint64_t>& buffer = read_buffer();
    const Index n = static_cast<Index>(buffer.size());
    partial.assign(static_cast<std::size_t>(threads), 0);
    npft::kernels::cpu::parallel_rows(n, threads, 1 << 16, [&](Index begin, Index end) {
        partial[static_cast<std::size_t>(begin * threads / n)] = sum_words(buffer.data() + begin, end - begin);
    });
    benchmark::DoNotOptimize(partial.data());
    benchmark::ClobberMemory();
}

/// Sums the 1 GiB buffer of 64-bit words per iteration.
inline void memory_read_benchmark(benchmark::State& state, int threads) {
    const Index bytes = static_cast<Index>(read_buffer().size() * sizeof(std::uint64_t));
    std::vector<std::uint64_t> partial;
    for (auto _ : state) read_pass(threads, partial);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
}

/// Read bandwidth on `threads` threads in bytes per second: the fastest of 5 passes, measured on the first call for
/// each thread count and remembered.
inline double measured_read_bandwidth(int threads) {
    static std::map<int, double> measured;
    if (const auto it = measured.find(threads); it != measured.end()) return it->second;
    std::vector<std::uint64_t> partial;
    read_pass(threads, partial);  // warm-up: page the buffer in
    double best = 0.0;
    for (int pass = 0; pass < 5; ++pass) {
        const auto start = std::chrono::steady_clock::now();
        read_pass(threads, partial);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::max(best, static_cast<double>(read_buffer().size() * sizeof(std::uint64_t)) / seconds);
    }
    return measured[threads] = best;
}

}  // namespace npft_bench
