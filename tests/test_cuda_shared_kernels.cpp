// Host emulation of the CUDA kernels' index math (kernels/cuda/index_math.cuh): for a few tiles, every thread's reads
// of packed words, fragment elements and output writes are replayed with the same functions the kernels call, and the
// result is compared with a reference product built from QuantizedMatrix::dequantize_at. Coverage is checked too:
// every word read once, every output written once.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <npft/kernels/cuda/dequant.cuh>
#include <npft/kernels/cuda/index_math.cuh>
#include <npft/kernels/cuda/tiled_conversion.cuh>
#include <npft/npft.hpp>
#include <vector>

#include "cuda/random_quantized.hpp"

using Index = npft::Index;
using npft::quant::Format;
namespace nc = npft::cuda;

namespace {

/// Activations x[m][k] in [-1, 1), rounded to the activation type T (as the GPU sees them).
template <class T>
std::vector<float> random_activations(Index batch, Index cols, std::uint64_t seed) {
    std::vector<float> x(static_cast<std::size_t>(batch * cols));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(T(npft::uniform({seed, 3}, i, -1.0f, 1.0f)));
    return x;
}

/// Reference y[m][n] = sum_k w(n, k) x[m][k] in double; w optionally rounded to T (the tensor-core path's operand).
template <class T>
std::vector<double> reference(const npft::quant::QuantizedMatrix& q, const std::vector<float>& x, Index batch, bool round_w,
                              std::vector<double>* magnitude) {
    std::vector<double> y(static_cast<std::size_t>(batch * q.rows()), 0.0);
    if (magnitude) magnitude->assign(y.size(), 0.0);
    for (Index m = 0; m < batch; ++m)
        for (Index n = 0; n < q.rows(); ++n) {
            double sum = 0.0, abs_sum = 0.0;
            for (Index k = 0; k < q.cols(); ++k) {
                float w = q.dequantize_at(n, k);
                if (round_w) w = static_cast<float>(T(w));
                const double term = static_cast<double>(w) * x[static_cast<std::size_t>(m * q.cols() + k)];
                sum += term;
                abs_sum += std::abs(term);
            }
            y[static_cast<std::size_t>(m * q.rows() + n)] = sum;
            if (magnitude) (*magnitude)[static_cast<std::size_t>(m * q.rows() + n)] = abs_sum;
        }
    return y;
}

}  // namespace

TEST_CASE("mma.m16n8k16 fragment coordinates match the PTX ISA figures", "[cuda][mma]") {
    // Hand-read from the PTX ISA "Matrix fragments for mma.m16n8k16 with floating point type": groupID = lane / 4,
    // threadID_in_group = lane % 4. Lane 5: group 1, thread 1.
    CHECK(nc::mma_a_coord(0, 0).row == 0);
    CHECK(nc::mma_a_coord(0, 0).col == 0);
    CHECK(nc::mma_a_coord(5, 0).row == 1);
    CHECK(nc::mma_a_coord(5, 0).col == 2);
    CHECK(nc::mma_a_coord(5, 3).row == 9);   // a3 = second half of register a1: row group + 8
    CHECK(nc::mma_a_coord(5, 3).col == 3);
    CHECK(nc::mma_a_coord(5, 4).row == 1);   // register a2: columns + 8
    CHECK(nc::mma_a_coord(5, 4).col == 10);
    CHECK(nc::mma_a_coord(31, 7).row == 15);
    CHECK(nc::mma_a_coord(31, 7).col == 15);
    CHECK(nc::mma_b_coord(5, 0).row == 2);   // b: row = k, col = n = group
    CHECK(nc::mma_b_coord(5, 0).col == 1);
    CHECK(nc::mma_b_coord(5, 3).row == 11);
    CHECK(nc::mma_b_coord(5, 3).col == 1);
    CHECK(nc::mma_c_coord(5, 1).row == 1);
    CHECK(nc::mma_c_coord(5, 1).col == 3);
    CHECK(nc::mma_c_coord(5, 2).row == 9);
    CHECK(nc::mma_c_coord(5, 2).col == 2);

    // Each fragment is a bijection from (lane, element) onto its matrix.
    std::vector<int> a(16 * 16, 0), b(16 * 8, 0), c(16 * 8, 0);
    for (int lane = 0; lane < 32; ++lane) {
        for (int i = 0; i < 8; ++i) ++a[static_cast<std::size_t>(nc::mma_a_coord(lane, i).row * 16 + nc::mma_a_coord(lane, i).col)];
        for (int i = 0; i < 4; ++i) {
            ++b[static_cast<std::size_t>(nc::mma_b_coord(lane, i).row * 8 + nc::mma_b_coord(lane, i).col)];
            ++c[static_cast<std::size_t>(nc::mma_c_coord(lane, i).row * 8 + nc::mma_c_coord(lane, i).col)];
        }
        // The kernels load elements 2r and 2r+1 as one 32-bit word: they must be adjacent along k.
        for (int r = 0; r < 4; ++r) {
            CHECK(nc::mma_a_coord(lane, 2 * r + 1).row == nc::mma_a_coord(lane, 2 * r).row);
            CHECK(nc::mma_a_coord(lane, 2 * r + 1).col == nc::mma_a_coord(lane, 2 * r).col + 1);
        }
        for (int r = 0; r < 2; ++r) {
            CHECK(nc::mma_b_coord(lane, 2 * r + 1).col == nc::mma_b_coord(lane, 2 * r).col);
            CHECK(nc::mma_b_coord(lane, 2 * r + 1).row == nc::mma_b_coord(lane, 2 * r).row + 1);
        }
    }
    for (int v : a) CHECK(v == 1);
    for (int v : b) CHECK(v == 1);
    for (int v : c) CHECK(v == 1);
}

