// The kernel layout of 3-bit codes (bit_planes.hpp) and PreparedMatrix: the layout by hand, every code round-tripping
// through the repacking, the plane decoder against the storage decoder byte for byte, and prepared against stored
// matrices bit for bit on random cases (symmetric, asymmetric, LUT; per channel and grouped; odd row counts; batches
// and thread counts).
#include <catch2/catch.hpp>

#include <cstring>
#include <set>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#include "test_matrices.hpp"

namespace {

using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;
using Index = npft::Index;

bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}

#if NPFT_CPU_X86
/// The two decoders' bytes for one chunk (64 bytes each).
__attribute__((target("avx2,fma,f16c"))) void decode_both(const std::uint8_t* stored, const std::uint8_t* planes,
                                                           std::uint8_t* from_stored, std::uint8_t* from_planes) {
    __m256i v[4];
    cpu::int8::ChunkDecoder<3>{}.decode(stored, v[0], v[1]);
    cpu::int8::PlaneDecoder3{}.decode(planes, v[2], v[3]);
    for (int i = 0; i < 2; ++i) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(from_stored + 32 * i), v[i]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(from_planes + 32 * i), v[2 + i]);
    }
}
#endif

}  // namespace

TEST_CASE("the plane layout by hand", "[kernels][cpu][prepared]") {
    // Code j = 64 k + 32 L + 16 v + p: low bits at byte 24 k + 8 L + p % 8, bit 4 v + 2 (p / 8); high bit at byte
    // 24 k + 16 + p % 8, bit 4 v + 2 L + p / 8.
    struct Case {
        Index j;
        Index low_byte;
        int low_bit;
        Index high_byte;
        int high_bit;
    };
    const Case cases[] = {{0, 0, 0, 16, 0},  {1, 1, 0, 17, 0},  {8, 0, 2, 16, 1},   {15, 7, 2, 23, 1},
                          {16, 0, 4, 16, 4}, {17, 1, 4, 17, 4}, {24, 0, 6, 16, 5},  {31, 7, 6, 23, 5},
                          {32, 8, 0, 16, 2}, {40, 8, 2, 16, 3}, {48, 8, 4, 16, 6},  {63, 15, 6, 23, 7},
                          {64, 24, 0, 40, 0}, {127, 39, 6, 47, 7}};
    for (const Case& c : cases) {
        INFO("code " << c.j);
        const cpu::PlaneSlot s = cpu::plane_slot(c.j);
        CHECK(s.low_byte == c.low_byte);
        CHECK(s.low_bit == c.low_bit);
        CHECK(s.high_byte == c.high_byte);
        CHECK(s.high_bit == c.high_bit);
        // A row holding only this code, 5 = 0b101: low bits 01, high bit 1.
        npft::quant::PackedCodes codes(1, 128, 3);
        codes.set(0, c.j, 5);
        std::vector<std::uint8_t> planes(static_cast<std::size_t>(cpu::plane_row_bytes(128)), 0xff);
        cpu::repack_row_to_planes(codes.row_words(0), 128, planes.data());
        for (Index b = 0; b < 48; ++b) {
            const int expected = (b == c.low_byte ? 1 << c.low_bit : 0) | (b == c.high_byte ? 1 << c.high_bit : 0);
            CHECK(static_cast<int>(planes[static_cast<std::size_t>(b)]) == expected);
        }
    }
    CHECK(cpu::plane_row_bytes(32) == 24);
    CHECK(cpu::plane_row_bytes(64) == 24);
    CHECK(cpu::plane_row_bytes(96) == 48);
}

TEST_CASE("the plane layout uses every bit of a chunk once, and every code round-trips", "[kernels][cpu][prepared]") {
    std::set<int> bits;
    for (Index j = 0; j < 64; ++j) {
        const cpu::PlaneSlot s = cpu::plane_slot(j);
        bits.insert(static_cast<int>(8 * s.low_byte + s.low_bit));
        bits.insert(static_cast<int>(8 * s.low_byte + s.low_bit + 1));
        bits.insert(static_cast<int>(8 * s.high_byte + s.high_bit));
        CHECK(s.low_bit % 2 == 0);
        CHECK(s.low_byte < 16);
        CHECK(s.high_byte >= 16);
    }
    CHECK(bits.size() == 192);
    CHECK(*bits.begin() == 0);
    CHECK(*bits.rbegin() == 191);

    std::uint64_t seed = 70;
    for (const Index cols : {32, 64, 96, 480, 4096}) {
        const QuantizedMatrix w = npft_test::random_quantized(Format::uniform_asymmetric, 3, 3, cols, 32, ++seed);
        const cpu::PreparedMatrix prepared(w);
        REQUIRE(prepared.has_planes());
        REQUIRE(prepared.plane_row_bytes() == cpu::plane_row_bytes(cols));
        for (Index r = 0; r < w.rows(); ++r) {
            const std::uint8_t* row = prepared.planes().data() + r * prepared.plane_row_bytes();
            Index mismatches = 0;
            for (Index j = 0; j < cols; ++j) mismatches += cpu::plane_code(row, j) != w.codes().get(r, j);
            CHECK(mismatches == 0);
            // The padding of a half chunk holds zero codes.
            for (Index j = cols; j < prepared.plane_row_bytes() / 24 * 64; ++j) CHECK(cpu::plane_code(row, j) == 0u);
        }
    }
    // Other widths have no kernel layout.
    CHECK_FALSE(cpu::PreparedMatrix(npft_test::random_quantized(Format::uniform_symmetric, 4, 3, 64, 32, 1)).has_planes());
    CHECK_FALSE(cpu::PreparedMatrix(npft_test::random_quantized(Format::uniform_symmetric, 2, 3, 64, 32, 1)).has_planes());
}

