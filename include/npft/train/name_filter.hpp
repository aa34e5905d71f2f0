#pragma once
// Choosing tensors by name: a list of glob patterns ('*' matches any run of characters, everything else literally).
// The pipeline uses one filter for the tensors it perturbs and one for the tensors it adapts.
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "../core/config.hpp"

namespace npft::train {

/// True when `name` matches `pattern` in full; '*' matches any (possibly empty) run of characters.
inline bool glob_match(std::string_view pattern, std::string_view name) {
    std::size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
    while (n < name.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = n;
        } else if (p < pattern.size() && pattern[p] == name[n]) {
            ++p;
            ++n;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            n = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

/// A set of glob patterns; a name is selected when any pattern matches it.
struct NameFilter {
    std::vector<std::string> patterns;

    NameFilter() = default;
    NameFilter(std::initializer_list<std::string> list) : patterns(list) {}
    explicit NameFilter(std::vector<std::string> list) : patterns(std::move(list)) {}

    static NameFilter all() { return NameFilter{"*"}; }
    static NameFilter none() { return NameFilter{}; }

    bool matches(std::string_view name) const {
        for (const auto& pattern : patterns)
            if (glob_match(pattern, name)) return true;
        return false;
    }

    std::string describe() const {
        std::string out = "{";
        for (std::size_t i = 0; i < patterns.size(); ++i) out += (i ? ", \"" : "\"") + patterns[i] + "\"";
        return out + "}";
    }
};

/// method.md's adapted projections (the reference recipe: q, k, v, o, up, down; gate is perturbed but not adapted),
/// under Hugging Face LLaMA names ("model.layers.0.self_attn.q_proj.weight") and short names ("layers.0.attn.q").
inline NameFilter default_adapted_tensors() {
    return NameFilter{"*q_proj*", "*k_proj*", "*v_proj*", "*o_proj*", "*up_proj*", "*down_proj*",
                      "*.q",      "*.k",      "*.v",      "*.o",      "*.up",      "*.down"};
}

}  // namespace npft::train
