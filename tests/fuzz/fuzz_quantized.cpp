// libFuzzer harness: the packed-matrix loader (io/quantized.hpp) on arbitrary safetensors bytes. A matrix it accepts
// must pass validate() and dequantize. Anything but npft::Error is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <npft/io/quantized.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(data[i]);
    try {
        const auto file = npft::io::SafetensorsFile::from_bytes(std::move(bytes), "fuzz input");
        if (!npft::io::has_quantized(file, "w")) return 0;
        const npft::quant::QuantizedMatrix w = npft::io::load_quantized(file, "w");
        w.validate();
        (void)w.dequantize();
    } catch (const npft::Error&) {
    }
    return 0;
}
