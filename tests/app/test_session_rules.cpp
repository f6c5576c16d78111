// Session rules of the engine (docs/PROTOCOL.md), driven through megaphone::testing with a
// manual clock: hold, wait, inactivity, rid order, replays, lost connections, overflow.
#include "app/hub.hpp"
#include "app/session.hpp"
#include "app/testing.hpp"
#include "support/stamps.hpp"
#include "support/test_hub.hpp"

#include <catch2/catch.hpp>

using megaphone::close_reason;
using megaphone::fsm_state;
using megaphone::test::stamp_of;
using megaphone::test::test_hub;
using megaphone::test::without_stamps;
using megaphone::testing::harness;
using nlohmann::json;
using namespace std::chrono_literals;

TEST_CASE("session: creation answers at once with the capped settings") {
    test_hub app;
    megaphone::engine_config config;
    config.max_wait = 20s;
    config.max_hold = 2;
    harness h{app, config};
    auto& c = h.connect({{"wait", 300}, {"hold", 5}});
    CHECK(c.created()["wait"] == 20);
    CHECK(c.created()["hold"] == 2);
    CHECK(c.created()["requests"] == 3);
    CHECK(c.created()["inactivity"] == 45);
    CHECK(c.created()["messages"] == json::array());
    CHECK(c.sid().starts_with("n0-0"));
    CHECK(c.state() == fsm_state::waiting);
}

TEST_CASE("session: a held request is answered by a publish") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll();
    CHECK_FALSE(poll.answered());
    CHECK(c.state() == fsm_state::have_request);
    h.publish("news", json{{"n", 1}});
    h.settle();
    REQUIRE(poll.answered());
    CHECK(without_stamps(poll.messages()) == json::array({json{{"n", 1}}}));
    // An object is delivered stamped with its position: the channel's first message.
    REQUIRE(poll.messages().size() == 1);
    const auto stamped = stamp_of(poll.messages()[0]);
    REQUIRE(stamped.has_value());
    CHECK(stamped->offset == 1);
    CHECK(c.state() == fsm_state::waiting);
}

TEST_CASE("session: the wait timer answers a held request empty after wait") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"wait", 30}});
    auto& poll = c.poll();
    h.advance(29s);
    CHECK_FALSE(poll.answered());
    h.advance(1s);
    REQUIRE(poll.answered());
    CHECK(poll.body() == json{{"rid", poll.rid()}, {"messages", json::array()}});
    CHECK(c.state() == fsm_state::waiting);
}

TEST_CASE("session: the die timer runs only while no request is held") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"wait", 60}});
    h.advance(40s);
    auto& poll = c.poll(); // held: the die timer stops
    h.advance(59s);
    CHECK(c.state() == fsm_state::have_request);
    h.advance(1s); // answered empty at 60 s: the die timer starts again from here
    REQUIRE(poll.answered());
    h.advance(44s);
    CHECK(c.state() == fsm_state::waiting);
    h.advance(1s);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::inactivity);
}

TEST_CASE("session: timers restarted many times fire at their last deadline, not an earlier one") {
    // A busy session restarts its wait and die timers on every exchange; each must fire exactly
    // `wait` after the last held request and `inactivity` after the last answer, whatever was
    // set before (the timers are only ever moved earlier and re-set when they fire early).
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"wait", 60}}, {{{"subscribe", "news"}}});
    for (int i = 0; i < 10; ++i) {
        auto& poll = c.poll(); // held: wait due 60 s from now
        h.advance(10s);
        h.publish("news", json(i));
        h.settle();
        REQUIRE(poll.answered());
        REQUIRE(poll.messages() == json::array({i}));
        h.advance(40s); // no request held: die due 45 s after the answer
        REQUIRE_FALSE(c.closed());
    }
    auto& last = c.poll();
    h.advance(59s);
    CHECK_FALSE(last.answered());
    h.advance(1s);
    REQUIRE(last.answered());
    CHECK(last.messages() == json::array());
    h.advance(44s);
    CHECK_FALSE(c.closed());
    h.advance(1s);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::inactivity);
}

TEST_CASE("session: data pushed with no request held is queued and sent all at once, in order") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    for (int i = 0; i < 5; ++i)
        h.publish("news", json(i));
    h.settle();
    CHECK(c.state() == fsm_state::have_packet);
    CHECK(c.queued() == 5);
    auto& poll = c.poll();
    REQUIRE(poll.answered());
    REQUIRE(poll.messages().size() == 5);
    for (int i = 0; i < 5; ++i)
        CHECK(poll.messages()[static_cast<std::size_t>(i)] == i);
    CHECK(c.state() == fsm_state::waiting);
}

TEST_CASE("session: with hold 1 a second request answers the first one empty") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"hold", 1}});
    auto& first = c.poll();
    auto& second = c.poll();
    REQUIRE(first.answered());
    CHECK(first.messages() == json::array());
    CHECK_FALSE(second.answered());
    CHECK(c.held() == 1);
}

TEST_CASE("session: a repeated rid gets the same answer again") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll();
    h.publish("news", json("x"));
    h.settle();
    REQUIRE(poll.answered());
    auto& again = c.resend(poll);
    REQUIRE(again.answered());
    CHECK(again.body() == poll.body());
    CHECK(c.received().size() == 1); // counted once
}

TEST_CASE("session: a held rid sent again takes the held copy's place") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll();
    auto& copy = c.resend(poll);
    REQUIRE(poll.answered());
    CHECK(poll.body()["condition"] == "replaced");
    CHECK_FALSE(copy.answered());
    h.publish("news", json("after"));
    h.settle();
    REQUIRE(copy.answered());
    CHECK(copy.messages()[0] == "after");
    CHECK_FALSE(c.closed());
}

