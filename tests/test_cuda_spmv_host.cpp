// Host side of the outlier SpMV (kernels/cuda/spmv_coo.cuh) and a CPU emulation of spmv_kernel: the COO row index, the
// nnz-balanced tiles, the grid's batch striding and the segmented-sum scan are replayed block by block, thread by
// thread, with the functions the kernel calls, and compared with a scalar CSR product. Values and activations are small
// integers, so every fp32 sum is exact and the comparison is equality whatever the order of the additions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <npft/core/dtype.hpp>
#include <npft/core/error.hpp>
#include <npft/core/random.hpp>
#include <npft/kernels/cuda/spmv_coo.cuh>
#include <vector>

#include "spmv_patterns.hpp"

using Index = npft::Index;
namespace nc = npft::cuda;

namespace {

using npft_test::Csr;
using npft_test::random_csr;

/// x[m][k] integers in [-4, 4], with leading dimension ldx >= cols (the padding holds a poison value never read).
std::vector<float> random_x(Index batch, Index cols, Index ldx, std::uint64_t seed) {
    std::vector<float> x(static_cast<std::size_t>(batch * ldx), 1e30f);
    for (Index m = 0; m < batch; ++m)
        for (Index k = 0; k < cols; ++k) {
            const auto at = static_cast<std::uint64_t>(m * cols + k);
            x[static_cast<std::size_t>(m * ldx + k)] = static_cast<float>(static_cast<int>(npft::random_words({seed, 4}, at)[0] % 9) - 4);
        }
    return x;
}

/// The scalar reference: out[m][r] = sum over row r's nonzeros of value * x[m][column], in double.
std::vector<double> reference(const Csr& c, const std::vector<float>& x, Index batch, Index ldx) {
    std::vector<double> out(static_cast<std::size_t>(batch * c.rows), 0.0);
    for (Index m = 0; m < batch; ++m)
        for (Index r = 0; r < c.rows; ++r)
            for (std::int32_t k = c.row_offsets[static_cast<std::size_t>(r)]; k < c.row_offsets[static_cast<std::size_t>(r + 1)]; ++k)
                out[static_cast<std::size_t>(m * c.rows + r)] +=
                    static_cast<double>(static_cast<float>(c.values[static_cast<std::size_t>(k)])) *
                    x[static_cast<std::size_t>(m * ldx + c.columns[static_cast<std::size_t>(k)])];
    return out;
}

struct EmulationStats {
    Index nonzeros_read = 0;   ///< per batch row: nonzeros whose product was formed (padding excluded)
    Index atomics = 0;         ///< output updates over all blocks and batch rows
    Index max_block_load = 0;  ///< most nonzeros any block owns
};

/// Replays spmv_kernel<Threads, Items> for grid spmv_grid(nnz, batch, per_tile) with grid.y capped at max_grid_y
/// (the kernel strides batch rows over blockIdx.y). The block scan is emulated the way a block scan groups the work:
/// each thread reduces its items serially, thread aggregates are scanned in a Hillis-Steele tree (a bracketing unlike
/// the serial one), and each thread rescans its items seeded with its exclusive prefix.
template <int Threads, int Items>
std::vector<float> emulate(const Csr& c, const std::vector<float>& x, Index batch, Index ldx, EmulationStats& stats,
                           Index max_grid_y = nc::spmv_max_grid_y) {
    constexpr Index per_tile = Index{Threads} * Items;
    const std::vector<std::int32_t> row_of = nc::coo_rows(c.row_offsets, c.rows, c.nnz());
    std::vector<float> out(static_cast<std::size_t>(batch * c.rows), 0.0f);
    nc::SpmvGrid grid = nc::spmv_grid(c.nnz(), batch, per_tile);
    grid.batch_rows = std::min(grid.batch_rows, max_grid_y);
    if (grid.empty()) return out;
    const nc::RowSumOp op;
    for (Index by = 0; by < grid.batch_rows; ++by)
        for (Index bx = 0; bx < grid.tiles; ++bx) {
            const nc::NnzRange range = nc::spmv_tile_range(bx, c.nnz(), per_tile);
            stats.max_block_load = std::max(stats.max_block_load, range.end - range.begin);
            std::vector<std::int32_t> row(per_tile), column(per_tile);
            std::vector<float> value(per_tile);
            for (Index t = 0; t < per_tile; ++t) {  // t = thread * Items + i: the blocked arrangement
                const Index k = range.begin + t;
                const bool valid = k < range.end;
                row[static_cast<std::size_t>(t)] = valid ? row_of[static_cast<std::size_t>(k)] : nc::spmv_padding_row(c.rows);
                column[static_cast<std::size_t>(t)] = valid ? c.columns[static_cast<std::size_t>(k)] : 0;
                value[static_cast<std::size_t>(t)] = valid ? static_cast<float>(c.values[static_cast<std::size_t>(k)]) : 0.0f;
            }
            // cub::BlockDiscontinuity::FlagTails without a successor: the block's last item is always a tail.
            std::vector<bool> tail(per_tile);
            for (Index t = 0; t < per_tile; ++t)
                tail[static_cast<std::size_t>(t)] =
                    t + 1 == per_tile || nc::RowChanges{}(row[static_cast<std::size_t>(t)], row[static_cast<std::size_t>(t + 1)]);
            for (Index m = by; m < batch; m += grid.batch_rows) {
                std::vector<nc::RowSum> product(per_tile);
                for (Index t = 0; t < per_tile; ++t) {
                    const auto u = static_cast<std::size_t>(t);
                    product[u] = {row[u], value[u] * x[static_cast<std::size_t>(m * ldx + column[u])]};
                    if (range.begin + t < range.end) ++stats.nonzeros_read;
                }
                std::vector<nc::RowSum> aggregate(Threads);
                for (int th = 0; th < Threads; ++th) {
                    nc::RowSum a = product[static_cast<std::size_t>(th * Items)];
                    for (int i = 1; i < Items; ++i) a = op(a, product[static_cast<std::size_t>(th * Items + i)]);
                    aggregate[static_cast<std::size_t>(th)] = a;
                }
                for (int step = 1; step < Threads; step *= 2) {
                    std::vector<nc::RowSum> next = aggregate;
                    for (int th = step; th < Threads; ++th)
                        next[static_cast<std::size_t>(th)] = op(aggregate[static_cast<std::size_t>(th - step)], aggregate[static_cast<std::size_t>(th)]);
                    aggregate = next;
                }
                for (int th = 0; th < Threads; ++th)
                    for (int i = 0; i < Items; ++i) {
                        const auto u = static_cast<std::size_t>(th * Items + i);
                        if (i > 0) product[u] = op(product[u - 1], product[u]);
                        else if (th > 0) product[u] = op(aggregate[static_cast<std::size_t>(th - 1)], product[u]);
                    }
                for (Index t = 0; t < per_tile; ++t) {
                    const auto u = static_cast<std::size_t>(t);
                    if (tail[u] && product[u].row < c.rows) {
                        out[static_cast<std::size_t>(m * c.rows + product[u].row)] += product[u].sum;
                        ++stats.atomics;
                    }
                }
            }
        }
    return out;
}

template <int Threads, int Items>
void check_against_reference(const Csr& c, Index batch, std::uint64_t seed, Index max_grid_y = nc::spmv_max_grid_y) {
    constexpr Index per_tile = Index{Threads} * Items;
    const Index ldx = c.cols + 3;
    const std::vector<float> x = random_x(batch, c.cols, ldx, seed);
    const std::vector<double> expected = reference(c, x, batch, ldx);
    EmulationStats stats;
    const std::vector<float> got = emulate<Threads, Items>(c, x, batch, ldx, stats, max_grid_y);
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        REQUIRE(static_cast<double>(got[i]) == expected[i]);  // integer data: exact
    }
    CHECK(stats.nonzeros_read == batch * c.nnz());  // every nonzero's product formed once per batch row
    CHECK(stats.max_block_load <= per_tile);
    // Load balance: at most one update per row run in a tile, i.e. per row plus one per tile boundary.
    Index nonempty = 0;
    for (Index r = 0; r < c.rows; ++r) nonempty += c.row_offsets[static_cast<std::size_t>(r + 1)] > c.row_offsets[static_cast<std::size_t>(r)];
    CHECK(stats.atomics <= batch * (nonempty + nc::spmv_tiles(c.nnz(), per_tile) - 1 + (c.nnz() == 0)));
}

}  // namespace

