// pattern_set: exact names and `prefix*` patterns. A prefix pattern matches the prefix itself and
// every longer name that starts with it, never a shorter one; a lone `*` matches everything; an
// empty pattern or a `*` anywhere but at the end is refused when the set is parsed.
#include "auth/patterns.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using megaphone::auth::pattern_error;
using megaphone::auth::pattern_set;

namespace {

pattern_set parsed(const std::vector<std::string>& patterns) {
    auto set = pattern_set::parse(patterns);
    REQUIRE(set);
    return std::move(set).value();
}

} // namespace

TEST_CASE("pattern_set prefix matches the prefix and longer names, not shorter ones",
          "[auth][patterns]") {
    const auto set = parsed({"news*"});
    CHECK(set.allows("news"));
    CHECK(set.allows("news.eu"));
    CHECK(set.allows("newsroom"));
    CHECK_FALSE(set.allows("new"));
    CHECK_FALSE(set.allows("ne"));
    CHECK_FALSE(set.allows(""));
    CHECK_FALSE(set.allows("the-news"));
    CHECK_FALSE(set.allows("News"));
}

TEST_CASE("pattern_set exact names match only themselves", "[auth][patterns]") {
    const auto set = parsed({"chat.lobby", "alerts", "chat.lobby"});
    CHECK(set.allows("chat.lobby"));
    CHECK(set.allows("alerts"));
    CHECK_FALSE(set.allows("chat.lobby2"));
    CHECK_FALSE(set.allows("chat"));
    CHECK_FALSE(set.allows("alert"));
    CHECK_FALSE(set.allows("*"));
}

TEST_CASE("pattern_set lone star matches every channel", "[auth][patterns]") {
    const auto set = parsed({"*"});
    CHECK(set.allows("news"));
    CHECK(set.allows("private-anything"));
    CHECK(set.allows("*"));
    CHECK_FALSE(set.empty());
}

TEST_CASE("pattern_set mixes exact names and prefixes", "[auth][patterns]") {
    const auto set = parsed({"room.1", "user.alice.*", "ticker*"});
    CHECK(set.allows("room.1"));
    CHECK_FALSE(set.allows("room.10"));
    CHECK(set.allows("user.alice.inbox"));
    CHECK(set.allows("user.alice."));
    CHECK_FALSE(set.allows("user.alice"));
    CHECK_FALSE(set.allows("user.alicex.inbox"));
    CHECK(set.allows("ticker"));
}

TEST_CASE("pattern_set empty allows nothing", "[auth][patterns]") {
    const pattern_set none;
    CHECK(none.empty());
    CHECK_FALSE(none.allows("news"));
    CHECK_FALSE(none.allows(""));
    CHECK(parsed({}).empty());
}

TEST_CASE("pattern_set refuses malformed patterns, naming the first", "[auth][patterns]") {
    struct bad {
        std::vector<std::string> patterns;
        std::size_t index;
        pattern_error error;
    };
    const bad cases[] = {
        {{""}, 0, pattern_error::empty},
        {{"news*", "a*b"}, 1, pattern_error::star_not_at_end},
        {{"**"}, 0, pattern_error::star_not_at_end},
        {{"*news"}, 0, pattern_error::star_not_at_end},
        {{"ok", "fine*", "", "a*b"}, 2, pattern_error::empty},
    };
    for (const auto& c : cases) {
        const auto set = pattern_set::parse(c.patterns);
        REQUIRE_FALSE(set);
        CHECK(set.error().index == c.index);
        CHECK(set.error().error == c.error);
    }
    CHECK(pattern_set::check("news*") == std::nullopt);
    CHECK(pattern_set::check("news") == std::nullopt);
    CHECK(pattern_set::check("a*b") == pattern_error::star_not_at_end);
    CHECK(to_string(pattern_error::empty) == "empty pattern");
    CHECK(to_string(pattern_error::star_not_at_end) == "'*' only at the end of a pattern");
}
