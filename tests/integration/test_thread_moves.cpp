// A connection carrying a request of a session of another thread moves to that thread
// (server_options::move_connections, http_connection::move_to), once: its next requests are
// served there without a hop, pipelined bytes included; one that carries sessions of both
// threads (a proxy's) moves at most once. Sessions say their thread in their sid
// (engine::shard_of); the server's two threads take accepted connections in turn (placement
// `spread`, as in every test server), or all on the first while it is not busy (`fill`).
#include "support/http_client.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

using namespace megaphone;
using namespace megaphone::test;
using nlohmann::json;

namespace {

/// A session subscribed to its own channel, and its thread.
struct placed_session {
    std::string sid;
    std::uint64_t rid;
    std::string channel;
    unsigned shard;
};

/// Sessions created on fresh connections until there is one on each of the two threads.
std::array<placed_session, 2> one_per_thread(test_server& ts) {
    std::array<std::optional<placed_session>, 2> found;
    for (int i = 0; i < 20 && (!found[0] || !found[1]); ++i) {
        http_client c{ts.port()};
        const std::string channel = "moves-" + std::to_string(i);
        const auto s =
            create_session(c, 1, {{"messages", json::array({{{"subscribe", channel}}})}});
        const unsigned shard = engine::shard_of(s.sid).value();
        REQUIRE(shard < 2);
        if (!found[shard])
            found[shard] = placed_session{s.sid, s.rid, channel, shard};
    }
    REQUIRE(found[0]);
    REQUIRE(found[1]);
    return {*found[0], *found[1]};
}

void publish(test_server& ts, const std::string& channel, int value) {
    http_client c{ts.internal_port()};
    REQUIRE(c.post("/publish/" + channel, std::to_string(value)).json().at("sessions") == 1);
}

/// The data of the messages of an answer.
std::vector<json> data_of(const http_reply& r) {
    REQUIRE(r.status == 200);
    std::vector<json> out;
    for (const json& m : r.json().value("messages", json::array()))
        out.push_back(m.at("data"));
    return out;
}

std::uint64_t moved(test_server& ts) {
    return ts.srv().metrics().connections_moved;
}

} // namespace

TEST_CASE("thread moves: a connection of the other thread moves to its session's thread once, "
          "pipelined requests with it, and the answers are the same") {
    test_server ts;
    auto sessions = one_per_thread(ts);
    // Fresh connections are spread over the threads: until one lands on the other thread than
    // session 0's. Its first requests are pipelined: both written before either is read.
    bool seen_move = false;
    for (int attempt = 0; attempt < 10 && !seen_move; ++attempt) {
        placed_session& s = sessions[0];
        http_client c{ts.port()};
        const std::uint64_t before = moved(ts);
        publish(ts, s.channel, 10 * attempt + 1);
        publish(ts, s.channel, 10 * attempt + 2);
        // The first request takes both queued messages; the second waits for the third.
        c.send(http::verb::post, "/comet", request_body(s.sid, ++s.rid).dump());
        c.send(http::verb::post, "/comet", request_body(s.sid, ++s.rid).dump());
        CHECK(data_of(c.receive()) == std::vector<json>{10 * attempt + 1, 10 * attempt + 2});
        publish(ts, s.channel, 10 * attempt + 3);
        CHECK(data_of(c.receive()) == std::vector<json>{10 * attempt + 3});
        const std::uint64_t settled = moved(ts);
        CHECK(settled - before <= 1);
        seen_move = settled - before == 1;
        // More requests on the same connection: on the session's thread now, never moved again.
        for (int i = 0; i < 3; ++i) {
            publish(ts, s.channel, 100 + i);
            CHECK(data_of(c.post_json("/comet", request_body(s.sid, ++s.rid))) ==
                  std::vector<json>{100 + i});
        }
        CHECK(moved(ts) == settled);
    }
    CHECK(seen_move);
}

TEST_CASE("thread moves: a connection carrying sessions of both threads moves at most once") {
    test_server ts;
    auto sessions = one_per_thread(ts);
    const std::uint64_t before = moved(ts);
    http_client c{ts.port()};
    for (int i = 0; i < 10; ++i) {
        placed_session& s = sessions[static_cast<std::size_t>(i % 2)];
        publish(ts, s.channel, i);
        CHECK(data_of(c.post_json("/comet", request_body(s.sid, ++s.rid))) == std::vector<json>{i});
    }
    CHECK(moved(ts) - before <= 1);
}

TEST_CASE("thread moves: --no-thread-moves keeps every connection where it was accepted") {
    server_options o = test_options();
    o.move_connections = false;
    test_server ts{o};
    auto sessions = one_per_thread(ts);
    for (int attempt = 0; attempt < 2; ++attempt) {
        http_client c{ts.port()};
        for (placed_session& s : sessions) {
            publish(ts, s.channel, attempt);
            CHECK(data_of(c.post_json("/comet", request_body(s.sid, ++s.rid))) ==
                  std::vector<json>{attempt});
        }
    }
    CHECK(moved(ts) == 0);
}

TEST_CASE("thread moves: under fill placement, a quiet server's connections and sessions all "
          "stay on the first thread, and nothing moves") {
    server_options o = test_options();
    o.placement.policy = placement_policy::fill;
    test_server ts{o};
    for (int i = 0; i < 20; ++i) {
        http_client c{ts.port()};
        const std::string channel = "fill-" + std::to_string(i);
        auto s = create_session(c, 1, {{"messages", json::array({{{"subscribe", channel}}})}});
        CHECK(engine::shard_of(s.sid).value() == 0);
        publish(ts, channel, i);
        CHECK(data_of(c.post_json("/comet", request_body(s.sid, ++s.rid))) == std::vector<json>{i});
    }
    CHECK(moved(ts) == 0);
}
