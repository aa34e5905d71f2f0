#pragma once
// Small models written out by hand for the train tests: a two-layer tanh MLP with its analytic gradient and the exact
// diagonal of its Hessian, adapted to npft::train::DifferentiableModel in a few lines.
#include <cmath>
#include <string>
#include <vector>

#include <npft/npft.hpp>

namespace npft_test {

using npft::Index;
using npft::Matrix;

/// Columns are samples: x is inputs x n, y is outputs x n.
struct Batch {
    Matrix x;
    Matrix y;
};

/// y = W2 tanh(W1 x); loss = 0.5/n * ||y_hat - y||^2. Parameter names "mlp.up" (W1) and "mlp.down" (W2).
struct TinyMlp {
    Matrix w1, w2, g1, g2;
    int calls = 0;

    TinyMlp(Index inputs, Index hidden, Index outputs)
        : w1(Matrix::Zero(hidden, inputs)), w2(Matrix::Zero(outputs, hidden)), g1(w1), g2(w2) {}

    std::vector<npft::train::Parameter> parameters() {
        return {{"mlp.up", npft::as_matrix_view(w1), npft::as_matrix_view(g1)},
                {"mlp.down", npft::as_matrix_view(w2), npft::as_matrix_view(g2)}};
    }

    double loss(const Batch& b) const {
        const Matrix a = (w1 * b.x).array().tanh().matrix();
        const Matrix r = w2 * a - b.y;
        return 0.5 * static_cast<double>(r.squaredNorm()) / static_cast<double>(b.x.cols());
    }

    double loss_and_gradient(const Batch& b) {
        ++calls;
        const float inv_n = 1.0f / static_cast<float>(b.x.cols());
        const Matrix a = (w1 * b.x).array().tanh().matrix();
        const Matrix r = w2 * a - b.y;
        g2.noalias() = inv_n * r * a.transpose();
        const Matrix dh = ((w2.transpose() * r).array() * (1.0f - a.array().square())).matrix();
        g1.noalias() = inv_n * dh * b.x.transpose();
        return 0.5 * static_cast<double>(r.squaredNorm()) / static_cast<double>(b.x.cols());
    }

    /// The exact diagonal of the Hessian (in double), for W1 and W2, from the closed form of this network.
    std::pair<Eigen::MatrixXd, Eigen::MatrixXd> hessian_diagonal(const Batch& b) const {
        const Eigen::MatrixXd x = b.x.cast<double>(), y = b.y.cast<double>();
        const Eigen::MatrixXd v1 = w1.cast<double>(), v2 = w2.cast<double>();
        const Eigen::MatrixXd a = (v1 * x).array().tanh().matrix();
        const Eigen::MatrixXd r = v2 * a - y;
        const double n = static_cast<double>(x.cols());
        const Eigen::VectorXd w2_norms = v2.colwise().squaredNorm().transpose();  // (W2^T W2)_ii
        const Eigen::MatrixXd back = v2.transpose() * r;                          // (W2^T r)_is
        const Eigen::ArrayXXd slope = 1.0 - a.array().square();                   // tanh'
        // d2L/dh_is^2 = (W2^T W2)_ii tanh'^2 - 2 (W2^T r)_is a_is tanh'
        const Eigen::ArrayXXd curvature = (slope.square().colwise() * w2_norms.array()) - 2.0 * back.array() * a.array() * slope;
        const Eigen::MatrixXd h1 = curvature.matrix() * x.array().square().matrix().transpose() / n;
        const Eigen::MatrixXd h2 = Eigen::MatrixXd::Ones(v2.rows(), 1) * a.array().square().rowwise().sum().matrix().transpose() / n;
        return {h1, h2};
    }
};

/// A random batch from a teacher network (fixed seed streams, so every test sees the same data).
inline Batch teacher_batch(const TinyMlp& teacher, Index n, std::uint64_t seed, std::uint64_t stream, float label_noise = 0.0f) {
    Batch b{Matrix(teacher.w1.cols(), n), Matrix()};
    const npft::RandomKey key{seed, npft::make_stream(stream, 77)};
    for (Index i = 0; i < b.x.size(); ++i) b.x.data()[i] = npft::gaussian(key, static_cast<std::uint64_t>(i));
    b.y = teacher.w2 * (teacher.w1 * b.x).array().tanh().matrix();
    const npft::RandomKey noise_key{seed, npft::make_stream(stream, 78)};
    for (Index i = 0; i < b.y.size(); ++i) b.y.data()[i] += label_noise * npft::gaussian(noise_key, static_cast<std::uint64_t>(i));
    return b;
}

/// Fills a matrix with N(0, scale^2) from a keyed stream.
inline void fill_gaussian(Matrix& m, float scale, std::uint64_t seed, std::uint64_t stream) {
    const npft::RandomKey key{seed, npft::make_stream(stream, 79)};
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * npft::gaussian(key, static_cast<std::uint64_t>(i));
}

/// The 8-16-4 MLP of the pipeline tests, weights Gaussian(0, 0.5^2) keyed by seed.
inline TinyMlp small_mlp(std::uint64_t seed) {
    TinyMlp m(8, 16, 4);
    fill_gaussian(m.w1, 0.5f, seed, 1);
    fill_gaussian(m.w2, 0.5f, seed, 2);
    return m;
}

/// `count` batches of 16 samples labelled by small_mlp(99) with 5% label noise, streams stream0, stream0 + 1, ...
inline std::vector<Batch> teacher_batches(int count, std::uint64_t stream0) {
    const TinyMlp teacher = small_mlp(99);
    std::vector<Batch> out;
    for (int i = 0; i < count; ++i) out.push_back(teacher_batch(teacher, 16, 5, stream0 + static_cast<std::uint64_t>(i), 0.05f));
    return out;
}

}  // namespace npft_test
