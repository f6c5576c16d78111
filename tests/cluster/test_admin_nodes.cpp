// The admin dashboard's view of the cluster: every node's registry keeps the sorted set
// mp:nodes (cluster/node_registry.hpp), and each node's admin snapshot lists the live nodes.
// Real redis-server, two in-process nodes with a cluster key, a short heartbeat and ttl; the
// admin feed is read as the dashboard reads it (a JSON session at /admin/comet, the token in the
// X-Megaphone-Token header).
#include "app/cli.hpp"
#include "cluster/forwarder.hpp"
#include "cluster/node_registry.hpp"
#include "support/cluster_node.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <thread>

using namespace megaphone;
using namespace megaphone::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string cluster_key = "admin-nodes-key-4b7e2a9c1d3f";
const std::string admin_token = "adm1n-t0ken";

node_registry_options short_registry() {
    node_registry_options r;
    r.heartbeat = 100ms;
    r.ttl = 1s;
    r.cache = 100ms;
    return r;
}

server_options node_options(const redis_server& redis, std::string node_id) {
    server_options o = cluster_node_options(redis, std::move(node_id), cluster_key);
    o.admin_token = admin_token;
    // use_redis()'s router, with a short heartbeat and ttl (no command-line option for them).
    o.make_router = [where = redis::parse_url(redis.url()).value()](net::io_context& ioc,
                                                                    const server_options& so) {
        forwarding_router_options f;
        f.node_id = so.engine.node_id;
        f.cluster_key = so.cluster_key;
        f.listen_address = so.address;
        f.registry = short_registry();
        return make_forwarding_router(ioc, where, std::move(f), nullptr);
    };
    return o;
}

/// The admin console's feed on one node, read as the dashboard does.
class admin_feed {
public:
    explicit admin_feed(unsigned short port)
        : client_{port, 10s} {
        const http_reply r = post(json{{"rid", 100}});
        REQUIRE(r.status == 200);
        sid_ = r.json().at("sid").get<std::string>();
        rid_ = 100;
    }

    /// Long-polls until a stats snapshot satisfies `pred` (returns it) or `timeout` passes.
    template <class Pred>
    std::optional<json> until(Pred pred, std::chrono::milliseconds timeout = 10s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            const http_reply r = post(request_body(sid_, ++rid_));
            REQUIRE(r.status == 200);
            const json answer = r.json();
            if (!answer.contains("messages"))
                continue;
            for (const json& m : answer.at("messages"))
                if (m.value("type", "") == "stats" && pred(m))
                    return m;
        }
        return std::nullopt;
    }

private:
    http_reply post(const json& body) {
        const std::string text = body.dump();
        client_.send_raw("POST /admin/comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         "application/json\r\nX-Megaphone-Token: " +
                         admin_token + "\r\nContent-Length: " + std::to_string(text.size()) +
                         "\r\n\r\n" + text);
        return client_.receive();
    }

    http_client client_;
    std::string sid_;
    std::uint64_t rid_ = 0;
};

std::string address_of(unsigned short port) {
    return "127.0.0.1:" + std::to_string(port);
}

/// The snapshot's node ids, in order.
std::vector<std::string> ids(const json& stats) {
    std::vector<std::string> out;
    for (const json& n : stats.at("nodes"))
        out.push_back(n.at("id").get<std::string>());
    return out;
}

} // namespace

