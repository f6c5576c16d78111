// Several processes on one port (--reuse-port): two nodes in this process share one listening
// port through SO_REUSEPORT, joined by a real Redis. The kernel hands each new connection to
// either; a request that lands on the node that does not own its session goes to the owner with
// its connection (cluster/handover.hpp: the same abstract Unix socket and SCM_RIGHTS as between
// two processes), and the owner keeps the connection. Each node's counters are read on its own
// port (node_port()), which reaches that node alone.
#include "app/cli.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <sstream>
#include <thread>

using namespace megaphone;
using namespace megaphone::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

server_options shared_port_node(const redis_server& redis, std::string node_id,
                                unsigned short port) {
    server_options o = test_options();
    o.port = port;
    o.http.reuse_port = true;
    o.engine.node_id = std::move(node_id);
    o.engine.max_wait = 1s;
    o.engine.inactivity = 60s; // (the test polls its sessions one after another)
    o.redis = {redis.url()};
    o.cluster_key = "reuse-port-test-key-0123456789";
    use_redis(o);
    return o;
}

/// The sample `key` of `node`'s /metrics (0 when absent).
double sample(test_server& node, const std::string& key) {
    http_client c{node.srv().node_port()};
    const http_reply r = c.get("/metrics");
    REQUIRE(r.status == 200);
    std::istringstream lines{r.body};
    for (std::string line; std::getline(lines, line);)
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ')
            return std::stod(line.substr(key.size() + 1));
    return 0;
}

const std::string handed_out = "megaphone_connections_handed_over_total{direction=\"out\"}";
const std::string handed_in = "megaphone_connections_handed_over_total{direction=\"in\"}";
const std::string forwarded_answered = "megaphone_forwarded_requests_total{outcome=\"answered\"}";

/// Both nodes registered (the heartbeat's first SET): forwarding could find them.
void wait_registered(const redis_server& redis) {
    for (const char* id : {"a", "b"}) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (redis.cli({"GET", std::string("mp:node:") + id}).empty()) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(10ms);
        }
    }
}

/// Nodes "a" and "b" on one port and one Redis, both registered.
struct two_nodes {
    redis_server redis;
    test_server a{shared_port_node(redis, "a", 0)};
    test_server b{shared_port_node(redis, "b", a.port())};
    two_nodes() { wait_registered(redis); }
};

} // namespace

TEST_CASE("reuse-port: two nodes on one port, every request of every session is served, "
          "wherever the kernel sends its connection") {
    redis_server redis;
    test_server a{shared_port_node(redis, "a", 0)};
    test_server b{shared_port_node(redis, "b", a.port())};
    REQUIRE(a.port() == b.port());
    CHECK(a.srv().node_port() != 0);
    CHECK(b.srv().node_port() != 0);
    CHECK(a.srv().node_port() != b.srv().node_port());
    const unsigned short port = a.port();
    wait_registered(redis);

    // Each request on a fresh connection: the kernel picks the process each time.
    auto post = [port](const json& body) {
        http_client c{port};
        return c.post_json("/comet", body);
    };
    struct one {
        std::string sid;
        std::uint64_t rid;
    };
    std::vector<one> sessions;
    std::set<std::string> nodes;
    for (int i = 0; i < 24; ++i) {
        const http_reply r = post({{"rid", 100}, {"messages", json::array()}});
        REQUIRE(r.status == 200);
        one s{r.json().at("sid"), 100};
        nodes.insert(s.sid.substr(0, s.sid.find('-')));
        // Subscribe (maybe through the other node: forwarded), from the channel's position: no
        // publish is missed while the node's Redis subscription is being made.
        const http_reply sub = post(
            request_body(s.sid, ++s.rid, {{{"subscribe", "all"}, {"recover", json::object()}}}));
        REQUIRE(sub.status == 200);
        sessions.push_back(s);
    }
    CHECK(nodes == std::set<std::string>{"a", "b"}); // 2^-23 to fail by chance

    // Wait until both nodes' Redis subscriptions carry a publish (a probe reaches everyone).
    for (int round = 1; round <= 3; ++round) {
        {
            http_client c{round % 2 ? a.internal_port() : b.internal_port()};
            REQUIRE(c.post("/publish/all", std::to_string(round)).status == 200);
        }
        for (one& s : sessions) {
            // Poll until the round's message came: answers may be empty (wait) or carry it.
            bool got = false;
            for (int attempt = 0; attempt < 10 && !got; ++attempt) {
                json body = request_body(s.sid, ++s.rid);
                body["ack"] = s.rid - 1;
                const http_reply r = post(body);
                INFO(s.sid << " rid " << s.rid << ": " << r.body);
                REQUIRE(r.status == 200); // never item-not-found: handed over when needed
                const json answer = r.json();
                for (const json& m : answer.at("messages"))
                    if (m.value("data", json()) == round)
                        got = true;
            }
            CHECK(got);
        }
    }

    // Every request that landed on the wrong node went with its connection: none was relayed.
    const double out = sample(a, handed_out) + sample(b, handed_out);
    CHECK(out > 0);
    CHECK(sample(a, handed_in) + sample(b, handed_in) == out);
    CHECK(sample(a, forwarded_answered) + sample(b, forwarded_answered) == 0);
}

