// The cluster on a real Redis: servers joined by --redis (cluster/redis_bus.hpp) in this process,
// each with its own node id, against a redis-server that the test starts (and stops, kills,
// restarts empty). Clients are plain HTTP long-polls (tests/support/http_client.hpp).
#include "app/cli.hpp"
#include "cluster/redis_bus.hpp"
#include "support/cluster_node.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <sstream>
#include <thread>

using namespace megaphone;
using namespace megaphone::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

server_options node_options(const redis_server& redis, std::string node_id) {
    return cluster_node_options(redis, std::move(node_id));
}

/// A long-polling client of one session: keeps one request out, gathers the messages.
class poller {
public:
    poller(unsigned short port, json creation)
        : c_{port} {
        auto s = create_session(c_, 1000, std::move(creation));
        sid_ = s.sid;
        rid_ = s.rid;
        for (const auto& m : s.answer.at("messages"))
            got_.push_back(m);
    }

    const std::string& sid() const { return sid_; }

    /// Polls until `pred(messages so far)` holds or `timeout` passes; returns whether it held.
    template <class Pred>
    bool until(Pred pred, std::chrono::milliseconds timeout = 10s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!pred(got_)) {
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            json body = request_body(sid_, ++rid_);
            body["ack"] = rid_ - 1;
            const http_reply r = c_.post_json("/comet", body);
            if (r.status != 200)
                throw std::runtime_error("poll: " + std::to_string(r.status) + " " + r.body);
            const json answer = r.json(); // (a temporary's member would dangle in the loop)
            for (const auto& m : answer.at("messages"))
                got_.push_back(m);
        }
        return true;
    }
    bool has(std::size_t n, std::chrono::milliseconds timeout = 10s) {
        return until([n](const std::vector<json>& g) { return g.size() >= n; }, timeout);
    }
    const std::vector<json>& messages() const { return got_; }

    /// Sends client messages (in their own request).
    void send(json messages) {
        const http_reply r =
            c_.post_json("/comet", request_body(sid_, ++rid_, std::move(messages)));
        if (r.status != 200)
            throw std::runtime_error("send: " + r.body);
        const json answer = r.json();
        for (const auto& m : answer.at("messages"))
            got_.push_back(m);
    }

private:
    http_client c_;
    std::string sid_;
    std::uint64_t rid_ = 0;
    std::vector<json> got_;
};

http_reply publish(unsigned short port, const std::string& channel, const json& value) {
    http_client c{port};
    return c.post("/publish/" + channel, value.dump());
}

/// The messages of `channel` (recovery notices left out).
std::vector<json> on_channel(const std::vector<json>& got, const std::string& channel) {
    std::vector<json> out;
    for (const json& m : got)
        if (m.value("channel", "") == channel && !m.contains("recovered"))
            out.push_back(m);
    return out;
}

/// Subscribes through the creation's position request and waits for the notice (the node has
/// subscribed in Redis by then, see below).
std::unique_ptr<poller> subscriber(unsigned short port, const std::string& channel) {
    auto p = std::make_unique<poller>(port, json{{"recover", {{channel, json::object()}}}});
    const bool told = p->until([&](const std::vector<json>& g) {
        for (const json& m : g)
            if (m.contains("recovered"))
                return true;
        return false;
    });
    INFO(json(p->messages()).dump());
    REQUIRE(told);
    return p;
}

/// node_options() with a Redis bus whose recoveries wait `patience` for an unreachable Redis.
server_options patient_node_options(const redis_server& redis, std::string node_id,
                                    std::chrono::milliseconds patience) {
    server_options o = node_options(redis, std::move(node_id));
    redis_bus_options bus;
    bus.servers.push_back(redis::parse_url(redis.url()).value());
    bus.recovery_patience = patience;
    o.make_bus = [bus](boost::asio::io_context& ioc,
                       const bus_options& history) -> std::unique_ptr<megaphone::bus> {
        return std::make_unique<redis_bus>(ioc, bus, history);
    };
    return o;
}

