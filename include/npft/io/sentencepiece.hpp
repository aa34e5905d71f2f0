#pragma once
// SentencePiece tokenizers (the tokenizer.model of LLaMA, LLaMA 2 and TinyLlama): load, encode, decode, read the
// vocabulary, and train one deterministically.
//
// This is npft's one optional dependency: Google's libsentencepiece (Debian: libsentencepiece-dev). Link the CMake
// target npft::sentencepiece, which links the library and defines NPFT_HAS_SENTENCEPIECE=1. Without it this header
// still compiles, and every function throws an npft::Error naming the missing dependency: a program never silently
// tokenizes some other way.
//
// Token types are SentencePiece's own numbers, which are also GGUF's tokenizer.ggml.token_type values.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "atomic_file.hpp"
#endif

namespace npft::io {

/// Whether this build can read and train SentencePiece models.
inline constexpr bool has_sentencepiece =
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
    true;
#else
    false;
#endif

/// A vocabulary entry's kind, numbered as SentencePiece's ModelProto and GGUF's tokenizer.ggml.token_type number them.
enum class TokenType : std::int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

inline const char* token_type_name(TokenType t) {
    switch (t) {
        case TokenType::normal: return "normal";
        case TokenType::unknown: return "unknown";
        case TokenType::control: return "control";
        case TokenType::user_defined: return "user_defined";
        case TokenType::unused: return "unused";
        case TokenType::byte: return "byte";
    }
    return "invalid";
}

/// One vocabulary entry: its text ("▁the", "<0x0A>", "<s>"), its score (a log probability for unigram models, minus
/// the merge rank for BPE) and its kind.
struct TokenPiece {
    std::string piece;
    float score = 0.0f;
    TokenType type = TokenType::normal;
};

/// How train_sentencepiece builds a vocabulary. The defaults are LLaMA's: a BPE model with byte fallback (every byte
/// has a token, so no text is unknown), digits split, no text normalization (not even of runs of spaces, which
/// llama.cpp's tokenizer would not collapse either), <unk>=0, <s>=1, </s>=2, no pad.
struct SentencePieceOptions {
    std::string model_type = "bpe";      ///< "bpe" or "unigram" (also "char", "word")
    double character_coverage = 1.0;     ///< fraction of characters kept as pieces; the rest go through byte fallback
    bool byte_fallback = true;
    bool split_digits = true;
    std::string normalization = "identity";  ///< SentencePiece's normalization rule name ("identity", "nmt_nfkc", ...)
    bool remove_extra_whitespaces = false;   ///< SentencePiece's default collapses runs of spaces; LLaMA's does not
    int max_sentence_length = 1 << 16;   ///< longer lines (bytes) are skipped by the trainer
    int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  ///< -1 leaves a special token out
    unsigned seed = 1;                   ///< SentencePiece's random generator (used by the unigram trainer's sampling)
};

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
namespace sentencepiece_detail {

/// The type field of every piece of a serialized ModelProto (protobuf: field 1 = repeated SentencePiece, whose field 3
/// is the type, default NORMAL). The library's API has no "is user defined"; the model file says it directly.
inline std::vector<TokenType> piece_types(std::string_view proto, const std::string& source) {
    std::size_t at = 0;
    const auto varint = [&](std::string_view bytes, std::size_t& pos) {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            require(pos < bytes.size(), "SentencePiece model '", source, "' is corrupt: a varint runs past its end");
            const auto b = static_cast<unsigned char>(bytes[pos++]);
            v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return v;
        }
        fail("SentencePiece model '", source, "' is corrupt: a varint is longer than 10 bytes");
    };
    const auto skip = [&](std::string_view bytes, std::size_t& pos, std::uint64_t wire) {
        std::uint64_t n = 0;
        switch (wire) {
            case 0: varint(bytes, pos); return;
            case 1: n = 8; break;
            case 2: n = varint(bytes, pos); break;
            case 5: n = 4; break;
            default: fail("SentencePiece model '", source, "' is corrupt: protobuf wire type ", wire);
        }
        require(n <= bytes.size() - pos, "SentencePiece model '", source, "' is corrupt: a field runs past its end");
        pos += static_cast<std::size_t>(n);
    };
    std::vector<TokenType> types;
    while (at < proto.size()) {
        const std::uint64_t key = varint(proto, at);
        if (key != ((1u << 3) | 2u)) {
            skip(proto, at, key & 7);
            continue;
        }
        const std::uint64_t length = varint(proto, at);
        require(length <= proto.size() - at, "SentencePiece model '", source, "' is corrupt: a piece runs past its end");
        const std::string_view piece = proto.substr(at, static_cast<std::size_t>(length));
        at += static_cast<std::size_t>(length);
        TokenType type = TokenType::normal;
        for (std::size_t p = 0; p < piece.size();) {
            const std::uint64_t k = varint(piece, p);
            if (k == ((3u << 3) | 0u)) {
                const std::uint64_t t = varint(piece, p);
                require(t >= 1 && t <= 6, "SentencePiece model '", source, "' has a piece of unknown type ", t);
                type = static_cast<TokenType>(t);
            } else {
                skip(piece, p, k & 7);
            }
        }
        types.push_back(type);
    }
    return types;
}

/// Feeds the trainer the lines of text files, in order (no shuffling, no sampling: the result depends on the text only).
class LineReader : public sentencepiece::SentenceIterator {
public:
    explicit LineReader(std::vector<std::filesystem::path> files) : files_(std::move(files)) { advance(); }
    bool done() const override { return done_; }
    void Next() override { advance(); }
    const std::string& value() const override { return line_; }
    sentencepiece::util::Status status() const override { return {}; }

private:
    void advance() {
        for (;;) {
            if (in_.is_open() && std::getline(in_, line_)) {
                if (!line_.empty() && line_.back() == '\r') line_.pop_back();
                if (!line_.empty()) return;
                continue;
            }
            if (next_ == files_.size()) {
                done_ = true;
                return;
            }
            in_ = std::ifstream(files_[next_], std::ios::binary);
            require(static_cast<bool>(in_), "train_sentencepiece: cannot read text file '", files_[next_].string(), "'");
            ++next_;
        }
    }
    std::vector<std::filesystem::path> files_;
    std::size_t next_ = 0;
    std::ifstream in_;
    std::string line_;
    bool done_ = false;
};

/// SentencePiece's trainer and its random seed are process-wide state: one training at a time.
inline std::mutex& trainer_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace sentencepiece_detail
#endif

/// A loaded SentencePiece model (tokenizer.model). Encoding and decoding are const and safe from several threads.
class SentencePieceTokenizer {
public:
    /// Loads `path`; a missing, unreadable or corrupt file gives an npft::Error naming it.
    static SentencePieceTokenizer load(const std::filesystem::path& path) {
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
        require(std::filesystem::is_regular_file(path), "SentencePiece model '", path.string(), "' does not exist");
        std::ifstream in(path, std::ios::binary);
        require(static_cast<bool>(in), "cannot read SentencePiece model '", path.string(), "'");
        std::ostringstream bytes;
        bytes << in.rdbuf();
        const std::string proto = bytes.str();
        require(!proto.empty(), "SentencePiece model '", path.string(), "' is empty");
        SentencePieceTokenizer t;
        t.source_ = path.string();
        auto processor = std::make_shared<sentencepiece::SentencePieceProcessor>();
        const auto status = processor->LoadFromSerializedProto(proto);
        t.processor_ = processor;
        require(status.ok(), "SentencePiece model '", path.string(), "' is not a valid tokenizer.model: ", status.ToString());
        const std::vector<TokenType> types = sentencepiece_detail::piece_types(proto, t.source_);
        const int n = t.processor_->GetPieceSize();
        require(static_cast<int>(types.size()) == n, "SentencePiece model '", path.string(), "' is corrupt: ", types.size(),
                " pieces in the file, the library read ", n);
        t.vocabulary_.reserve(static_cast<std::size_t>(n));
        for (int id = 0; id < n; ++id)
            t.vocabulary_.push_back({t.processor_->IdToPiece(id), t.processor_->GetScore(id), types[static_cast<std::size_t>(id)]});
        t.unk_ = t.processor_->unk_id();
        t.bos_ = t.processor_->bos_id();
        t.eos_ = t.processor_->eos_id();
        t.pad_ = t.processor_->pad_id();
        return t;
#else
        fail("cannot load SentencePiece model '", path.string(), "': npft was built without SentencePiece (install "
             "libsentencepiece-dev and link the CMake target npft::sentencepiece)");
#endif
    }