TEST_CASE("coo_rows expands hand-computed CSR offsets and rejects bad ones", "[cuda][spmv]") {
    // Rows: 0 -> nonzeros {0, 1}; 1 -> empty; 2 -> {2, 3, 4}; 3 -> empty.
    CHECK(nc::coo_rows({0, 2, 2, 5, 5}, 4, 5) == std::vector<std::int32_t>{0, 0, 2, 2, 2});
    CHECK(nc::coo_rows({0, 0, 0}, 2, 0).empty());
    CHECK(nc::coo_rows({0}, 0, 0).empty());
    CHECK_THROWS_WITH(nc::coo_rows({0, 2, 5}, 3, 5), Catch::Contains("rows + 1 = 4 entries, got 3"));
    CHECK_THROWS_WITH(nc::coo_rows({0, 2, 4}, 2, 5), Catch::Contains("end at nnz = 5"));
    CHECK_THROWS_WITH(nc::coo_rows({1, 2, 5}, 2, 5), Catch::Contains("start at 0"));
    CHECK_THROWS_AS(nc::coo_rows({0, 3, 2, 5}, 3, 5), npft::Error);
    CHECK_THROWS_WITH(nc::coo_rows({0, 3, 2, 5}, 3, 5), Catch::Contains("nondecreasing, got 3 then 2 at row 1"));
}