namespace {

/// Replays gemv_kernel<Bits, Lut, Batch> for every block: reads (Tile::unroll packing blocks per step), decode,
/// per-warp partial sums, the block reduction, and with per_split > 0 the split-K partials (grid.y = split) and
/// their reduction.
template <int Bits, bool Lut, class Tile>
void emulate_gemv(const npft::quant::QuantizedMatrix& q, Index batch, Index per_split = 0) {
    const auto t = nc::to_tiled(q);
    const nc::TiledView v = nc::view_of(t);
    const auto x = random_activations<npft::half>(batch, q.cols(), 5);
    std::vector<double> magnitude;
    const auto expected = reference<npft::half>(q, x, batch, false, &magnitude);
    std::vector<float> y(expected.size(), 0.0f);
    std::vector<int> writes(expected.size(), 0);
    std::vector<int> word_reads(t.codes.size(), 0);

    const Index grid = nc::gemv_blocks<Tile>(t.shape);
    CHECK(grid * Tile::rows == t.shape.padded_rows);
    const Index splits = per_split > 0 ? (t.shape.blocks + per_split - 1) / per_split : 1;
    std::vector<float> partials(static_cast<std::size_t>(splits * batch * q.rows()), 0.0f);
    std::vector<int> partial_writes(partials.size(), 0);
    for (Index b = 0; b < splits * grid; ++b) {
        const Index split = b / grid, block = b % grid;
        const nc::KRange range = per_split > 0 ? nc::split_k_range(t.shape.blocks, per_split, split)
                                               : nc::KRange{0, t.shape.blocks};
        std::vector<float> partial(static_cast<std::size_t>(Tile::warps * batch * nc::warp_size), 0.0f);
        for (int warp = 0; warp < Tile::warps; ++warp)
            for (int lane = 0; lane < nc::warp_size; ++lane) {
                const Index row = nc::gemv_row(block, lane);
                // Step i requests packing blocks i .. i + unroll - 1 of the warp; it runs while the first is in range.
                for (Index i = 0; range.begin + nc::gemv_packing_block(warp, Tile::warps, i) < range.end; i += Tile::unroll)
                    for (int u = 0; u < Tile::unroll; ++u) {
                        const Index kb = range.begin + nc::gemv_packing_block(warp, Tile::warps, i + u);
                        if (kb >= range.end) break;
                        std::uint32_t words[Bits];
                        nc::load_block_words<Bits>(v, kb, row, words);
                        for (int w = 0; w < Bits; ++w) ++word_reads[static_cast<std::size_t>(nc::tiled_word_index(t.shape, kb, w, row))];
                        nc::AffineParams params;
                        if constexpr (!Lut) params = nc::affine_params(v, kb, row);
                        for (int j = 0; j < 32; ++j) {
                            const Index k = kb * 32 + j;
                            if (k >= q.cols()) break;
                            const std::uint32_t code = npft::quant::unpack_code(words, j, Bits);
                            const float weight = Lut ? nc::decode_lut(v, row, code) : nc::decode_uniform(code, params);
                            for (Index m = 0; m < batch; ++m)
                                partial[static_cast<std::size_t>((warp * batch + m) * nc::warp_size + lane)] +=
                                    weight * x[static_cast<std::size_t>(m * q.cols() + k)];
                        }
                    }
            }
        for (Index m = 0; m < batch; ++m)
            for (int lane = 0; lane < nc::warp_size; ++lane) {
                const Index row = nc::gemv_row(block, lane);
                if (row >= q.rows()) continue;
                float sum = 0.0f;
                for (int warp = 0; warp < Tile::warps; ++warp)
                    sum += partial[static_cast<std::size_t>((warp * batch + m) * nc::warp_size + lane)];
                if (splits > 1) {
                    const Index at = nc::split_k_partial_index(split, m, row, batch, q.rows());
                    partials[static_cast<std::size_t>(at)] = sum;
                    ++partial_writes[static_cast<std::size_t>(at)];
                    continue;
                }
                y[static_cast<std::size_t>(m * q.rows() + row)] = sum;
                ++writes[static_cast<std::size_t>(m * q.rows() + row)];
            }
    }
    if (splits > 1) {  // split_k_reduce_kernel: one thread per output adds the splits in order
        for (int w : partial_writes) CHECK(w == 1);
        for (Index m = 0; m < batch; ++m)
            for (Index n = 0; n < q.rows(); ++n) {
                float sum = 0.0f;
                for (Index split = 0; split < splits; ++split)
                    sum += partials[static_cast<std::size_t>(nc::split_k_partial_index(split, m, n, batch, q.rows()))];
                y[static_cast<std::size_t>(m * q.rows() + n)] = sum;
                ++writes[static_cast<std::size_t>(m * q.rows() + n)];
            }
    }
    for (int r : word_reads) CHECK(r == 1);  // every word of the layout, padding included, read exactly once
    for (std::size_t i = 0; i < y.size(); ++i) {
        CHECK(writes[i] == 1);
        CHECK(std::abs(y[i] - expected[i]) <= 1e-5 * magnitude[i] + 1e-7);
    }
}

/// Replays gemm_mma_kernel for one block tile: cp.async chunk maps, decode assignment, fragment gathers, the mma
/// (computed from the gathered registers through the fragment maps) and the epilogue writes. With per_split > 0 it
/// replays every split block of the tile (grid.z) over its K range and adds their fp32 tiles in split order, as
/// split_k_reduce_kernel does; coverage then also checks that the splits read every packing block once.
template <int Bits, bool Lut, class T, class Tile>
void emulate_gemm_block(const npft::quant::QuantizedMatrix& q, Index batch, Index block_x, Index block_y,
                        Index per_split = 0) {
    const auto t = nc::to_tiled(q);
    const nc::TiledView v = nc::view_of(t);
    const auto x = random_activations<T>(batch, q.cols(), 9);
    std::vector<double> magnitude;
    const auto expected = reference<T>(q, x, batch, true, &magnitude);
    constexpr int bm = Tile::block_m, bn = Tile::block_n, bk = Tile::block_k, stride = Tile::smem_stride;
    const Index m0 = block_y * bm, n0 = block_x * bn;

    const Index splits = per_split > 0 ? (t.shape.blocks + per_split - 1) / per_split : 1;
    std::vector<float> total(static_cast<std::size_t>(bm * bn), 0.0f);  // the tile after the split-K reduction
    std::vector<int> block_visits(static_cast<std::size_t>(t.shape.blocks), 0);
    for (Index split = 0; split < splits; ++split) {
        const nc::KRange range = per_split > 0 ? nc::split_k_range(t.shape.blocks, per_split, split) : nc::KRange{0, t.shape.blocks};
        std::vector<float> acc(static_cast<std::size_t>(bm * bn), 0.0f);  // (m, n) of the block tile, summed via fragments
        for (Index kb = range.begin; kb < range.end; ++kb) {
            ++block_visits[static_cast<std::size_t>(kb)];
            std::vector<float> x_tile(static_cast<std::size_t>(bm * stride), 0.0f);
            std::vector<int> x_written(static_cast<std::size_t>(bm * bk), 0);
            for (int thread = 0; thread < Tile::threads; ++thread)
                for (int c = thread; c < bm * 4; c += Tile::threads) {
                    const nc::FragmentCoord at = nc::gemm_x_chunk(c);
                    const Index m = m0 + at.row, k = kb * bk + at.col;
                    const bool inside = m < batch && k < q.cols();
                    for (int e = 0; e < 8; ++e) {
                        x_tile[static_cast<std::size_t>(at.row * stride + at.col + e)] =
                            inside ? x[static_cast<std::size_t>(m * q.cols() + k + e)] : 0.0f;
                        ++x_written[static_cast<std::size_t>(at.row * bk + at.col + e)];
                    }
                }
            for (int w : x_written) REQUIRE(w == 1);

            std::vector<std::uint32_t> packed(static_cast<std::size_t>(Bits * bn), 0u);
            std::vector<int> packed_written(packed.size(), 0);
            for (int thread = 0; thread < Tile::threads; ++thread)
                for (int c = thread; c < Bits * bn / 4; c += Tile::threads) {
                    const nc::FragmentCoord at = nc::gemm_w_chunk<Tile>(c);
                    for (int e = 0; e < 4; ++e) {
                        packed[static_cast<std::size_t>(at.row * bn + at.col + e)] =
                            t.codes[static_cast<std::size_t>(nc::tiled_word_index(t.shape, kb, at.row, n0 + at.col) + e)];
                        ++packed_written[static_cast<std::size_t>(at.row * bn + at.col + e)];
                    }
                }
            for (int w : packed_written) REQUIRE(w == 1);

            std::vector<float> w_tile(static_cast<std::size_t>(bn * stride), 0.0f);  // values already rounded to T
            std::vector<int> w_written(static_cast<std::size_t>(bn * bk), 0);
            for (int thread = 0; thread < Tile::threads; ++thread) {
                const nc::FragmentCoord d = nc::gemm_decode_assignment<Tile>(thread);
                std::uint32_t words[Bits];
                for (int p = 0; p < Bits; ++p) words[p] = packed[static_cast<std::size_t>(p * bn + d.row)];
                nc::AffineParams params;
                if constexpr (!Lut) params = nc::affine_params(v, kb, n0 + d.row);
                for (int j = 0; j < Tile::decode_codes; ++j) {
                    const std::uint32_t code = npft::quant::unpack_code(words, d.col + j, Bits);
                    const float value = Lut ? nc::decode_lut(v, n0 + d.row, code) : nc::decode_uniform(code, params);
                    w_tile[static_cast<std::size_t>(d.row * stride + d.col + j)] = static_cast<float>(T(value));
                    ++w_written[static_cast<std::size_t>(d.row * bk + d.col + j)];
                }
            }
            for (int w : w_written) REQUIRE(w == 1);

            for (int warp = 0; warp < Tile::threads / nc::warp_size; ++warp) {
                const nc::FragmentCoord origin = nc::gemm_warp_origin<Tile>(warp);
                for (int ks = 0; ks < bk; ks += 16)
                    for (int fm = 0; fm < Tile::frags_m; ++fm)
                        for (int fn = 0; fn < Tile::frags_n; ++fn) {
                            // Registers as the kernel gathers them, then the mma semantics through the fragment maps.
                            float a[16][16] = {}, b[16][8] = {};
                            for (int lane = 0; lane < 32; ++lane) {
                                for (int i = 0; i < 8; ++i) {
                                    const nc::FragmentCoord at = nc::mma_a_coord(lane, i);
                                    a[at.row][at.col] =
                                        x_tile[static_cast<std::size_t>((origin.row + fm * 16 + at.row) * stride + ks + at.col)];
                                }
                                for (int i = 0; i < 4; ++i) {
                                    const nc::FragmentCoord at = nc::mma_b_coord(lane, i);
                                    b[at.row][at.col] =
                                        w_tile[static_cast<std::size_t>((origin.col + fn * 8 + at.col) * stride + ks + at.row)];
                                }
                            }
                            for (int lane = 0; lane < 32; ++lane)
                                for (int i = 0; i < 4; ++i) {
                                    const nc::FragmentCoord at = nc::mma_c_coord(lane, i);
                                    float sum = 0.0f;
                                    for (int k = 0; k < 16; ++k) sum += a[at.row][k] * b[k][at.col];
                                    acc[static_cast<std::size_t>((origin.row + fm * 16 + at.row) * bn + origin.col + fn * 8 + at.col)] +=
                                        sum;
                                }
                        }
            }
        }
        for (std::size_t i = 0; i < total.size(); ++i) total[i] += acc[i];
    }
    for (int visits : block_visits) CHECK(visits == 1);

    std::map<std::pair<Index, Index>, int> writes;
    for (int warp = 0; warp < Tile::threads / nc::warp_size; ++warp) {
        const nc::FragmentCoord origin = nc::gemm_warp_origin<Tile>(warp);
        for (int fm = 0; fm < Tile::frags_m; ++fm)
            for (int fn = 0; fn < Tile::frags_n; ++fn)
                for (int lane = 0; lane < 32; ++lane)
                    for (int i = 0; i < 4; ++i) {
                        const nc::FragmentCoord at = nc::mma_c_coord(lane, i);
                        const Index tm = origin.row + fm * 16 + at.row, tn = origin.col + fn * 8 + at.col;
                        const Index m = m0 + tm, n = n0 + tn;
                        if (m >= batch || n >= q.rows()) continue;
                        ++writes[{m, n}];
                        const std::size_t ref = static_cast<std::size_t>(m * q.rows() + n);
                        CHECK(std::abs(total[static_cast<std::size_t>(tm * bn + tn)] - expected[ref]) <= 1e-5 * magnitude[ref] + 1e-7);
                    }
    }
    const Index rows_in = std::min<Index>(bm, batch - m0), cols_in = std::min<Index>(bn, q.rows() - n0);
    CHECK(static_cast<Index>(writes.size()) == rows_in * cols_in);
    for (const auto& entry : writes) CHECK(entry.second == 1);
}

}  // namespace

