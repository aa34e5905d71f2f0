// Hostile quantized-matrix files and misuse of the QuantizedMatrix / PackedCodes constructors: every size is checked
// with overflow-checked arithmetic against what is actually there before anything is allocated, so crafted metadata
// gives an npft::Error, never a huge allocation, std::bad_alloc or signed overflow.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "npft/core/checked_math.hpp"
#include "npft/io/quantized.hpp"
#include "npft/io/safetensors.hpp"
#include "npft/quant/bitpack.hpp"
#include "npft/quant/quantized_matrix.hpp"

using Catch::Matchers::Contains;
namespace io = npft::io;
namespace quant = npft::quant;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool address_sanitizer = true;
#else
constexpr bool address_sanitizer = false;
#endif
#else
constexpr bool address_sanitizer = false;
#endif

// A file holding the tensors of `m` under "w" with its metadata, where `overrides` replace metadata values: what an
// attacker gets by writing a small valid matrix with the library's writer and editing the header.
std::vector<std::byte> crafted(const quant::QuantizedMatrix& m, const std::map<std::string, std::string>& overrides) {
    io::SafetensorsWriter valid;
    io::save_quantized(valid, "w", m);
    const io::SafetensorsFile original = io::SafetensorsFile::from_bytes(valid.to_bytes(), "valid");
    io::SafetensorsWriter out;
    for (const std::string& name : original.names()) {
        const io::TensorInfo& t = original.info(name);
        out.add_raw(name, t.dtype, t.shape, original.raw(name));
    }
    for (const auto& [key, value] : original.metadata()) {
        const auto it = overrides.find(key);
        out.add_metadata(key, it == overrides.end() ? value : it->second);
    }
    return out.to_bytes();
}

quant::QuantizedMatrix load(const std::vector<std::byte>& bytes) {
    return io::load_quantized(io::SafetensorsFile::from_bytes(bytes, "crafted"), "w");
}

// The error message of fn() if it throws npft::Error, "no error" if it returns, "other exception" otherwise.
template <class Fn>
std::string error_of(Fn&& fn) {
    try {
        fn();
    } catch (const npft::Error& e) {
        return e.what();
    } catch (...) {
        return "other exception";
    }
    return "no error";
}

// Runs fn in a child process limited to `bytes` of address space; returns 0 if fn threw npft::Error containing
// `expected`, 1 if it returned, 2 for any other exception, 3 for another npft::Error (e.g. "cannot allocate": it tried
// to allocate more than the limit). Under AddressSanitizer, whose shadow memory needs terabytes of address space, the
// limit is not set and fn runs unlimited.
template <class Fn>
int status_with_memory_limit(rlim_t bytes, const std::string& expected, Fn&& fn) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!address_sanitizer) {
            rlimit lim{bytes, bytes};
            if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(4);
        }
        try {
            fn();
        } catch (const npft::Error& e) {
            ::_exit(std::string(e.what()).find(expected) != std::string::npos ? 0 : 3);
        } catch (...) {
            ::_exit(2);
        }
        ::_exit(1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

const quant::QuantizedMatrix& small_matrix() {  // 1 x 32, 4 bits, one group: 4 code words, 1 scale, 1 zero
    static const quant::QuantizedMatrix m = [] {
        quant::QuantizedMatrix q(quant::Format::uniform_asymmetric, 4, 1, 32, 32);
        for (npft::Index j = 0; j < 32; ++j) q.codes().set(0, j, static_cast<std::uint32_t>(j % 16));
        q.scales()[0] = npft::half(0.5f);
        q.zeros()[0] = npft::half(8.0f);
        return q;
    }();
    return m;
}

constexpr rlim_t memory_limit = rlim_t{512} << 20;  // far below what the claimed shapes would need

}  // namespace

TEST_CASE("checked_mul and checked_add detect overflow exactly at the boundary", "[core][checked]") {
    const npft::Index max = std::numeric_limits<npft::Index>::max();
    CHECK(npft::checked_mul<npft::Index>(3, 7) == 21);
    CHECK(npft::checked_mul<npft::Index>(max / 2, 2) == max - 1);
    CHECK_FALSE(npft::checked_mul<npft::Index>(max / 2 + 1, 2).has_value());
    CHECK_FALSE(npft::checked_mul<npft::Index>(npft::Index{1} << 62, 4).has_value());  // wraps to 0 unchecked
    CHECK(npft::checked_add<npft::Index>(max - 1, 1) == max);
    CHECK_FALSE(npft::checked_add<npft::Index>(max, 1).has_value());
    CHECK(npft::checked_mul<std::size_t>(std::size_t{1} << 32, std::size_t{1} << 31) == std::size_t{1} << 63);
    CHECK_FALSE(npft::checked_mul<std::size_t>(std::size_t{1} << 32, std::size_t{1} << 32).has_value());
    CHECK_THROWS_WITH(npft::mul_or_fail<npft::Index>(max, 2, "rows of 'w'"), Contains("rows of 'w': ") && Contains("overflows"));
}

