// forwarder: routing without sticky sessions. Any node may receive any request; a request of a
// session that lives on another node is relayed to that node and its answer relayed back
// (docs/ARCHITECTURE.md, "Forwarding").
//
//   forwarder           one HTTP request to a node's address and its answer back, over a pool
//                       of keep-alive plain-HTTP connections per address (Beast on tcp sockets).
//                       An idle connection is reused (and dropped when the peer closes it); one
//                       carrying a held long-poll is busy until answered. At most
//                       `max_per_node` connections per address: beyond, the request gets 503.
//                       A connect timeout, and a total timeout (the longest wait + a margin).
//   forwarding_router   the server's request_router (cluster/router.hpp). With --reuse-port it
//                       first tries to hand the client's connection itself to the owning process
//                       when that runs on this machine (cluster/handover.hpp); otherwise it finds
//                       the owning node's address in the node_registry (Redis) and forwards, adding
//                       X-Megaphone-Cluster-Key and X-Megaphone-Forwarded-By; a client that goes
//                       away while its forward is held closes the forward connection, so the
//                       owning node's session sees connection_closed as for a local client.
//
// Failures, as the client sees them: the node unknown (no registry entry: never existed, dead
// for longer than the ttl) or unreachable (connection refused, connect timeout) or its
// connection lost before it answered: the codec's item-not-found (the session is gone with its
// node; the client recovers on a new session). The node slow beyond the total timeout: 504,
// over the pool limit: 503 (plain text; clients retry the same rid).
//
// Threading: forwarder and router run on one io_context (the Redis bus's: the server's first
// I/O thread); route() may be called from any thread and posts there. Answers go through the
// client's exchange (thread-safe).
#pragma once

#include "cluster/bus.hpp"
#include "cluster/handover.hpp"
#include "cluster/node_registry.hpp"
#include "cluster/router.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace megaphone {

/// A node's address as the registry keeps it.
struct host_port {
    std::string host;
    unsigned short port = 0;
};
/// "host:port" or "[v6]:port"; nullopt when malformed (no port, port 0, empty host).
std::optional<host_port> split_address(std::string_view address);

/// What became of a stream relayed to its session's node (cluster/stream_relay.hpp).
enum class relay_outcome : std::uint8_t {
    relayed,      ///< the owning node took the request; bytes flowed both ways until one closed
    unknown_node, ///< no address for the node: 204 (SSE) or 404 (WebSocket)
    unreachable,  ///< connect failed or timed out: the same
};
inline constexpr std::size_t relay_outcome_count = 3;
std::string_view to_string(relay_outcome o) noexcept;

/// What became of a forwarded request.
enum class forward_outcome : std::uint8_t {
    answered,     ///< the owning node answered; relayed
    unknown_node, ///< no address for the node (none registered, expired, Redis unreachable)
    unreachable,  ///< connect failed or timed out: item-not-found
    lost,         ///< the connection ended before the answer: item-not-found
    timeout,      ///< no answer within the total timeout: 504
    busy,         ///< the node's connection limit reached: 503
    cancelled,    ///< the client went away first: the forward connection is closed
    shutdown,     ///< this node stopped meanwhile: system-shutdown
};
inline constexpr std::size_t forward_outcome_count = 8;
std::string_view to_string(forward_outcome o) noexcept;

/// Counters for /metrics (any thread).
struct forwarding_stats {
    std::atomic<std::uint64_t> forwarded[forward_outcome_count] = {};
    std::atomic<std::uint64_t> refused{0}; ///< internal requests refused (403)
    std::atomic<std::uint64_t> relayed[relay_outcome_count] = {}; ///< streams relayed
    handover_stats handover; ///< connections passed between local processes

    void count(forward_outcome o) noexcept {
        forwarded[static_cast<std::size_t>(o)].fetch_add(1, std::memory_order_relaxed);
    }
    void count(relay_outcome o) noexcept {
        relayed[static_cast<std::size_t>(o)].fetch_add(1, std::memory_order_relaxed);
    }
    /// megaphone_forwarded_requests_total{outcome=...},
    /// megaphone_relayed_streams_total{outcome=...},
    /// megaphone_internal_requests_refused_total (Prometheus text).
    void write(std::string& out) const;
};

struct forwarder_options {
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(2)};
    /// From the request written to the answer read (the longest hold + a margin).
    std::chrono::milliseconds timeout{std::chrono::seconds(70)};
    /// Connections per address (busy and idle); beyond, `busy`.
    std::size_t max_per_node = 20'000;
    /// Idle connections kept per address; more are closed when their answer is read.
    std::size_t max_idle_per_node = 256;
};

class forwarder {
public:
    using response_type = http::response<http::string_body>;
    /// Called once per forward (unless cancel() came first), on the forwarder's thread; `res`
    /// only when `o` is answered.
    using callback = std::function<void(forward_outcome o, response_type* res)>;

    forwarder(net::io_context& ioc, forwarder_options options = {});
    ~forwarder();
    forwarder(const forwarder&) = delete;
    forwarder& operator=(const forwarder&) = delete;

    /// Sends `req` to `address` ("host:port", "[v6]:port") and calls `done` with the answer.
    /// Returns the forward's id (for cancel()). On the forwarder's thread.
    std::uint64_t forward(const std::string& address, http::request<http::string_body> req,
                          callback done);
    /// Closes forward `id`'s connection (the owning node sees the client go); `done` is not
    /// called. Nothing if it is over. On the forwarder's thread.
    void cancel(std::uint64_t id);
    /// Calls every pending `done` with shutdown and closes every connection; no callback
    /// afterwards, further forwards end with shutdown. On the forwarder's thread.
    void stop();

    /// Connections open to `address` now (busy and idle), for tests. On the forwarder's thread.
    std::size_t connections(const std::string& address) const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

struct forwarding_router_options {
    std::string node_id;
    /// Empty: forwarding is off (route() refuses; foreign sids get item-not-found).
    std::string cluster_key;
    /// "host:port" announced to the other nodes; empty: the listen address and bound port.
    std::string advertise;
    std::string listen_address = "127.0.0.1";
    node_registry_options registry;
    forwarder_options forward;
    /// Hand connections over to the owning process when it runs on this machine behind the same
    /// public port (cluster/handover.hpp; with --reuse-port). Needs router_start::adopt.
    bool handover = false;
    /// Start-up and warning lines (never with the key); none when empty.
    std::function<void(bool warning, const std::string& line)> log;
};

/// The request_router of a node joined by Redis: the registry on `registry_server`, on `ioc`.
std::unique_ptr<request_router> make_forwarding_router(net::io_context& ioc,
                                                       redis::endpoint registry_server,
                                                       forwarding_router_options options,
                                                       std::shared_ptr<forwarding_stats> stats);

/// `inner`, whose write_metrics() also writes `stats` (the forwarding counters join the bus's
/// metrics on GET /metrics).
std::unique_ptr<bus> with_forwarding_metrics(std::unique_ptr<bus> inner,
                                             std::shared_ptr<const forwarding_stats> stats);

} // namespace megaphone