TEST_CASE("GEMV emulation: each word read once, each output written once, sums match the reference", "[cuda][gemv]") {
    SECTION("uniform 4-bit grouped, batch 3, odd rows") {
        emulate_gemv<4, false, nc::GemvTile<8>>(npft::test::random_quantized(Format::uniform_asymmetric, 4, 70, 256, 64, 1), 3);
    }
    SECTION("uniform 3-bit symmetric per channel, batch 1, K not a multiple of 32") {
        emulate_gemv<3, false, nc::GemvTile<4>>(npft::test::random_quantized(Format::uniform_symmetric, 3, 33, 200, 200, 2), 1);
    }
    SECTION("uniform 2-bit, batch 8, more warps than packing blocks") {
        emulate_gemv<2, false, nc::GemvTile<8>>(npft::test::random_quantized(Format::uniform_asymmetric, 2, 40, 96, 32, 3), 8);
    }
    SECTION("lut 4-bit, batch 2") {
        emulate_gemv<4, true, nc::GemvTile<8>>(npft::test::random_quantized(Format::lut, 4, 64, 160, 160, 4), 2);
    }
    SECTION("split-K, batch-1 tile (unroll 4), uniform 4-bit g64: 3 splits of 4 packing blocks, the last one short") {
        emulate_gemv<4, false, nc::SingleRowGemvTile>(
            npft::test::random_quantized(Format::uniform_asymmetric, 4, 50, 320, 64, 5), 1, 4);
    }
    SECTION("split-K, small-batch tile, lut 3-bit, batch 5, K not a multiple of 32") {
        emulate_gemv<3, true, nc::SmallBatchGemvTile>(npft::test::random_quantized(Format::lut, 3, 40, 392, 392, 6), 5, 3);
    }
    SECTION("split-K with fewer packing blocks per split than warps, uniform 2-bit symmetric, batch 8") {
        emulate_gemv<2, false, nc::GemvTile<4, 3>>(
            npft::test::random_quantized(Format::uniform_symmetric, 2, 33, 512, 128, 7), 8, 3);
    }
}

