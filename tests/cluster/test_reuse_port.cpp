// Several processes on one port (--reuse-port): two nodes in this process share one listening
// port through SO_REUSEPORT, joined by a real Redis. The kernel hands each new connection to
// either; a request that lands on the node that does not own its session is forwarded to the
// owner through that node's own port (node_port()).
#include "app/cli.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <set>
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

} // namespace

TEST_CASE("reuse-port: two nodes on one port; every request of every session is served, "
          "wherever the kernel sends its connection") {
    redis_server redis;
    test_server a{shared_port_node(redis, "a", 0)};
    test_server b{shared_port_node(redis, "b", a.port())};
    REQUIRE(a.port() == b.port());
    CHECK(a.srv().node_port() != 0);
    CHECK(b.srv().node_port() != 0);
    CHECK(a.srv().node_port() != b.srv().node_port());
    const unsigned short port = a.port();
    // Both nodes registered (the heartbeat's first SET): forwarding can find them.
    for (const char* id : {"a", "b"}) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (redis.cli({"GET", std::string("mp:node:") + id}).empty()) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(10ms);
        }
    }

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
            http_client c{port};
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
                REQUIRE(r.status == 200); // never item-not-found: forwarded when needed
                const json answer = r.json();
                for (const json& m : answer.at("messages"))
                    if (m.value("data", json()) == round)
                        got = true;
            }
            CHECK(got);
        }
    }
}
