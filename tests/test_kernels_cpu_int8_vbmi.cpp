// The AVX-512 VBMI + VNNI small-batch kernel (int8_vbmi.hpp): its decoder controls stay inside a quadword, its decoder
// gives the AVX2 decoder's bytes on every chunk of every width (2, 3, 4), and the kernel gives the AVX2 kernel's bits
// for every covered format (uniform 3 and 4-bit), batches 1-7 and 1 or 2 threads. Its accuracy against a reference follows from that and from
// test_kernels_cpu_int8.cpp (which runs the best path: this kernel where the CPU has VBMI and VNNI). On CPUs without
// them the run-time parts print SKIPPED.
#include <catch2/catch.hpp>

#include <cstring>
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

bool vbmi_available() {
    if (cpu::cpu_features().has_avx512_vbmi_vnni()) return true;
    WARN("this CPU lacks AVX-512 VBMI or VNNI: the VBMI kernel is not run (SKIPPED)");
    return false;
}

bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}

#if NPFT_CPU_X86
template <int Bits>
void check_controls() {
    const cpu::int8_vbmi::Decoder<Bits> d{};
    for (int o = 0; o < 64; ++o) {
        INFO(Bits << "-bit output byte " << o);
        CHECK(d.shift[o] + Bits <= 64);  // vpmultishiftqb wraps around the quadword beyond
        CHECK(d.gather[o] < 64);
    }
}

template <int Bits>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,avx2,fma,f16c"))) void decode_both(
    const std::uint8_t* chunk, std::uint8_t* from_vbmi, std::uint8_t* from_avx2) {
    _mm512_storeu_si512(from_vbmi, cpu::int8_vbmi::Decoder<Bits>{}.decode(chunk));
    __m256i v0, v1;
    cpu::int8::ChunkDecoder<Bits>{}.decode(chunk, v0, v1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(from_avx2), v0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(from_avx2 + 32), v1);
}

template <int Bits>
void check_decoder() {
    const QuantizedMatrix w = npft_test::random_quantized(Format::uniform_symmetric, Bits, 3, 2048, 2048, 40 + Bits);
    for (Index r = 0; r < w.rows() - 1; ++r)  // the AVX2 decoder may read past the last row's end
        for (Index c = 0; c < w.cols() / 64; ++c) {
            std::uint8_t from_vbmi[64], from_avx2[64];
            decode_both<Bits>(reinterpret_cast<const std::uint8_t*>(w.codes().row_words(r)) + 8 * Bits * c, from_vbmi, from_avx2);
            INFO(Bits << "-bit row " << r << " chunk " << c);
            CHECK(std::memcmp(from_vbmi, from_avx2, 64) == 0);
            Index wrong = 0;  // and both are the codes in int8_stored_at order
            for (Index j = 0; j < 64; ++j) wrong += from_vbmi[cpu::int8_stored_at(j, Bits)] != w.codes().get(r, 64 * c + j);
            CHECK(wrong == 0);
        }
}
#endif

}  // namespace

TEST_CASE("the VBMI decoder controls stay inside a quadword", "[kernels][cpu][int8][vbmi]") {
#if NPFT_CPU_X86
    check_controls<2>();
    check_controls<3>();
    check_controls<4>();
    // 3-bit by hand: output quadword 0 = codes 0-7 of block 0 = stream bits 0..23, taken from chunk bytes 0..7.
    const cpu::int8_vbmi::Decoder<3> d{};
    for (int i = 0; i < 8; ++i) {
        CHECK(d.gather[i] == i);
        CHECK(d.shift[i] == 3 * i);
    }
    // Output quadword 2 = codes 0-7 of block 1 (bits 96..119): bytes 12..19. Quadword 5 = codes 24..31 of block 0.
    CHECK(d.gather[16] == 12);
    CHECK(d.shift[17] == 3);
    CHECK(d.gather[40] == 9);
    CHECK(d.shift[41] == 3);
#else
    WARN("not an x86 build (SKIPPED)");
#endif
}

TEST_CASE("the VBMI decoder gives the AVX2 decoder's bytes on every chunk", "[kernels][cpu][int8][vbmi]") {
#if NPFT_CPU_X86
    if (!vbmi_available()) return;
    check_decoder<2>();
    check_decoder<3>();
    check_decoder<4>();
#endif
}

TEST_CASE("the VBMI kernel gives the AVX2 kernel's bits, batches 1-7, 1 and 2 threads", "[kernels][cpu][int8][vbmi]") {
    if (!vbmi_available()) return;
    struct Shape {
        Index rows, cols, group;
    };
    // 23 rows: 4 row streams plus a tail; 480 = 15 blocks: a half chunk at the end; groups of 32 and 160: per-chunk
    // scales; 5 x 32: one-block rows; 1 row: only the padded last row; per channel.
    const Shape shapes[] = {{23, 256, 128}, {23, 256, 32}, {9, 256, 256}, {23, 480, 160}, {5, 32, 32}, {1, 96, 32}, {37, 1024, 128}};
    std::uint64_t seed = 300;
    for (const int bits : {3, 4})
        for (const Format format : {Format::uniform_symmetric, Format::uniform_asymmetric})
            for (const Shape& s : shapes) {
                const QuantizedMatrix w = npft_test::random_quantized(format, bits, s.rows, s.cols, s.group, ++seed);
                REQUIRE(cpu::int8_vbmi_applies(w));
                for (const Index batch : {1, 2, 3, 4, 7}) {
                    const Matrix x = npft_test::gaussian_matrix(batch, s.cols, seed, npft::make_stream(3));
                    const MatrixView<const float> xv(npft::as_matrix_view(x));
                    const Matrix avx2 = cpu::multiply(w, xv, {1, cpu::Path::avx2});
                    INFO(bits << "-bit format " << static_cast<int>(format) << " " << s.rows << " x " << s.cols << " group "
                                << s.group << " batch " << batch);
                    CHECK(same_bits(cpu::multiply(w, xv, {1, cpu::Path::avx512}), avx2));
                    CHECK(same_bits(cpu::multiply(w, xv, {2, cpu::Path::avx512}), avx2));
                    CHECK(same_bits(cpu::multiply(w, xv, {2, cpu::Path::best}), avx2));
                }
            }
    // LUT rows and 2-bit codes stay on the AVX2 kernel (measured faster there: int8_vbmi.hpp).
    CHECK_FALSE(cpu::int8_vbmi_applies(npft_test::random_quantized(Format::lut, 4, 3, 64, 64, 1)));
    CHECK_FALSE(cpu::int8_vbmi_applies(npft_test::random_quantized(Format::uniform_asymmetric, 2, 3, 64, 32, 1)));
}