TEST_CASE("the plane decoder gives the storage decoder's bytes on every chunk", "[kernels][cpu][prepared]") {
#if NPFT_CPU_X86
    if (!cpu::path_supported(cpu::Path::avx2)) {
        WARN("no AVX2 on this CPU: the plane decoder is not run (SKIPPED)");
        return;
    }
    const QuantizedMatrix w = npft_test::random_quantized(Format::uniform_symmetric, 3, 4, 1024, 1024, 81);
    const cpu::PreparedMatrix prepared(w);
    for (Index r = 0; r < w.rows() - 1; ++r)  // the last row: the storage decoder would read past the matrix
        for (Index c = 0; c < w.cols() / 64; ++c) {
            std::uint8_t from_stored[64], from_planes[64];
            decode_both(reinterpret_cast<const std::uint8_t*>(w.codes().row_words(r)) + 24 * c,
                        prepared.planes().data() + r * prepared.plane_row_bytes() + 24 * c, from_stored, from_planes);
            INFO("row " << r << " chunk " << c);
            CHECK(std::memcmp(from_stored, from_planes, 64) == 0);
            for (Index j = 0; j < 64; ++j)  // and both are the codes, in int8_stored_at order
                CHECK(from_planes[cpu::int8_stored_at(j, 3)] == w.codes().get(r, 64 * c + j));
        }
#else
    WARN("not an x86 build: the plane decoder is not run (SKIPPED)");
#endif
}

TEST_CASE("a prepared matrix gives the stored matrix's bits on every path, batch and thread count", "[kernels][cpu][prepared]") {
    struct Shape {
        Index rows, cols, group;
    };
    // 23 rows: tiles of 4 plus a tail; 480 = 15 blocks: a half chunk at the end; group 32 and 160: per-chunk scales;
    // 5 x 32: one-block rows; group = cols: per channel.
    const Shape shapes[] = {{23, 256, 128}, {23, 256, 32}, {9, 256, 256}, {23, 480, 160}, {5, 32, 32}, {7, 4096, 128}};
    std::vector<cpu::Path> paths = {cpu::Path::portable};
    for (const cpu::Path p : {cpu::Path::avx2, cpu::Path::avx512})
        if (cpu::path_supported(p)) paths.push_back(p);
        else WARN("path " << cpu::path_name(p) << " not supported on this CPU (SKIPPED)");
    std::uint64_t seed = 90;
    Index compared = 0;
    for (const Format format : {Format::uniform_symmetric, Format::uniform_asymmetric, Format::lut})
        for (const Shape& s : shapes) {
            const QuantizedMatrix w =
                npft_test::random_quantized(format, 3, s.rows, s.cols, format == Format::lut ? s.cols : s.group, ++seed);
            const cpu::PreparedMatrix prepared(w);
            for (const Index batch : {1, 2, 5, 9}) {
                const Matrix x = npft_test::gaussian_matrix(batch, s.cols, seed, npft::make_stream(3));
                const MatrixView<const float> xv(npft::as_matrix_view(x));
                for (const cpu::Path path : paths)
                    for (const cpu::Activations activations : {cpu::Activations::int8, cpu::Activations::fp32})
                        for (const int threads : {1, 2}) {
                            INFO("format " << static_cast<int>(format) << ", " << s.rows << " x " << s.cols << " group "
                                           << s.group << ", batch " << batch << ", path " << cpu::path_name(path)
                                           << ", threads " << threads);
                            const cpu::MultiplyOptions options{threads, path, activations};
                            const Matrix stored = cpu::multiply(w, xv, options);
                            CHECK(same_bits(cpu::multiply(prepared, xv, options), stored));
                            ++compared;
                        }
            }
        }
    CHECK(compared > 0);
}

TEST_CASE("a prepared matrix checks its input like multiply does", "[kernels][cpu][prepared]") {
    const cpu::PreparedMatrix prepared(npft_test::random_quantized(Format::uniform_symmetric, 3, 5, 64, 32, 3));
    const Matrix x = npft_test::gaussian_matrix(2, 96, 1);
    CHECK_THROWS_WITH(cpu::multiply(prepared, MatrixView<const float>(npft::as_matrix_view(x))),
                      Catch::Contains("x must have 64 columns"));
}
