// parallel_rows and its persistent WorkerPool: every row computed exactly once, range boundaries on tile multiples,
// many calls with changing thread counts, and concurrent callers (each call waits its turn).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <mutex>
#include <thread>
#include <vector>

#include <npft/kernels/cpu/threading.hpp>

namespace {
namespace cpu = npft::kernels::cpu;
using Index = npft::Index;

/// Counts how often each row is visited and records the ranges' starts.
std::vector<int> visit_counts(Index rows, int threads, Index align, std::vector<Index>* starts = nullptr) {
    std::vector<std::atomic<int>> counts(static_cast<std::size_t>(rows));
    std::mutex m;
    cpu::parallel_rows(rows, threads, align, [&](Index begin, Index end) {
        if (starts != nullptr) {
            std::lock_guard<std::mutex> lock(m);
            starts->push_back(begin);
        }
        for (Index r = begin; r < end; ++r) counts[static_cast<std::size_t>(r)]++;
    });
    std::vector<int> out;
    for (auto& c : counts) out.push_back(c.load());
    return out;
}
}  // namespace

TEST_CASE("parallel_rows visits every row once, ranges start on multiples of the alignment", "[kernels][cpu][threads]") {
    for (const Index rows : {Index{1}, Index{15}, Index{16}, Index{17}, Index{100}, Index{4097}})
        for (const int threads : {1, 2, 3, 5})
            for (const Index align : {Index{1}, Index{4}, Index{16}}) {
                INFO("rows " << rows << " threads " << threads << " align " << align);
                std::vector<Index> starts;
                const std::vector<int> counts = visit_counts(rows, threads, align, &starts);
                CHECK(std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; }));
                CHECK(static_cast<Index>(starts.size()) <= threads);
                for (const Index s : starts) CHECK(s % align == 0);
            }
}

TEST_CASE("the worker pool survives many calls with changing sizes and concurrent callers", "[kernels][cpu][threads]") {
    for (int call = 0; call < 200; ++call) {
        const std::vector<int> counts = visit_counts(64 + call, 1 + call % 4, 4);
        REQUIRE(std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; }));
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> callers;
    for (int caller = 0; caller < 3; ++caller)
        callers.emplace_back([&failures, caller] {
            for (int call = 0; call < 50; ++call) {
                const std::vector<int> counts = visit_counts(100 + caller, 2 + caller % 2, 8);
                if (!std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; })) failures++;
            }
        });
    for (std::thread& t : callers) t.join();
    CHECK(failures.load() == 0);
    CHECK_THROWS_AS(cpu::parallel_rows(10, 0, 1, [](Index, Index) {}), npft::Error);
}

TEST_CASE("an exception from any range reaches the caller after every range has finished", "[kernels][cpu][threads]") {
    for (const Index thrower : {Index{0}, Index{1}}) {
        std::vector<int> written(64, 0);
        CHECK_THROWS_WITH(cpu::parallel_rows(64, 2, 1,
                                             [&](Index begin, Index end) {
                                                 if (begin == thrower * 32) throw std::runtime_error("range failed");
                                                 std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                                 for (Index r = begin; r < end; ++r) written[static_cast<std::size_t>(r)] = 1;
                                             }),
                          "range failed");
        // The other range ran to its end before the call returned (it was still sleeping when the thrower threw).
        const Index other = 32 - thrower * 32;
        for (Index r = other; r < other + 32; ++r) CHECK(written[static_cast<std::size_t>(r)] == 1);
        // The pool still works afterwards.
        const std::vector<int> counts = visit_counts(100, 2, 4);
        CHECK(std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; }));
    }
}