/// The recovery notice of `channel` among `got`, if it came.
std::optional<json> notice_of(const std::vector<json>& got, const std::string& channel) {
    for (const json& m : got)
        if (m.value("channel", "") == channel && m.contains("recovered"))
            return m;
    return std::nullopt;
}

} // namespace

TEST_CASE("cluster: a publish on any node reaches every node's subscribers, stamped, in order") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    test_server b{node_options(redis, "b")};
    wait_redis_up(b.port());
    auto on_a = subscriber(a.port(), "news");
    auto on_b = subscriber(b.port(), "news");
    CHECK(on_a->sid().starts_with("a-"));
    CHECK(on_b->sid().starts_with("b-"));
    // A node subscribes in Redis when its first session subscribes; the history covers the
    // moment in between, so the first publishes may go right away.
    std::string epoch;
    for (int i = 1; i <= 20; ++i) {
        const http_reply r =
            publish(i % 2 ? a.internal_port() : b.internal_port(), "news", json{{"n", i}});
        REQUIRE(r.status == 200);
        const json answer = r.json();
        CHECK(answer.at("offset") == i);
        CHECK_FALSE(answer.contains("sessions")); // unknown: delivery goes through Redis
        if (epoch.empty())
            epoch = answer.at("epoch");
        CHECK(answer.at("epoch") == epoch);
    }
    for (poller* p : {on_a.get(), on_b.get()}) {
        REQUIRE(p->until([](const auto& g) { return on_channel(g, "news").size() >= 20; }));
        const auto got = on_channel(p->messages(), "news");
        CHECK(got.size() == 20);
        for (int i = 0; i < static_cast<int>(got.size()); ++i) {
            CHECK(got[i].at("offset") == i + 1);
            CHECK(got[i].at("epoch") == epoch);
            CHECK(got[i].at("data") == json{{"n", i + 1}});
        }
    }
}

TEST_CASE("cluster: a session recovers on another node from its cursor: no gap, no duplicate") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    test_server b{node_options(redis, "b")};
    wait_redis_up(b.port());
    auto first = subscriber(a.port(), "feed");
    for (int i = 1; i <= 5; ++i)
        REQUIRE(publish(b.internal_port(), "feed", i).status == 200);
    REQUIRE(first->until([](const auto& g) { return on_channel(g, "feed").size() >= 5; }));
    const json third = on_channel(first->messages(), "feed").at(2);

    // Its node is gone (say); the client resumes on the other node from message 3.
    poller again{
        b.port(),
        {{"recover", {{"feed", {{"epoch", third.at("epoch")}, {"offset", third.at("offset")}}}}}}};
    for (int i = 6; i <= 7; ++i)
        REQUIRE(publish(a.internal_port(), "feed", i).status == 200);
    REQUIRE(again.until([](const auto& g) { return on_channel(g, "feed").size() >= 4; }));
    const auto& got = again.messages();
    auto notice =
        std::find_if(got.begin(), got.end(), [](const json& m) { return m.contains("recovered"); });
    REQUIRE(notice != got.end());
    CHECK(notice->at("recovered") == true);
    CHECK(notice->at("epoch") == third.at("epoch"));
    const auto feed = on_channel(got, "feed");
    REQUIRE(feed.size() == 4);
    for (int i = 0; i < 4; ++i)
        CHECK(feed[i].at("offset") == i + 4);
    // The notice comes before the replayed messages.
    CHECK(notice - got.begin() < std::find(got.begin(), got.end(), feed[0]) - got.begin());
}

