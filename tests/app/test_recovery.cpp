// Positions and recovery on the in-process bus (cluster/local_bus.hpp), through
// megaphone::testing: every published message carries its channel's epoch and offset, and a
// session subscribed from a cursor gets every message after it exactly once, in order, then the
// live ones (docs/PROTOCOL.md, "Recovery").
#include "app/hub.hpp"
#include "app/session.hpp"
#include "app/testing.hpp"
#include "support/test_hub.hpp"

#include <catch2/catch.hpp>

#include <random>

using megaphone::test::test_hub;
using megaphone::testing::harness;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json cursor(const std::string& epoch, std::uint64_t offset) {
    return {{"epoch", epoch}, {"offset", offset}};
}

/// Publishes `n` messages {"n": first..} to `channel` and lets them arrive.
void publish_n(harness& h, const std::string& channel, int first, int n) {
    for (int i = first; i < first + n; ++i)
        h.publish(channel, megaphone::hub::envelope(channel, json{{"n", i}}));
    h.settle();
}

/// What the client has received once it polls (a poll answered at once when messages wait, or
/// held for the next ones).
std::vector<json> receive(harness& h, megaphone::testing::client& c) {
    c.poll();
    h.settle();
    return c.take();
}

} // namespace

TEST_CASE("recovery: every published message carries its channel's epoch and offset") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}, {{"subscribe", "sport"}}});
    publish_n(h, "news", 1, 3);
    publish_n(h, "sport", 1, 1);
    std::optional<megaphone::publish_result> told;
    h.publish("news", megaphone::hub::envelope("news", 4), [&](const auto& r) { told = r; });
    h.settle();
    const auto got = receive(h, c);
    REQUIRE(got.size() == 5);
    const std::string epoch = got[0].at("epoch");
    CHECK(epoch.size() == 12);
    for (int i = 0; i < 3; ++i) {
        CHECK(got[i].at("epoch") == epoch);
        CHECK(got[i].at("offset") == i + 1);
        CHECK(got[i].at("channel") == "news");
        CHECK(got[i].at("data") == json{{"n", i + 1}});
    }
    // Each channel has its own stream.
    CHECK(got[3].at("channel") == "sport");
    CHECK(got[3].at("offset") == 1);
    CHECK(got[3].at("epoch") != epoch);
    // The publisher learns the position, and how many sessions it reached.
    REQUIRE(told);
    CHECK(told->ok);
    CHECK(told->position.epoch == epoch);
    CHECK(told->position.offset == 4);
    CHECK(told->sessions == std::size_t{1});
    CHECK(got[4].at("offset") == 4);
}

TEST_CASE("recovery: a new session from a cursor gets every message after it, then live ones") {
    test_hub app;
    harness h{app};
    auto& first = h.connect({}, {{{"subscribe", "news"}}});
    publish_n(h, "news", 1, 5);
    const auto seen = receive(h, first);
    REQUIRE(seen.size() == 5);
    const std::string epoch = seen[0].at("epoch");

    // The client kept the cursor of message 2 (say its session died before 3 reached it).
    auto& again = h.connect({{"recover", {{"news", cursor(epoch, 2)}}}});
    h.settle();
    auto got = receive(h, again);
    REQUIRE(got.size() == 4);
    CHECK(got[0] ==
          json{{"channel", "news"}, {"recovered", true}, {"epoch", epoch}, {"offset", 5}});
    for (int i = 1; i <= 3; ++i) {
        CHECK(got[i].at("offset") == i + 2);
        CHECK(got[i].at("data") == json{{"n", i + 2}});
    }
    // Subscribed: live messages follow, each once.
    publish_n(h, "news", 6, 2);
    got = receive(h, again);
    REQUIRE(got.size() == 2);
    CHECK(got[0].at("offset") == 6);
    CHECK(got[1].at("offset") == 7);
}

TEST_CASE("recovery: a cursor at the channel's last message replays nothing") {
    test_hub app;
    harness h{app};
    auto& first = h.connect({}, {{{"subscribe", "news"}}});
    publish_n(h, "news", 1, 2);
    const std::string epoch = receive(h, first).at(0).at("epoch");
    auto& again = h.connect({}, {{{"subscribe", "news"}, {"recover", cursor(epoch, 2)}}});
    h.settle();
    const auto got = receive(h, again);
    REQUIRE(got.size() == 1);
    CHECK(got[0] ==
          json{{"channel", "news"}, {"recovered", true}, {"epoch", epoch}, {"offset", 2}});
}

