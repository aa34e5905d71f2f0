#pragma once
// The 2-thread (or n-thread) split of the CPU kernels: contiguous ranges of output rows, one per thread.
// Every output element is computed by exactly one thread in the same order as with one thread, so the result is
// bit-identical for any thread count.
//
// The extra threads are persistent (a process-wide pool, started on first use): creating a thread per call costs
// about 30 microseconds here, and waking a sleeping one about 13, against a few hundred for a 4096 x 4096 4-bit GEMV.
// So both sides spin for a short while (spin_time) before they sleep: back-to-back calls, as in token generation,
// then hand over in well under a microsecond; an idle pool sleeps.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Persistent worker threads that run tasks 1..n-1 of a parallel call while the caller runs task 0. One parallel call
/// uses the pool at a time; a caller that finds it busy runs all its tasks itself (same results: each task computes
/// the same rows either way). An exception from a task is rethrown to the caller after every task has finished.
/// Tasks must not start parallel calls.
///
/// Fork safety: threads do not survive fork(), and the child may inherit the pool's mutexes locked. A pthread_atfork
/// child handler therefore replaces the shared pool in the child with a fresh one (whose threads start on first use);
/// the inherited one is abandoned, never touched again (destroying it would join threads that do not exist).
class WorkerPool {
public:
    /// The process-wide pool. Never destroyed, so that a parallel call made during static destruction (or from a
    /// thread still running at exit) does not meet a destroyed pool.
    static WorkerPool& shared() { return *shared_slot().load(std::memory_order_acquire); }

    WorkerPool() = default;
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_.store(true);
        }
        start_.notify_all();
        for (std::thread& t : threads_) t.join();
    }

    /// How long a worker keeps polling for the next call, and the caller for the workers' completion, before sleeping.
    static constexpr std::chrono::microseconds spin_time{50};

    /// Runs task(i) for i in [0, tasks): 0 on the calling thread, the others on pool threads; returns when all are done.
    void run(Index tasks, const std::function<void(Index)>& task) {
        if (tasks <= 1) {
            if (tasks == 1) task(0);
            return;
        }
        std::unique_lock<std::mutex> one_call(call_mutex_, std::try_to_lock);
        if (!one_call.owns_lock()) {
            for (Index i = 0; i < tasks; ++i) task(i);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            while (static_cast<Index>(threads_.size()) < tasks - 1) {
                const Index id = static_cast<Index>(threads_.size()) + 1;
                threads_.emplace_back([this, id] { work(id); });
            }
            task_ = &task;
            tasks_ = tasks;
            error_ = nullptr;
            pending_.store(tasks - 1, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        start_.notify_all();
        std::exception_ptr error;
        try {
            task(0);
        } catch (...) {
            error = std::current_exception();  // rethrown only once the workers no longer use the caller's state
        }
        spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        task_ = nullptr;
        if (!error) error = error_;
        lock.unlock();
        if (error) std::rethrow_exception(error);
    }

private:
    static std::atomic<WorkerPool*>& shared_slot() {
        static std::atomic<WorkerPool*> slot{[] {
            ::pthread_atfork(nullptr, nullptr, &replace_after_fork);
            return new WorkerPool;
        }()};
        return slot;
    }
    // Runs in the child only, single-threaded: the abandoned pool is leaked on purpose (see the class comment).
    static void replace_after_fork() { shared_slot().store(new WorkerPool, std::memory_order_release); }

    static void pause() {
#if NPFT_CPU_X86
        _mm_pause();
#endif
    }

    /// Polls done() for at most spin_time (a shortcut only: the caller then waits on a condition variable).
    template <class Done>
    static void spin_until(Done&& done) {
        const auto deadline = std::chrono::steady_clock::now() + spin_time;
        while (!done()) {
            for (int i = 0; i < 64; ++i) pause();
            if (std::chrono::steady_clock::now() > deadline) return;
        }
    }

    void work(Index id) {
        std::uint64_t seen = 0;
        for (;;) {
            spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || stopping_.load(); });
            std::unique_lock<std::mutex> lock(mutex_);
            start_.wait(lock, [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; });
            if (stopping_.load()) return;
            seen = generation_.load(std::memory_order_acquire);
            if (id >= tasks_) continue;  // a call with fewer tasks than threads
            const std::function<void(Index)>* task = task_;
            lock.unlock();
            try {
                (*task)(id);
            } catch (...) {
                std::lock_guard<std::mutex> guard(mutex_);
                if (!error_) error_ = std::current_exception();
            }
            // The last one notifies under the mutex, so a caller that checked pending_ just before cannot miss it.
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                lock.lock();
                done_.notify_one();
                lock.unlock();
            }
        }
    }

    std::mutex call_mutex_;  // serializes parallel calls
    std::mutex mutex_;       // guards threads_, task_, tasks_ and the sleeping side of both handshakes
    std::condition_variable start_;
    std::condition_variable done_;
    std::vector<std::thread> threads_;
    const std::function<void(Index)>* task_ = nullptr;
    Index tasks_ = 0;
    std::exception_ptr error_;  // the first exception a worker's task threw in the current call
    std::atomic<Index> pending_{0};
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<bool> stopping_{false};
};

/// Runs body(begin, end) over [0, rows) split into at most `threads` contiguous ranges. Range boundaries are
/// multiples of `align` (except the last), so that row-tiled kernels see whole tiles. The calling thread runs the
/// first range, WorkerPool::shared() the others. If body throws, the exception reaches the caller after every range
/// has finished.
template <class Body>
void parallel_rows(Index rows, int threads, Index align, Body&& body) {
    require(threads >= 1, "threads must be at least 1, got ", threads);
    const Index tiles = (rows + align - 1) / align;
    const Index workers = std::max<Index>(1, std::min<Index>(threads, tiles));
    if (workers == 1) {
        body(Index{0}, rows);
        return;
    }
    const Index tiles_per_worker = (tiles + workers - 1) / workers;
    const std::function<void(Index)> task = [&](Index w) {
        const Index begin = std::min(rows, w * tiles_per_worker * align);
        const Index end = std::min(rows, (w + 1) * tiles_per_worker * align);
        if (begin < end) body(begin, end);
    };
    WorkerPool::shared().run(workers, task);
}

}  // namespace npft::kernels::cpu