TEST_CASE("cluster: bad recovery cursors get a clear answer, and another session's data never") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    auto sub = subscriber(a.port(), "x");
    REQUIRE(publish(a.internal_port(), "x", 1).status == 200);
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "x").size() >= 1; }));
    const std::string epoch = on_channel(sub->messages(), "x").at(0).at("epoch");

    http_client c{a.port()};
    for (const json& bad :
         {json{{"x", {{"epoch", epoch}, {"offset", -1}}}},
          json{{"x", {{"epoch", 5}, {"offset", 1}}}}, json{{"x", {{"offset", 1e300}}}},
          json{{"x", 1}}, json::array(), json{{"x", {{"epoch", std::string(65, 'e')}}}}}) {
        INFO(bad.dump());
        const http_reply r = c.post_json("/comet", {{"rid", 10}, {"recover", bad}});
        CHECK(r.status == 400);
        CHECK(r.json() == json{{"type", "terminate"}, {"condition", "bad-request"}});
    }
    // A foreign epoch, a huge offset: recovered false with the channel's position; a channel
    // nobody published to: its position (offset 0), recovered.
    for (const json& since : {json{{"epoch", "foreign"}, {"offset", 1}},
                              json{{"epoch", epoch}, {"offset", 9007199254740991}}}) {
        poller p{a.port(), {{"recover", {{"x", since}}}}};
        REQUIRE(p.has(1));
        CHECK(p.messages()[0] ==
              json{{"channel", "x"}, {"recovered", false}, {"epoch", epoch}, {"offset", 1}});
    }
    poller fresh{a.port(), {{"recover", {{"never-used", {{"epoch", "e"}, {"offset", 3}}}}}}};
    REQUIRE(fresh.has(1));
    CHECK(fresh.messages()[0].at("recovered") == false);
    CHECK(fresh.messages()[0].at("offset") == 0);
}

TEST_CASE("cluster: Redis stopped: publishes get 503, held polls stay held, Redis back with its "
          "data: nothing acknowledged is lost") {
    redis_server redis{redis_server_options{true}};
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    test_server b{node_options(redis, "b")};
    wait_redis_up(b.port());
    auto sub = subscriber(a.port(), "live");
    std::vector<int> acked;
    for (int i = 1; i <= 3; ++i)
        if (publish(b.internal_port(), "live", i).status == 200)
            acked.push_back(i);
    REQUIRE(acked.size() == 3);

    redis.kill();
    // Publishes are refused while it is down (a clear 503, never a silent loss)...
    bool refused = false;
    for (int i = 0; i < 50 && !refused; ++i) {
        const http_reply r = publish(b.internal_port(), "live", 100 + i);
        if (r.status == 503) {
            refused = true;
            CHECK(r.json().contains("error"));
        } else {
            REQUIRE(r.status == 200); // accepted before the node saw Redis go
            acked.push_back(100 + i);
        }
    }
    CHECK(refused);
    // ... and the subscriber's session lives on (its polls are held and answered empty).
    CHECK(sub->until([](const auto&) { return true; }));

    redis.restart();
    int next = 200;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (acked.size() < 10 && std::chrono::steady_clock::now() < deadline) {
        const http_reply r = publish(b.internal_port(), "live", next);
        if (r.status == 200)
            acked.push_back(next);
        ++next;
    }
    REQUIRE(acked.size() >= 10);
    // Every acknowledged publish arrives once, in order (the ones published while the node's
    // subscription was coming back are caught up from the history). The bound is generous: the
    // reconnect backoff reaches seconds, and the TSan build on a loaded machine is slow.
    const bool all = sub->until(
        [&](const auto& g) { return on_channel(g, "live").size() >= acked.size(); }, 30s);
    if (!all) { // what came, against what was acknowledged
        std::string seen;
        for (const auto& m : on_channel(sub->messages(), "live"))
            seen += m.at("data").dump() + "@" + m.at("offset").dump() + " ";
        std::string want;
        for (const int a : acked)
            want += std::to_string(a) + " ";
        INFO("acknowledged: " << want << "\nreceived: " << seen);
        REQUIRE(all);
    }
    const auto got = on_channel(sub->messages(), "live");
    REQUIRE(got.size() == acked.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].at("data") == acked[i]);
        CHECK(got[i].at("offset") == i + 1);
    }
}

