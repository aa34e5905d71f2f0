#pragma once
// Hessian-vector products over a flat parameter vector: the concept, a dense explicit one, the model's own exact one,
// and central finite differences of the model's gradients.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../train/differentiable_model.hpp"

namespace npft::hessian {

/// A linear operator v -> H v on vectors of h.dimension() floats (H symmetric: the Hessian of a loss).
///   h.dimension()    : the length of v and out
///   h.apply(v, out)  : out = H v (overwrites out)
template <class H>
concept HessianVectorProduct = requires(H& h, std::span<const float> v, std::span<float> out) {
    { h.dimension() } -> std::convertible_to<Index>;
    h.apply(v, out);
};

namespace detail {
inline void require_hvp_sizes(Index dimension, std::span<const float> v, std::span<float> out, const char* who) {
    require(static_cast<Index>(v.size()) == dimension, who, ": vector v holds ", v.size(), " values, expected the dimension ",
            dimension);
    require(static_cast<Index>(out.size()) == dimension, who, ": output holds ", out.size(),
            " values, expected the dimension ", dimension);
}
}  // namespace detail

/// H given as a dense symmetric matrix (tests, small models, users who have H).
class ExplicitHvp {
public:
    /// Throws unless `hessian` is square and symmetric to within 1e-5 of its largest entry.
    explicit ExplicitHvp(Matrix hessian) : h_(std::move(hessian)) {
        require(h_.rows() == h_.cols(), "ExplicitHvp: the Hessian must be square, got ", h_.rows(), " x ", h_.cols());
        const float largest = h_.size() == 0 ? 0.0f : h_.cwiseAbs().maxCoeff();
        const float asymmetry = h_.size() == 0 ? 0.0f : (h_ - h_.transpose()).cwiseAbs().maxCoeff();
        require(asymmetry <= 1e-5f * largest, "ExplicitHvp: the Hessian must be symmetric, |H - H^T| reaches ", asymmetry,
                " (largest entry ", largest, ")");
    }

    Index dimension() const { return h_.rows(); }
    const Matrix& matrix() const { return h_; }

    void apply(std::span<const float> v, std::span<float> out) const {
        detail::require_hvp_sizes(dimension(), v, out, "ExplicitHvp");
        const Index n = dimension();
        Eigen::Map<const Eigen::VectorXf> vin(v.data(), n);
        Eigen::Map<Eigen::VectorXf>(out.data(), n).noalias() = h_ * vin;
    }

private:
    Matrix h_;
};

/// The flat parameter vector of a set of model tensors: the named tensors one after another, each row-major.
class ParameterLayout {
public:
    ParameterLayout() = default;
    /// The tensors of `all` named in `names` (in that order), or all of them in model order when `names` is empty.
    ParameterLayout(const std::vector<train::Parameter>& all, const std::vector<std::string>& names) {
        require(!all.empty(), "the model has no parameters");
        if (names.empty()) {
            params_ = all;
        } else {
            for (const std::string& name : names) {
                const auto it = std::find_if(all.begin(), all.end(), [&](const train::Parameter& p) { return p.name == name; });
                require(it != all.end(), "the model has no parameter named \"", name, "\"");
                params_.push_back(*it);
            }
        }
        for (const train::Parameter& p : params_) {
            require_shape(p.grad, p.value.rows(), p.value.cols(), ("gradient of " + p.name).c_str());
            offsets_.push_back(dimension_);
            dimension_ += p.value.size();
        }
    }

    Index dimension() const { return dimension_; }
    const std::vector<train::Parameter>& parameters() const { return params_; }
    /// Where tensor `name` starts in the flat vector.
    Index offset(const std::string& name) const {
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (params_[i].name == name) return offsets_[i];
        fail("the layout holds no parameter named \"", name, "\"");
    }

    /// Calls f(flat_index, r, c, parameter) for every element, in flat order.
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t t = 0; t < params_.size(); ++t) {
            const train::Parameter& p = params_[t];
            Index i = offsets_[t];
            for (Index r = 0; r < p.value.rows(); ++r)
                for (Index c = 0; c < p.value.cols(); ++c) f(i++, r, c, p);
        }
    }

private:
    std::vector<train::Parameter> params_;
    std::vector<Index> offsets_;
    Index dimension_ = 0;
};

/// Models that compute exact Hessian-vector products themselves, over the flat vector of all their parameters
/// (parameters() order, each tensor row-major): model.hessian_vector_product(batch, v, out).
template <class M, class Batch>
concept ModelWithHessianVectorProduct =
    train::DifferentiableModel<M, Batch> && requires(M& model, const Batch& batch, std::span<const float> v, std::span<float> out) {
        model.hessian_vector_product(batch, v, out);
    };

/// Adapts a model's own exact HVP on one batch to HessianVectorProduct.
template <class Model, class Batch>
    requires ModelWithHessianVectorProduct<Model, Batch>
class ModelHvp {
public:
    ModelHvp(Model& model, const Batch& batch) : model_(&model), batch_(&batch), layout_(model.parameters(), {}) {}

