#pragma once
// A small, strict JSON (RFC 8259) reader and string quoting for file headers (safetensors). Strict means: one value,
// nothing after it but whitespace, no trailing commas, no comments, no leading zeros, valid UTF-8 only, no duplicate
// object keys, nesting at most max_depth deep. Numbers keep their literal text: the caller decides what it accepts.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace npft::io::json {

struct Member;

/// One parsed JSON value. Only the fields of its kind are meaningful.
struct Value {
    enum class Kind { null, boolean, number, string, array, object };

    Kind kind = Kind::null;
    bool boolean = false;
    std::string text;             ///< string: the decoded UTF-8 contents; number: the literal as written
    std::vector<Value> items;     ///< array elements, in order
    std::vector<Member> members;  ///< object members, in file order (keys are unique)

    bool is_object() const { return kind == Kind::object; }
    bool is_array() const { return kind == Kind::array; }
    bool is_string() const { return kind == Kind::string; }
    bool is_number() const { return kind == Kind::number; }
};

struct Member {
    std::string key;
    Value value;
};

/// Nesting limit: deeper input is rejected instead of recursing without bound.
inline constexpr int max_depth = 64;

/// The value as an unsigned 64-bit integer if it is a number written as plain decimal digits that fit; nullopt otherwise
/// (fractions, exponents, signs and overflow are not silently rounded).
inline std::optional<std::uint64_t> as_uint64(const Value& v) {
    if (v.kind != Value::Kind::number || v.text.empty()) return std::nullopt;
    std::uint64_t out = 0;
    for (const char c : v.text) {
        if (c < '0' || c > '9') return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (out > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        out = out * 10 + digit;
    }
    return out;
}

/// `s` as a JSON string literal, quotes included. `s` must be valid UTF-8 (bytes >= 0x80 are copied through).
inline std::string quote(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            switch (c) {
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    out += "\\u00";
                    out += hex[u >> 4];
                    out += hex[u & 0xf];
            }
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

namespace detail {

/// Length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 if it is invalid (overlong, surrogate,
/// above U+10FFFF, truncated).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const auto continuation = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0u) == 0x80u; };
    const unsigned char lead = b(0);
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return continuation(1) ? 2 : 0;
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (!continuation(1) || !continuation(2)) return 0;
        if (lead == 0xE0 && b(1) < 0xA0) return 0;  // overlong
        if (lead == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogate
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
        if (lead == 0xF0 && b(1) < 0x90) return 0;  // overlong
        if (lead == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

class Parser {
public:
    explicit Parser(std::string_view text) : s_(text) {}

    Value parse_document() {
        skip_whitespace();
        Value v = parse_value(0);
        skip_whitespace();
        if (pos_ != s_.size()) error("unexpected ", describe_here(), " after the JSON value");
        return v;
    }

private:
    std::string_view s_;
    std::size_t pos_ = 0;

    template <class... Parts>
    [[noreturn]] void error(const Parts&... parts) const {
        fail("invalid JSON at byte ", pos_, ": ", parts...);
    }

    std::string describe_here() const {
        if (pos_ >= s_.size()) return "end of input";
        const auto c = static_cast<unsigned char>(s_[pos_]);
        if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
        return "byte 0x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 0xf];
    }

    void skip_whitespace() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    bool consume(char c) {
        if (pos_ < s_.size() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }

    Value parse_value(int depth) {
        if (pos_ >= s_.size()) error("expected a value, got end of input");
        switch (s_[pos_]) {
            case '{': return parse_object(depth + 1);
            case '[': return parse_array(depth + 1);
            case '"': {
                Value v;
                v.kind = Value::Kind::string;
                v.text = parse_string();
                return v;
            }
            case 't': return parse_literal("true", Value::Kind::boolean, true);
            case 'f': return parse_literal("false", Value::Kind::boolean, false);
            case 'n': return parse_literal("null", Value::Kind::null, false);
            default: return parse_number();
        }
    }

    Value parse_literal(std::string_view word, Value::Kind kind, bool flag) {
        if (s_.substr(pos_, word.size()) != word) error("expected a value, got ", describe_here());
        pos_ += word.size();
        Value v;
        v.kind = kind;
        v.boolean = flag;
        return v;
    }

    Value parse_number() {
        const std::size_t start = pos_;
        const auto digit = [&] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
        const auto digits = [&] {
            if (!digit()) error("expected a digit, got ", describe_here());
            while (digit()) ++pos_;
        };
        consume('-');
        if (consume('0')) {
            if (digit()) error("leading zeros are not allowed in numbers");
        } else {
            if (!digit()) error("expected a value, got ", describe_here());
            digits();
        }
        if (consume('.')) digits();
        if (consume('e') || consume('E')) {
            if (!consume('+')) consume('-');
            digits();
        }
        Value v;
        v.kind = Value::Kind::number;
        v.text = std::string(s_.substr(start, pos_ - start));
        return v;
    }

    std::uint32_t parse_hex4() {
        if (pos_ + 4 > s_.size()) error("truncated \\u escape");
        std::uint32_t cp = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[pos_++];
            cp <<= 4;
            if (c >= '0' && c <= '9') cp |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') cp |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') cp |= static_cast<std::uint32_t>(c - 'A' + 10);
            else error("invalid hex digit in \\u escape");
        }
        return cp;
    }

    std::string parse_string() {
        ++pos_;  // opening quote
        std::string out;
        while (true) {
            if (pos_ >= s_.size()) error("unterminated string");
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("unescaped control character 0x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 0xf],
                                " in a string");
            if (c == '\\') {
                ++pos_;
                if (pos_ >= s_.size()) error("unterminated string");
                const char e = s_[pos_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        std::uint32_t cp = parse_hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired low surrogate in \\u escape");
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (!consume('\\') || !consume('u')) error("unpaired high surrogate in \\u escape");
                            const std::uint32_t low = parse_hex4();
                            if (low < 0xDC00 || low > 0xDFFF) error("unpaired high surrogate in \\u escape");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        }
                        append_utf8(out, cp);
                        break;
                    }
                    default: --pos_; error("invalid escape sequence");
                }
                continue;
            }
            const std::size_t length = utf8_sequence_length(s_, pos_);
            if (length == 0) error("invalid UTF-8 in a string");
            out.append(s_.substr(pos_, length));
            pos_ += length;
        }
    }

    Value parse_array(int depth) {
        if (depth > max_depth) error("nesting deeper than ", max_depth, " levels");
        ++pos_;
        Value v;
        v.kind = Value::Kind::array;
        skip_whitespace();
        if (consume(']')) return v;
        while (true) {
            skip_whitespace();
            v.items.push_back(parse_value(depth));
            skip_whitespace();
            if (consume(']')) return v;
            if (!consume(',')) error("expected ',' or ']' in an array, got ", describe_here());
        }
    }

    Value parse_object(int depth) {
        if (depth > max_depth) error("nesting deeper than ", max_depth, " levels");
        const std::size_t start = pos_;
        ++pos_;
        Value v;
        v.kind = Value::Kind::object;
        skip_whitespace();
        if (!consume('}')) {
            while (true) {
                skip_whitespace();
                if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key in an object, got ", describe_here());
                std::string key = parse_string();
                skip_whitespace();
                if (!consume(':')) error("expected ':' after an object key, got ", describe_here());
                skip_whitespace();
                Value value = parse_value(depth);
                v.members.push_back(Member{std::move(key), std::move(value)});
                skip_whitespace();
                if (consume('}')) break;
                if (!consume(',')) error("expected ',' or '}' in an object, got ", describe_here());
            }
        }
        // Sorting views of the keys finds duplicates in n log n without copying them.
        std::vector<std::string_view> keys;
        keys.reserve(v.members.size());
        for (const Member& m : v.members) keys.emplace_back(m.key);
        std::sort(keys.begin(), keys.end());
        const auto duplicate = std::adjacent_find(keys.begin(), keys.end());
        if (duplicate != keys.end()) fail("invalid JSON at byte ", start, ": duplicate key ", quote(*duplicate), " in an object");
        return v;
    }
};

}  // namespace detail

/// Parses one JSON document; throws npft::Error("invalid JSON at byte N: ...") naming the first problem.
inline Value parse(std::string_view text) { return detail::Parser(text).parse_document(); }

}  // namespace npft::io::json
