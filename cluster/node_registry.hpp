// node_registry: which node listens where, in Redis. Each node announces itself with
//   SET mp:node:<id> <host:port> EX <ttl>
// every `heartbeat`, and deletes the key when it stops; a node that dies without stopping
// vanishes once the ttl has passed. lookup() answers the address of a node (GET), cached for
// `cache` (found or not), so a burst of forwarded requests costs one GET per node per second
// and a flood of forged node names at most one per name per second.
//
// Each heartbeat also puts the node in the sorted set mp:nodes (ZADD, score: the time of the
// heartbeat in ms since the epoch, from Redis's TIME, so the nodes' own clocks never matter);
// stop() removes it (ZREM). list() answers the nodes whose heartbeat is within the ttl, with
// their addresses (MGET of their keys) and heartbeat ages; the stale members (nodes that died
// without stopping) are removed as list() sees them (ZREMRANGEBYSCORE).
//
// Everything runs on one io_context (the Redis bus's: the server's first I/O thread), with its
// own redis::client to the first --redis server. Every call, and every callback, is on that
// thread (or before it runs).
#pragma once

#include "cluster/redis_client.hpp"
#include "cluster/router.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

struct node_registry_options {
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::seconds ttl{5};
    /// How long a lookup's answer (an address, or unknown) is kept.
    std::chrono::milliseconds cache{1000};
    redis::client_options client;
};

class node_registry {
public:
    node_registry(boost::asio::io_context& ioc, redis::endpoint where, std::string node_id,
                  node_registry_options options = {});
    ~node_registry(); // stops the Redis client (without DEL): on the io_context's thread
    node_registry(const node_registry&) = delete;
    node_registry& operator=(const node_registry&) = delete;

    /// Connects and announces `address` ("host:port") every heartbeat until stop().
    void start(std::string address);
    /// Deletes this node's key (and its member of mp:nodes), then closes the connection; `done`
    /// runs once that is over (the DEL answered, failed or timed out). No lookup callback runs
    /// afterwards.
    void stop(std::function<void()> done);
    /// Node `id`'s address, or "" when it is unknown (no key, expired, Redis unreachable).
    /// `done` runs later, never inside this call.
    void lookup(std::string_view id, std::function<void(std::string)> done);

    /// The live nodes (heartbeat within the ttl and key present; this one included), sorted by
    /// id, their ages from Redis's clock; none when not started or Redis does not answer.
    /// `done` runs later, never inside this call, and not at all once stop() has closed the
    /// connection.
    void list(std::function<void(std::vector<cluster_node>)> done);

    /// The Redis key of node `id`.
    static std::string key(std::string_view id);
    /// The sorted set of the nodes (member: id, score: last heartbeat, ms since the epoch).
    static constexpr std::string_view nodes_key = "mp:nodes";

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace megaphone
