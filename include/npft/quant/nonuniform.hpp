#pragma once
// Non-uniform grids: one lookup table of 2^bits levels per output channel (Format::lut).
//   KMeans       weighted 1-D k-means per row (SqueezeLLM): importance = per-weight sensitivity, e.g. the diagonal Fisher
//   NormalFloat  a fixed NF codebook (quantiles of a standard normal, exact 0, as QLoRA's NF4) scaled by the row's absmax
#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "bitpack.hpp"
#include "grid.hpp"
#include "params.hpp"

namespace npft::quant {

/// Weighted k-means settings. Lloyd iterations stop after `max_iterations`, when the assignment no longer changes, or
/// when the objective falls by less than `tolerance` (relative) in one iteration.
struct KMeans {
    int max_iterations = 50;
    double tolerance = 1e-6;
};

/// The fixed NormalFloat codebook, scaled by each row's absolute maximum. Importance is ignored.
struct NormalFloat {};

enum class CodebookKind { kmeans, normal_float };

/// One Lloyd iterate: centroids (ascending) and the weighted objective sum_i w_i min_c (x_i - c)^2 they reach.
struct KMeansStep {
    std::vector<double> centroids;
    double objective = 0.0;
};

/// The result of weighted_kmeans_1d: final centroids (ascending, k of them, possibly repeated when the data has fewer
/// than k distinct values) and, when asked for, every iterate from the initialisation on.
struct KMeansResult {
    std::vector<double> centroids;
    double objective = 0.0;
    int iterations = 0;
    std::vector<KMeansStep> history;
};

namespace detail {

/// Sorted values with prefix sums of w, w x, w x^2 (x centred on the mean, which keeps the sums well conditioned):
/// the cost of any contiguous cluster is then O(1), and 1-D assignment is a binary search per boundary.
class SortedWeightedValues {
public:
    SortedWeightedValues(std::span<const float> values, std::span<const float> importance) {
        const std::size_t n = values.size();
        std::vector<std::pair<float, float>> items(n);  // (value, weight), sorted by value
        if (importance.empty()) {
            std::vector<float> sorted(values.begin(), values.end());
            std::sort(sorted.begin(), sorted.end());
            for (std::size_t i = 0; i < n; ++i) items[i] = {sorted[i], 1.0f};
        } else {
            double total = 0.0;
            for (std::size_t i = 0; i < n; ++i) {
                items[i] = {values[i], importance[i]};
                total += importance[i];
            }
            // All-zero importance carries no preference: fall back to equal weights rather than an undefined fit.
            if (!(total > 0.0))
                for (auto& item : items) item.second = 1.0f;
            std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        }
        x_.resize(n);
        double mean = 0.0;
        for (std::size_t i = 0; i < n; ++i) mean += items[i].first;
        offset_ = mean / static_cast<double>(n);
        w_.assign(n + 1, 0.0);
        wx_.assign(n + 1, 0.0);
        wxx_.assign(n + 1, 0.0);
        for (std::size_t i = 0; i < n; ++i) {
            x_[i] = items[i].first;
            const double w = items[i].second;
            const double x = static_cast<double>(items[i].first) - offset_;
            w_[i + 1] = w_[i] + w;
            wx_[i + 1] = wx_[i] + w * x;
            wxx_[i + 1] = wxx_[i] + w * x * x;
        }
    }

    Index size() const { return static_cast<Index>(x_.size()); }
    float value(Index i) const { return x_[static_cast<std::size_t>(i)]; }
    double total_weight() const { return w_.back(); }

