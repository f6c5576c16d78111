// The hub's envelope for POST /publish/{channel}: the parser-free encoding of simple bodies must
// give exactly the bytes of the general path (parse as one JSON value, envelope, dump), and
// leave every other body to it.
#include "app/hub.hpp"
#include "transport/json_codec.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

using megaphone::hub;

namespace {

/// The general path of the publish route: nullopt when it refuses the body.
std::optional<std::string> general_envelope(std::string_view channel, const std::string& body) {
    auto decoded = megaphone::decode_json_request("{\"rid\":0,\"messages\":[" + body + "]}");
    auto* req = std::get_if<megaphone::client_request>(&decoded);
    if (!req || req->messages.size() != 1)
        return std::nullopt;
    return std::string(hub::envelope_packet(channel, req->messages.front().json()).view());
}

} // namespace

TEST_CASE("hub: the envelope of a simple publish body is the general path's, byte for byte") {
    const std::vector<std::string> simple = {
        R"({"t":"1700000000000000000","s":"42","p":"xxxxxxxxxx"})",
        R"({"b":1,"a":"2","c":0})",
        R"( { "z" : "last" , "a" : 123456789012345 } )",
        R"({"":""})",
        R"({"Key":"v","key":"w","KEY":"x"})",
    };
    for (const auto& body : simple) {
        INFO(body);
        const auto fast = hub::simple_envelope("news", body);
        REQUIRE(fast.has_value());
        const auto general = general_envelope("news", body);
        REQUIRE(general.has_value());
        CHECK(std::string(fast->view()) == *general);
    }
    // The channel is escaped as nlohmann writes it: quotes, backslashes, multi-byte UTF-8, the
    // longest name all of quotes; a name the route refuses (a tab in it) is dumped by nlohmann.
    for (const std::string& channel : std::vector<std::string>{
             "a \"quoted\" channel", "back\\slash\\", "caf\xc3\xa9/\xf0\x9f\x93\xa3", "x",
             "tab\there", std::string(256, '"')}) {
        INFO(channel);
        CHECK(hub::simple_envelope(channel, R"({"a":"b"})")->view() ==
              *general_envelope(channel, R"({"a":"b"})"));
    }
}

TEST_CASE("hub: any other body is left to the general path, which decides as before") {
    std::vector<std::string> seeds = {
        R"({"t":"1","s":"2","p":"xx"})",
        R"({"a":1,"a":2})",
        R"({"a":{"b":1}})",
        R"({"a":[1]})",
        R"({"a":1.5})",
        R"({"a":-1})",
        R"({"a":01})",
        R"({"a":true,"b":null})",
        R"({"a":"\u0041"})",
        "{\"a\":\"caf\xc3\xa9\"}",
        R"({"a":1],"rid":2,"x":[3})",
        R"({})",
        R"([1,2])",
        R"("text")",
        "42",
        "",
    };
    std::vector<std::string> bodies;
    for (const auto& seed : seeds) {
        bodies.push_back(seed);
        for (std::size_t i = 0; i < seed.size(); ++i) {
            bodies.push_back(seed.substr(0, i) + seed.substr(i + 1));
            for (char c : std::string_view("0 9\"\\{}[],:.e-\x01")) {
                std::string b = seed;
                b[i] = c;
                bodies.push_back(std::move(b));
            }
        }
    }
    std::size_t mismatches = 0;
    for (const auto& body : bodies) {
        const auto fast = hub::simple_envelope("ch", body);
        if (!fast)
            continue; // the general path decides, exactly as before
        const auto general = general_envelope("ch", body);
        if (!general || *general != fast->view()) {
            ++mismatches;
            INFO(body);
            CHECK(general.has_value());
        }
    }
    CHECK(mismatches == 0);
}

TEST_CASE("hub: channel names are 1 to 256 bytes of UTF-8 without control characters") {
    using namespace std::string_literals;
    for (const std::string& ok :
         {"a"s, "news/sport-1"s, std::string(256, 'x'), "caf\xc3\xa9"s, "\xe6\x97\xa5\xe6\x9c\xac"s,
          "\xf0\x9f\x98\x80"s, "\xf4\x8f\xbf\xbf"s, "\xc2\xa0"s, "\xef\xbf\xbd"s})
        CHECK(hub::valid_channel(ok));
    for (const std::string& bad : {
             ""s,
             std::string(257, 'x'),
             "a\x01"s,
             "tab\t"s,
             "\x7f"s,
             "\xff"s,
             "\xfe"s,
             "\x80"s, // not a start byte
             "\xc0\xaf"s,
             "\xe0\x80\xaf"s, // overlong
             "\xed\xa0\x80"s, // a surrogate
             "\xf4\x90\x80\x80"s,
             "\xf5\x80\x80\x80"s, // above U+10FFFF
             "\xc3"s,
             "\xe6\x97"s,
             "ab\xf0\x9f\x98"s, // truncated
             "\xc3\x28"s,       // bad continuation
             "\xc2\x80"s,
             "\xc2\x9f"s, // C1 controls
         })
        CHECK_FALSE(hub::valid_channel(bad));
}
