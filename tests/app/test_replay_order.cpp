// Replays after broken connections keep data in order (docs/PROTOCOL.md, Request ids). Cases
// found by the chaos test (tests/js/chaos.test.mjs), driven here through megaphone::testing.
#include "app/session.hpp"
#include "app/testing.hpp"

#include <catch2/catch.hpp>

using megaphone::testing::harness;
using nlohmann::json;

namespace {

/// Subscribe and publish, as the hub does, without a server.
class replay_hub final : public megaphone::application {
public:
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        const json& msg = m.json();
        if (msg.contains("subscribe"))
            s.subscribe(msg["subscribe"].get<std::string>());
    }
};

} // namespace

TEST_CASE("replay: a dropped held request re-sent after a later rid was answered comes back "
          "empty, so data keeps its order") {
    // The client keeps r unanswered while r+1 carries data; were r held again, it would carry
    // newer data, which the client reads (rid order) before r+1's.
    replay_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll(); // r: held
    poll.drop();           // its connection breaks; the client will send r again
    auto& next = c.poll(); // r+1: held in its place
    h.publish("news", json("first"));
    h.settle();
    REQUIRE(next.answered());
    CHECK(next.messages() == json::array({"first"}));
    auto& again = c.resend(poll); // r again: answered empty at once, not held
    REQUIRE(again.answered());
    CHECK(again.status() == 200);
    CHECK(again.messages() == json::array());
    auto& later = c.poll(); // r+2 carries what comes next
    h.publish("news", json("second"));
    h.settle();
    REQUIRE(later.answered());
    CHECK(later.messages() == json::array({"second"}));
    CHECK(c.received() == std::vector<json>{json("first"), json("second")});
    // The empty answer is kept: a further copy of r gets it again.
    CHECK(c.resend(poll).messages() == json::array());
    CHECK_FALSE(c.closed());
}

TEST_CASE("replay: a dropped held request re-sent before any later answer is held again") {
    replay_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll();
    poll.drop();
    auto& again = c.resend(poll);
    CHECK_FALSE(again.answered());
    h.publish("news", json("held"));
    h.settle();
    REQUIRE(again.answered());
    CHECK(again.messages() == json::array({"held"}));
}
