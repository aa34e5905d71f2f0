// The study's GPTQ order: block 0's Hessians are the fp32 model's (nothing before it is quantized); block 1's are those
// of the fp32 model with block 0 replaced by its quantized weights, and differ from the fp32 model's.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include <npft/quant/gptq.hpp>
#include <npft/quant/uniform.hpp>

#include "calibration.hpp"
#include "study/sequential_gptq.hpp"
#include "tiny_llama/data.hpp"

namespace {

tiny_llama::Config tiny_config() {
    tiny_llama::Config c;
    c.vocab = 16;
    c.layers = 2;
    c.dim = 16;
    c.heads = 2;
    c.hidden = 32;
    c.context = 8;
    return c;
}

std::vector<tiny_llama::Batch> calibration() {
    std::vector<tiny_llama::Token> text;
    for (int i = 0; i < 200; ++i) text.push_back(static_cast<tiny_llama::Token>((i * 7 + i / 5) % 16));
    std::vector<tiny_llama::Batch> out;
    for (std::uint64_t i = 0; i < 4; ++i) out.push_back(tiny_llama::random_windows(text, 1, 9, npft::RandomKey{3, 4}, i));
    return out;
}

struct Captured {
    std::map<std::string, Eigen::MatrixXd> hessians;
    std::map<std::string, npft::quant::QuantizedMatrix> quantized;
};

Captured run_sequential(const tiny_llama::Model& model, const std::vector<tiny_llama::Batch>& batches) {
    Captured c;
    const npft::quant::Gptq gptq(npft::quant::UniformGrid(2, 0));
    c.quantized = study::sequential_gptq(model, batches, [&](const std::string& name, const npft::Matrix& w,
                                                           const npft::quant::GptqHessian& h) {
        c.hessians.emplace(name, h.matrix());
        return gptq.quantize(w, h);
    });
    return c;
}

}  // namespace

TEST_CASE("sequential GPTQ: block 0 sees the fp32 model's inputs, block 1 those of the quantized block 0", "[study][gptq]") {
    tiny_llama::Model model(tiny_config(), 5);
    const auto batches = calibration();
    const Captured sequential = run_sequential(model, batches);
    const auto fp32 = demo::gptq_hessians(model, batches);
    REQUIRE(sequential.hessians.size() == 14);
    REQUIRE(sequential.quantized.size() == 14);

    // Independent reference for block 1: the fp32 model's Hessians after block 0's weights are swapped for their
    // dequantized values.
    tiny_llama::Weights swapped = model.weights();
    for (const auto kind : tiny_llama::linear_kinds)
        swapped.layers[0].linear(kind) = sequential.quantized.at(tiny_llama::linear_name(0, kind)).dequantize();
    tiny_llama::Model after_block0(tiny_config(), swapped);
    const auto reference = demo::gptq_hessians(after_block0, batches);

    for (const auto kind : tiny_llama::linear_kinds) {
        const std::string name0 = tiny_llama::linear_name(0, kind), name1 = tiny_llama::linear_name(1, kind);
        CAPTURE(name0, name1);
        CHECK(sequential.hessians.at(name0) == fp32.at(name0).matrix());
        CHECK(sequential.hessians.at(name1) == reference.at(name1).matrix());
        // 2-bit rounding of block 0 moves block 1's inputs: its Hessians are not the fp32 model's.
        CHECK((sequential.hessians.at(name1) - fp32.at(name1).matrix()).norm() > 1e-3 * fp32.at(name1).matrix().norm());
    }
}

TEST_CASE("sequential GPTQ quantizes with the callback's result and refuses empty calibration", "[study][gptq]") {
    tiny_llama::Model model(tiny_config(), 6);
    const Captured c = run_sequential(model, calibration());
    for (const auto& name : model.linear_names()) REQUIRE(c.quantized.contains(name));
    const npft::Matrix& w = model.weights().layers[1].linear(tiny_llama::LinearKind::down);
    CHECK(c.quantized.at("layers.1.mlp.down").rows() == w.rows());
    CHECK(c.quantized.at("layers.1.mlp.down").cols() == w.cols());
    CHECK_THROWS_WITH(study::sequential_gptq(model, {}, [](const std::string&, const npft::Matrix&, const npft::quant::GptqHessian&)
                                                            -> npft::quant::QuantizedMatrix { throw 0; }),
                      Catch::Matchers::Contains("calibration"));
}