TEST_CASE("cluster: Redis restarted without its data: a new epoch, and recovered: false") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    auto sub = subscriber(a.port(), "ch");
    REQUIRE(publish(a.internal_port(), "ch", 1).status == 200);
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "ch").size() >= 1; }));
    const json before = on_channel(sub->messages(), "ch").at(0);

    redis.restart_empty();
    http_reply r;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do
        r = publish(a.internal_port(), "ch", 2);
    while (r.status != 200 && std::chrono::steady_clock::now() < deadline);
    REQUIRE(r.status == 200);
    CHECK(r.json().at("epoch") != before.at("epoch"));
    CHECK(r.json().at("offset") == 1);
    // The live session gets the new stream's messages.
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "ch").size() >= 2; }));
    CHECK(on_channel(sub->messages(), "ch").at(1).at("epoch") == r.json().at("epoch"));

    // A client resuming from the old stream is told it missed something.
    poller late{a.port(), {{"recover", {{"ch", {{"epoch", before.at("epoch")}, {"offset", 1}}}}}}};
    REQUIRE(late.has(1));
    CHECK(late.messages()[0].at("recovered") == false);
    CHECK(late.messages()[0].at("epoch") == r.json().at("epoch"));
}

TEST_CASE("cluster: a Redis that stalls (SIGSTOP) never blocks the server: publishes get 503 "
          "within the command timeout, other sessions are served, and all is well once it "
          "answers again") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    auto sub = subscriber(a.port(), "slow");
    REQUIRE(publish(a.internal_port(), "slow", 1).status == 200);

    redis.pause();
    const auto before = std::chrono::steady_clock::now();
    const http_reply r = publish(a.internal_port(), "slow", 2);
    const auto took = std::chrono::steady_clock::now() - before;
    CHECK(r.status == 503);
    CHECK(took < 3s); // the command timeout is 1 s
    // The I/O threads are free meanwhile: a new session is created and answered at once.
    {
        http_client c{a.port()};
        const auto t0 = std::chrono::steady_clock::now();
        auto s = create_session(c, 77);
        CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
    }
    redis.resume();
    http_reply ok;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    do
        ok = publish(a.internal_port(), "slow", 3);
    while (ok.status != 200 && std::chrono::steady_clock::now() < deadline);
    REQUIRE(ok.status == 200);
    REQUIRE(sub->until([](const auto& g) {
        const auto got = on_channel(g, "slow");
        return !got.empty() && got.back().at("data") == 3;
    }));
    const auto got = on_channel(sub->messages(), "slow");
    CHECK(got.at(0).at("data") == 1);
    CHECK(got.back().at("data") == 3);
    // In order, once each. (The 503 after the timeout means "unknown": Redis had the command and
    // may run it once it wakes up, so message 2 may or may not be there.)
    for (std::size_t i = 0; i < got.size(); ++i)
        CHECK(got[i].at("offset") == i + 1);
}

