// Cluster nodes for tests: a server's options joined to a real Redis (tests/support/
// redis_server.hpp) through use_redis(), as the command line would, and a wait until the node's
// Redis connections are up.
#pragma once

#include "app/cli.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>

namespace megaphone::test {

/// test_options() for node `node_id` on `redis`: 2 s wait, 10 s inactivity; forwarding on when
/// `cluster_key` is given.
inline server_options cluster_node_options(const redis_server& redis, std::string node_id,
                                           std::string cluster_key = {}) {
    using namespace std::chrono_literals;
    server_options o = test_options();
    o.engine.node_id = std::move(node_id);
    o.engine.max_wait = 2s;
    o.engine.inactivity = 10s;
    o.redis = {redis.url()};
    o.cluster_key = std::move(cluster_key);
    use_redis(o);
    return o;
}

/// Waits (10 s at most) until the node at `port` says on /metrics that its Redis connections
/// are up.
inline void wait_redis_up(unsigned short port) {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
        http_client c{port};
        std::istringstream text{c.get("/metrics").body};
        for (std::string line; std::getline(text, line);)
            if (line.starts_with("megaphone_redis_up{") && line.ends_with("} 1"))
                return;
        if (std::chrono::steady_clock::now() > deadline)
            FAIL("the node's Redis connections did not come up");
        std::this_thread::sleep_for(20ms);
    }
}

/// Runs `ioc` on this thread until `pred()` holds (true) or `timeout` passes (false), in slices
/// of 20 ms (a test driving a cluster component on an io_context of its own).
template <class Pred>
bool run_until(boost::asio::io_context& ioc, Pred&& pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        ioc.restart();
        ioc.run_for(std::chrono::milliseconds(20));
    }
    return true;
}

} // namespace megaphone::test
