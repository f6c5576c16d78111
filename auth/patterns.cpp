#include "auth/patterns.hpp"

#include <algorithm>

namespace megaphone::auth {

std::string_view to_string(pattern_error e) noexcept {
    switch (e) {
    case pattern_error::empty:
        return "empty pattern";
    case pattern_error::star_not_at_end:
        return "'*' only at the end of a pattern";
    }
    return "unknown pattern error";
}

std::optional<pattern_error> pattern_set::check(std::string_view pattern) noexcept {
    if (pattern.empty())
        return pattern_error::empty;
    const auto star = pattern.find('*');
    if (star != std::string_view::npos && star + 1 != pattern.size())
        return pattern_error::star_not_at_end;
    return std::nullopt;
}

expected<pattern_set, pattern_refusal>
pattern_set::parse(const std::vector<std::string>& patterns) {
    pattern_set set;
    for (std::size_t i = 0; i < patterns.size(); ++i) {
        const std::string& p = patterns[i];
        if (const auto error = check(p))
            return pattern_refusal{i, *error};
        if (p.back() == '*')
            set.prefixes_.push_back(p.substr(0, p.size() - 1));
        else
            set.exact_.push_back(p);
    }
    std::sort(set.exact_.begin(), set.exact_.end());
    set.exact_.erase(std::unique(set.exact_.begin(), set.exact_.end()), set.exact_.end());
    return set;
}

bool pattern_set::allows(std::string_view channel) const noexcept {
    // A token carries a handful of patterns: a scan of the prefixes costs less than a trie.
    for (const std::string& prefix : prefixes_)
        if (channel.starts_with(prefix))
            return true;
    return std::binary_search(exact_.begin(), exact_.end(), channel, std::less<>{});
}

} // namespace megaphone::auth
