#pragma once
// A packed quant::QuantizedMatrix stored in a safetensors file as a group of tensors under one name, so that quantized
// checkpoints are ordinary safetensors files that any reader can list and inspect (docs/io.md):
//
//   <name>.codes   U32 [rows, words_per_row]  the packed code words, byte for byte (quant/bitpack.hpp layout)
//   <name>.scales  F16 [rows, groups]         uniform formats
//   <name>.zeros   F16 [rows, groups]         uniform_asymmetric only
//   <name>.lut     F16 [rows, 2^bits]         lut only
//
// and in "__metadata__": <name>.format ("uniform_symmetric" | "uniform_asymmetric" | "lut"), <name>.bits,
// <name>.group_size, <name>.shape ("[rows, cols]") and <name>.packing (the code layout's version, "npft.bitstream32.v1").
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../quant/bitpack.hpp"
#include "../quant/params.hpp"
#include "../quant/quantized_matrix.hpp"
#include "json.hpp"
#include "safetensors.hpp"

namespace npft::io {

/// Version tag of the packed code layout; a reader refuses codes packed any other way.
inline constexpr std::string_view quantized_packing = "npft.bitstream32.v1";

namespace detail {
inline std::string quantized_key(std::string_view name, std::string_view field) {
    std::string key(name);
    key += '.';
    key += field;
    return key;
}

inline Index parse_metadata_integer(const SafetensorsFile& in, const std::string& key) {
    const std::string& text = in.metadata(key);
    json::Value number;
    number.kind = json::Value::Kind::number;
    number.text = text;
    const std::optional<std::uint64_t> value = json::as_uint64(number);
    require(value.has_value() && *value <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()), "safetensors ",
            in.source(), ": metadata '", key, "' must be a non-negative decimal integer, got '", text, "'");
    return static_cast<Index>(*value);
}
}  // namespace detail

/// Adds `matrix` to `out` as the tensors <name>.codes, .scales/.zeros/.lut and its metadata keys (see above).
/// Validates the matrix first, so a broken object is never written.
inline void save_quantized(SafetensorsWriter& out, std::string_view name, const quant::QuantizedMatrix& matrix) {
    require(!name.empty(), "quantized matrix name must be non-empty");
    matrix.validate();
    const auto key = [&](std::string_view field) { return detail::quantized_key(name, field); };
    const quant::PackedCodes& codes = matrix.codes();
    out.add(key("codes"), codes.words(), {matrix.rows(), codes.words_per_row()});
    if (matrix.format() == quant::Format::lut) {
        out.add(key("lut"), matrix.lut(), {matrix.rows(), Index{1} << matrix.bits()});
    } else {
        out.add(key("scales"), matrix.scales(), {matrix.rows(), matrix.groups()});
        if (matrix.format() == quant::Format::uniform_asymmetric) out.add(key("zeros"), matrix.zeros(), {matrix.rows(), matrix.groups()});
    }
    out.add_metadata(key("format"), quant::format_name(matrix.format()));
    out.add_metadata(key("bits"), std::to_string(matrix.bits()));
    out.add_metadata(key("group_size"), std::to_string(matrix.group_size()));
    out.add_metadata(key("shape"), shape_string(std::vector<Index>{matrix.rows(), matrix.cols()}));
    out.add_metadata(key("packing"), std::string(quantized_packing));
}

/// True if `in` holds a quantized matrix saved under `name` (its format key is present).
inline bool has_quantized(const SafetensorsFile& in, std::string_view name) {
    return in.metadata().contains(detail::quantized_key(name, "format"));
}

