#pragma once
// The optional int8-activation path (as llama.cpp does): activations are quantized once per call to int8 in blocks
// of 32 with one fp32 scale per block, and the 4-bit weight dot products run in integers (vpmaddubsw: 32 products per
// instruction instead of 8 FMAs). It costs accuracy: each activation moves by up to half its block's step, max|x|/254
// (docs/benchmarks.md gives the measured error). Used for uniform 4-bit matrices with group sizes that are multiples of
// 32 when MultiplyOptions::activations is int8 and the CPU has AVX2; every other case runs the fp32 kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/eigen.hpp"
#include "cpu_features.hpp"
#include "problem.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Activations quantized to int8 in blocks of 32: x[m][j] ~ scales[m][j / 32] * value of j.
/// Within a block, values are stored in the 4-bit kernel's order: codes 0, 2, ..., 30 then 1, 3, ..., 31 (the low and
/// the high nibbles of the block's 16 bytes), so that the kernel never shuffles weights.
struct Int8Activations {
    static constexpr index block = 32;
    index batch = 0;
    index cols = 0;                    ///< K, a multiple of 32
    std::vector<std::int8_t> values;   ///< [batch][cols], nibble order within each block
    std::vector<float> scales;         ///< [batch][cols / 32]
    std::vector<float> block_sums;     ///< [batch][cols / 32]: scale * sum of the block's int8 values (zero-point term)

    /// Position of activation j within its block's storage.
    static index stored_at(index j) {
        const index i = j % block;
        return j - i + (i % 2 == 0 ? i / 2 : block / 2 + i / 2);
    }
    /// The dequantized activations in natural order (for tests and error measurements).
    Matrix dequantize() const {
        Matrix x(batch, cols);
        for (index m = 0; m < batch; ++m)
            for (index j = 0; j < cols; ++j)
                x(m, j) = scales[static_cast<std::size_t>(m * (cols / block) + j / block)] *
                          static_cast<float>(values[static_cast<std::size_t>(m * cols + stored_at(j))]);
        return x;
    }
};

/// Quantizes x (batch rows of `cols` contiguous floats, row m at x + m * row_stride): round to nearest of x / d with
/// d = max|x| / 127 per block (d = 0 for an all-zero block).
inline Int8Activations quantize_activations_int8(const float* x, index row_stride, index batch, index cols) {
    require(cols % Int8Activations::block == 0, "int8 activations need a multiple of 32 inputs, got ", cols);
    Int8Activations a;
    a.batch = batch;
    a.cols = cols;
    const index blocks = cols / Int8Activations::block;
    a.values.resize(static_cast<std::size_t>(batch * cols));
    a.scales.resize(static_cast<std::size_t>(batch * blocks));
    a.block_sums.resize(a.scales.size());
    for (index m = 0; m < batch; ++m) {
        const float* xm = x + m * row_stride;
        for (index b = 0; b < blocks; ++b) {
            const float* xb = xm + b * Int8Activations::block;
            float largest = 0.0f;
            for (index i = 0; i < Int8Activations::block; ++i) largest = std::max(largest, std::abs(xb[i]));
            const float d = largest / 127.0f;
            const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
            int sum = 0;
            for (index i = 0; i < Int8Activations::block; ++i) {
                const int q = static_cast<int>(std::nearbyint(std::clamp(xb[i] * inverse, -127.0f, 127.0f)));
                a.values[static_cast<std::size_t>(m * cols + Int8Activations::stored_at(b * Int8Activations::block + i))] =
                    static_cast<std::int8_t>(q);
                sum += q;
            }
            a.scales[static_cast<std::size_t>(m * blocks + b)] = d;
            a.block_sums[static_cast<std::size_t>(m * blocks + b)] = d * static_cast<float>(sum);
        }
    }
    return a;
}

/// Whether the int8 kernel can run w on this CPU.
inline bool int8_kernel_applies(const quant::QuantizedMatrix& w) {
    return NPFT_CPU_X86 && cpu_features().has_avx2_path() && w.is_uniform() && w.bits() == 4 && w.group_size() % 32 == 0;
}

#if NPFT_CPU_X86

namespace int8 {

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Integer dot products of one 32-code block with 32 int8 activations, as 8 int32 partial sums.
NPFT_TARGET_AVX2 inline __m256i block_dot(const std::uint8_t* codes, const std::int8_t* x) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
    // Low nibbles (codes 0, 2, ...) in the low half, high nibbles (codes 1, 3, ...) in the high half.
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    const __m256i q = _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
    // u8 x s8 pairs into s16 (at most 2 * 15 * 127, no saturation), then pairs of s16 into s32.
    const __m256i pairs = _mm256_maddubs_epi16(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/// Output rows [row_begin, row_end) for every token.
NPFT_TARGET_AVX2 inline void multiply_rows(const quant::QuantizedMatrix& w, const Int8Activations& a, MatrixView<float> y,
                                           index row_begin, index row_end) {
    const index groups = w.groups();
    const index blocks_per_group = w.group_size() / Int8Activations::block;
    const index blocks = w.cols() / Int8Activations::block;
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    for (index r = row_begin; r < row_end; ++r) {
        const auto* row = reinterpret_cast<const std::uint8_t*>(w.codes().row_words(r));
        for (index m = 0; m < a.batch; ++m) {
            const std::int8_t* xq = a.values.data() + m * a.cols;
            const float* xd = a.scales.data() + m * blocks;
            const float* xsum = a.block_sums.data() + m * blocks;
            __m256 total = _mm256_setzero_ps();
            float correction = 0.0f;
            for (index g = 0; g < groups; ++g) {
                __m256 acc0 = _mm256_setzero_ps();
                __m256 acc1 = _mm256_setzero_ps();
                float group_sum = 0.0f;
                index b = g * blocks_per_group;
                const index end = b + blocks_per_group;
                for (; b + 2 <= end; b += 2) {
                    const __m256i d0 = block_dot(row + 16 * b, xq + 32 * b);
                    const __m256i d1 = block_dot(row + 16 * (b + 1), xq + 32 * (b + 1));
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(xd[b]), acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(xd[b + 1]), acc1);
                    group_sum += xsum[b] + xsum[b + 1];
                }
                if (b < end) {
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(row + 16 * b, xq + 32 * b)), _mm256_set1_ps(xd[b]), acc0);
                    group_sum += xsum[b];
                }
                const std::size_t at = static_cast<std::size_t>(r * groups + g);
                const float scale = _cvtsh_ss(w.scales()[at].bits);
                const float zero = asymmetric ? _cvtsh_ss(w.zeros()[at].bits) : 8.0f;
                total = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_add_ps(acc0, acc1), total);
                correction += scale * zero * group_sum;
            }
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            y(m, r) = _mm_cvtss_f32(s) - correction;
        }
    }
}

#undef NPFT_TARGET_AVX2

}  // namespace int8

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
