// libFuzzer harness: the strict JSON reader (io/json.hpp) on arbitrary bytes. Accepted documents are quoted back and
// parsed again, which must give the same strings. Anything but npft::Error or a clean return is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <npft/io/json.hpp>

namespace {

void check_round_trip(const npft::io::json::Value& v) {
    if (v.is_string()) {
        const npft::io::json::Value again = npft::io::json::parse(npft::io::json::quote(v.text));
        if (!again.is_string() || again.text != v.text) __builtin_trap();
    }
    for (const auto& item : v.items) check_round_trip(item);
    for (const auto& member : v.members) check_round_trip(member.value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        check_round_trip(npft::io::json::parse(text));
    } catch (const npft::Error&) {
    }
    return 0;
}
