// `using namespace npft;` next to POSIX <strings.h> (which declares ::index): building this file is the test. With the
// former type name npft::index, `index n = 0;` here was ambiguous.
#include <strings.h>

#include <npft/npft.hpp>

using namespace npft;

namespace {
[[maybe_unused]] Index count_rows(const Matrix& m) {
    Index n = 0;
    for (Index r = 0; r < m.rows(); ++r) ++n;
    return n;
}
[[maybe_unused]] const char* find_comma(const char* s) { return ::index(s, ','); }
}  // namespace
