#pragma once
// The tiny LLaMA's passes on several threads (the worker pool of kernels/cpu/threading.hpp), bit-identical for every
// thread count.
//
// The rule: work is cut into tiles whose boundaries depend only on the shapes (fixed tile sizes), never on the thread
// count, and each tile is computed by one single-threaded Eigen product or loop. Eigen's own blocking, and with it the
// order of every sum, depends on the shape of the product, so a tile of a given shape gives the same bits whichever
// thread computes it. No output element is summed across tiles: the weight gradient dW = dY^T X is split over the rows
// of W (output features), each tile summing over all tokens itself. Threads only change which tile runs where.
#include <algorithm>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>
#include <npft/kernels/cpu/threading.hpp>

#include "config.hpp"

namespace tiny_llama::parallel {

using npft::Matrix;

/// Tokens per tile of x W^T and dY W (rows of the activations).
inline constexpr Index token_tile = 128;
/// Output features per tile of dY^T X (rows of the weight gradient).
inline constexpr Index feature_tile = 64;

inline Index tile_count(Index n, Index tile) { return (n + tile - 1) / tile; }

/// Runs body(tile) for every tile in [0, tiles), spread over `threads` threads (the caller is one of them).
template <class Body>
void for_each_tile(Index tiles, int threads, Body&& body) {
    npft::require(threads >= 1, "thread count must be at least 1, got ", threads);
    npft::kernels::cpu::parallel_rows(tiles, threads, 1, [&](Index begin, Index end) {
        for (Index t = begin; t < end; ++t) body(t);
    });
}

/// Runs body(begin, end) over [0, rows) in tiles of `tile` rows.
template <class Body>
void for_each_row_tile(Index rows, Index tile, int threads, Body&& body) {
    for_each_tile(tile_count(rows, tile), threads, [&](Index t) {
        const Index begin = t * tile;
        body(begin, std::min(rows, begin + tile));
    });
}

/// y = x W^T (x: tokens x in, W: out x in), tiled over tokens.
inline void x_wt(const Matrix& x, const Matrix& w, Matrix& y, int threads) {
    npft::require(x.cols() == w.cols(), "linear input has ", x.cols(), " features, the weight expects ", w.cols());
    y.resize(x.rows(), w.rows());
    for_each_row_tile(x.rows(), token_tile, threads, [&](Index begin, Index end) {
        y.middleRows(begin, end - begin).noalias() = x.middleRows(begin, end - begin) * w.transpose();
    });
}

/// dx = dY W, or dx += dY W with `accumulate` (dY: tokens x out, W: out x in), tiled over tokens.
inline void dy_w(const Matrix& dy, const Matrix& w, Matrix& dx, bool accumulate, int threads) {
    npft::require(dy.cols() == w.rows(), "output gradient has ", dy.cols(), " features, the weight has ", w.rows(), " rows");
    if (accumulate) {
        npft::require(dx.rows() == dy.rows() && dx.cols() == w.cols(), "input gradient must be ", dy.rows(), " x ",
                      w.cols(), " to accumulate into, got ", dx.rows(), " x ", dx.cols());
    } else {
        dx.resize(dy.rows(), w.cols());
    }
    for_each_row_tile(dy.rows(), token_tile, threads, [&](Index begin, Index end) {
        if (accumulate)
            dx.middleRows(begin, end - begin).noalias() += dy.middleRows(begin, end - begin) * w;
        else
            dx.middleRows(begin, end - begin).noalias() = dy.middleRows(begin, end - begin) * w;
    });
}

/// dW = dY^T X (dY: tokens x out, X: tokens x in), tiled over output features: every tile sums over all tokens.
inline void dyt_x(const Matrix& dy, const Matrix& x, Matrix& dw, int threads) {
    npft::require(dy.rows() == x.rows(), "output gradient has ", dy.rows(), " tokens, the input ", x.rows());
    dw.resize(dy.cols(), x.cols());
    for_each_row_tile(dy.cols(), feature_tile, threads, [&](Index begin, Index end) {
        dw.middleRows(begin, end - begin).noalias() = dy.middleCols(begin, end - begin).transpose() * x;
    });
}

}  // namespace tiny_llama::parallel
