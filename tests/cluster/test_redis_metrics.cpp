// GET /metrics of a node on a real Redis (cluster/redis_bus.hpp's write_metrics): each Redis
// server's connection state, commands and reconnects, the bus's recoveries; Redis killed and
// restarted. The exposition is also read by the reference parser (tests/integration/
// parse_metrics.py, Debian's python3-prometheus-client), as tests/integration/test_metrics.cpp
// does.
#include "app/cli.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_parse.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

using namespace megaphone;
using namespace megaphone::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

server_options node_options(const redis_server& redis) {
    server_options o = test_options();
    o.engine.node_id = "a";
    o.engine.max_wait = 2s;
    o.redis = {redis.url()};
    use_redis(o);
    return o;
}

std::string metrics_text(unsigned short port) {
    http_client c{port};
    const http_reply r = c.get("/metrics");
    REQUIRE(r.status == 200);
    return r.body;
}

/// The value of the sample `key` (`name` or `name{labels}` as written), or nullopt.
std::optional<double> sample(const std::string& text, const std::string& key) {
    std::istringstream lines{text};
    for (std::string line; std::getline(lines, line);)
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ')
            return std::stod(line.substr(key.size() + 1));
    return std::nullopt;
}

/// Polls /metrics until `pred(value of key)` holds (a missing sample never does) or `timeout`.
template <class Pred>
bool metric_until(unsigned short port, const std::string& key, Pred pred,
                  std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto v = sample(metrics_text(port), key);
        if (v && pred(*v))
            return true;
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(20ms); // the polling interval
    }
}

/// `name{server="127.0.0.1:PORT"}`: the sample of the test's Redis server.
std::string of_server(const std::string& name, const redis_server& redis) {
    return name + "{server=\"127.0.0.1:" + std::to_string(redis.port()) + "\"}";
}

} // namespace

TEST_CASE("redis metrics: /metrics shows the Redis server up, its commands, the bus's "
          "recoveries, and parses") {
    redis_server redis;
    test_server a{node_options(redis)};
    const std::string up = of_server("megaphone_redis_up", redis);
    const std::string commands = of_server("megaphone_redis_commands_total", redis);
    REQUIRE(metric_until(a.port(), up, [](double v) { return v == 1; }));

    const double before = sample(metrics_text(a.port()), commands).value();
    {
        http_client c{a.internal_port()};
        REQUIRE(c.post("/publish/news", json{{"n", 1}}.dump()).status == 200);
    }
    // The publish's acknowledgement came from Redis: its command was counted before.
    CHECK(sample(metrics_text(a.port()), commands).value() > before);

    // A session resuming a channel from a cursor (here one of an epoch Redis never gave).
    const double recoveries_before =
        sample(metrics_text(a.port()), "megaphone_bus_recoveries_total").value();
    {
        http_client c{a.port()};
        create_session(c, 1000, {{"recover", {{"ch", {{"epoch", "x"}, {"offset", 1}}}}}});
    }
    CHECK(metric_until(a.port(), "megaphone_bus_recoveries_total",
                       [&](double v) { return v >= recoveries_before + 1; }));

    const std::string text = metrics_text(a.port());
    INFO(text);
    const parsed_metrics p = parse_with_prometheus_client(text);
    // prometheus_client names a counter family without its _total.
    CHECK(p.types.at("megaphone_redis_up") == "gauge");
    for (const char* name :
         {"megaphone_redis_commands", "megaphone_redis_errors", "megaphone_redis_error_replies",
          "megaphone_redis_timeouts", "megaphone_redis_reconnects"}) {
        INFO(name);
        CHECK(p.types.at(name) == "counter");
        CHECK(p.samples.count(of_server(std::string(name) + "_total", redis)) == 1);
    }
    for (const char* name :
         {"megaphone_bus_messages", "megaphone_bus_catch_ups", "megaphone_bus_caught_up_messages",
          "megaphone_bus_recoveries", "megaphone_bus_recovered_messages",
          "megaphone_bus_publish_failures"}) {
        INFO(name);
        CHECK(p.types.at(name) == "counter");
        CHECK(p.samples.count(std::string(name) + "_total") == 1);
    }
    CHECK(p.samples.at(up) == 1);
    CHECK(p.samples.at(commands) >= 2);
    CHECK(p.samples.at("megaphone_bus_recoveries_total") >= 1);
    CHECK(p.samples.at(of_server("megaphone_redis_reconnects_total", redis)) == 0);
    // The server's own metrics are still there, before the bus's.
    CHECK(p.types.at("megaphone_sessions") == "gauge");
}

TEST_CASE("redis metrics: Redis killed: megaphone_redis_up 0, restarted: 1 again, and the "
          "reconnects counted") {
    redis_server redis;
    test_server a{node_options(redis)};
    const std::string up = of_server("megaphone_redis_up", redis);
    const std::string reconnects = of_server("megaphone_redis_reconnects_total", redis);
    REQUIRE(metric_until(a.port(), up, [](double v) { return v == 1; }));
    CHECK(sample(metrics_text(a.port()), reconnects) == 0.0);

    redis.kill();
    CHECK(metric_until(a.port(), up, [](double v) { return v == 0; }));

    redis.restart();
    // Reconnects back off (up to 5 s by default): bounded by a few of those.
    CHECK(metric_until(
        a.port(), up, [](double v) { return v == 1; }, 20s));
    const std::string text = metrics_text(a.port());
    INFO(text);
    CHECK(sample(text, reconnects).value_or(0) >= 1);
}

TEST_CASE("redis metrics: without Redis, /metrics has the local bus's channels and no Redis "
          "lines") {
    test_server a;
    {
        http_client c{a.internal_port()};
        REQUIRE(c.post("/publish/news", json{{"n", 1}}.dump()).status == 200);
    }
    const std::string text = metrics_text(a.port());
    INFO(text);
    CHECK(sample(text, "megaphone_bus_channels").value_or(0) >= 1);
    CHECK(text.find("megaphone_redis_") == std::string::npos);
    CHECK(parse_with_prometheus_client(text).types.at("megaphone_bus_channels") == "gauge");
}
