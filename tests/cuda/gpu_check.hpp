#pragma once
// The harness of the GPU test programs (tests/cuda/test_cuda_*.cu): counted checks that print the first failures, and
// a main that skips (exit 77, CTest: skipped) when npft's kernels cannot run here, turns an exception into a failure
// and prints the tally.
#include <cstdio>
#include <exception>
#include <string>

#include <npft/kernels/cuda/runtime.cuh>

namespace npft_test::gpu {

inline int failures = 0;
inline int checks = 0;

inline void expect(bool condition, const std::string& what) {
    ++checks;
    if (!condition) {
        ++failures;
        if (failures <= 20) std::printf("FAILED: %s\n", what.c_str());
    }
}

/// Runs the test body and returns the process exit code: 77 skipped, 1 failed or threw, 0 passed.
template <class Body>
int run(Body&& body) {
    if (const std::string reason = npft::cuda::kernels_unsupported_reason(); !reason.empty()) {
        std::printf("SKIPPED: %s\n", reason.c_str());
        return 77;
    }
    try {
        body();
    } catch (const std::exception& e) {
        std::printf("FAILED with exception: %s\n", e.what());
        return 1;
    }
    std::printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}

}  // namespace npft_test::gpu
