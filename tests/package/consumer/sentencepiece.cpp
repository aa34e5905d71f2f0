// A user of npft::sentencepiece: the build has the library, and a missing model is an npft::Error.
#include <npft/io/sentencepiece.hpp>

int main() {
    static_assert(npft::io::has_sentencepiece, "npft::sentencepiece must define NPFT_HAS_SENTENCEPIECE");
    try {
        (void)npft::io::SentencePieceTokenizer::load("no/such/tokenizer.model");
    } catch (const npft::Error&) {
        return 0;
    }
    return 1;
}
