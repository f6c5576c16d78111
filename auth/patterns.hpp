// pattern_set: which channels a token lets its holder subscribe or publish to. A pattern is an
// exact channel name or a prefix followed by one `*`, the pattern's last character: `news*`
// matches `news`, `news.eu` and `newsroom`, not `new`; a lone `*` matches every channel. Nothing
// else is special (no `?`, no `*` in the middle, no escapes), so what a pattern allows can be
// read off it. A malformed pattern is refused when the set is parsed, never skipped: a token or
// option carrying one is refused whole.
#pragma once

#include "auth/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone::auth {

/// Why a pattern was refused.
enum class pattern_error : std::uint8_t {
    empty = 1,       ///< "": matches no channel, most likely a mistake
    star_not_at_end, ///< a `*` anywhere but the last character (`a*b`, `**`)
};
std::string_view to_string(pattern_error) noexcept;

/// The first malformed pattern of a list: where it is and why.
struct pattern_refusal {
    std::size_t index;
    pattern_error error;
};

class pattern_set {
public:
    /// Allows nothing.
    pattern_set() = default;

    /// The set of `patterns`, or the first malformed one.
    static expected<pattern_set, pattern_refusal> parse(const std::vector<std::string>& patterns);

    /// Why `pattern` is malformed, or nullopt when it is a valid pattern.
    static std::optional<pattern_error> check(std::string_view pattern) noexcept;

    /// True when some pattern of the set matches `channel`.
    bool allows(std::string_view channel) const noexcept;

    /// True when the set allows nothing.
    bool empty() const noexcept { return exact_.empty() && prefixes_.empty(); }

private:
    std::vector<std::string> exact_;    // sorted, unique: binary search
    std::vector<std::string> prefixes_; // without their `*`; "" for a lone `*`
};

} // namespace megaphone::auth