TEST_CASE("session: a dropped held request leaves data queued for the next request") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& poll = c.poll();
    poll.drop();
    CHECK(c.state() == fsm_state::waiting); // connection_closed, noticed at once
    h.publish("news", json("kept"));
    h.settle();
    CHECK(c.state() == fsm_state::have_packet);
    // The client re-sends the rid whose connection broke: it is served as new.
    auto& again = c.resend(poll);
    REQUIRE(again.answered());
    CHECK(again.messages()[0] == "kept");
}

TEST_CASE("session: requests are processed in rid order, an early one waits for the gap") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"hold", 1}}, {{{"subscribe", "news"}}});
    const auto n = c.next_rid();
    // rid n+1 arrives first: it carries a message that must not reach the app before rid n's.
    auto& early = c.send_as(n + 1, {{{"publish", "news"}, {"data", "second"}}});
    CHECK_FALSE(early.answered());
    CHECK(c.queued() == 0); // not processed yet
    auto& first = c.send_as(n, {{{"publish", "news"}, {"data", "first"}}});
    // rid n was held, then released empty by rid n+1 (hold 1); the publishes run after the
    // step, in order: "first" answers rid n+1, "second" waits for the next request.
    REQUIRE(first.answered());
    CHECK(first.messages() == json::array());
    REQUIRE(early.answered());
    c.poll();
    const auto all = c.received();
    REQUIRE(all.size() == 2);
    CHECK(all[0]["data"] == "first");
    CHECK(all[1]["data"] == "second");
}

TEST_CASE("session: a rid beyond the window ends the session with item-not-found") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"hold", 1}});
    auto& far = c.send_as(c.next_rid() + 2); // window: requests = 2
    CHECK(far.status() == 404);
    CHECK(far.body()["condition"] == "item-not-found");
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::item_not_found);
}

TEST_CASE("session: terminate answers the held request and ends the session") {
    test_hub app;
    harness h{app};
    auto& c = h.connect();
    auto& poll = c.poll();
    auto& bye = c.terminate();
    REQUIRE(poll.answered());
    CHECK(poll.body()["type"] == "terminate");
    REQUIRE(bye.answered());
    CHECK(bye.body()["type"] == "terminate");
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::client_terminate);
    auto& late = c.poll();
    CHECK(late.status() == 404);
    CHECK(late.body()["condition"] == "item-not-found");
}

TEST_CASE("session: the application may close a session, its held request hears why") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"hold", 2}});
    auto& poll = c.poll();
    auto& closing = c.send({{{"close", true}}});
    REQUIRE(poll.answered());
    CHECK(poll.body()["type"] == "terminate");
    REQUIRE(closing.answered());
    CHECK(closing.body()["type"] == "terminate");
    CHECK(h.close_reason_of(c.sid()) == close_reason::server_terminate);
}

TEST_CASE("session: overflowing the queue closes the session with policy-violation") {
    test_hub app;
    megaphone::engine_config config;
    config.max_queue = 3;
    harness h{app, config};
    auto& c = h.connect({}, {{{"subscribe", "news"}}});
    auto& other = h.connect({}, {{{"subscribe", "news"}}});
    auto& other_poll = other.poll();
    for (int i = 0; i < 3; ++i)
        h.publish("news", json(i));
    h.settle();
    CHECK(c.state() == fsm_state::have_packet);
    h.publish("news", json(3));
    h.settle();
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::queue_overflow);
    CHECK(other_poll.answered()); // the other session is unaffected
    CHECK_FALSE(other.closed());
}

TEST_CASE("session: a polling session may not poll faster than polling allows") {
    test_hub app;
    harness h{app};
    auto& c = h.connect({{"hold", 0}});
    auto& first = c.poll();
    REQUIRE(first.answered()); // polling: answered at once
    h.advance(2s);
    auto& second = c.poll();
    REQUIRE(second.answered());
    CHECK(second.status() == 200);
    h.advance(500ms);
    auto& third = c.poll();
    CHECK(third.status() == 403);
    CHECK(third.body()["condition"] == "policy-violation");
    CHECK(c.closed());
}

TEST_CASE("session: an unknown sid is item-not-found and touches nothing") {
    test_hub app;
    harness h{app};
    auto& c = h.connect();
    megaphone::client_request req;
    req.sid = "n0-0AAAAAAAAAAAAAAAAAAAAAA";
    req.rid = 5;
    bool answered = false;
    struct target final : megaphone::exchange_target {
        bool* flag;
        unsigned status = 0;
        void deliver(std::uint32_t, megaphone::response r) override {
            *flag = true;
            status = r.status;
        }
    };
    auto t = std::make_shared<target>();
    t->flag = &answered;
    h.engine().request(std::move(req), megaphone::json_codec::instance(), {t, 1});
    CHECK(answered);
    CHECK(t->status == 404);
    CHECK(c.state() == fsm_state::waiting);
}

TEST_CASE("session: an application that throws ends only its own session") {
    class throwing_app final : public megaphone::application {
    public:
        void on_message(megaphone::session&, const megaphone::message& m) override {
            if (m.json() == "boom")
                throw std::runtime_error("boom");
        }
    };
    throwing_app app;
    harness h{app};
    auto& bad = h.connect({{"hold", 2}});
    auto& good = h.connect();
    auto& held = bad.poll();
    auto& failing = bad.send({json("boom")});
    REQUIRE(held.answered());
    CHECK(held.body()["condition"] == "internal-server-error");
    REQUIRE(failing.answered());
    CHECK(failing.body()["type"] == "terminate");
    CHECK(bad.closed());
    CHECK(h.close_reason_of(bad.sid()) == close_reason::internal_error);
    CHECK(good.state() == fsm_state::waiting);
    good.send({json("fine")});
    CHECK(good.state() == fsm_state::have_request); // held, as usual
}