TEST_CASE("a tiny file claiming a huge matrix is refused from its header, before any allocation", "[io][quantized][hostile]") {
    REQUIRE_NOTHROW(load(crafted(small_matrix(), {})));  // the unmodified file loads
    const std::vector<std::byte> file = crafted(small_matrix(), {{"w.shape", "[65536, 65536]"}});
    CHECK(file.size() < 400);  // a few hundred bytes claiming a 2 GiB code array
    CHECK_THROWS_WITH(load(file), Contains("quantized matrix 'w'") && Contains("tensor 'w.codes' has shape [1, 4], expected [65536, 8192]"));
    CHECK(status_with_memory_limit(memory_limit, "expected [65536, 8192]", [&] { load(file); }) == 0);

    const std::vector<std::byte> two_pow_20 = crafted(small_matrix(), {{"w.shape", "[1048576, 1048576]"}});
    CHECK_THROWS_WITH(load(two_pow_20), Contains("tensor 'w.codes' has shape [1, 4], expected [1048576, 131072]"));
    CHECK(status_with_memory_limit(memory_limit, "expected [1048576, 131072]", [&] { load(two_pow_20); }) == 0);
}

TEST_CASE("claimed shapes whose sizes overflow are errors, not signed overflow", "[io][quantized][hostile]") {
    // 2^62 rows of 8 words: 2^65 words. Unchecked, rows * words wraps in a signed 64-bit product (undefined).
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[4611686018427387904, 64]"}})),
                      Contains("quantized matrix 'w'") && Contains("overflows"));
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[4611686018427387904, 4611686018427387904]"}, {"w.group_size", "1073741824"}})),
                      Contains("overflows"));
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[9223372036854775807, 9223372036854775807]"}, {"w.group_size", "1"}})),
                      Contains("overflows"));
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[1, 9223372036854775807]"}, {"w.group_size", "1"}})),
                      Contains("metadata bytes") && Contains("overflows"));
    // Sizes that fit in 64 bits still have to match the tensors present.
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[1, 4611686018427387904]"}, {"w.group_size", "1073741824"}})),
                      Contains("tensor 'w.codes' has shape [1, 4], expected [1, 576460752303423488]"));
}

TEST_CASE("a bad group size is refused before it sizes anything", "[io][quantized][hostile]") {
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.group_size", "7"}, {"w.shape", "[1048576, 1048576]"}})),
                      Contains("group size 7 does not divide the input dimension 1048576"));
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.group_size", "0"}})), Contains("group size 0 does not divide"));
    CHECK_THROWS_WITH(load(crafted(small_matrix(), {{"w.shape", "[0, 32]"}})), Contains("must be non-empty"));
    // The public constructor: 2^20 x 2^20 with group size 7 used to allocate 512 GiB of codes before checking it.
    const auto construct = [] { quant::QuantizedMatrix(quant::Format::uniform_asymmetric, 4, 1 << 20, 1 << 20, 7); };
    CHECK_THROWS_WITH(construct(), Contains("group size 7 does not divide the input dimension 1048576"));
    CHECK(status_with_memory_limit(memory_limit, "group size 7", construct) == 0);
}

TEST_CASE("constructors refuse sizes that overflow and turn an impossible allocation into npft::Error", "[quant][hostile]") {
    const npft::Index huge = npft::Index{1} << 62;
    CHECK_THROWS_WITH(quant::PackedCodes(huge, 64, 4), Contains("packed codes of a 4611686018427387904 x 64 matrix") && Contains("overflows"));
    CHECK_THROWS_WITH(quant::PackedCodes(1, std::numeric_limits<npft::Index>::max(), 8),
                      Contains("bytes of the packed codes") && Contains("overflows"));
    CHECK_THROWS_WITH(quant::QuantizedMatrix(quant::Format::uniform_symmetric, 4, huge, 64, 64), Contains("overflows"));
    CHECK_THROWS_WITH(quant::QuantizedMatrix(quant::Format::lut, 8, huge / 128, 32, 32), Contains("lut entries") && Contains("overflows"));
    CHECK_THROWS_WITH(quant::PackedCodes(-1, 32, 4), Contains("non-negative"));
    if (!address_sanitizer) {  // ASan aborts on allocations above 1 TiB instead of throwing std::bad_alloc
        // 2^24 x 2^24 4-bit codes: 2^45 words (128 TiB) fit in an index but not in memory.
        CHECK_THROWS_WITH(quant::QuantizedMatrix(quant::Format::uniform_symmetric, 4, 1 << 24, 1 << 24, 128),
                          Contains("cannot allocate a 16777216 x 16777216 quantized matrix"));
    }
}

TEST_CASE("wrong dtypes and foreign tensors are reported before allocation", "[io][quantized][hostile]") {
    io::SafetensorsWriter valid;
    io::save_quantized(valid, "w", small_matrix());
    const io::SafetensorsFile original = io::SafetensorsFile::from_bytes(valid.to_bytes(), "valid");
    io::SafetensorsWriter out;
    for (const std::string& name : original.names()) {
        const io::TensorInfo& t = original.info(name);
        if (name == "w.scales") out.add_raw(name, io::Dtype::bf16, t.shape, original.raw(name));
        else out.add_raw(name, t.dtype, t.shape, original.raw(name));
    }
    for (const auto& [key, value] : original.metadata()) out.add_metadata(key, value);
    CHECK_THROWS_WITH(load(out.to_bytes()), Contains("tensor 'w.scales' has dtype BF16, expected F16"));
}
