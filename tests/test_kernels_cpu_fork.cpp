// The worker pool after fork(): a child that multiplies with several threads once the parent has used the pool must
// not hang (its inherited pool has no threads), and gets the same bits. A watchdog alarm turns a hang into a failure.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#include "test_matrices.hpp"

namespace {

using npft::Matrix;
namespace cpu = npft::kernels::cpu;
namespace quant = npft::quant;
using Index = npft::Index;

constexpr Index N = 96, K = 128, M = 3;  // 96 rows: 6 tiles of 16, so 2 threads really split them

quant::QuantizedMatrix weights() { return npft_test::random_quantized(quant::Format::uniform_asymmetric, 4, N, K, 32, 11); }

Matrix activations() {
    Matrix x(M, K);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = npft::uniform(npft::RandomKey{11, 2}, static_cast<std::uint64_t>(i), -1.0f, 1.0f);
    return x;
}

// Exit code of a child that multiplies with 2 threads (and, if `depth` > 1, forks again and checks its own child):
// 0 when the result equals `expected` bit for bit, 1 when it differs, 2 on an exception. SIGALRM after 20 s if it hangs.
int child_multiplies(const quant::QuantizedMatrix& w, const Matrix& x, const Matrix& expected, int depth) {
    ::alarm(20);
    try {
        const Matrix y = cpu::multiply(w, npft::as_matrix_view(x), {.threads = 2});
        if (y != expected) return 1;
        if (depth > 1) {
            const pid_t pid = ::fork();
            if (pid < 0) return 3;
            if (pid == 0) ::_exit(child_multiplies(w, x, expected, depth - 1));
            int status = 0;
            if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 4;
            return WEXITSTATUS(status);
        }
        return 0;
    } catch (...) {
        return 2;
    }
}

}  // namespace

TEST_CASE("a forked child can multiply with 2 threads after the parent used the pool", "[kernels][cpu][threading][fork]") {
    const quant::QuantizedMatrix w = weights();
    const Matrix x = activations();
    const Matrix expected = cpu::multiply(w, npft::as_matrix_view(x), {.threads = 1});
    // The parent starts the pool's thread.
    for (int i = 0; i < 3; ++i) REQUIRE(cpu::multiply(w, npft::as_matrix_view(x), {.threads = 2}) == expected);

    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(child_multiplies(w, x, expected, 2));  // the child also forks a grandchild
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child " << (WIFSIGNALED(status) ? "was killed by signal " : "exited with ")
                  << (WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status)) << " (SIGALRM = hang)");
    CHECK(WIFEXITED(status));
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));

    // The parent's pool still works after the fork.
    CHECK(cpu::multiply(w, npft::as_matrix_view(x), {.threads = 2}) == expected);
}
