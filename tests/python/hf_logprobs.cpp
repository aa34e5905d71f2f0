// Loads a Hugging Face checkpoint folder into the tiny-LLaMA model and writes its next-token log-probabilities for the
// sequences of DIR/tokens.txt (one row per predicting position), for tests/python/hf_reference.py to compare with its
// numpy implementation of the Hugging Face forward.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tiny_llama/forward.hpp"
#include "tiny_llama/hf_checkpoint.hpp"
#include "tiny_llama/model.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s HF_DIR OUT.txt\n", argv[0]);
        return 2;
    }
    try {
        const std::filesystem::path dir = argv[1];
        tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(dir);
        const tiny_llama::Model model(hf.config, std::move(hf.weights));
        tiny_llama::Batch batch;
        std::ifstream tokens(dir / "tokens.txt");
        for (std::string line; std::getline(tokens, line);) {
            std::istringstream in(line);
            std::vector<tiny_llama::Token> sequence;
            for (tiny_llama::Token t; in >> t;) sequence.push_back(t);
            if (!sequence.empty()) batch.sequences.push_back(sequence);
        }
        tiny_llama::Activations a;
        tiny_llama::forward_loss_sum(model.config(), model.weights(), model.rope(), tiny_llama::DenseLinears{&model.weights()}, batch, &a);
        std::ofstream out(argv[2]);
        char text[32];
        for (npft::Index r = 0; r < a.probs.rows(); ++r) {
            for (npft::Index c = 0; c < a.probs.cols(); ++c) {
                std::snprintf(text, sizeof text, "%s%.9g", c ? " " : "", std::log(static_cast<double>(a.probs(r, c))));
                out << text;
            }
            out << '\n';
        }
        return out ? 0 : 1;
    } catch (const npft::Error& e) {
        std::fprintf(stderr, "hf_logprobs: %s\n", e.what());
        return 1;
    }
}