TEST_CASE("recovery: a foreign epoch, an offset beyond the channel's, a history that no longer "
          "reaches back: recovered false, and live messages follow") {
    test_hub app;
    harness h{app, {}, megaphone::bus_options{3, 300s}};
    auto& first = h.connect({}, {{{"subscribe", "news"}}});
    publish_n(h, "news", 1, 10); // the history keeps 8, 9, 10
    const std::string epoch = receive(h, first).at(0).at("epoch");

    const json cases[] = {cursor("not-this-epoch", 4), cursor(epoch, 99), cursor(epoch, 2),
                          cursor(epoch, 6)};
    int offset = 10;
    for (const json& since : cases) {
        INFO(since.dump());
        auto& c = h.connect({{"recover", {{"news", since}}}});
        h.settle();
        auto got = receive(h, c);
        REQUIRE(got.size() == 1);
        CHECK(got[0] == json{{"channel", "news"},
                             {"recovered", false},
                             {"epoch", epoch},
                             {"offset", offset++}});
        h.publish("news", megaphone::hub::envelope("news", 0));
        h.settle();
        got = receive(h, c);
        REQUIRE(got.size() == 1);
        CHECK(got[0].at("epoch") == epoch);
    }
    // The oldest message still kept is enough.
    auto& c = h.connect({{"recover", {{"news", cursor(epoch, 11)}}}}); // 12, 13, 14 kept
    h.settle();
    CHECK(receive(h, c).at(0).at("recovered") == true);
}

TEST_CASE("recovery: an empty cursor asks for the position, recovering from it later replays "
          "what came meanwhile") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"recover", {{"news", json::object()}}}});
    h.settle();
    auto got = receive(h, c);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("recovered") == true);
    CHECK(got[0].at("offset") == 0);
    const std::string epoch = got[0].at("epoch");
    CHECK_FALSE(epoch.empty());

    // The session goes (its laptop sleeps); two messages are published meanwhile.
    c.terminate();
    publish_n(h, "news", 1, 2);
    auto& back = h.connect({{"recover", {{"news", cursor(epoch, 0)}}}});
    h.settle();
    got = receive(h, back);
    REQUIRE(got.size() == 3);
    CHECK(got[0].at("recovered") == true);
    CHECK(got[1].at("offset") == 1);
    CHECK(got[2].at("offset") == 2);
}

TEST_CASE("recovery: subscribing again with an empty cursor keeps the subscription, so a message "
          "on its way is not lost") {
    // megaphone.js sends {"subscribe", "recover": {}} while its creation's `recover` already
    // subscribed the session. A message published just before (its delivery still queued for the
    // session's thread) must reach the session: it was a member when the message was published,
    // and the publish counted it.
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"recover", {{"news", json::object()}}}});
    h.settle();
    auto got = receive(h, c);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("offset") == 0);

    std::optional<megaphone::publish_result> told;
    h.publish("news", megaphone::hub::envelope("news", "before"), [&](const auto& r) { told = r; });
    // Queued after the publish, run before its delivery: as a request read while the shard's
    // inbox still holds the delivery.
    h.with_session(
        c.sid(), [](megaphone::session& s) { s.subscribe("news", megaphone::stream_position{}); });
    h.settle();
    REQUIRE(told);
    CHECK(told->sessions == std::size_t{1});
    got = receive(h, c);
    REQUIRE(got.size() == 2);
    CHECK(got[0].at("offset") == 1);
    CHECK(got[0].at("data") == "before");
    CHECK(got[1].at("recovered") == true); // the position: after the message
    CHECK(got[1].at("offset") == 1);
    publish_n(h, "news", 2, 1); // and it stays subscribed
    got = receive(h, c);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("offset") == 2);
}

TEST_CASE("recovery: history older than its ttl is gone, a channel quiet for the ttl starts a "
          "new epoch") {
    test_hub app;
    harness h{app, {}, megaphone::bus_options{100, 60s}};
    auto& first = h.connect({}, {{{"subscribe", "news"}}});
    publish_n(h, "news", 1, 2);
    const std::string epoch = receive(h, first).at(0).at("epoch");
    h.advance(30s);
    publish_n(h, "news", 3, 1);
    CHECK(receive(h, first).size() == 1);
    h.advance(31s);
    publish_n(h, "news", 4, 1); // 1 and 2 are older than 60 s now; 3 is not
    auto got = receive(h, first);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("epoch") == epoch); // published to within the ttl: the same stream
    CHECK(got[0].at("offset") == 4);

    auto& late = h.connect({{"recover", {{"news", cursor(epoch, 1)}}}});
    h.settle();
    got = receive(h, late);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("recovered") == false); // message 2 is gone
    auto& in_time = h.connect({{"recover", {{"news", cursor(epoch, 2)}}}});
    got = receive(h, in_time);
    REQUIRE(got.size() == 3);
    CHECK(got[0].at("recovered") == true);
    CHECK(got[1].at("offset") == 3);
    CHECK(got[2].at("offset") == 4);

    first.poll(); // held (then answered empty after `wait`): the session lives on
    h.advance(61s);
    publish_n(h, "news", 5, 1); // nothing for 60 s: the channel was forgotten
    got = receive(h, first);
    REQUIRE(got.size() == 1);
    CHECK(got[0].at("epoch") != epoch);
    CHECK(got[0].at("offset") == 1);
}

