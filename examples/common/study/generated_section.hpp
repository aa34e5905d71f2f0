#pragma once
// A generated section inside a hand-written page: the text between a begin and an end marker line is the generator's,
// everything else the author's. The block-wise reconstruction study writes its tables into docs/ptq.md this way, so
// the page's reference part and its measured part live together without either overwriting the other.
#include <string>

#include <npft/core/error.hpp>

namespace study {

/// `page` with the text between `begin` and `end` (marker lines, kept) replaced by `body`; without the markers, the
/// page with the markers and `body` appended. Two begin markers, or an end before the begin, are an npft::Error: the
/// page was edited in a way the generator cannot read safely.
inline std::string replace_generated_section(const std::string& page, const std::string& begin, const std::string& end,
                                             const std::string& body) {
    const auto b = page.find(begin);
    const auto e = page.find(end);
    const std::string section = begin + "\n" + body + (body.empty() || body.back() == '\n' ? "" : "\n") + end;
    if (b == std::string::npos && e == std::string::npos) {
        const std::string separator = page.empty() || page.back() == '\n' ? "" : "\n";
        return page + separator + (page.empty() ? "" : "\n") + section + "\n";
    }
    npft::require(b != std::string::npos && e != std::string::npos && b < e, "the page has '", b == std::string::npos ? end : begin,
                  "' without its partner (or in the wrong order): fix the markers by hand");
    npft::require(page.find(begin, b + begin.size()) == std::string::npos, "the page has the marker '", begin, "' twice");
    return page.substr(0, b) + section + page.substr(e + end.size());
}

}  // namespace study
