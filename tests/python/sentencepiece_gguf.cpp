// Writes what tests/python/check_tokenizer.py gives llama.cpp: a tiny "llama" GGUF model whose vocabulary is a
// SentencePiece tokenizer trained here (OUT_DIR/model.gguf, OUT_DIR/tokenizer.model), and sample texts with npft's
// token ids (OUT_DIR/samples.tsv: text TAB space-separated ids). The model's vocab_size (416) is larger than the
// tokenizer's (400), as padded Hugging Face configs are, so the file carries unused [PADi] tokens too.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tiny_llama/gguf_export.hpp"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    try {
        const fs::path dir = argv[1];
        fs::create_directories(dir);
        static const char* words[] = {"In", "the", "beginning", "God", "created", "heaven", "and", "earth", "light", "darkness",
                                      "waters", "said", "Let", "there", "be", "day", "night", "firmament", "evening", "morning"};
        std::string text;
        for (unsigned line = 0; line < 600; ++line) {
            for (unsigned w = 0; w < 10; ++w) {
                if (w) text += ' ';
                text += words[(line * 7u + w * w * 3u + line * w) % 20u];
            }
            text += line % 3 == 0 ? "; " : ", ";
            text += std::to_string(line * 13u % 997u);
            text += ".\n";
        }
        std::ofstream(dir / "corpus.txt", std::ios::binary) << text;
        const std::vector<fs::path> files{dir / "corpus.txt"};
        npft::io::train_sentencepiece(files, 400, dir / "tokenizer.model");
        const auto tokenizer = npft::io::SentencePieceTokenizer::load(dir / "tokenizer.model");

        tiny_llama::Config c;
        c.vocab = 416;
        c.dim = 32;
        c.hidden = 64;
        c.layers = 1;
        c.heads = 4;
        c.kv_heads = 2;
        c.context = 64;
        c.validate();
        tiny_llama::save_gguf(dir / "model.gguf", c, tiny_llama::Weights::zeros(c), {}, "npft sentencepiece fixture", {}, &tokenizer);

        // Frequent words, unseen words, digits, punctuation, runs of spaces, a trailing space, characters the corpus never
        // had (byte fallback), and text that spells special pieces ("<s>" as plain text).
        const std::vector<std::string> samples = {
            "In the beginning God created the heaven and the earth.",
            "And God said, Let there be light: and there was light.",
            "evening and morning were the 1234567 day",
            "Zebras quietly jump over xylophones",
            "two  spaces   and three, then a trailing space ",
            "caf\xC3\xA9 na\xC3\xAFve \xCE\xA9 \xE2\x82\xAC" "5 \xF0\x9F\x99\x82",
            "<s> is just text here </s>",
            "light",
        };
        std::ofstream out(dir / "samples.tsv", std::ios::binary);
        for (const std::string& sample : samples) {
            out << sample << '\t';
            const std::vector<std::int32_t> ids = tokenizer.encode(sample);
            for (std::size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
            out << '\n';
        }
        std::printf("wrote %s: %d SentencePiece tokens padded to %td, %zu samples\n", (dir / "model.gguf").string().c_str(),
                    tokenizer.vocab_size(), c.vocab, samples.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sentencepiece_gguf: %s\n", e.what());
        return 1;
    }
}