TEST_CASE("tensor-core GEMM emulation: loads, decode, fragments and epilogue cover the tile once", "[cuda][gemm]") {
    using Default = nc::GemmTile<>;
    using Small = nc::GemmTile<32, 64, 2, 2, 2>;
    SECTION("default tile, uniform 4-bit g64, fp16, partial M and N tiles") {
        const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 4, 200, 128, 64, 21);
        emulate_gemm_block<4, false, npft::half, Default>(q, 70, 1, 1);  // rows 128..199 of N, batch rows 64..69
        emulate_gemm_block<4, false, npft::half, Default>(q, 70, 0, 0);
    }
    SECTION("small tile, uniform 3-bit symmetric, bf16, K not a multiple of 32") {
        const auto q = npft::test::random_quantized(Format::uniform_symmetric, 3, 100, 104, 104, 22);
        emulate_gemm_block<3, false, npft::bfloat16, Small>(q, 40, 1, 1);
    }
    SECTION("small tile, lut 3-bit, fp16") {
        const auto q = npft::test::random_quantized(Format::lut, 3, 64, 64, 64, 23);
        emulate_gemm_block<3, true, npft::half, Small>(q, 20, 0, 0);
    }
    SECTION("mid-batch tile (one warp along M), uniform 4-bit g32, fp16, batch 17") {
        const auto q = npft::test::random_quantized(Format::uniform_symmetric, 4, 130, 64, 32, 25);
        emulate_gemm_block<4, false, npft::half, nc::GemmTile<32, 128, 1, 8, 3>>(q, 17, 1, 0);
    }
    SECTION("default tile, uniform 2-bit per channel, bf16") {
        const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 2, 128, 96, 96, 24);
        emulate_gemm_block<2, false, npft::bfloat16, Default>(q, 64, 0, 0);
    }
    SECTION("split-K, mid-batch tile, uniform 3-bit per channel, fp16: 3 splits, the last one short") {
        const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 3, 130, 328, 328, 25);
        emulate_gemm_block<3, false, npft::half, nc::MidBatchTile>(q, 20, 1, 0, 4);
    }
    SECTION("split-K, small tile, lut 4-bit, bf16, one packing block per split") {
        const auto q = npft::test::random_quantized(Format::lut, 4, 64, 160, 160, 26);
        emulate_gemm_block<4, true, npft::bfloat16, Small>(q, 33, 0, 1, 1);
    }
}

