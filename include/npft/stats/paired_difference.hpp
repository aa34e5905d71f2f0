#pragma once
// Paired comparison of a treatment against its matched control over seeds: the mean difference, its standard error, a
// Student-t confidence interval, how many pairs the treatment wins, and an exact two-sided sign test. This is how npft
// states a method's effect: never from one seed, never from chosen seeds.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "mean_interval.hpp"

namespace npft::stats {

/// Which direction of the difference is a win for the treatment.
enum class Better { lower, higher };

struct PairedDifference {
    Index pairs = 0;
    double mean = 0.0;            ///< mean of (treatment - control)
    double standard_error = 0.0;  ///< sample standard deviation of the differences / sqrt(pairs)
    double confidence = 0.95;
    double ci_low = 0.0, ci_high = 0.0;  ///< mean -/+ t_{(1+confidence)/2, pairs-1} x standard_error
    Index wins = 0;                      ///< pairs where the treatment is strictly better
    Index ties = 0;                      ///< pairs with a difference of exactly 0
    double sign_test_p = 1.0;            ///< exact two-sided binomial test of wins vs losses (ties dropped)

    /// Whether the interval excludes 0.
    bool significant() const { return ci_low > 0.0 || ci_high < 0.0; }
};

/// Exact two-sided sign test: the probability, under a fair coin, of a split of `wins` : `losses` at least this uneven.
inline double sign_test_p_value(Index wins, Index losses) {
    require(wins >= 0 && losses >= 0, "sign_test_p_value: counts must be non-negative, got ", wins, " and ", losses);
    const Index n = wins + losses;
    if (n == 0) return 1.0;
    const Index extreme = std::min(wins, losses);
    // P(X <= extreme) for X ~ Binomial(n, 1/2), summed in log space so that n in the thousands does not overflow.
    double tail = 0.0;
    for (Index k = 0; k <= extreme; ++k) {
        const double log_term = std::lgamma(static_cast<double>(n) + 1.0) - std::lgamma(static_cast<double>(k) + 1.0) -
                                std::lgamma(static_cast<double>(n - k) + 1.0) - static_cast<double>(n) * std::log(2.0);
        tail += std::exp(log_term);
    }
    return std::min(1.0, 2.0 * tail);
}

/// Compares treatment[i] with control[i] (the same seed, batches and initialisation) for every i.
inline PairedDifference paired_difference(std::span<const double> treatment, std::span<const double> control,
                                          Better better = Better::lower, double confidence = 0.95) {
    require(treatment.size() == control.size(), "paired_difference: ", treatment.size(), " treatment values but ",
            control.size(), " control values; every seed needs both");
    require(treatment.size() >= 2, "paired_difference: needs at least 2 pairs for a standard error, got ",
            treatment.size());
    require(confidence > 0.0 && confidence < 1.0, "paired_difference: confidence must lie in (0, 1), got ", confidence);
    std::vector<double> differences(treatment.size());
    for (std::size_t i = 0; i < treatment.size(); ++i) {
        require(std::isfinite(treatment[i]) && std::isfinite(control[i]), "paired_difference: pair ", i,
                " is not finite (treatment ", treatment[i], ", control ", control[i], ")");
        differences[i] = treatment[i] - control[i];
    }
    const MeanInterval m = mean_interval(differences, confidence);
    PairedDifference out;
    out.pairs = m.count;
    out.mean = m.mean;
    out.standard_error = m.standard_error;
    out.confidence = confidence;
    out.ci_low = m.ci_low;
    out.ci_high = m.ci_high;
    Index losses = 0;
    for (const double d : differences) {
        if (d == 0.0) {
            ++out.ties;
        } else if ((d < 0.0) == (better == Better::lower)) {
            ++out.wins;
        } else {
            ++losses;
        }
    }
    out.sign_test_p = sign_test_p_value(out.wins, losses);
    return out;
}

}  // namespace npft::stats
