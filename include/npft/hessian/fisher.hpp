#pragma once
// Diagonal empirical Fisher: the mean over batches of the squared gradient of every weight (SqueezeLLM's and the
// paper's sensitivity). With one sequence per batch it is the per-sample empirical Fisher: the mean over sequences of
// (dL_seq/dw)^2, which differs from the square of the mean gradient.
#include <algorithm>
#include <cmath>
#include <map>
#include <ranges>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../kernels/cpu/threading.hpp"
#include "../train/differentiable_model.hpp"

namespace npft::hessian {

/// Accumulates squared gradients batch by batch (double sums), for all of a model's parameters or the named ones.
class DiagonalFisher {
public:
    /// `names`: the parameters to track (all when empty). `threads`: the squaring and summing is split by rows over the
    /// worker pool (kernels/cpu/threading.hpp); every sum is taken in batch order by one thread, so the bits do not
    /// depend on the count. The model is always called from the calling thread.
    explicit DiagonalFisher(std::vector<std::string> names = {}, int threads = 1) : names_(std::move(names)), threads_(threads) {
        require(threads >= 1, "DiagonalFisher: threads must be at least 1, got ", threads);
    }

    /// Runs loss_and_gradient on `batch` and adds every tracked gradient, squared.
    template <class Model, class Batch>
        requires train::DifferentiableModel<Model, Batch>
    void accumulate(Model& model, const Batch& batch) {
        const std::vector<train::Parameter> params = model.parameters();
        require(!params.empty(), "DiagonalFisher: the model has no parameters");
        if (sums_.empty()) start(params);
        const double loss = static_cast<double>(model.loss_and_gradient(batch));
        require(std::isfinite(loss), "DiagonalFisher: the loss of batch ", batches_, " is not finite (", loss, ")");
        for (const train::Parameter& p : params) {
            const auto it = sums_.find(p.name);
            if (it == sums_.end()) continue;
            Eigen::ArrayXXd& sum = it->second;
            require(p.grad.rows() == sum.rows() && p.grad.cols() == sum.cols(), "DiagonalFisher: gradient of ", p.name,
                    " changed shape to ", p.grad.rows(), " x ", p.grad.cols(), " (was ", sum.rows(), " x ", sum.cols(), ")");
            kernels::cpu::parallel_rows(sum.rows(), threads_, 16, [&](Index begin, Index end) {
                for (Index r = begin; r < end; ++r) {
                    for (Index c = 0; c < sum.cols(); ++c) {
                        const double g = p.grad(r, c);
                        require(std::isfinite(g), "DiagonalFisher: non-finite gradient of ", p.name, " at (", r, ", ", c,
                                ") in batch ", batches_);
                        sum(r, c) += g * g;
                    }
                }
            });
        }
        ++batches_;
    }

    Index batches() const { return batches_; }

    /// Mean squared gradient per tracked parameter name. Throws if no batch was accumulated.
    std::map<std::string, Matrix> result() const {
        require(batches_ > 0, "DiagonalFisher: no batch was accumulated");
        std::map<std::string, Matrix> out;
        for (const auto& [name, sum] : sums_) out.emplace(name, (sum / static_cast<double>(batches_)).cast<float>().matrix());
        return out;
    }

    /// One pass over `batches`: the Fisher of `model` (all parameters, or those named).
    template <class Model, std::ranges::input_range Batches>
        requires train::DifferentiableModel<Model, std::ranges::range_value_t<Batches>>
    static std::map<std::string, Matrix> compute(Model& model, Batches&& batches, std::vector<std::string> names = {}) {
        DiagonalFisher fisher(std::move(names));
        for (const auto& batch : batches) fisher.accumulate(model, batch);
        return fisher.result();
    }

private:
    void start(const std::vector<train::Parameter>& params) {
        for (const train::Parameter& p : params) {
            require_shape(p.grad, p.value.rows(), p.value.cols(), ("gradient of " + p.name).c_str());
            if (names_.empty() || std::find(names_.begin(), names_.end(), p.name) != names_.end())
                sums_.emplace(p.name, Eigen::ArrayXXd::Zero(p.value.rows(), p.value.cols()));
        }
        for (const std::string& name : names_)
            require(sums_.count(name) == 1, "DiagonalFisher: the model has no parameter named \"", name, "\"");
    }

    std::vector<std::string> names_;
    std::map<std::string, Eigen::ArrayXXd> sums_;
    Index batches_ = 0;
    int threads_ = 1;
};

}  // namespace npft::hessian