    /// The ids of `text`, without <s> or </s> (a caller adds them where the model expects them).
    std::vector<std::int32_t> encode(std::string_view text) const {
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
        std::vector<int> ids;
        const auto status = processor_->Encode(text, &ids);
        require(status.ok(), "SentencePiece model '", source_, "' cannot encode the text: ", status.ToString());
        return {ids.begin(), ids.end()};
#else
        (void)text;
        fail("npft was built without SentencePiece");
#endif
    }

    /// The text of `ids`; every id must be below vocab_size().
    std::string decode(std::span<const std::int32_t> ids) const {
        for (std::size_t i = 0; i < ids.size(); ++i)
            require(ids[i] >= 0 && ids[i] < vocab_size(), "decode: token id ", ids[i], " at position ", i,
                    " is outside the vocabulary of ", vocab_size(), " of '", source_, "'");
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
        std::string text;
        const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
        require(status.ok(), "SentencePiece model '", source_, "' cannot decode: ", status.ToString());
        return text;
#else
        fail("npft was built without SentencePiece");
#endif
    }

    std::int32_t vocab_size() const { return static_cast<std::int32_t>(vocabulary_.size()); }
    const std::vector<TokenPiece>& vocabulary() const { return vocabulary_; }
    const TokenPiece& token(std::int32_t id) const {
        require(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary of ", vocab_size(), " of '", source_, "'");
        return vocabulary_[static_cast<std::size_t>(id)];
    }
    /// Special token ids; -1 when the model has none.
    std::int32_t unk_id() const { return unk_; }
    std::int32_t bos_id() const { return bos_; }
    std::int32_t eos_id() const { return eos_; }
    std::int32_t pad_id() const { return pad_; }
    const std::string& source() const { return source_; }

private:
    SentencePieceTokenizer() = default;  // only load() makes one: there is no tokenizer without a model

    std::string source_;
    std::vector<TokenPiece> vocabulary_;
    std::int32_t unk_ = -1, bos_ = -1, eos_ = -1, pad_ = -1;
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
    std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor_;
#endif
};

/// Trains a SentencePiece model of `vocab_size` pieces on the lines of `text_files` (read in order, each line one
/// sentence, empty lines skipped) and writes it to `model_file` (atomically). Deterministic: the same files and options
/// give a byte-identical model file. To get there the trainer runs on one thread, with input shuffling and sentence
/// sampling off and the seed fixed. One thread because, measured with libsentencepiece 0.1.97: the unigram trainer's
/// pieces and scores change with the thread count (its EM sums per-thread partial counts), and every model file
/// records the thread count it was trained with, so even BPE's identical pieces give different files.
inline void train_sentencepiece(std::span<const std::filesystem::path> text_files, int vocab_size,
                                const std::filesystem::path& model_file, const SentencePieceOptions& options = {}) {
    require(!text_files.empty(), "train_sentencepiece: no text files given");
    require(vocab_size > 0, "train_sentencepiece: vocab_size must be positive, got ", vocab_size);
#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
    for (const auto& f : text_files)
        require(std::filesystem::is_regular_file(f), "train_sentencepiece: text file '", f.string(), "' does not exist");
    const std::unordered_map<std::string, std::string> spec = {
        {"model_type", options.model_type},
        {"vocab_size", std::to_string(vocab_size)},
        {"character_coverage", std::to_string(options.character_coverage)},
        {"byte_fallback", options.byte_fallback ? "true" : "false"},
        {"split_digits", options.split_digits ? "true" : "false"},
        {"normalization_rule_name", options.normalization},
        {"remove_extra_whitespaces", options.remove_extra_whitespaces ? "true" : "false"},
        {"max_sentence_length", std::to_string(options.max_sentence_length)},
        {"unk_id", std::to_string(options.unk_id)},
        {"bos_id", std::to_string(options.bos_id)},
        {"eos_id", std::to_string(options.eos_id)},
        {"pad_id", std::to_string(options.pad_id)},
        {"num_threads", "1"},
        {"shuffle_input_sentence", "false"},
        {"input_sentence_size", "0"},
        {"minloglevel", "2"},
        {"model_prefix", ""},
    };
    std::string proto;
    {
        const std::lock_guard lock(sentencepiece_detail::trainer_mutex());
        sentencepiece::SetRandomGeneratorSeed(options.seed);
        sentencepiece_detail::LineReader lines({text_files.begin(), text_files.end()});
        const auto status = sentencepiece::SentencePieceTrainer::Train(spec, &lines, &proto);
        require(status.ok(), "train_sentencepiece: SentencePiece's trainer failed (vocab_size ", vocab_size, ", model_type ",
                options.model_type, "): ", status.ToString());
    }
    write_file_atomically(model_file, std::as_bytes(std::span<const char>(proto.data(), proto.size())));
#else
    (void)model_file;
    (void)options;
    fail("train_sentencepiece: npft was built without SentencePiece (install libsentencepiece-dev and link the CMake "
         "target npft::sentencepiece)");
#endif
}

}  // namespace npft::io
