// SentencePiece tokenizers: training is deterministic, the vocabulary's kinds are read right, encode and decode are
// inverse, bad models and bad arguments give npft::Error. Built twice (tests/CMakeLists.txt): with the library, and
// without it (test_io_sentencepiece_absent), where every entry point must name the missing dependency.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <npft/io/sentencepiece.hpp>
#include <string>
#include <vector>

using Catch::Contains;
namespace io = npft::io;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / "npft_test_sentencepiece";
    fs::create_directories(dir);
    return dir / name;
}

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

#endif

void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out << bytes;
}

// A small corpus with a skewed word distribution (so that frequent words become whole pieces), digits and punctuation.
fs::path corpus() {
    static const char* words[] = {"the", "and", "of", "lord", "king", "house", "unto", "israel", "said", "people",
                                  "earth", "heaven", "water", "light", "day", "night", "seed", "tree", "fruit", "land"};
    const fs::path path = scratch("corpus.txt");
    std::string text;
    for (int line = 0; line < 400; ++line) {
        for (int w = 0; w < 12; ++w) {
            const unsigned k = static_cast<unsigned>(line * 31 + w * 17 + line * w);
            // Word i has roughly weight 1/(i+1): "the" is the most frequent.
            const unsigned pick = (k % 7 == 0) ? 0 : (k % 5 == 0) ? 1 : (k * 2654435761u >> 7) % 20;
            if (w) text += ' ';
            text += words[pick];
        }
        text += ", ";
        text += std::to_string(line * 37 % 1000);
        text += ".\n";
    }
    write_bytes(path, text);
    return path;
}

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
// The text a piece sequence spells, rebuilt from the vocabulary alone (not through decode): "▁" is a space, byte
// pieces "<0xHH>" are that byte, and SentencePiece's leading dummy space is dropped.
std::string spell(const io::SentencePieceTokenizer& t, const std::vector<std::int32_t>& ids) {
    std::string out;
    for (const std::int32_t id : ids) {
        const io::TokenPiece& p = t.token(id);
        if (p.type == io::TokenType::byte) {
            out += static_cast<char>(std::stoi(p.piece.substr(3, 2), nullptr, 16));
            continue;
        }
        for (std::size_t i = 0; i < p.piece.size();) {
            if (p.piece.compare(i, 3, "\xE2\x96\x81") == 0) {
                out += ' ';
                i += 3;
            } else {
                out += p.piece[i++];
            }
        }
    }
    if (!out.empty() && out.front() == ' ') out.erase(0, 1);
    return out;
}
#endif

}  // namespace

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE

TEST_CASE("a trained BPE vocabulary has LLaMA's layout: <unk>, <s>, </s>, 256 byte tokens, then pieces", "[io][sentencepiece]") {
    STATIC_REQUIRE(io::has_sentencepiece);
    const fs::path model = scratch("bpe.model");
    const std::vector<fs::path> files{corpus()};
    io::train_sentencepiece(files, 400, model);
    const auto t = io::SentencePieceTokenizer::load(model);
    REQUIRE(t.vocab_size() == 400);
    CHECK(t.unk_id() == 0);
    CHECK(t.bos_id() == 1);
    CHECK(t.eos_id() == 2);
    CHECK(t.pad_id() == -1);
    CHECK(t.token(0).piece == "<unk>");
    CHECK(t.token(0).type == io::TokenType::unknown);
    CHECK(t.token(1).piece == "<s>");
    CHECK(t.token(1).type == io::TokenType::control);
    CHECK(t.token(2).piece == "</s>");
    CHECK(t.token(2).type == io::TokenType::control);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        CHECK(t.token(3 + b).piece == name);
        CHECK(t.token(3 + b).type == io::TokenType::byte);
    }
    for (std::int32_t id = 259; id < t.vocab_size(); ++id) CHECK(t.token(id).type == io::TokenType::normal);
    // The most frequent word is one piece; BPE scores fall with the merge rank.
    const std::vector<std::int32_t> the = t.encode("the");
    REQUIRE(the.size() == 1);
    CHECK(t.token(the[0]).piece == "\xE2\x96\x81the");
    CHECK(t.token(259).score > t.token(300).score);
}