TEST_CASE("split-K: the chosen splits cover K once and fill the GPU", "[cuda][splitk]") {
    auto shape = [](Index rows, Index cols) {
        nc::TiledShape s;
        s.rows = rows;
        s.cols = cols;
        s.padded_rows = nc::round_up(rows, nc::row_alignment);
        s.blocks = (cols + 31) / 32;
        return s;
    };
    auto same = [](nc::KSplit got, Index splits, Index per_split) { return got.splits == splits && got.per_split == per_split; };
    // Hand-computed on an H200 (132 SMs). Batch 1, 4096 x 4096: 128 GEMV blocks for 528 slots (4 per SM), so
    // ceil(528 / 128) = 5 splits wanted, ceil(128 / 5) = 26 packing blocks rounded up to the granule 32 (8 warps x 4):
    // 4 splits of 32.
    CHECK(same(nc::gemm_k_split(shape(4096, 4096), 1, 132), 4, 32));
    CHECK(same(nc::gemm_k_split(shape(4096, 4096), 8, 132), 4, 32));     // granule 16: 26 -> 32
    CHECK(same(nc::gemm_k_split(shape(11008, 4096), 1, 132), 1, 128));   // 344 blocks fill more than half: no split
    CHECK(same(nc::gemm_k_split(shape(4096, 11008), 1, 132), 4, 96));    // 344 packing blocks: 69 -> 96
    CHECK(same(nc::gemm_k_split(shape(13824, 5120), 1, 132), 1, 160));   // 432 blocks: no split
    CHECK(same(nc::gemm_k_split(shape(13824, 5120), 16, 132), 3, 56));   // 108 tiles, 3 wanted: 54 -> 56
    CHECK(same(nc::gemm_k_split(shape(11008, 4096), 16, 132), 4, 32));   // 86 tiles, 4 wanted
    CHECK(same(nc::gemm_k_split(shape(11008, 4096), 128, 132), 1, 128)); // 172 tiles of BlockM 64: no split
    CHECK(same(nc::gemm_k_split(shape(4096, 4096), 16, 132), 8, 16));    // 32 tiles for 264 slots: 9 wanted, 15 -> 16
    CHECK(same(nc::gemm_k_split(shape(4096, 4096), 128, 132), 4, 32));   // 64 tiles: 5 wanted, 26 -> 32 (granule 8)
    CHECK(same(nc::gemm_k_split(shape(256, 8192), 1, 132), 8, 32));      // 8 GEMV blocks: 66 wanted, capped by the granule
    CHECK(same(nc::gemm_k_split(shape(32768, 4096), 1, 132), 1, 128));   // 1024 blocks fill the GPU: no split
    CHECK(same(nc::gemm_k_split(shape(4096, 32), 1, 132), 1, 1));        // one packing block: nothing to split

    // Properties on random problems: a split only when the tiles leave half the slots idle; every split a non-empty
    // whole number of granules (the last possibly shorter); the ranges tile [0, blocks) in order.
    for (std::uint64_t seed = 0; seed < 2000; ++seed) {
        const auto r = npft::random_words({91, seed}, 0);
        const Index tiles = 1 + r[0] % 600, blocks = 1 + r[1] % 700, slots = 1 + r[2] % 1100, granule = 1 + r[3] % 40;
        const nc::KSplit split = nc::choose_k_split(tiles, blocks, slots, granule);
        INFO("tiles " << tiles << " blocks " << blocks << " slots " << slots << " granule " << granule);
        REQUIRE(split.splits >= 1);
        if (2 * tiles > slots) CHECK(split.splits == 1);
        if (split.splits == 1) {
            CHECK(split.per_split == blocks);
            continue;
        }
        CHECK(split.per_split % granule == 0);
        CHECK(split.splits * tiles < slots + tiles);  // no more splits than the slots ask for
        Index next = 0;
        for (Index s = 0; s < split.splits; ++s) {
            const nc::KRange range = nc::split_k_range(blocks, split.per_split, s);
            CHECK(range.begin == next);
            CHECK(range.end > range.begin);
            next = range.end;
        }
        CHECK(next == blocks);
        CHECK(nc::split_k_workspace_floats(split, 3, 10) == split.splits * 30);
    }
    // Partials are [split][batch][N]: a bijection onto 0 .. splits * batch * N - 1.
    std::vector<int> seen(3 * 4 * 5, 0);
    for (Index s = 0; s < 3; ++s)
        for (Index m = 0; m < 4; ++m)
            for (Index n = 0; n < 5; ++n) ++seen[static_cast<std::size_t>(nc::split_k_partial_index(s, m, n, 4, 5))];
    for (int v : seen) CHECK(v == 1);
}

TEST_CASE("tile policies derive consistent shapes", "[cuda][gemm]") {
    using Tile = nc::GemmTile<>;
    STATIC_REQUIRE(Tile::threads == 256);
    STATIC_REQUIRE(Tile::frags_m * 16 * Tile::warps_m == Tile::block_m);
    STATIC_REQUIRE(Tile::frags_n * 8 * Tile::warps_n == Tile::block_n);
    STATIC_REQUIRE(Tile::decode_parts * Tile::decode_codes == Tile::block_k);
    STATIC_REQUIRE(nc::row_alignment % Tile::block_n == 0);
    // Fragment loads read 32-bit words: the padded shared row must keep them 4-byte aligned (and rows 16-byte aligned).
    STATIC_REQUIRE((Tile::smem_stride * 2) % 16 == 0);
    for (int thread = 0; thread < Tile::threads; ++thread) {
        const auto d = nc::gemm_decode_assignment<Tile>(thread);
        CHECK(d.row < Tile::block_n);
        CHECK(d.col % 8 == 0);  // 16-byte stores of 8 decoded values
    }
}
