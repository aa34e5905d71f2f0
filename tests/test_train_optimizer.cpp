// AdamW and SGD with momentum against steps computed by hand (values from the update formulas in double precision).
#include <catch2/catch.hpp>

#include <npft/train/optimizer.hpp>

using npft::train::AdamW;
using npft::train::SgdMomentum;

TEST_CASE("AdamW matches three hand-computed steps", "[train][optimizer]") {
    const AdamW adam{.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-8f, .weight_decay = 0.01f};
    auto state = adam.make_state(1);
    float p = 1.0f;
    const float grads[] = {0.5f, -1.0f, 0.25f};
    // p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps), lr = 0.1
    const double expected[] = {0.899000002, 0.9347113542385653, 0.9474457089827375};
    for (int t = 0; t < 3; ++t) {
        adam.step(state, std::span<float>(&p, 1), std::span<const float>(&grads[t], 1), 0.1f);
        CHECK(p == Approx(expected[t]).epsilon(1e-6));
    }
    CHECK(state.steps == 3);
    CHECK(state.buffers().size() == 2);
}

TEST_CASE("AdamW's first step moves every weight by lr regardless of the gradient's size", "[train][optimizer]") {
    const AdamW adam{.weight_decay = 0.0f};
    auto state = adam.make_state(3);
    std::vector<float> p{1.0f, 2.0f, 3.0f};
    const std::vector<float> g{1e-3f, -5.0f, 200.0f};
    adam.step(state, p, g, 0.01f);
    CHECK(p[0] == Approx(0.99f).epsilon(1e-5));
    CHECK(p[1] == Approx(2.01f).epsilon(1e-5));
    CHECK(p[2] == Approx(2.99f).epsilon(1e-5));
}

TEST_CASE("SGD with momentum and weight decay matches hand-computed steps", "[train][optimizer]") {
    const SgdMomentum sgd{.momentum = 0.9f, .weight_decay = 0.1f};
    auto state = sgd.make_state(1);
    float p = 1.0f;
    float g = 0.5f;
    sgd.step(state, std::span<float>(&p, 1), std::span<const float>(&g, 1), 0.1f);
    CHECK(p == Approx(0.94f).epsilon(1e-6));  // g' = 0.5 + 0.1 * 1 = 0.6; buf = 0.6; p = 1 - 0.06
    g = -1.0f;
    sgd.step(state, std::span<float>(&p, 1), std::span<const float>(&g, 1), 0.1f);
    CHECK(p == Approx(0.9766f).epsilon(1e-6));  // g' = -1 + 0.094 = -0.906; buf = 0.54 - 0.906 = -0.366
    CHECK(state.velocity[0] == Approx(-0.366f).epsilon(1e-6));
}

TEST_CASE("SGD with Nesterov momentum looks ahead", "[train][optimizer]") {
    const SgdMomentum sgd{.momentum = 0.9f, .weight_decay = 0.1f, .nesterov = true};
    auto state = sgd.make_state(1);
    float p = 1.0f;
    const float g = 0.5f;
    sgd.step(state, std::span<float>(&p, 1), std::span<const float>(&g, 1), 0.1f);
    CHECK(p == Approx(0.886f).epsilon(1e-6));  // g' = 0.6, buf = 0.6, step g' + 0.9 buf = 1.14
}

TEST_CASE("optimizers reject parameters and gradients of other sizes", "[train][optimizer]") {
    const AdamW adam;
    auto state = adam.make_state(2);
    std::vector<float> p(2), g(3);
    REQUIRE_THROWS_WITH(adam.step(state, p, g, 0.1f), Catch::Contains("must have the same size"));
    const SgdMomentum sgd;
    auto s2 = sgd.make_state(3);
    REQUIRE_THROWS_AS(sgd.step(s2, p, std::span<const float>(g.data(), 2), 0.1f), npft::Error);
}