TEST_CASE("encode and decode are inverse, and the pieces spell the text (bytes for unseen characters)", "[io][sentencepiece]") {
    const fs::path model = scratch("roundtrip.model");
    const std::vector<fs::path> files{corpus()};
    io::train_sentencepiece(files, 400, model);
    const auto t = io::SentencePieceTokenizer::load(model);
    for (const std::string text : {"the king said unto the people, 123.", "Zebra quux", "light and water \xCE\xA9\xCE\xBE 42", "x",
                                   "two  spaces, and a trailing one "}) {
        const std::vector<std::int32_t> ids = t.encode(text);
        REQUIRE(!ids.empty());
        for (const std::int32_t id : ids) REQUIRE((id >= 0 && id < t.vocab_size()));
        CHECK(t.decode(ids) == text);
        CHECK(spell(t, ids) == text);
    }
    // "Ω" (CE A9) never occurs in the corpus: byte fallback spells it with two byte tokens.
    const std::vector<std::int32_t> omega = t.encode("\xCE\xA9");
    REQUIRE(omega.size() >= 2);
    CHECK(omega[omega.size() - 2] == 3 + 0xCE);
    CHECK(omega[omega.size() - 1] == 3 + 0xA9);
    // Digits are split one by one (split_digits).
    const std::vector<std::int32_t> digits = t.encode("1234");
    CHECK(spell(t, {digits.end() - 4, digits.end()}) == "1234");
}

TEST_CASE("training twice gives byte-identical model files, BPE and unigram", "[io][sentencepiece]") {
    const std::vector<fs::path> files{corpus()};
    for (const std::string type : {"bpe", "unigram"}) {
        io::SentencePieceOptions options;
        options.model_type = type;
        io::train_sentencepiece(files, 320, scratch(type + "_a.model"), options);
        io::train_sentencepiece(files, 320, scratch(type + "_b.model"), options);
        const std::string a = read_bytes(scratch(type + "_a.model")), b = read_bytes(scratch(type + "_b.model"));
        REQUIRE(!a.empty());
        CHECK(a == b);
        const auto t = io::SentencePieceTokenizer::load(scratch(type + "_a.model"));
        CHECK(t.vocab_size() == 320);
        if (type == "unigram")  // unigram scores are log probabilities
            for (std::int32_t id = 259; id < t.vocab_size(); ++id) CHECK(t.token(id).score <= 0.0f);
    }
}

TEST_CASE("bad tokenizer models and arguments give clear errors", "[io][sentencepiece]") {
    CHECK_THROWS_WITH(io::SentencePieceTokenizer::load(scratch("nowhere.model")), Contains("does not exist"));
    write_bytes(scratch("empty.model"), "");
    CHECK_THROWS_WITH(io::SentencePieceTokenizer::load(scratch("empty.model")), Contains("is empty"));
    write_bytes(scratch("garbage.model"), "this is not a protobuf at all \xff\xff\xff\xff");
    CHECK_THROWS_WITH(io::SentencePieceTokenizer::load(scratch("garbage.model")), Contains("garbage.model"));
    // A real model cut in half.
    const std::vector<fs::path> files{corpus()};
    io::train_sentencepiece(files, 300, scratch("whole.model"));
    const std::string whole = read_bytes(scratch("whole.model"));
    write_bytes(scratch("half.model"), whole.substr(0, whole.size() / 2));
    CHECK_THROWS_WITH(io::SentencePieceTokenizer::load(scratch("half.model")), Contains("half.model"));

    const auto t = io::SentencePieceTokenizer::load(scratch("whole.model"));
    const std::vector<std::int32_t> bad{5, 300};
    CHECK_THROWS_WITH(t.decode(bad), Contains("token id 300 at position 1 is outside the vocabulary of 300"));
    CHECK_THROWS_WITH(t.token(-1), Contains("token id -1"));

    CHECK_THROWS_WITH(io::train_sentencepiece({}, 300, scratch("x.model")), Contains("no text files"));
    const std::vector<fs::path> missing{scratch("no_such_corpus.txt")};
    CHECK_THROWS_WITH(io::train_sentencepiece(missing, 300, scratch("x.model")), Contains("no_such_corpus.txt"));
    CHECK_THROWS_WITH(io::train_sentencepiece(files, 0, scratch("x.model")), Contains("vocab_size must be positive"));
    // Fewer pieces than the 259 special and byte tokens byte fallback needs: SentencePiece's own message comes through.
    CHECK_THROWS_WITH(io::train_sentencepiece(files, 100, scratch("x.model")), Contains("SentencePiece's trainer failed"));
}

#else

TEST_CASE("without SentencePiece every entry point names the missing dependency", "[io][sentencepiece]") {
    STATIC_REQUIRE(!io::has_sentencepiece);
    const fs::path model = scratch("absent.model");
    write_bytes(model, "anything");
    CHECK_THROWS_WITH(io::SentencePieceTokenizer::load(model), Contains("built without SentencePiece") && Contains("libsentencepiece-dev"));
    const std::vector<fs::path> files{corpus()};
    CHECK_THROWS_WITH(io::train_sentencepiece(files, 300, scratch("absent_trained.model")),
                      Contains("built without SentencePiece") && Contains("npft::sentencepiece"));
    CHECK(!fs::exists(scratch("absent_trained.model")));
}

#endif
