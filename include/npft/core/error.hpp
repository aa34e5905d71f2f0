#pragma once
// The one error type of npft, and the precondition helpers that throw it.
#include <sstream>
#include <stdexcept>
#include <string>

#include "config.hpp"

namespace npft {

/// Thrown for every precondition failure and every corrupt input. what() names the argument and the expected value.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}
}  // namespace detail

/// Throws npft::Error with the parts streamed together: fail("group size ", g, " does not divide ", k).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    throw Error(detail::concat(parts...));
}

/// Throws npft::Error unless `condition` holds. The message parts are only formatted on failure.
template <class... Parts>
void require(bool condition, const Parts&... parts) {
    if (!condition) fail(parts...);
}

}  // namespace npft
