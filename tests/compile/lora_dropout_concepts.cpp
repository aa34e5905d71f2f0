// Compile-only: which models offer activation-space LoRA (npft::train::LoraActivationModel, needed for LoRA dropout).
// Building this file is the test.
#include <string_view>

#include <npft/npft.hpp>

namespace {

namespace train = npft::train;
struct Batch {};

// The documented shape: a DifferentiableModel plus set_lora_adapter(name, adapter).
struct AdaptingModel {
    std::vector<train::Parameter> parameters() { return {}; }
    double loss_and_gradient(const Batch&) { return 0.0; }
    void set_lora_adapter(const std::string&, train::ActivationLora*) {}
};
// Taking the name by value or string_view, or returning something, is fine too.
struct AdaptingModelByValue {
    std::vector<train::Parameter> parameters() { return {}; }
    double loss_and_gradient(const Batch&) { return 0.0; }
    bool set_lora_adapter(std::string_view, train::ActivationLora*) { return true; }
};
static_assert(train::LoraActivationModel<AdaptingModel>);
static_assert(train::LoraActivationModel<AdaptingModelByValue>);
static_assert(train::DifferentiableModel<AdaptingModel, Batch>);

// Not the capability: no member, the wrong name, adapters by position instead of by parameter name.
struct PlainModel {
    std::vector<train::Parameter> parameters() { return {}; }
    double loss_and_gradient(const Batch&) { return 0.0; }
};
struct MisnamedModel {
    void set_adapter(const std::string&, train::ActivationLora*) {}
};
struct IndexedModel {
    void set_lora_adapter(int, train::ActivationLora*) {}
};
static_assert(!train::LoraActivationModel<PlainModel>);
static_assert(!train::LoraActivationModel<MisnamedModel>);
static_assert(!train::LoraActivationModel<IndexedModel>);

// The adapter's calls as a model makes them, from Eigen matrices through views.
[[maybe_unused]] void adapter_calls(train::ActivationLora& adapter, const npft::Matrix& x, npft::Matrix& y,
                                    const npft::Matrix& dy, npft::Matrix& dx) {
    adapter.forward(npft::as_matrix_view(x), npft::as_matrix_view(y));
    adapter.backward(npft::as_matrix_view(x), npft::as_matrix_view(dy), npft::as_matrix_view(dx));
    adapter.backward(npft::as_matrix_view(x), npft::as_matrix_view(dy), 4);
}

// The LoraOptions of the reference recipe with dropout, as docs/pipeline.md writes them.
[[maybe_unused]] constexpr train::LoraOptions recipe{.rank = 16, .alpha = 32.0f, .dropout = 0.05f};
static_assert(train::LoraOptions{}.dropout == 0.0f);

}  // namespace
