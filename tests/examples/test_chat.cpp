// The chat demo's unit tests, written with megaphone::testing: no sockets, a manual clock.
// They double as the README's example of testing an app's state transitions.
#include "app/testing.hpp"
#include "app/access.hpp"
#include "examples/chat/chat_app.hpp"

#include <algorithm>
#include <memory>

#include <catch2/catch.hpp>

using megaphone::fsm_state;
using megaphone::examples::chat_app;
using megaphone::testing::harness;
using nlohmann::json;

namespace {
std::vector<json> of_type(const std::vector<json>& messages, const std::string& type)
{
    std::vector<json> out;
    for (const auto& m : messages)
        if (m.value("type", "") == type)
            out.push_back(m);
    return out;
}
} // namespace

TEST_CASE("chat: two members of a room see each other's messages")
{
    chat_app app;
    harness h{app};
    auto& ann = h.connect();
    auto& bob = h.connect();
    ann.send({{{"join", "lobby"}, {"nick", "ann"}}});
    bob.send({{{"join", "lobby"}, {"nick", "bob"}}});

    // Ann's first poll collects Bob's join notice at once (it was queued: have_packet).
    CHECK(ann.state() == fsm_state::have_packet);
    REQUIRE(ann.poll().answered());
    REQUIRE(bob.poll().answered());
    // Now each holds a long-poll: the machine is in have_request until something is pushed.
    auto& ann_poll = ann.poll();
    auto& bob_poll = bob.poll();
    CHECK(ann.state() == fsm_state::have_request);
    CHECK_FALSE(ann_poll.answered());
    ann.take();
    bob.take();

    bob.send({{{"say", "hello ann"}, {"room", "lobby"}}});
    // The publish answered both held polls at once.
    REQUIRE(ann_poll.answered());
    REQUIRE(bob_poll.answered());
    const auto to_ann = of_type(ann.take(), "message");
    REQUIRE(to_ann.size() == 1);
    CHECK(to_ann[0]["nick"] == "bob");
    CHECK(to_ann[0]["text"] == "hello ann");
    CHECK(to_ann[0]["id"] == 1);
    CHECK(of_type(bob.take(), "message").size() == 1);
}

TEST_CASE("chat: a joiner gets the last 50 messages and a join notice goes to the room")
{
    chat_app app;
    harness h{app};
    auto& ann = h.connect();
    ann.send({{{"join", "lobby"}, {"nick", "ann"}}});
    for (int i = 1; i <= 60; ++i)
        ann.send({{{"say", "message " + std::to_string(i)}, {"room", "lobby"}}});

    auto& bob = h.connect({}, {{{"join", "lobby"}, {"nick", "bob"}}});
    const auto history = of_type(bob.received(), "history");
    REQUIRE(history.size() == 1);
    const auto& messages = history[0]["messages"];
    REQUIRE(messages.size() == 50);
    CHECK(messages.front()["text"] == "message 11");
    CHECK(messages.back()["text"] == "message 60");
    CHECK(messages.back()["id"] == 60);

    ann.poll();
    const auto joins = of_type(ann.take(), "join");
    REQUIRE_FALSE(joins.empty());
    CHECK(joins.back()["nick"] == "bob");
}

TEST_CASE("chat: a session that times out leaves its rooms")
{
    chat_app app;
    harness h{app};
    auto& ann = h.connect();
    auto& bob = h.connect();
    ann.send({{{"join", "lobby"}, {"nick", "ann"}}});
    bob.send({{{"join", "lobby"}, {"nick", "bob"}}});
    ann.take();

    // Bob stops polling; Ann keeps a poll held (the first one returns Bob's join at once), so
    // only Bob's die timer (45 s without a held request) runs out.
    REQUIRE(ann.poll().answered());
    ann.take();
    auto* poll = &ann.poll();
    CHECK_FALSE(poll->answered());
    h.advance(std::chrono::seconds(44));
    CHECK(bob.state() == fsm_state::have_packet); // his own join notice waits for him
    h.advance(std::chrono::seconds(2));
    CHECK(bob.closed());
    CHECK(h.close_reason_of(bob.sid()) == megaphone::close_reason::inactivity);
    REQUIRE(poll->answered());
    const auto leaves = of_type(ann.take(), "leave");
    REQUIRE(leaves.size() == 1);
    CHECK(leaves[0]["nick"] == "bob");
    CHECK(ann.state() == fsm_state::waiting);
}

TEST_CASE("chat: saying something before joining is an error, not a crash")
{
    chat_app app;
    harness h{app};
    auto& ann = h.connect();
    ann.send({{{"say", "hi"}, {"room", "lobby"}}, json("not an object"), {{"join", ""}}});
    const auto errors = of_type(ann.take(), "error");
    CHECK(errors.size() == 3);
    CHECK(ann.state() == fsm_state::waiting);
}

TEST_CASE("chat: where the session rules let it publish nowhere, join and say are forbidden")
{
    // The megaphone binaries' default for sessions without a token (--client-publish: none);
    // the demo gives chat tokens instead (examples/demo_server.cpp, /demo/token).
    auto rules = std::make_shared<megaphone::session_rules>();
    rules->client_publish = megaphone::auth::pattern_set{};
    megaphone::engine_config config;
    config.rules = rules;
    chat_app app;
    harness h{app, config};
    auto& ann = h.connect();
    auto& bob = h.connect();
    ann.send({{{"join", "lobby"}, {"nick", "ann"}}, {{"say", "hi"}, {"room", "lobby"}}});
    const auto got = ann.take();
    const json refusal = {{"error", "forbidden"}, {"channel", "chat:lobby"}};
    CHECK(std::count(got.begin(), got.end(), refusal) == 1);
    CHECK(of_type(got, "join").empty());
    CHECK(of_type(got, "error").size() == 1); // the say: not joined
    // Nobody is told anything.
    bob.send({});
    CHECK(bob.take().empty());
}