TEST_CASE("admin nodes: each node's snapshot lists the cluster's nodes, a stopped one goes") {
    redis_server redis;
    test_server a{node_options(redis, "a")};
    auto b = std::make_unique<test_server>(node_options(redis, "b"));
    const unsigned short b_port = b->port();

    admin_feed feed_a{a.port()};
    const auto both = feed_a.until([](const json& s) { return s.at("nodes").size() == 2; });
    REQUIRE(both);
    CHECK(both->at("node") == "a");
    CHECK(ids(*both) == std::vector<std::string>{"a", "b"});
    const json& na = both->at("nodes").at(0);
    const json& nb = both->at("nodes").at(1);
    CHECK(na.at("address") == address_of(a.port()));
    CHECK(nb.at("address") == address_of(b_port));
    CHECK(na.at("self") == true);
    CHECK(nb.at("self") == false);
    for (const json& n : both->at("nodes")) {
        CHECK(n.at("age_ms").get<long long>() >= 0);
        CHECK(n.at("age_ms").get<long long>() <= 1000); // within the ttl
    }
    // In Redis: a member per node, scored with Redis's clock.
    CHECK(redis.cli({"ZCARD", std::string(node_registry::nodes_key)}).starts_with("2"));

    {
        admin_feed feed_b{b_port};
        const auto seen = feed_b.until([](const json& s) { return s.at("nodes").size() == 2; });
        REQUIRE(seen);
        CHECK(seen->at("node") == "b");
        for (const json& n : seen->at("nodes"))
            CHECK(n.at("self") == (n.at("id") == "b"));
    }

    // b stops (its member and key deleted): a's next snapshots list only a.
    b.reset();
    const auto alone = feed_a.until([](const json& s) { return s.at("nodes").size() == 1; }, 5s);
    REQUIRE(alone);
    CHECK(ids(*alone) == std::vector<std::string>{"a"});
    CHECK(alone->at("nodes").at(0).at("self") == true);
    CHECK(redis.cli({"ZSCORE", std::string(node_registry::nodes_key), "b"})
              .find_first_of("0123456789") == std::string::npos);
}

TEST_CASE("admin nodes: without a cluster the snapshot lists no nodes") {
    server_options o = test_options();
    o.admin_token = admin_token;
    test_server single{o};
    admin_feed feed{single.port()};
    const auto stats = feed.until([](const json&) { return true; });
    REQUIRE(stats);
    CHECK(stats->at("node") == o.engine.node_id);
    CHECK(stats->at("nodes") == json::array());
}

TEST_CASE("node registry: list() answers the live nodes, one that dies without stopping leaves "
          "the list and mp:nodes after the ttl") {
    redis_server redis;
    const auto where = redis::parse_url(redis.url()).value();
    const auto o = short_registry();

    auto dead_ioc = std::make_unique<net::io_context>();
    auto dying = std::make_unique<node_registry>(*dead_ioc, where, "d", o);
    dying->start("127.0.0.1:9");
    std::thread runner{[&] { dead_ioc->run_for(5s); }};

    net::io_context ioc;
    node_registry reader{ioc, where, "r", o};
    auto pump_until = [&](auto pred) { return run_until(ioc, pred); };
    auto list = [&] {
        std::optional<std::vector<cluster_node>> got;
        reader.list([&](std::vector<cluster_node> n) { got = std::move(n); });
        pump_until([&] { return got.has_value(); });
        return got.value_or(std::vector<cluster_node>{{"(no answer)", {}, {}}});
    };
    auto names = [](const std::vector<cluster_node>& nodes) {
        std::vector<std::string> out;
        for (const auto& n : nodes)
            out.push_back(n.id + "@" + n.address);
        return out;
    };
    CHECK(list().empty()); // not started
    reader.start("127.0.0.1:10");

    const auto pair = std::vector<std::string>{"d@127.0.0.1:9", "r@127.0.0.1:10"};
    std::vector<cluster_node> nodes;
    CHECK(pump_until([&] { return names(nodes = list()) == pair; }));
    for (const auto& n : nodes)
        CHECK(n.age <= 1000ms);

    dead_ioc->stop(); // its heartbeats end, no ZREM nor DEL: as a crash
    runner.join();
    CHECK(pump_until([&] { return names(list()) == std::vector<std::string>{"r@127.0.0.1:10"}; }));
    // list() removes the stale member once its heartbeat is older than the ttl.
    CHECK(pump_until([&] {
        list();
        return redis.cli({"ZCARD", std::string(node_registry::nodes_key)}).starts_with("1");
    }));

    bool stopped = false;
    reader.stop([&] { stopped = true; });
    CHECK(pump_until([&] { return stopped; }));
    CHECK(redis.cli({"ZCARD", std::string(node_registry::nodes_key)}).starts_with("0"));
    dying.reset();
    dead_ioc.reset();
}