TEST_CASE("spmv tiles hold equal nonzeros and cover each exactly once; the grid strides large batches", "[cuda][spmv]") {
    CHECK(nc::spmv_tiles(0, 1024) == 0);
    CHECK(nc::spmv_tiles(1, 1024) == 1);
    CHECK(nc::spmv_tiles(1024, 1024) == 1);
    CHECK(nc::spmv_tiles(1025, 1024) == 2);
    CHECK(nc::spmv_tile_range(1, 1025, 1024).begin == 1024);
    CHECK(nc::spmv_tile_range(1, 1025, 1024).end == 1025);
    for (const Index nnz : {Index{0}, Index{1}, Index{7}, Index{96}, Index{1000}}) {
        for (const Index per_tile : {Index{1}, Index{32}, Index{96}}) {
            std::vector<int> seen(static_cast<std::size_t>(nnz), 0);
            const Index tiles = nc::spmv_tiles(nnz, per_tile);
            for (Index t = 0; t < tiles; ++t) {
                const nc::NnzRange r = nc::spmv_tile_range(t, nnz, per_tile);
                CHECK(r.end - r.begin == (t + 1 < tiles ? per_tile : nnz - (tiles - 1) * per_tile));
                for (Index k = r.begin; k < r.end; ++k) ++seen[static_cast<std::size_t>(k)];
            }
            CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
        }
    }
    CHECK(nc::spmv_grid(0, 4, 1024).empty());
    CHECK(nc::spmv_grid(10, 0, 1024).empty());
    CHECK(nc::spmv_grid(3000, 5, 1024).tiles == 3);
    CHECK(nc::spmv_grid(3000, 5, 1024).batch_rows == 5);
    CHECK(nc::spmv_grid(3000, 70000, 1024).batch_rows == 65535);
    CHECK(nc::spmv_padding_row(7) == 7);
}

