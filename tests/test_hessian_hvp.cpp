#include <catch2/catch.hpp>
#include <npft/npft.hpp>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

using Idx = npft::Index;
using npft::Matrix;
namespace h = npft::hessian;
using npft::train::Parameter;

namespace {
float keyed(std::uint64_t stream, Idx i, float lo = -1.0f, float hi = 1.0f) {
    return npft::uniform(npft::RandomKey{99, stream}, static_cast<std::uint64_t>(i), lo, hi);
}

// L = 0.5 x^T A x + c^T x over x = (a, b) flattened (a: 2 x 3, b: 1 x 4), A symmetric positive definite.
// Gradient A x + c, exact Hessian A, which the model also offers as an exact HVP.
struct Quadratic {
    Matrix a = Matrix::Zero(2, 3), b = Matrix::Zero(1, 4), ga = Matrix::Zero(2, 3), gb = Matrix::Zero(1, 4);
    Eigen::MatrixXd A;
    Eigen::VectorXd c;
    int calls = 0;
    int throw_on_call = -1;

    Quadratic() : A(10, 10), c(10) {
        Eigen::MatrixXd m(10, 10);
        for (Idx i = 0; i < m.size(); ++i) m.data()[i] = keyed(1, i);
        A = m * m.transpose() + Eigen::MatrixXd::Identity(10, 10);
        for (Idx i = 0; i < 10; ++i) c(i) = keyed(2, i);
        for (Idx i = 0; i < 6; ++i) a.data()[i] = keyed(3, i, 0.5f, 2.0f);
        for (Idx i = 0; i < 4; ++i) b.data()[i] = keyed(4, i, -3.0f, -1.0f);
    }
    std::vector<Parameter> parameters() {
        return {{"a", npft::as_matrix_view(a), npft::as_matrix_view(ga)}, {"b", npft::as_matrix_view(b), npft::as_matrix_view(gb)}};
    }
    Eigen::VectorXd x() const {
        Eigen::VectorXd out(10);
        for (Idx i = 0; i < 6; ++i) out(i) = a.data()[i];
        for (Idx i = 0; i < 4; ++i) out(6 + i) = b.data()[i];
        return out;
    }
    double loss_and_gradient(const int&) {
        if (calls++ == throw_on_call) throw std::runtime_error("model failed");
        const Eigen::VectorXd xv = x(), g = A * xv + c;
        for (Idx i = 0; i < 6; ++i) ga.data()[i] = static_cast<float>(g(i));
        for (Idx i = 0; i < 4; ++i) gb.data()[i] = static_cast<float>(g(6 + i));
        return 0.5 * xv.dot(A * xv) + c.dot(xv);
    }
    void hessian_vector_product(const int&, std::span<const float> v, std::span<float> out) {
        const Eigen::VectorXd hv = A * Eigen::Map<const Eigen::VectorXf>(v.data(), 10).cast<double>();
        for (Idx i = 0; i < 10; ++i) out[static_cast<std::size_t>(i)] = static_cast<float>(hv(i));
    }
};

// Softplus regression: L = sum_k sum_r softplus(z_kr) - y_kr z_kr, z_kr = w_r . x_k (w: 3 x 4, five samples).
// Gradient sum_k (sigmoid(z_kr) - y_kr) x_k for row r; the Hessian is block diagonal over rows:
// H_r = sum_k sigmoid'(z_kr) x_k x_k^T. Non-zero third derivative, so finite differences carry a truncation error.
struct SoftplusRegression {
    Matrix w = Matrix::Zero(3, 4), g = Matrix::Zero(3, 4);
    Eigen::MatrixXd X = Eigen::MatrixXd::Zero(5, 4), Y = Eigen::MatrixXd::Zero(5, 3);
    SoftplusRegression() {
        for (Idx i = 0; i < w.size(); ++i) w.data()[i] = keyed(5, i, -0.5f, 0.5f);
        for (Idx i = 0; i < X.size(); ++i) X.data()[i] = keyed(6, i, -2.0f, 2.0f);
        for (Idx i = 0; i < Y.size(); ++i) Y.data()[i] = keyed(7, i, 0.0f, 1.0f);
    }
    static double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
    std::vector<Parameter> parameters() { return {{"w", npft::as_matrix_view(w), npft::as_matrix_view(g)}}; }
    double loss_and_gradient(const int&) {
        double loss = 0;
        Eigen::MatrixXd grad = Eigen::MatrixXd::Zero(3, 4);
        for (Idx k = 0; k < 5; ++k)
            for (Idx r = 0; r < 3; ++r) {
                const double z = X.row(k).dot(w.row(r).cast<double>());
                loss += std::log1p(std::exp(z)) - Y(k, r) * z;
                grad.row(r) += (sigmoid(z) - Y(k, r)) * X.row(k);
            }
        g = grad.cast<float>();
        return loss;
    }
    Eigen::VectorXd exact_hvp(std::span<const float> v) const {
        Eigen::VectorXd out = Eigen::VectorXd::Zero(12);
        for (Idx r = 0; r < 3; ++r) {
            Eigen::VectorXd vr(4);
            for (Idx j = 0; j < 4; ++j) vr(j) = v[static_cast<std::size_t>(r * 4 + j)];
            for (Idx k = 0; k < 5; ++k) {
                const double z = X.row(k).dot(w.row(r).cast<double>()), s = sigmoid(z);
                out.segment(r * 4, 4) += s * (1 - s) * X.row(k).dot(vr) * X.row(k).transpose();
            }
        }
        return out;
    }
};

std::vector<float> probe(Idx n, std::uint64_t stream) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (Idx i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = keyed(stream, i);
    return v;
}

double relative_error(std::span<const float> got, const Eigen::VectorXd& want) {
    double err = 0;
    for (Idx i = 0; i < want.size(); ++i) err += std::pow(got[static_cast<std::size_t>(i)] - want(i), 2);
    return std::sqrt(err) / want.norm();
}

template <class Model>
std::vector<float> snapshot(Model& m) {
    std::vector<float> out;
    for (const Parameter& p : m.parameters())
        for (Idx r = 0; r < p.value.rows(); ++r)
            for (Idx c = 0; c < p.value.cols(); ++c) out.push_back(p.value(r, c));
    return out;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("finite-difference HVP is exact on a quadratic up to rounding", "[hessian]") {
    Quadratic model;
    const int batch = 0;
    const std::vector<float> before = snapshot(model);
    for (std::uint64_t s = 10; s < 15; ++s) {
        const std::vector<float> v = probe(10, s);
        const Eigen::VectorXd want = model.A * Eigen::Map<const Eigen::VectorXf>(v.data(), 10).cast<double>();
        std::vector<float> out(10);
        // Default step: the error is the rounding of w + eps v and of the float gradients, ~FLT_EPSILON / relative_step.
        h::FiniteDifferenceHvp<Quadratic, int> fd(model, batch);
        CHECK(fd.dimension() == 10);
        fd.apply(v, out);
        CHECK(relative_error(out, want) < 5e-5);  // measured 2e-6 .. 1e-5
        // Central differences have no truncation error on a quadratic, so a large step leaves only float rounding.
        h::FiniteDifferenceHvp<Quadratic, int> wide(model, batch, {}, {.epsilon = 1.0});
        wide.apply(v, out);
        CHECK(relative_error(out, want) < 1e-6);  // measured below 1.5e-7
        // The weights come back bit for bit.
        CHECK(same_bits(snapshot(model), before));
    }
}

TEST_CASE("finite-difference HVP matches the analytic Hessian of a nonlinear model to the documented tolerance", "[hessian]") {
    SoftplusRegression model;
    const int batch = 0;
    const std::vector<float> before = snapshot(model);
    h::FiniteDifferenceHvp<SoftplusRegression, int> fd(model, batch);
    double worst = 0;
    for (std::uint64_t s = 20; s < 30; ++s) {
        const std::vector<float> v = probe(12, s);
        std::vector<float> out(12);
        fd.apply(v, out);
        worst = std::max(worst, relative_error(out, model.exact_hvp(v)));
    }
    CHECK(worst < 1e-4);  // documented bound; measured 1.5e-5 at the default step
    CHECK(same_bits(snapshot(model), before));
    // The step follows the weight scale: relative_step * rms(w) / rms(v).
    const std::vector<float> v = probe(12, 40);
    const double w_rms = std::sqrt(model.w.squaredNorm() / 12.0);
    double v_rms = 0;
    for (const float x : v) v_rms += x * x;
    v_rms = std::sqrt(v_rms / 12.0);
    CHECK(fd.epsilon_for(v) == Approx(4.921566601151848e-3 * w_rms / v_rms));
    // Hutchinson on the finite-difference operator agrees with the exact trace.
    double trace = 0;
    for (Idx i = 0; i < 12; ++i) {
        std::vector<float> e(12, 0.0f);
        e[static_cast<std::size_t>(i)] = 1.0f;
        trace += model.exact_hvp(e)(i);
    }
    const h::TraceEstimate t = h::Hutchinson<h::Rademacher>({200, 200, 0.0, 1}).estimate(fd);
    CHECK(std::abs(t.value - trace) < 4 * t.standard_error + 1e-3 * std::abs(trace));
}

TEST_CASE("HVP over a subset of parameters, and the model's exact HVP", "[hessian]") {
    Quadratic model;
    const int batch = 0;
    h::FiniteDifferenceHvp<Quadratic, int> only_b(model, batch, {"b"}, {.epsilon = 1.0});
    CHECK(only_b.dimension() == 4);
    CHECK(only_b.layout().offset("b") == 0);
    const std::vector<float> v = probe(4, 50);
    std::vector<float> out(4);
    only_b.apply(v, out);
    const Eigen::VectorXd want = model.A.bottomRightCorner(4, 4) * Eigen::Map<const Eigen::VectorXf>(v.data(), 4).cast<double>();
    CHECK(relative_error(out, want) < 2e-6);

    h::ModelHvp<Quadratic, int> exact(model, batch);
    CHECK(exact.dimension() == 10);
    CHECK(exact.layout().offset("b") == 6);
    const std::vector<float> v10 = probe(10, 51);
    std::vector<float> exact_out(10), fd_out(10);
    exact.apply(v10, exact_out);
    h::FiniteDifferenceHvp<Quadratic, int>(model, batch, {}, {.epsilon = 1.0}).apply(v10, fd_out);
    for (Idx i = 0; i < 10; ++i) CHECK(fd_out[static_cast<std::size_t>(i)] == Approx(exact_out[static_cast<std::size_t>(i)]).epsilon(1e-5));
    h::ExplicitHvp dense(model.A.cast<float>());
    std::vector<float> dense_out(10);
    dense.apply(v10, dense_out);
    for (Idx i = 0; i < 10; ++i) CHECK(dense_out[static_cast<std::size_t>(i)] == Approx(exact_out[static_cast<std::size_t>(i)]).epsilon(1e-5));

    const h::TraceEstimate t = h::Hutchinson<h::Gaussian>({400, 400, 0.0, 5}).estimate(exact);
    CHECK(std::abs(t.value - model.A.trace()) < 4 * t.standard_error);
}

TEST_CASE("finite-difference HVP restores the weights when the model throws, and checks its input", "[hessian]") {
    Quadratic model;
    const int batch = 0;
    const std::vector<float> before = snapshot(model);
    h::FiniteDifferenceHvp<Quadratic, int> fd(model, batch);
    std::vector<float> out(10);
    const std::vector<float> v = probe(10, 60);
    model.throw_on_call = 1;  // the second gradient call, with the weights at w - eps v
    CHECK_THROWS_WITH(fd.apply(v, out), Catch::Contains("model failed"));
    CHECK(same_bits(snapshot(model), before));

    const std::vector<float> zero(10, 0.0f);
    fd.apply(zero, out);  // H 0 = 0 without calling the model
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == 0.0f; }));
    std::vector<float> short_v(9);
    CHECK_THROWS_WITH(fd.apply(short_v, out), Catch::Contains("vector v holds 9 values, expected the dimension 10"));
    CHECK_THROWS_WITH((h::FiniteDifferenceHvp<Quadratic, int>(model, batch, {"c"})), Catch::Contains("no parameter named \"c\""));
    CHECK_THROWS_WITH((h::FiniteDifferenceHvp<Quadratic, int>(model, batch, {}, {.relative_step = 0.0})),
                      Catch::Contains("relative_step must be positive"));
}