    Index dimension() const { return layout_.dimension(); }
    const ParameterLayout& layout() const { return layout_; }
    void apply(std::span<const float> v, std::span<float> out) {
        detail::require_hvp_sizes(dimension(), v, out, "ModelHvp");
        model_->hessian_vector_product(*batch_, v, out);
    }

private:
    Model* model_;
    const Batch* batch_;
    ParameterLayout layout_;
};

struct FiniteDifferenceOptions {
    /// Perturbation size relative to the weights: eps * v has the RMS of relative_step * rms(w) (rms(w) taken as 1 when
    /// the weights are all zero). The default cbrt(FLT_EPSILON) ~ 4.9e-3 balances the O(eps^2) truncation error of
    /// central differences against the O(FLT_EPSILON / eps) rounding error of float gradients.
    double relative_step = 4.921566601151848e-3;
    /// When positive, used as eps directly (v is then perturbed by exactly eps * v).
    double epsilon = 0.0;
};

/// H v ~ (g(w + eps v) - g(w - eps v)) / (2 eps) from the model's gradients: two loss_and_gradient calls per product.
/// Error: exact for a quadratic loss up to float rounding; otherwise O(eps^2 |d^3 L| |v|^2) from truncation plus
/// O(FLT_EPSILON |w| |g'| / (eps |v|)) from rounding w + eps v and the gradients: with the default step, below 1e-4
/// of |H v| (relative, 2-norm) for smooth losses; the tests measure about 1e-5 on a quadratic and on a softplus model.
/// The weights are restored bit-exactly (saved, then copied back) after each product, even when the model throws.
template <class Model, class Batch>
    requires train::DifferentiableModel<Model, Batch>
class FiniteDifferenceHvp {
public:
    /// Over the parameters named in `names` (all when empty), flattened as ParameterLayout says.
    FiniteDifferenceHvp(Model& model, const Batch& batch, std::vector<std::string> names = {},
                        FiniteDifferenceOptions options = {})
        : model_(&model), batch_(&batch), layout_(model.parameters(), names), options_(options) {
        require(options.relative_step > 0.0 && std::isfinite(options.relative_step),
                "FiniteDifferenceHvp: relative_step must be positive and finite, got ", options.relative_step);
        require(options.epsilon >= 0.0 && std::isfinite(options.epsilon),
                "FiniteDifferenceHvp: epsilon must be non-negative and finite, got ", options.epsilon);
        saved_.resize(static_cast<std::size_t>(dimension()));
        plus_.resize(saved_.size());
    }

    Index dimension() const { return layout_.dimension(); }
    const ParameterLayout& layout() const { return layout_; }

    /// The eps used for direction v (see FiniteDifferenceOptions).
    double epsilon_for(std::span<const float> v) const {
        if (options_.epsilon > 0.0) return options_.epsilon;
        double ww = 0.0, vv = 0.0;
        layout_.for_each([&](Index, Index r, Index c, const train::Parameter& p) {
            const double w = p.value(r, c);
            ww += w * w;
        });
        for (const float x : v) vv += static_cast<double>(x) * x;
        const double weight_rms = ww > 0.0 ? std::sqrt(ww / static_cast<double>(dimension())) : 1.0;
        const double v_rms = std::sqrt(vv / static_cast<double>(dimension()));
        return options_.relative_step * weight_rms / v_rms;
    }

    void apply(std::span<const float> v, std::span<float> out) {
        detail::require_hvp_sizes(dimension(), v, out, "FiniteDifferenceHvp");
        if (std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; })) {
            std::fill(out.begin(), out.end(), 0.0f);
            return;
        }
        const double eps = epsilon_for(v);
        layout_.for_each([&](Index i, Index r, Index c, const train::Parameter& p) { saved_[static_cast<std::size_t>(i)] = p.value(r, c); });
        try {
            gradient_at(v, eps, plus_);
            gradient_at(v, -eps, out);
        } catch (...) {
            restore();
            throw;
        }
        restore();
        const double inv = 0.5 / eps;
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = static_cast<float>((static_cast<double>(plus_[i]) - out[i]) * inv);
    }

private:
    // Writes g(w + step * v) into g and leaves the weights perturbed (the caller restores them).
    void gradient_at(std::span<const float> v, double step, std::span<float> g) {
        layout_.for_each([&](Index i, Index r, Index c, const train::Parameter& p) {
            const auto k = static_cast<std::size_t>(i);
            p.value(r, c) = static_cast<float>(saved_[k] + step * v[k]);
        });
        const double loss = static_cast<double>(model_->loss_and_gradient(*batch_));
        require(std::isfinite(loss), "FiniteDifferenceHvp: the loss at the perturbed weights is not finite (", loss, ")");
        layout_.for_each([&](Index i, Index r, Index c, const train::Parameter& p) { g[static_cast<std::size_t>(i)] = p.grad(r, c); });
    }

    void restore() {
        layout_.for_each([&](Index i, Index r, Index c, const train::Parameter& p) { p.value(r, c) = saved_[static_cast<std::size_t>(i)]; });
    }

    Model* model_;
    const Batch* batch_;
    ParameterLayout layout_;
    FiniteDifferenceOptions options_;
    std::vector<float> saved_, plus_;
};

}  // namespace npft::hessian
