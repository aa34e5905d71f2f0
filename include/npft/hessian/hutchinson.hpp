#pragma once
// Hutchinson's stochastic trace estimator: Tr(H) = E[v^T H v] for probes v with E[v v^T] = I; restricted to a 0/1 mask m,
// probes v o m give Tr(diag(m) H diag(m)) = sum of H_ii over the masked i (the outliers' Hessian trace).
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "hvp.hpp"

namespace npft::hessian {

/// Entries +1 / -1: the lowest-variance probe, Var[v^T H v] = 2 sum_{i != j} H_ij^2.
struct Rademacher {
    static float sample(RandomKey key, std::uint64_t i) { return rademacher(key, i); }
};

/// Standard normal entries: Var[v^T H v] = 2 sum_{i,j} H_ij^2.
struct Gaussian {
    static float sample(RandomKey key, std::uint64_t i) { return gaussian(key, i); }
};

/// A probe distribution: P::sample(key, i) gives entry i of the probe keyed by `key`, with mean 0 and variance 1.
template <class P>
concept TraceProbe = requires(RandomKey key, std::uint64_t i) {
    { P::sample(key, i) } -> std::convertible_to<float>;
};

struct TraceEstimate {
    double value = 0.0;
    /// Standard error of `value`: the sample standard deviation of the per-probe estimates over sqrt(probes).
    double standard_error = 0.0;
    Index probes = 0;
    /// The per-probe values v^T H v, in probe order. Probe k is the same vector in every estimate with the same seed and
    /// mask, so two estimates (before and after training) can be paired probe by probe for a difference with its own
    /// standard error.
    std::vector<double> samples{};
};

struct HutchinsonOptions {
    /// Never stop before this many probes (a standard error from very few samples is itself unreliable).
    Index min_probes = 10;
    /// Always stop here. min_probes == max_probes gives a fixed probe count.
    Index max_probes = 100;
    /// Stop as soon as standard_error <= target * |value| (after min_probes). 0: run max_probes.
    double target_relative_standard_error = 0.02;
    std::uint64_t seed = 0;
};

/// Hutchinson trace estimator with a standard-error stopping rule. Probe k is keyed by (seed, k), so the estimate is
/// a pure function of (seed, H, mask).
template <TraceProbe Probe = Rademacher>
class Hutchinson {
public:
    Hutchinson() = default;
    explicit Hutchinson(HutchinsonOptions options) : options_(options) {
        require(options.min_probes >= 2, "Hutchinson: min_probes must be at least 2 (for a standard error), got ",
                options.min_probes);
        require(options.max_probes >= options.min_probes, "Hutchinson: max_probes (", options.max_probes,
                ") must be at least min_probes (", options.min_probes, ")");
        require(options.target_relative_standard_error >= 0.0,
                "Hutchinson: target_relative_standard_error must be non-negative, got ", options.target_relative_standard_error);
    }

    const HutchinsonOptions& options() const { return options_; }

    /// Estimates Tr(H), or the trace restricted to `mask` (a 0/1 vector of hvp.dimension() entries) when it is non-empty.
    template <HessianVectorProduct H>
    TraceEstimate estimate(H& hvp, std::span<const float> mask = {}) const {
        const Index n = hvp.dimension();
        require(n > 0, "Hutchinson: the Hessian has dimension 0");
        if (!mask.empty()) {
            require(static_cast<Index>(mask.size()) == n, "Hutchinson: mask holds ", mask.size(),
                    " entries, expected the Hessian dimension ", n);
            for (std::size_t i = 0; i < mask.size(); ++i)
                require(mask[i] == 0.0f || mask[i] == 1.0f, "Hutchinson: mask entries must be 0 or 1, entry ", i, " is ",
                        mask[i]);
        }
        std::vector<float> v(static_cast<std::size_t>(n)), hv(v.size());
        // Welford's running mean and sum of squared deviations of the per-probe estimates v^T H v.
        double mean = 0.0, squares = 0.0;
        Index k = 0;
        std::vector<double> samples;
        while (k < options_.max_probes) {
            const RandomKey key{options_.seed, make_stream(k, kStreamTag)};
            for (std::size_t i = 0; i < v.size(); ++i) {
                const float m = mask.empty() ? 1.0f : mask[i];
                v[i] = m == 0.0f ? 0.0f : Probe::sample(key, i);
            }
            hvp.apply(std::span<const float>(v), std::span<float>(hv));
            double sample = 0.0;
            for (std::size_t i = 0; i < v.size(); ++i) sample += static_cast<double>(v[i]) * hv[i];
            require(std::isfinite(sample), "Hutchinson: probe ", k, " gave a non-finite v^T H v (", sample, ")");
            samples.push_back(sample);
            ++k;
            const double delta = sample - mean;
            mean += delta / static_cast<double>(k);
            squares += delta * (sample - mean);
            if (k >= options_.min_probes && options_.target_relative_standard_error > 0.0 &&
                standard_error(squares, k) <= options_.target_relative_standard_error * std::abs(mean))
                break;
        }
        return TraceEstimate{mean, standard_error(squares, k), k, std::move(samples)};
    }

private:
    static constexpr std::uint64_t kStreamTag = 0x4875746368ull;  // "Hutch": keeps probes apart from other streams

    static double standard_error(double squares, Index k) {
        return k < 2 ? 0.0 : std::sqrt(squares / static_cast<double>(k - 1) / static_cast<double>(k));
    }

    HutchinsonOptions options_{};
};

/// A trace estimator usable with Hessian-vector products of type H: t.estimate(hvp, mask) -> TraceEstimate.
template <class T, class H>
concept TraceEstimator = HessianVectorProduct<H> && requires(const T& t, H& hvp, std::span<const float> mask) {
    { t.estimate(hvp, mask) } -> std::same_as<TraceEstimate>;
};

}  // namespace npft::hessian
