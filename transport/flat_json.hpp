#pragma once
// A scanner for the fast paths over small flat JSON objects (the JSON transport's request
// decoder, the hub's publish envelope): plain ASCII strings without escapes and plain
// non-negative integers only. Each call consumes what it accepts and returns false at anything
// else, and the caller then leaves the whole text to the general parser (nlohmann), so a fast
// path either reads a text exactly as the general parser would or does not read it at all.
#include <cstdint>
#include <string_view>

namespace megaphone {

class flat_json_scanner {
public:
    explicit flat_json_scanner(std::string_view text) noexcept
        : p_{text.data()}
        , end_{text.data() + text.size()} {}

    bool at_end() const noexcept { return p_ == end_; }
    /// The next character, '\0' at the end.
    char peek() const noexcept { return p_ == end_ ? '\0' : *p_; }

    void skip_ws() noexcept {
        while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t'))
            ++p_;
    }

    bool eat(char c) noexcept {
        if (p_ == end_ || *p_ != c)
            return false;
        ++p_;
        return true;
    }

    /// A string of printable ASCII without escapes; `out` is its content, quotes excluded (they
    /// are the bytes just before and after it).
    bool string(std::string_view& out) noexcept {
        if (!eat('"'))
            return false;
        const char* start = p_;
        while (p_ != end_ && *p_ != '"') {
            const auto c = static_cast<unsigned char>(*p_);
            if (c < 0x20 || c > 0x7e || c == '\\')
                return false;
            ++p_;
        }
        if (p_ == end_)
            return false;
        out = {start, static_cast<std::size_t>(p_ - start)};
        ++p_;
        return true;
    }

    /// A plain non-negative integer of at most 15 digits (below 2^53, so exact as a double too),
    /// without a leading zero, fraction or exponent; `text` is its digits as written.
    bool integer(std::uint64_t& out, std::string_view& text) noexcept {
        const char* start = p_;
        std::uint64_t v = 0;
        while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
            v = v * 10 + static_cast<std::uint64_t>(*p_ - '0');
            ++p_;
        }
        const auto digits = p_ - start;
        if (digits == 0 || digits > 15 || (digits > 1 && *start == '0'))
            return false;
        if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E'))
            return false;
        out = v;
        text = {start, static_cast<std::size_t>(digits)};
        return true;
    }
    bool integer(std::uint64_t& out) noexcept {
        std::string_view text;
        return integer(out, text);
    }

    /// `true` or `false`.
    bool boolean(bool& out) noexcept {
        auto word = [this](std::string_view w) {
            if (static_cast<std::size_t>(end_ - p_) < w.size() ||
                std::string_view(p_, w.size()) != w)
                return false;
            p_ += w.size();
            return true;
        };
        if (word("true"))
            out = true;
        else if (word("false"))
            out = false;
        else
            return false;
        return true;
    }

    /// The whole text is one object with at least one member: for each, `member(key)` is called
    /// after the key and its ':' and reads the value (false: give up). Whitespace may surround
    /// every token; nothing may follow the object.
    template <class Member>
    bool object(Member&& member) {
        skip_ws();
        if (!eat('{'))
            return false;
        do {
            skip_ws();
            std::string_view key;
            if (!string(key))
                return false;
            skip_ws();
            if (!eat(':'))
                return false;
            skip_ws();
            if (!member(key))
                return false;
            skip_ws();
        } while (eat(','));
        if (!eat('}'))
            return false;
        skip_ws();
        return at_end();
    }

private:
    const char* p_;
    const char* end_;
};

} // namespace megaphone