/// Loads the quantized matrix saved under `name`: checks the metadata (with overflow-checked sizes) and every tensor's
/// dtype and shape against it before allocating anything, that no tensor of another format is present, that the padding
/// codes of each row are zero, and runs QuantizedMatrix::validate(). Throws npft::Error naming the file, the matrix and
/// the problem; a hostile file costs no more memory than its own tensors.
inline quant::QuantizedMatrix load_quantized(const SafetensorsFile& in, std::string_view name) {
    const auto key = [&](std::string_view field) { return detail::quantized_key(name, field); };
    const auto problem = [&](const auto&... parts) {
        fail("safetensors ", in.source(), ": quantized matrix '", name, "': ", parts...);
    };
    if (!has_quantized(in, name)) problem("no metadata key '", key("format"), "' (not saved with save_quantized?)");

    const std::string& packing = in.metadata(key("packing"));
    if (packing != quantized_packing) problem("codes are packed as '", packing, "', this reader knows '", quantized_packing, "'");

    const std::string& format_text = in.metadata(key("format"));
    std::optional<quant::Format> format;
    for (const quant::Format f : {quant::Format::uniform_symmetric, quant::Format::uniform_asymmetric, quant::Format::lut})
        if (format_text == quant::format_name(f)) format = f;
    if (!format) problem("unknown format '", format_text, "' (expected uniform_symmetric, uniform_asymmetric or lut)");

    const Index bits = detail::parse_metadata_integer(in, key("bits"));
    const Index group_size = detail::parse_metadata_integer(in, key("group_size"));
    const std::string& shape_text = in.metadata(key("shape"));
    std::vector<Index> shape;
    try {
        const json::Value parsed = json::parse(shape_text);
        if (parsed.is_array())
            for (const json::Value& d : parsed.items)
                if (const auto n = json::as_uint64(d); n && *n <= static_cast<std::uint64_t>(std::numeric_limits<Index>::max()))
                    shape.push_back(static_cast<Index>(*n));
        if (!parsed.is_array() || shape.size() != 2 || parsed.items.size() != 2) shape.clear();
    } catch (const Error&) {
        shape.clear();
    }
    if (shape.size() != 2) problem("metadata '", key("shape"), "' must be \"[rows, cols]\", got '", shape_text, "'");

    // Every size is checked against the tensors actually in the file before anything is allocated, so metadata that
    // claims a huge matrix costs nothing: a mismatch is reported from the header alone.
    quant::QuantizedSizes sizes;
    try {
        sizes = quant::quantized_sizes(*format, static_cast<int>(bits), shape[0], shape[1], group_size);
    } catch (const Error& e) {
        problem(e.what());
    }
    const Index rows = shape[0];
    const auto expect_tensor = [&](std::string_view field, Dtype dtype, Index cols, bool wanted) {
        const std::string tensor = key(field);
        if (!wanted) {
            if (in.contains(tensor)) problem("tensor '", tensor, "' does not belong to the ", format_text, " format");
            return;
        }
        if (!in.contains(tensor)) problem("no tensor named '", tensor, "'");
        const TensorInfo& t = in.info(tensor);
        if (t.dtype != dtype)
            problem("tensor '", tensor, "' has dtype ", dtype_name(t.dtype), ", expected ", dtype_name(dtype));
        if (t.shape != std::vector<Index>{rows, cols})
            problem("tensor '", tensor, "' has shape ", shape_string(t.shape), ", expected ",
                    shape_string(std::vector<Index>{rows, cols}), " (from metadata shape ", shape_text, ", ", bits,
                    "-bit codes, group size ", group_size, ")");
    };
    expect_tensor("codes", Dtype::u32, sizes.words_per_row, true);
    expect_tensor("scales", Dtype::f16, sizes.groups, *format != quant::Format::lut);
    expect_tensor("zeros", Dtype::f16, sizes.groups, *format == quant::Format::uniform_asymmetric);
    expect_tensor("lut", Dtype::f16, Index{1} << bits, *format == quant::Format::lut);

    quant::QuantizedMatrix m;
    try {
        m = quant::QuantizedMatrix(*format, static_cast<int>(bits), shape[0], shape[1], group_size);
    } catch (const Error& e) {
        problem(e.what());
    }
    m.codes().words() = in.read<std::uint32_t>(key("codes"));
    if (!m.scales().empty()) m.scales() = in.read<half>(key("scales"));
    if (!m.zeros().empty()) m.zeros() = in.read<half>(key("zeros"));
    if (!m.lut().empty()) m.lut() = in.read<half>(key("lut"));
    try {
        m.validate();
    } catch (const Error& e) {
        problem(e.what());
    }
    // Rows are padded to whole blocks of 32 codes with zero codes; anything else there is corruption.
    const Index padded = m.codes().words_per_row() / m.bits() * quant::codes_per_block;
    for (Index r = 0; r < m.rows(); ++r)
        for (Index j = m.cols(); j < padded; ++j)
            if (m.codes().get(r, j) != 0) problem("row ", r, " has a non-zero padding code at column ", j);
    return m;
}

}  // namespace npft::io