TEST_CASE("cluster: a recovery while Redis is down waits for it: Redis back with its data within "
          "the patience, the session gets recovered: true and exactly the missed messages") {
    redis_server redis{redis_server_options{true}};
    test_server a{node_options(redis, "a")};
    wait_redis_up(a.port());
    test_server b{node_options(redis, "b")};
    wait_redis_up(b.port());
    auto sub = subscriber(a.port(), "wait");
    std::vector<int> acked;
    for (int i = 1; i <= 5; ++i) {
        REQUIRE(publish(a.internal_port(), "wait", i).status == 200);
        acked.push_back(i);
    }
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "wait").size() >= 5; }));
    const json cursor = on_channel(sub->messages(), "wait").at(1); // the client had 1 and 2

    // Redis restarts (a clean stop: its appendonly file has every message); meanwhile the client
    // resumes on node b (its own node died, say).
    redis.stop();
    poller again{b.port(),
                 {{"recover",
                   {{"wait", {{"epoch", cursor.at("epoch")}, {"offset", cursor.at("offset")}}}}}}};
    // No verdict while Redis is down (not a recovered: false at once).
    CHECK_FALSE(again.until([](const auto& g) { return notice_of(g, "wait").has_value(); }, 1s));
    redis.restart();

    // Publishes go on once the nodes are back: each comes to the session once, in the replay or
    // live, whichever its recovery's read finds.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int next = 6; next <= 8 && std::chrono::steady_clock::now() < deadline;)
        if (publish(a.internal_port(), "wait", next).status == 200)
            acked.push_back(next++);
    REQUIRE(acked.size() == 8);
    REQUIRE(again.until(
        [](const auto& g) { return notice_of(g, "wait") && on_channel(g, "wait").size() >= 6; },
        15s));
    const auto& got = again.messages();
    const auto notice = notice_of(got, "wait");
    INFO(json(got).dump());
    REQUIRE(notice);
    CHECK(notice->at("recovered") == true);
    CHECK(notice->at("epoch") == cursor.at("epoch"));
    const auto feed = on_channel(got, "wait");
    REQUIRE(feed.size() == 6); // 3 .. 8, none twice
    for (std::size_t i = 0; i < feed.size(); ++i) {
        CHECK(feed[i].at("offset") == i + 3);
        CHECK(feed[i].at("epoch") == cursor.at("epoch"));
        CHECK(feed[i].at("data") == acked[i + 2]);
    }
    // The notice comes before the replayed messages.
    CHECK(std::find(got.begin(), got.end(), *notice) < std::find(got.begin(), got.end(), feed[0]));
}

TEST_CASE("cluster: a recovery while Redis stays down past the patience gets recovered: false, "
          "at the node's position, in bounded time") {
    redis_server redis;
    test_server a{patient_node_options(redis, "a", 1s)};
    wait_redis_up(a.port());
    auto sub = subscriber(a.port(), "gone");
    for (int i = 1; i <= 3; ++i)
        REQUIRE(publish(a.internal_port(), "gone", i).status == 200);
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "gone").size() >= 3; }));
    const json first = on_channel(sub->messages(), "gone").at(0);

    redis.kill();
    const auto before = std::chrono::steady_clock::now();
    poller late{a.port(), {{"recover", {{"gone", {{"epoch", first.at("epoch")}, {"offset", 1}}}}}}};
    REQUIRE(late.until([](const auto& g) { return notice_of(g, "gone").has_value(); }, 10s));
    const auto took = std::chrono::steady_clock::now() - before;
    CHECK(took >= 1s); // it waited for Redis as long as its patience
    CHECK(took < 6s);  // and not much longer (retries every 500 ms, each failing at once)
    const auto notice = notice_of(late.messages(), "gone");
    CHECK(*notice == json{{"channel", "gone"},
                          {"recovered", false},
                          {"epoch", first.at("epoch")},
                          {"offset", 3}});
    CHECK(on_channel(late.messages(), "gone").empty());
}

TEST_CASE("cluster: a node that stops while a recovery waits for Redis stops at once") {
    redis_server redis;
    auto a = std::make_unique<test_server>(node_options(redis, "a")); // the 10 s default patience
    wait_redis_up(a->port());
    auto sub = subscriber(a->port(), "halt");
    REQUIRE(publish(a->internal_port(), "halt", 1).status == 200);
    REQUIRE(sub->until([](const auto& g) { return on_channel(g, "halt").size() >= 1; }));
    const json first = on_channel(sub->messages(), "halt").at(0);

    redis.kill();
    poller late{a->port(),
                {{"recover", {{"halt", {{"epoch", first.at("epoch")}, {"offset", 0}}}}}}};
    CHECK_FALSE(late.until([](const auto& g) { return notice_of(g, "halt").has_value(); }, 500ms));
    const auto before = std::chrono::steady_clock::now();
    a.reset();
    CHECK(std::chrono::steady_clock::now() - before < 3s);
}