TEST_CASE("the segmented-sum operator is associative on nondecreasing rows", "[cuda][spmv]") {
    const nc::RowSumOp op;
    // Hand-computed: same row adds, a new row restarts.
    CHECK(op({3, 2.0f}, {3, 5.0f}).sum == 7.0f);
    CHECK(op({3, 2.0f}, {4, 5.0f}).sum == 5.0f);
    CHECK(op({3, 2.0f}, {4, 5.0f}).row == 4);
    for (std::uint64_t i = 0; i < 2000; ++i) {
        const auto w = npft::random_words({91, 1}, i);
        std::int32_t r[3] = {static_cast<std::int32_t>(w[0] % 3), 0, 0};
        r[1] = r[0] + static_cast<std::int32_t>(w[1] % 2);
        r[2] = r[1] + static_cast<std::int32_t>(w[2] % 2);
        const nc::RowSum a{r[0], static_cast<float>(w[3] % 11)}, b{r[1], static_cast<float>(w[3] / 11 % 11)},
            c{r[2], static_cast<float>(w[3] / 121 % 11)};
        const nc::RowSum left = op(op(a, b), c), right = op(a, op(b, c));
        CHECK(left.row == right.row);
        CHECK(left.sum == right.sum);
    }
}

TEST_CASE("spmv emulation matches the scalar CSR product: heavy row, empty rows, nnz 0, batch 1..8", "[cuda][spmv]") {
    SECTION("one row holds most outliers and spans many tiles") {
        const Csr c = random_csr(40, 48, 17, 900, 5);
        REQUIRE(c.nnz() > 900);
        for (Index batch = 1; batch <= 8; ++batch) {
            CAPTURE(batch);
            check_against_reference<32, 4>(c, batch, 100 + static_cast<std::uint64_t>(batch));
        }
        check_against_reference<256, 4>(c, 3, 7);
        check_against_reference<64, 3>(c, 2, 8);
    }
    SECTION("the only nonzeros are in the last row, after many empty rows") {
        Csr c;
        c.rows = 30;
        c.cols = 8;
        c.row_offsets.assign(30, 0);
        for (std::int32_t k = 0; k < 70; ++k) {
            c.columns.push_back(k % 8);
            c.values.push_back(npft::half(static_cast<float>(k % 5 - 2)));
        }
        c.row_offsets.push_back(70);
        check_against_reference<32, 1>(c, 4, 9);
        check_against_reference<32, 2>(c, 1, 10);
    }
    SECTION("nnz = 0 and all rows empty: nothing launched, output untouched") {
        Csr empty;
        empty.rows = 12;
        empty.cols = 16;
        empty.row_offsets.assign(13, 0);
        check_against_reference<32, 4>(empty, 5, 11);
    }
    SECTION("random patterns over seeds, batch 1..8, several tile shapes") {
        for (std::uint64_t seed = 0; seed < 12; ++seed) {
            CAPTURE(seed);
            const Index rows = 20 + static_cast<Index>(seed * 7 % 50);
            const Index heavy = seed % 4 == 0 ? Index{-1} : static_cast<Index>(seed) % rows;  // some seeds: no heavy row
            const Csr c = random_csr(rows, 40, heavy, static_cast<Index>(seed * 37 % 300), seed);
            const Index batch = 1 + static_cast<Index>(seed % 8);
            check_against_reference<32, 1>(c, batch, seed);
            check_against_reference<32, 4>(c, batch, seed + 50);
            check_against_reference<64, 3>(c, batch, seed + 90);
        }
    }
    SECTION("batch rows beyond grid.y are strided over the same blocks") {
        const Csr c = random_csr(25, 16, 4, 120, 21);
        check_against_reference<32, 2>(c, 8, 22, /*max_grid_y=*/3);
        check_against_reference<32, 2>(c, 5, 23, /*max_grid_y=*/1);
    }
}
