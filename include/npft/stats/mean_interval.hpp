#pragma once
// The mean of a few values (one per seed) with its standard error and Student-t confidence interval.
#include <cmath>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "student_t.hpp"

namespace npft::stats {

struct MeanInterval {
    Index count = 0;
    double mean = 0.0;
    double standard_error = 0.0;  ///< sample standard deviation / sqrt(count)
    double confidence = 0.95;
    double ci_low = 0.0, ci_high = 0.0;  ///< mean -/+ t(0.5 + confidence/2, count - 1) x standard_error
};

/// Mean and interval of `values` (at least 2, all finite).
inline MeanInterval mean_interval(std::span<const double> values, double confidence = 0.95) {
    require(values.size() >= 2, "mean_interval: needs at least 2 values for a standard error, got ", values.size());
    require(confidence > 0.0 && confidence < 1.0, "mean_interval: confidence must lie in (0, 1), got ", confidence);
    MeanInterval out;
    out.count = static_cast<Index>(values.size());
    out.confidence = confidence;
    double sum = 0.0;
    for (std::size_t i = 0; i < values.size(); ++i) {
        require(std::isfinite(values[i]), "mean_interval: value ", i, " is not finite (", values[i], ")");
        sum += values[i];
    }
    out.mean = sum / static_cast<double>(out.count);
    double squares = 0.0;
    for (const double v : values) squares += (v - out.mean) * (v - out.mean);
    out.standard_error = std::sqrt(squares / static_cast<double>(out.count - 1) / static_cast<double>(out.count));
    const double t = student_t_quantile(0.5 + confidence / 2.0, static_cast<double>(out.count - 1));
    out.ci_low = out.mean - t * out.standard_error;
    out.ci_high = out.mean + t * out.standard_error;
    return out;
}

}  // namespace npft::stats
