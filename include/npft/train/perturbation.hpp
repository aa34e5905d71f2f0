#pragma once
// The noise of one perturbed tensor (draw, apply, restore) and the guard that keeps the noise out of the model's
// weights outside one model call. Applying saves the values it overwrites; restoring copies them back, never
// subtracts, so the weights after a noised call are bit for bit the weights before it. Both touch only the outlier
// positions: the cost is O(outliers), whatever the size of the tensor.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "../noise/schedule.hpp"
#include "../outliers/selector.hpp"

namespace npft::train {

/// One tensor's outliers and their current noise draw.
struct Perturbation {
    outliers::OutlierMask selection;  ///< the outliers (flat row-major positions, sorted)
    Matrix quant_steps;               ///< per-weight quantization steps, when the selector or the noise reads them
    std::vector<float> noise;         ///< the current draw: noise[i] belongs to selection.positions[i] (empty: none yet)
    std::vector<float> saved;         ///< the values apply() overwrote, for restore()

    /// A fresh draw from `schedule` at `scale`, keyed by `key` (the same bits on any thread count).
    template <noise::NoiseSchedule Noise>
    void draw(const Noise& schedule, MatrixView<const float> clean, float scale, RandomKey key) {
        noise.assign(selection.positions.size(), 0.0f);
        if (noise.empty()) return;
        const MatrixView<const float> steps =
            quant_steps.size() == 0 ? MatrixView<const float>()
                                    : MatrixView<const float>::dense(quant_steps.data(), quant_steps.rows(), quant_steps.cols());
        noise::NoiseRequest request{&selection, clean, steps, scale, key};
        schedule.draw(request, std::span<float>(noise));
    }

    bool any_noise() const {
        for (const float d : noise)
            if (d != 0.0f) return true;
        return false;
    }

    /// values(p) += noise at every outlier p, saving the previous values.
    void apply(MatrixView<float> values) {
        const Index cols = values.cols();
        saved.resize(noise.size());
        for (std::size_t i = 0; i < noise.size(); ++i) {
            const Index p = selection.positions[i];
            float& v = values(p / cols, p % cols);
            saved[i] = v;
            v += noise[i];
        }
    }

    /// Puts back the values apply() saved.
    void restore(MatrixView<float> values) const {
        const Index cols = values.cols();
        for (std::size_t i = 0; i < saved.size(); ++i) {
            const Index p = selection.positions[i];
            values(p / cols, p % cols) = saved[i];
        }
    }
};

/// Applies the noise of every perturbed tensor for its lifetime and restores the clean values when it ends, also when
/// the model throws. `each(f)` must call f(Perturbation&, MatrixView<float> values) once per perturbed tensor.
template <class Each>
class PerturbationGuard {
public:
    explicit PerturbationGuard(Each each) : each_(std::move(each)) {
        each_([](Perturbation& p, MatrixView<float> values) { p.apply(values); });
    }
    ~PerturbationGuard() {
        each_([](Perturbation& p, MatrixView<float> values) { p.restore(values); });
    }
    PerturbationGuard(const PerturbationGuard&) = delete;
    PerturbationGuard& operator=(const PerturbationGuard&) = delete;

private:
    Each each_;
};

}  // namespace npft::train