    /// First index whose value exceeds `boundary` (ties go to the lower cluster, as LutParams::encode does).
    Index upper(double boundary) const {
        return std::upper_bound(x_.begin(), x_.end(), boundary,
                                [](double b, float x) { return b < static_cast<double>(x); }) -
               x_.begin();
    }
    /// The first value at which (1 - blend) * (weighted CDF) + blend * (position in [min, max]) reaches `target`:
    /// blend 0 gives the weighted quantile, blend 1 an even spread over the range.
    float blended_quantile(double target, double blend) const {
        const double lo = x_.front(), range = static_cast<double>(x_.back()) - lo;
        auto below = [&](Index i) {
            const double cdf = w_[static_cast<std::size_t>(i) + 1] / total_weight();
            const double position = range > 0.0 ? (x_[static_cast<std::size_t>(i)] - lo) / range : 1.0;
            return (1.0 - blend) * cdf + blend * position < target;
        };
        Index first = 0, count = size();  // partition point of `below` over the sorted values
        while (count > 0) {
            const Index step = count / 2;
            if (below(first + step)) {
                first += step + 1;
                count -= step + 1;
            } else {
                count = step;
            }
        }
        return x_[static_cast<std::size_t>(std::min(first, size() - 1))];
    }
    double weight(Index a, Index b) const { return w_[b] - w_[a]; }
    /// Weighted mean of [a, b) (requires positive weight).
    double mean(Index a, Index b) const { return (wx_[b] - wx_[a]) / (w_[b] - w_[a]) + offset_; }
    /// sum over [a, b) of w (x - c)^2.
    double cost(Index a, Index b, double c) const {
        const double cc = c - offset_;
        const double s = wx_[b] - wx_[a];
        const double cost = (wxx_[b] - wxx_[a]) - 2.0 * cc * s + cc * cc * (w_[b] - w_[a]);
        return std::max(cost, 0.0);
    }

private:
    std::vector<float> x_;
    double offset_ = 0.0;
    std::vector<double> w_, wx_, wxx_;
};

/// Cluster ranges [ends[i-1], ends[i]) of sorted data for ascending centroids: nearest centroid, ties to the lower one.
inline std::vector<Index> assign_sorted(const SortedWeightedValues& data, const std::vector<double>& centroids) {
    const std::size_t k = centroids.size();
    std::vector<Index> ends(k);
    for (std::size_t i = 0; i + 1 < k; ++i) ends[i] = data.upper(0.5 * (centroids[i] + centroids[i + 1]));
    ends[k - 1] = data.size();
    return ends;
}

inline double objective_of(const SortedWeightedValues& data, const std::vector<double>& centroids, const std::vector<Index>& ends) {
    double total = 0.0;
    Index begin = 0;
    for (std::size_t i = 0; i < centroids.size(); ++i) {
        total += data.cost(begin, ends[i], centroids[i]);
        begin = ends[i];
    }
    return total;
}

/// Whether some cluster [ends[i-1], ends[i]) carries no weight (lloyd_step re-seeds its centroid).
inline bool has_weightless_cluster(const SortedWeightedValues& data, const std::vector<Index>& ends) {
    Index begin = 0;
    for (const Index end : ends) {
        if (!(data.weight(begin, end) > 0.0)) return true;
        begin = end;
    }
    return false;
}

/// One raw Lloyd iterate from ascending `centroids`: each centroid moves to its cluster's weighted mean, and centroids
/// of weightless clusters are re-seeded on the points farthest from their own centroid. The result is sorted; its
/// objective is never above that of `centroids` (tests/test_quant_nonuniform.cpp checks it without the early stop).
inline std::vector<double> lloyd_step(const SortedWeightedValues& data, const std::vector<double>& centroids) {
    const std::size_t kk = centroids.size();
    const std::vector<Index> ends = assign_sorted(data, centroids);
    std::vector<double> next = centroids;
    std::vector<std::size_t> weightless;
    Index begin = 0;
    for (std::size_t i = 0; i < kk; ++i) {
        if (data.weight(begin, ends[i]) > 0.0) {
            next[i] = data.mean(begin, ends[i]);
        } else {
            weightless.push_back(i);
        }
        begin = ends[i];
    }
    // Re-seed: the farthest point of a contiguous cluster is one of its two ends. Putting a spare centroid on a point
    // can only lower every point's distance to its nearest centroid, so the objective still cannot rise.
    if (!weightless.empty()) {
        std::vector<std::pair<double, float>> candidates;  // (squared distance to own centroid, value)
        begin = 0;
        for (std::size_t i = 0; i < kk; ++i) {
            if (ends[i] > begin) {
                for (const Index at : {begin, ends[i] - 1}) {
                    const double d = static_cast<double>(data.value(at)) - next[i];
                    if (d != 0.0) candidates.push_back({d * d, data.value(at)});
                }
            }
            begin = ends[i];
        }
        std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        std::vector<float> used;
        std::size_t next_candidate = 0;
        for (const std::size_t i : weightless) {
            while (next_candidate < candidates.size() &&
                   std::find(used.begin(), used.end(), candidates[next_candidate].second) != used.end())
                ++next_candidate;
            if (next_candidate == candidates.size()) break;
            next[i] = candidates[next_candidate].second;
            used.push_back(candidates[next_candidate].second);
        }
    }
    std::sort(next.begin(), next.end());
    return next;
}

/// Lloyd iterations from the blended-quantile start (see weighted_kmeans_1d). Stops before accepting an iterate that
/// does not lower the objective (rounding noise near convergence), so the history never rises.
inline KMeansResult lloyd(const SortedWeightedValues& data, int k, double blend, const KMeans& options, bool keep_history) {
    const std::size_t kk = static_cast<std::size_t>(k);
    KMeansResult result;
    result.centroids.resize(kk);
    for (std::size_t i = 0; i < kk; ++i) {
        result.centroids[i] = data.blended_quantile((static_cast<double>(i) + 0.5) / static_cast<double>(k), blend);
    }
    std::vector<Index> ends = detail::assign_sorted(data, result.centroids);
    result.objective = detail::objective_of(data, result.centroids, ends);
    if (keep_history) result.history.push_back({result.centroids, result.objective});

    for (int iteration = 0; iteration < options.max_iterations && result.objective > 0.0; ++iteration) {
        std::vector<double> next = lloyd_step(data, result.centroids);
        std::vector<Index> next_ends = detail::assign_sorted(data, next);
        const double next_objective = detail::objective_of(data, next, next_ends);
        if (!(next_objective < result.objective)) break;  // no progress (or only rounding noise): keep the better iterate
        const double decrease = result.objective - next_objective;
        const bool same_assignment = next_ends == ends;
        const bool reseeded = has_weightless_cluster(data, ends);
        result.centroids = std::move(next);
        ends = std::move(next_ends);
        result.objective = next_objective;
        result.iterations = iteration + 1;
        if (keep_history) result.history.push_back({result.centroids, result.objective});
        if (same_assignment && !reseeded) break;
        if (decrease <= options.tolerance * (result.objective + decrease)) break;
    }
    return result;
}

}  // namespace detail

/// Weighted 1-D k-means (Lloyd) of `values` into `k` centroids. `importance` is empty (all ones) or one non-negative
/// weight per value. Deterministic: Lloyd runs from three starts (the weighted quantiles (i + 1/2) / k, an even spread
/// over [min, max], and their blend) and the lowest objective wins; a centroid left without weight is moved to the data
/// point farthest from its centroid. The objective never increases from one iterate to the next: an iterate that would
/// not lower it ends the search. With `keep_history`, the iterates of the winning run are returned in `history`.
inline KMeansResult weighted_kmeans_1d(std::span<const float> values, std::span<const float> importance, int k,
                                       const KMeans& options = {}, bool keep_history = false) {
    require(!values.empty(), "cannot fit k-means to an empty set of values");
    require(k >= 1, "k-means needs at least one centroid, got k = ", k);
    require(importance.empty() || importance.size() == values.size(), "importance must hold ", values.size(),
            " values (one per weight) or none, got ", importance.size());
    require(options.max_iterations >= 0, "k-means max_iterations must be non-negative, got ", options.max_iterations);
    require(options.tolerance >= 0.0, "k-means tolerance must be non-negative, got ", options.tolerance);
    for (const float v : values) require(v - v == 0.0f, "weights hold a non-finite value (", v, ")");
    for (const float w : importance) require(w >= 0.0f && w - w == 0.0f, "importance must be finite and non-negative, got ", w);

    const detail::SortedWeightedValues data(values, importance);
    // Lloyd only refines locally, and heavy tails trap quantile-initialised centroids in the bulk. So run it from three
    // deterministic starts, from the weighted quantiles to an even spread over the range, and keep the best.
    KMeansResult best;
    for (const double blend : {0.0, 0.5, 1.0}) {
        KMeansResult run = detail::lloyd(data, k, blend, options, keep_history);
        if (blend == 0.0 || run.objective < best.objective) best = std::move(run);
    }
    return best;
}

namespace detail {

/// Standard normal quantile by bisection on erfc: slow but exact to double precision, and only run once per bit width.
inline double normal_quantile(double p) {
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
        const double mid = 0.5 * (lo + hi);
        const double cdf = 0.5 * std::erfc(-mid / std::sqrt(2.0));
        (cdf < p ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

/// Fills levels[0, n) ascending from raw values; rounds to fp16 and makes them strictly ascending where fp16 allows
/// (a repeated level can never be chosen, so it is moved to the next fp16 value up: data-free, and harmless).
inline void store_levels(LutParams& p, std::vector<double> raw) {
    std::sort(raw.begin(), raw.end());
    const std::size_t n = raw.size();
    for (std::size_t i = 0; i < n; ++i) {
        const float level = round_to_half(static_cast<float>(raw[i]));
        require(level - level == 0.0f, "lut level ", raw[i], " overflows fp16 (weights above about 65504 in magnitude)");
        p.levels[i] = level;
    }
    for (std::size_t i = 1; i < n; ++i) {
        if (p.levels[i] > p.levels[i - 1]) continue;
        const half previous(p.levels[i - 1]);
        // The next fp16 value above `previous` (bit patterns of non-negative halves ascend; negative ones descend).
        const std::uint16_t bits = previous.bits;
        std::uint16_t up;
        if (bits == 0x8000u) up = 0x0001u;                // -0 -> smallest positive subnormal
        else if (bits & 0x8000u) up = static_cast<std::uint16_t>(bits - 1u);
        else up = static_cast<std::uint16_t>(bits + 1u);
        const float candidate = static_cast<float>(half::from_bits(up));
        p.levels[i] = (candidate - candidate == 0.0f) ? candidate : p.levels[i - 1];
    }
}

}  // namespace detail

/// The NormalFloat codebook of 2^bits levels in [-1, 1], ascending, with -1, 0 and 1 exact. As QLoRA's NF4 (and equal
/// to it for bits = 4): 2^(b-1) positive and 2^(b-1) - 1 negative normal quantiles, evenly spaced in probability from
/// the offset (the mean of 1 - 1/(2(n-1)) and 1 - 1/(2n), n = 2^b) to 1/2, each side normalised to 1.
inline std::vector<double> normal_float_codebook(int bits) {
    require_valid_bits(bits);
    const int n = 1 << bits;
    const double offset = 0.5 * ((1.0 - 0.5 / (n - 1)) + (1.0 - 0.5 / n));
    const double top = detail::normal_quantile(offset);
    const int positive = n / 2, negative = n / 2 - 1;
    std::vector<double> levels;
    levels.reserve(static_cast<std::size_t>(n));
    // Probabilities linspace(offset, 1/2, m + 1) without the last (1/2 gives the exact 0 added below).
    for (int i = 0; i < negative; ++i)
        levels.push_back(-detail::normal_quantile(offset + (0.5 - offset) * i / negative) / top);
    levels.push_back(0.0);
    for (int i = 0; i < positive; ++i) levels.push_back(detail::normal_quantile(offset + (0.5 - offset) * i / positive) / top);
    std::sort(levels.begin(), levels.end());
    levels.front() = -1.0;  // exact ends: bisection leaves ~1e-16
    levels.back() = 1.0;
    return levels;
}

/// Run-time non-uniform grid: bits in 2..8, a k-means or NormalFloat codebook. One table per output channel.
class NonUniformGrid {
public:
    explicit NonUniformGrid(int bits, KMeans options = {}) : bits_(bits), kind_(CodebookKind::kmeans), kmeans_(options) {
        require_valid_bits(bits);
        require(options.max_iterations >= 0, "k-means max_iterations must be non-negative, got ", options.max_iterations);
        require(options.tolerance >= 0.0, "k-means tolerance must be non-negative, got ", options.tolerance);
    }
    NonUniformGrid(int bits, NormalFloat) : bits_(bits), kind_(CodebookKind::normal_float) {
        require_valid_bits(bits);
        const std::vector<double> code = normal_float_codebook(bits);
        std::copy(code.begin(), code.end(), normal_float_.begin());
    }

    int bits() const { return bits_; }
    CodebookKind kind() const { return kind_; }
    const KMeans& kmeans_options() const { return kmeans_; }
    Format format() const { return Format::lut; }
    /// A table per row: the group is always the whole row.
    Index group_size(Index cols) const { return cols; }

    /// The table of one row. `importance` (empty, or one non-negative weight per value) weights the k-means objective.
    LutParams fit(std::span<const float> values, std::span<const float> importance = {}) const {
        return fit_with_history(values, importance, nullptr);
    }

    /// As fit(), also returning the k-means iterates (unused by NormalFloat) for inspection.
    LutParams fit_with_history(std::span<const float> values, std::span<const float> importance,
                               std::vector<KMeansStep>* history) const {
        require(!values.empty(), "cannot fit a lut grid to an empty row");
        LutParams p;
        p.bits = bits_;
        const int n = 1 << bits_;
        if (kind_ == CodebookKind::kmeans) {
            KMeansResult fitted = weighted_kmeans_1d(values, importance, n, kmeans_, history != nullptr);
            if (history) *history = std::move(fitted.history);
            detail::store_levels(p, std::move(fitted.centroids));
        } else {
            float absmax = 0.0f;
            for (const float v : values) {
                require(v - v == 0.0f, "weights hold a non-finite value (", v, ")");
                absmax = std::max(absmax, std::abs(v));
            }
            std::vector<double> raw(static_cast<std::size_t>(n));
            for (int i = 0; i < n; ++i) raw[static_cast<std::size_t>(i)] = normal_float_[static_cast<std::size_t>(i)] * absmax;
            detail::store_levels(p, std::move(raw));
        }
        return p;
    }

private:
    int bits_;
    CodebookKind kind_;
    KMeans kmeans_{};
    std::array<double, 256> normal_float_{};
};

/// Compile-time non-uniform grid: NonUniform<4> is SqueezeLLM-style 4-bit k-means, NonUniform<4, NormalFloat> is NF4.
template <int Bits, class Codebook = KMeans>
class NonUniform : public NonUniformGrid {
    static_assert(Bits >= 2 && Bits <= 8, "NonUniform<Bits, ...>: Bits must be between 2 and 8");
    static_assert(std::same_as<Codebook, KMeans> || std::same_as<Codebook, NormalFloat>,
                  "NonUniform<Bits, Codebook>: Codebook must be KMeans or NormalFloat");

public:
    static constexpr int bits_value = Bits;
    using codebook_type = Codebook;
    NonUniform() : NonUniformGrid(Bits, Codebook{}) {}
    explicit NonUniform(Codebook codebook) : NonUniformGrid(Bits, codebook) {}
};

static_assert(Grid<NonUniformGrid>);

}  // namespace npft::quant
