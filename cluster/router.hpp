// request_router: how the server hands a request for a session of another node to that node,
// without knowing how (cluster/forwarder.hpp does it over HTTP, with the node registry in Redis).
// A session lives on exactly one node; its sid starts with that node's id ("<node>-...").
//
// Requests between nodes carry two headers: X-Megaphone-Forwarded-By (the forwarding node's id)
// and X-Megaphone-Cluster-Key (the shared --cluster-key). A node answers 403 to any request that
// carries either header without the right key (internal_request::refused), so the forwarding
// door is no way in; with no key configured every such request is refused.
#pragma once

#include "transport/http_connection.hpp"
#include "transport/protocol.hpp"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

inline constexpr std::string_view forwarded_by_header = "X-Megaphone-Forwarded-By";
inline constexpr std::string_view cluster_key_header = "X-Megaphone-Cluster-Key";

/// What a request says of itself.
enum class internal_request {
    none,     ///< an ordinary request: neither header
    admitted, ///< from a node of the cluster: it carries the right key
    refused,  ///< claims to be internal (either header) without the right key, or no key is set
};

/// Checks the headers against `key` (constant-time comparison; an empty key refuses every
/// internal request).
internal_request check_internal(const http::request<http::string_body>& req,
                                std::string_view key) noexcept;

/// True when `req` was forwarded by another node (it carries X-Megaphone-Forwarded-By).
bool forwarded(const http::request<http::string_body>& req) noexcept;

/// A live node of the cluster, as the node registry knows it (the admin dashboard lists them).
struct cluster_node {
    std::string id;
    std::string address;              ///< "host:port" where the other nodes reach it
    std::chrono::milliseconds age{0}; ///< since its last heartbeat
};

/// Where the server listens, for request_router::start().
struct router_start {
    /// Where the other nodes' forwarded requests reach this one (the advertised address
    /// defaults to it): the node's own port with --reuse-port, else the public one.
    unsigned short node_port = 0;
    /// The port clients connect to (shared by the processes of one machine with --reuse-port).
    unsigned short public_port = 0;
    /// With --reuse-port: takes a client connection handed over by another process of this
    /// machine (its descriptor, now this process's, and the bytes read from it already), as if
    /// accepted on the public port. Empty: no hand-over, requests are forwarded.
    std::function<void(int fd, std::string bytes)> adopt;
};

class request_router {
public:
    virtual ~request_router() = default;
    /// The server listens now. Called once, before the public listener accepts; throws when
    /// the router cannot run (its hand-over name is taken on this machine).
    virtual void start(const router_start& where) = 0;
    /// Answers what is in flight (`system-shutdown`), forgets the node's address; nothing runs
    /// after it returns. Any thread but the router's own.
    virtual void stop() = 0;
    /// `in` is a request of a session of `node`, not this one (its body decoded by `codec`).
    /// True: the router took it: it handed the connection over (in.transfer) to the owner, or
    /// it answers through `in.ex` (it may set `in.on_lost`); false: it cannot (forwarding is
    /// off), the caller answers item-not-found. Any server thread, during handle().
    virtual bool route(incoming& in, std::string_view node, const session_codec& codec) = 0;
    /// `in` opens a stream (SSE, WebSocket) of a session of `node`. A stream is not one answer:
    /// true when the owner is a process of this machine and took the connection (in.transfer),
    /// or when the router takes the connection over (in.taker) to relay the stream to the
    /// owning node byte for byte; false: the caller refuses the stream. Any server thread,
    /// during handle(). By default: never.
    virtual bool hand_over(incoming& in, std::string_view node) {
        (void)in, (void)node;
        return false;
    }
    /// A request refused with 403 by check_internal(), for the metrics.
    virtual void refused() noexcept {}
    /// The cluster's live nodes (this one included), sorted by id; `done` runs later on the
    /// router's thread (not at all once it has stopped). Any thread. By default: none.
    virtual void nodes(std::function<void(std::vector<cluster_node>)> done) { done({}); }
};

} // namespace megaphone