TEST_CASE("recovery: publishes racing a recovery leave no gap") {
    // A session re-subscribes from a cursor while publishes keep coming, from its own requests
    // and from outside; whatever the interleaving, every offset reaches it, in order. (Messages
    // still on their way when it re-subscribes come again: the client drops them by offset, as
    // megaphone.js does.)
    test_hub app;
    harness h{app, {}, megaphone::bus_options{1000, 300s}};
    auto& watcher = h.connect({}, {{{"subscribe", "news"}}});
    std::mt19937 rng{42};
    int published = 0;
    publish_n(h, "news", ++published, 1);
    const std::string epoch = receive(h, watcher).at(0).at("epoch");
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    std::uint64_t last = 0; // the client's cursor
    for (int round = 0; round < 200; ++round) {
        switch (rng() % 4) {
        case 0: // a publish from outside
            h.publish("news", megaphone::hub::envelope("news", ++published));
            break;
        case 1: // a publish from the session itself, with a re-subscription from its cursor
            published += 2;
            c.send({{{"publish", "news"}, {"data", published - 1}},
                    {{"subscribe", "news"}, {"recover", cursor(epoch, last)}},
                    {{"publish", "news"}, {"data", published}}});
            break;
        case 2:
            c.send({{{"subscribe", "news"}, {"recover", cursor(epoch, last)}}});
            break;
        default:
            h.settle();
            break;
        }
        for (const json& m : c.take()) {
            if (m.contains("recovered")) {
                CHECK(m.at("recovered") == true);
                CHECK(m.at("offset").get<std::uint64_t>() >= last);
                continue;
            }
            const auto offset = m.at("offset").get<std::uint64_t>();
            if (offset <= last)
                continue; // sent before the re-subscription reached the session
            REQUIRE(offset == last + 1);
            last = offset;
        }
    }
    h.settle();
    for (const json& m : receive(h, c))
        if (!m.contains("recovered") && m.at("offset").get<std::uint64_t>() > last) {
            REQUIRE(m.at("offset").get<std::uint64_t>() == last + 1);
            last = m.at("offset");
        }
    CHECK(last == static_cast<std::uint64_t>(published));
}

TEST_CASE("recovery: the history keeps a channel's last N messages in order while it grows, "
          "wraps and expires from the middle of its array") {
    test_hub app;
    harness h{app, {}, megaphone::bus_options{5, 60s}};
    auto& first = h.connect({}, {{{"subscribe", "news"}}});
    std::string epoch;
    // What a session recovering from `since` gets: the offsets and the data, in order.
    auto recovered_from = [&](std::uint64_t since) {
        auto& c = h.connect({{"recover", {{"news", cursor(epoch, since)}}}});
        h.settle();
        auto got = receive(h, c);
        REQUIRE_FALSE(got.empty());
        REQUIRE(got[0].at("recovered") == true);
        std::vector<int> offsets;
        for (std::size_t i = 1; i < got.size(); ++i) {
            CHECK(got[i].at("data") == json{{"n", got[i].at("offset")}});
            offsets.push_back(got[i].at("offset"));
        }
        return offsets;
    };
    // 1, 2, 3: growing (not full yet), everything kept.
    publish_n(h, "news", 1, 3);
    epoch = receive(h, first).at(0).at("epoch");
    CHECK(recovered_from(0) == std::vector<int>{1, 2, 3});
    // 4 to 13: full at 5, then wrapping twice; the last five, oldest first.
    publish_n(h, "news", 4, 10);
    CHECK(recovered_from(8) == std::vector<int>{9, 10, 11, 12, 13});
    CHECK(recovered_from(11) == std::vector<int>{12, 13});
    auto& gone = h.connect({{"recover", {{"news", cursor(epoch, 7)}}}});
    h.settle();
    CHECK(receive(h, gone).at(0).at("recovered") == false); // 8 is no longer kept

    // 9 to 13 expire; 14 and 15, published within the ttl, stay. The oldest now sits in the
    // middle of the array, and the next publishes wrap around it.
    h.advance(40s);
    publish_n(h, "news", 14, 2);
    h.advance(25s);
    publish_n(h, "news", 16, 1); // 9 to 13 are older than 60 s now
    CHECK(recovered_from(13) == std::vector<int>{14, 15, 16});
    publish_n(h, "news", 17, 4);
    CHECK(recovered_from(15) == std::vector<int>{16, 17, 18, 19, 20});
}
