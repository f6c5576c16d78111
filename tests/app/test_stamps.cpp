// The tests' stamp helpers (tests/support/stamps.hpp) against the bus's own stamp()
// (cluster/bus.hpp): what unstamped() and without_stamps() remove is exactly what stamp() adds,
// and nothing else, so that a test comparing unstamped bytes still sees every other byte.
#include "cluster/bus.hpp"
#include "support/stamps.hpp"

#include <catch2/catch.hpp>

#include <string>

using megaphone::packet;
using megaphone::test::read_publish_answer;
using megaphone::test::stamp_of;
using megaphone::test::stamped_position;
using megaphone::test::stamps_of;
using megaphone::test::unstamped;
using megaphone::test::without_stamps;
using nlohmann::json;

namespace {

std::string stamped(std::string_view message, std::string_view epoch, std::uint64_t offset) {
    return std::string(megaphone::stamp(packet::from(message), epoch, offset).view());
}

} // namespace

TEST_CASE("stamps: unstamped() gives back exactly what stamp() was given") {
    const std::string epoch = megaphone::new_epoch();
    REQUIRE(epoch.size() == 12);
    for (const std::string message :
         {R"({"channel":"ch","data":{"n":42}})", R"({"channel":"ch","data":"x"})", "{}", "{ }",
          "{\n}", R"({ "a" : 1 })", R"({"epoch":"mine","offset":7})", R"("a string")", "42",
          "[1,{}]", "<message xmlns='jabber:client'/>"}) {
        INFO(message);
        for (const std::uint64_t offset : {1ULL, 2ULL, 10ULL, 18446744073709551615ULL}) {
            const std::string s = stamped(message, epoch, offset);
            CHECK(unstamped(s) == message);
            const bool object = message.front() == '{';
            CHECK(stamps_of(s) == (object ? std::vector<stamped_position>{{epoch, offset}}
                                          : std::vector<stamped_position>{}));
            if (object) {
                CHECK(s.starts_with("{\"epoch\":\"" + epoch + "\",\"offset\":"));
                // Parsed: the same members once the stamp's are taken away (unless the message
                // had its own "epoch" and "offset", which the stamp's make duplicates of).
                const json parsed = json::parse(s);
                if (!json::parse(message).contains("epoch")) {
                    CHECK(without_stamps(parsed) == json::parse(message));
                    const auto at = stamp_of(parsed);
                    REQUIRE(at.has_value());
                    CHECK(*at == stamped_position{epoch, offset});
                }
            } else {
                CHECK(s == message); // not an object: not stamped
            }
        }
    }
    // In a whole answer, each message's stamp goes, and nothing else.
    const std::string body = "{\"rid\":5,\"messages\":[" + stamped(R"({"a":1})", epoch, 1) + "," +
                             stamped(R"({"b":{}})", epoch, 2) + ",3," + stamped("{}", epoch, 3) +
                             "]}";
    CHECK(unstamped(body) == R"({"rid":5,"messages":[{"a":1},{"b":{}},3,{}]})");
    CHECK(stamps_of(body) == std::vector<stamped_position>{{epoch, 1}, {epoch, 2}, {epoch, 3}});
    CHECK(without_stamps(json::parse(body)) == json::parse(unstamped(body)));
}

TEST_CASE("stamps: what is not a stamp right after a '{' stays, and shows in a comparison") {
    for (const std::string text : {
             R"({"a":1,"epoch":"E","offset":1})",    // not first: not a stamp
             R"({"epoch":"","offset":1,"a":1})",     // empty epoch
             R"({"epoch":"E","offset":,"a":1})",     // no offset
             R"({"epoch":"E","offset":"1","a":1})",  // a string offset
             R"({"epoch":"E","offset":1 "a":1})",    // no comma
             R"({"epoch":"E\"x","offset":1,"a":1})", // an escape in the epoch
             R"({"offset":1,"epoch":"E","a":1})",    // the wrong order
             R"(["epoch","E","offset",1])",
         }) {
        INFO(text);
        CHECK(unstamped(text) == text);
        CHECK(stamps_of(text).empty());
    }
    // The parsed forms: both keys, well typed, or nothing is removed.
    for (const json& m : {json{{"epoch", "E"}, {"a", 1}}, json{{"offset", 1}, {"a", 1}},
                          json{{"epoch", 1}, {"offset", 1}}, json{{"epoch", "E"}, {"offset", "1"}},
                          json{{"epoch", "E"}, {"offset", -1}}}) {
        INFO(m.dump());
        CHECK(without_stamps(m) == m);
    }
    CHECK_FALSE(stamp_of(json{{"epoch", ""}, {"offset", 1}}).has_value());
    // Messages of an answer, a list of messages, or one message.
    const json stamped_message = {{"epoch", "E"}, {"offset", 2}, {"channel", "ch"}};
    CHECK(without_stamps(json{{"rid", 1}, {"messages", {stamped_message, 3}}}) ==
          json{{"rid", 1}, {"messages", {{{"channel", "ch"}}, 3}}});
    CHECK(without_stamps(json::array({stamped_message})) == json::array({{{"channel", "ch"}}}));
    CHECK(without_stamps(stamped_message) == json{{"channel", "ch"}});
}

TEST_CASE("stamps: the answer of POST /publish/{channel} is read only when complete") {
    const auto a = read_publish_answer(json::parse(R"({"epoch":"E","offset":3,"sessions":2})"));
    REQUIRE(a.has_value());
    CHECK(a->position == stamped_position{"E", 3});
    CHECK(a->sessions == 2);
    for (const char* text :
         {R"({"sessions":2})", R"({"epoch":"E","offset":0,"sessions":2})",
          R"({"epoch":"","offset":1,"sessions":2})", R"({"epoch":"E","offset":1})",
          R"({"epoch":"E","offset":1,"sessions":2,"more":1})"}) {
        INFO(text);
        CHECK_FALSE(read_publish_answer(json::parse(text)).has_value());
    }
}

TEST_CASE(
    "stamps: a stamped message keeps its payload's push time (the latency histogram's start)") {
    const packet payload = packet::from(R"({"channel":"ch","data":1})");
    const packet stamped_message = megaphone::stamp(payload, megaphone::new_epoch(), 1);
    REQUIRE_FALSE(stamped_message.same_as(payload)); // a new packet, with the stamp's bytes
    CHECK(payload.born_ns() != 0);
    CHECK(stamped_message.born_ns() == payload.born_ns());
}
