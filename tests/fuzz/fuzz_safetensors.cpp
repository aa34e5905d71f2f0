// libFuzzer harness: the safetensors reader (io/safetensors.hpp) on arbitrary bytes. Every tensor of a file it
// accepts is read, as float where the dtype converts and as raw bytes otherwise. Anything but npft::Error is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <npft/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(data[i]);
    try {
        const auto file = npft::io::SafetensorsFile::from_bytes(std::move(bytes), "fuzz input");
        for (const std::string& name : file.names()) {
            const npft::io::TensorInfo& info = file.info(name);
            if (file.raw(name).size() != info.bytes()) __builtin_trap();
            if (info.shape.size() == 2) (void)file.read_matrix(name);
        }
    } catch (const npft::Error&) {
    }
    return 0;
}