TEST_CASE("reuse-port: a connection handed over stays with the session's node: its next "
          "requests are not handed over again") {
    two_nodes nodes;
    test_server &a = nodes.a, &b = nodes.b;
    const unsigned short port = a.port();

    http_client creator{port};
    const http_reply created =
        creator.post_json("/comet", {{"rid", 1}, {"messages", json::array()}});
    REQUIRE(created.status == 200);
    const std::string sid = created.json().at("sid");
    std::uint64_t rid = 1;
    test_server& owner = sid.starts_with("a-") ? a : b;
    test_server& other = sid.starts_with("a-") ? b : a;

    // New connections until the kernel gives one to the other node (each one: 1/2).
    std::optional<http_client> moved;
    for (int attempt = 0; attempt < 40 && !moved; ++attempt) {
        const double before = sample(other, handed_out);
        http_client c{port};
        const http_reply r = c.post_json(
            "/comet",
            request_body(sid, ++rid, {{{"subscribe", "news"}, {"recover", json::object()}}}));
        REQUIRE(r.status == 200);
        if (sample(other, handed_out) == before + 1)
            moved.emplace(std::move(c));
    }
    REQUIRE(moved); // 2^-40 to fail by chance
    const double out_before = sample(other, handed_out);
    const double in_before = sample(owner, handed_in);

    // The same connection, ten more requests, a publish answered on it meanwhile: all served by
    // the owner directly.
    {
        http_client publisher{owner.internal_port()};
        REQUIRE(publisher.post("/publish/news", "\"hello\"").status == 200);
    }
    bool got = false;
    for (int i = 0; i < 10; ++i) {
        json body = request_body(sid, ++rid);
        body["ack"] = rid - 1;
        const http_reply r = moved->post_json("/comet", body);
        INFO(r.body);
        REQUIRE(r.status == 200);
        const json answer = r.json(); // (a range-for over r.json().at() would dangle)
        for (const json& m : answer.at("messages"))
            if (m.value("data", json()) == "hello")
                got = true;
        if (got)
            break;
    }
    CHECK(got);
    CHECK(sample(other, handed_out) == out_before);
    CHECK(sample(owner, handed_in) == in_before);
}

TEST_CASE("reuse-port: a stream (SSE) that lands on the other process is handed over to the "
          "session's node, and carries what is published") {
    two_nodes nodes;
    test_server &a = nodes.a, &b = nodes.b;
    const unsigned short port = a.port();

    http_client creator{port};
    const http_reply created = creator.post_json(
        "/comet",
        {{"rid", 1},
         {"messages", json::array({{{"subscribe", "live"}, {"recover", json::object()}}})}});
    REQUIRE(created.status == 200);
    const std::string sid = created.json().at("sid");
    test_server& owner = sid.starts_with("a-") ? a : b;
    test_server& other = sid.starts_with("a-") ? b : a;

    // New connections until the kernel gives one to the other node (each one: 1/2). One that
    // lands on the owner opens the stream there directly: it is closed, and the next one
    // replaces it (the newest stream wins).
    const std::string request = "GET /comet/events?sid=" + sid +
                                " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    auto read_until = [](fd_stream& s, std::string& got, std::string_view what) {
        char buf[4096];
        while (got.find(what) == std::string::npos) {
            beast::error_code ec;
            const std::size_t n = s.read_some(net::buffer(buf), ec);
            if (ec)
                return false;
            got.append(buf, n);
        }
        return true;
    };
    std::optional<fd_stream> stream;
    std::string got;
    for (int attempt = 0; attempt < 40 && !stream; ++attempt) {
        const double before = sample(other, handed_out);
        fd_stream s = connect_loopback(port, 5s);
        net::write(s, net::buffer(request));
        std::string head;
        REQUIRE(read_until(s, head, "retry:"));
        CHECK(head.starts_with("HTTP/1.1 200"));
        if (sample(other, handed_out) == before + 1) {
            got = std::move(head);
            stream.emplace(std::move(s));
        }
    }
    REQUIRE(stream); // 2^-40 to fail by chance
    CHECK(sample(owner, handed_in) >= 1);

    http_client publisher{owner.internal_port()};
    REQUIRE(publisher.post("/publish/live", "\"over the stream\"").status == 200);
    CHECK(read_until(*stream, got, "over the stream"));
}
