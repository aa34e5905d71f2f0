#pragma once
// Progress reporting for the pipeline: a Report per step, and three ready-made sinks (a progress bar for terminals,
// a plain line every k steps for logs, quiet). Any callable taking `const Report&` is a sink; one that returns
// `Control::stop` ends fit() after that step (the state is consistent and can be checkpointed).
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>

#if __has_include(<unistd.h>)
#include <unistd.h>
#define NPFT_HAVE_ISATTY 1
#endif

#include "../core/config.hpp"

namespace npft::train {

/// What a progress callback may answer.
enum class Control { proceed, stop };

/// One step's figures.
struct Report {
    Index step = 0;         ///< steps done so far (1-based after the first step)
    Index total_steps = 0;  ///< stages * steps_per_stage
    Index stage = 0;        ///< 0-based stage (epoch)
    double loss = 0.0;      ///< the optimized loss of this step (perturbed, or the balanced mix)
    float noise_scale = 0.0f;
    float learning_rate = 0.0f;
    /// The outliers' Hessian trace on the clean weights, on steps where it was estimated (NaN otherwise).
    double trace = std::numeric_limits<double>::quiet_NaN();
    double trace_standard_error = std::numeric_limits<double>::quiet_NaN();
    bool has_trace() const { return !std::isnan(trace); }
    /// A warning raised at this step (e.g. the adapter learned to cancel a fixed draw); empty when none.
    std::string warning{};
};

namespace progress {

namespace detail {
inline std::string format_line(const Report& r) {
    char buffer[256];
    int n = std::snprintf(buffer, sizeof buffer, "step %td/%td  stage %td  loss %.6g  noise %.3g  lr %.3g", r.step,
                          r.total_steps, r.stage, r.loss, static_cast<double>(r.noise_scale),
                          static_cast<double>(r.learning_rate));
    if (r.has_trace() && n > 0 && n < static_cast<int>(sizeof buffer)) {
        std::snprintf(buffer + n, sizeof buffer - static_cast<std::size_t>(n), "  Tr(H_outliers) %.4g +- %.2g", r.trace,
                      r.trace_standard_error);
    }
    std::string line = buffer;
    if (!r.warning.empty()) line += "\n  warning: " + r.warning;
    return line;
}
}  // namespace detail

/// Reports nothing.
inline auto quiet() {
    return [](const Report&) {};
}

/// One plain line on stderr every `every` steps (and on the last step and every step with a trace): for logs and CI.
inline auto lines(Index every = 10) {
    return [every](const Report& r) {
        if (every > 0 && (r.step % every == 0 || r.step == r.total_steps || r.has_trace() || !r.warning.empty())) {
            std::fprintf(stderr, "%s\n", detail::format_line(r).c_str());
        }
    };
}

/// A progress bar redrawn in place on stderr; the last trace stays visible.
inline auto bar(int width = 30) {
    return [width, trace = std::string()](const Report& r) mutable {
        if (r.has_trace()) {
            char buffer[96];
            std::snprintf(buffer, sizeof buffer, "  Tr(H_out) %.4g +- %.2g", r.trace, r.trace_standard_error);
            trace = buffer;
        }
        const double done = r.total_steps > 0 ? static_cast<double>(r.step) / static_cast<double>(r.total_steps) : 1.0;
        const int filled = static_cast<int>(done * width);
        std::string cells(static_cast<std::size_t>(filled), '#');
        cells.resize(static_cast<std::size_t>(width), '.');
        std::fprintf(stderr, "\r[%s] %td/%td loss %.5g noise %.3g%s", cells.c_str(), r.step, r.total_steps, r.loss,
                     static_cast<double>(r.noise_scale), trace.c_str());
        if (!r.warning.empty()) std::fprintf(stderr, "\n  warning: %s\n", r.warning.c_str());
        if (r.step == r.total_steps) std::fprintf(stderr, "\n");
        std::fflush(stderr);
    };
}

/// The default: a bar when stderr is a terminal, a line every `every` steps otherwise.
inline std::function<void(const Report&)> automatic(Index every = 10) {
#if defined(NPFT_HAVE_ISATTY)
    if (isatty(fileno(stderr))) return bar();
#endif
    return lines(every);
}

}  // namespace progress
}  // namespace npft::train
