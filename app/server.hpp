// server: the HTTP server that carries sessions. One I/O thread per shard; each shard is an
// io_context run by exactly one thread (an implicit strand) and owns one engine, so every
// session's machine is driven from one thread and sessions need no locks.
//
// A request is read and decoded on the thread of its connection, then posted to the shard of
// its session (the shard index is in the sid; a creation stays on the connection's own shard).
// The answer is posted back to the connection's thread. Publishing posts the packet, encoded
// once, to every shard.
#pragma once

#include "app/access.hpp"
#include "app/application.hpp"
#include "app/engine.hpp"
#include "app/log.hpp"
#include "app/metrics.hpp"
#include "app/placement.hpp"
#include "app/rate_limiter.hpp"
#include "cluster/bus.hpp"
#include "cluster/router.hpp"
#include "fsm/string_map.hpp"
#include "transport/http_connection.hpp"
#include "transport/sse.hpp"
#include "transport/static_files.hpp"
#include "transport/websocket.hpp"

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace megaphone {

struct server_options {
    std::string address = "127.0.0.1";
    /// 0 picks a free port (see port()).
    unsigned short port = 8080;
    /// HTTPS next to HTTP: a certificate chain and its private key (PEM files). HTTPS is on when
    /// tls_cert is set; it listens on tls_port (0 picks a free port, see tls_port()).
    std::filesystem::path tls_cert;
    std::filesystem::path tls_key;
    unsigned short tls_port = 8443;
    /// With http.reuse_port: the port this process alone also listens on, advertised to the
    /// other nodes for forwarded requests (0 picks a free one, see node_port()).
    unsigned short node_port = 0;
    /// The internal door (app/access.hpp): publishing without a key, /metrics without a token.
    /// Loopback by default; 0 (the default here; the megaphone binary's is 9080) picks a free
    /// port (see internal_port()). With http.reuse_port it is shared by the processes too (a
    /// publish on any reaches every one).
    std::string internal_address = "127.0.0.1";
    unsigned short internal_port = 0;
    /// POST /publish on the public doors with `Authorization: Bearer <key>`, and /metrics there
    /// with its token (app/access.hpp); empty: /publish internal only, /metrics open.
    access_keys keys;
    /// Client tokens and what sessions may do without one (app/access.hpp); the server makes
    /// engine.rules of them unless engine.rules is set already.
    client_rules_options clients;
    /// With http.reuse_port: a request of a session of another process of this machine moves
    /// there with its connection (cluster/handover.hpp); false: it is forwarded over HTTP.
    bool handover = true;
    /// A plain connection whose request is for a session of another thread (shard) moves to
    /// that thread, once (http_connection::move_to), so that its next requests need no hop
    /// between threads; false: connections stay where they were accepted.
    bool move_connections = true;
    /// I/O threads, each with its own engine. 0: one per core (with `placement` fill, the
    /// others only take work while the first is busy and a core is spare).
    unsigned threads = 0;
    /// Which thread takes a new connection (app/placement.hpp): `fill` keeps them on the first
    /// thread until it is busy and a core is spare; `spread` is round robin.
    placement_options placement;
    /// Files served for GET; none when empty.
    std::filesystem::path static_dir;
    /// The longest stop() waits for outstanding answers to be written before it closes
    /// everything (it returns as soon as they are).
    std::chrono::milliseconds drain{std::chrono::seconds(5)};
    /// Session creations per client address: `creation_burst` at once, then `creation_rate`
    /// per second (a token bucket); beyond it 429 policy-violation. Burst 0: no limit.
    std::uint32_t creation_burst = 1000;
    double creation_rate = 100;
    http_options http;
    /// Server-Sent Events at GET <mount>/events of every JSON mount (heartbeat, retry).
    sse_options sse;
    /// WebSocket at GET <mount> (upgrade) of every JSON mount: its timeouts. Its heartbeat,
    /// message limit and origins are taken from sse.heartbeat, http.max_body and
    /// http.cors_origins.
    websocket_options websocket;
    engine_config engine;
    log_options log;
    /// Serve GET /metrics (Prometheus text format).
    bool metrics = true;
    /// The token of the /admin dashboard; empty: no dashboard (/admin is 404).
    std::string admin_token;
    /// Channel history kept for recovery (per channel: messages, age).
    bus_options history;
    /// Redis servers (redis://host:port/db) that join this server to a cluster; empty: one
    /// process, no Redis. parse_command_line() turns them into make_bus.
    std::vector<std::string> redis;
    /// Makes the bus that carries publishes between nodes, given the first I/O thread's
    /// io_context (where it may run its own I/O). Empty: the in-process local_bus.
    std::function<std::unique_ptr<bus>(net::io_context&, const bus_options&)> make_bus;
    /// The secret shared by a cluster's nodes: requests forwarded between them carry it, and
    /// any request claiming to be forwarded without it gets 403. Empty: no forwarding.
    std::string cluster_key;
    /// "host:port" where the other nodes reach this one; empty: address and the bound port.
    std::string advertise;
    /// Makes the router that forwards requests of other nodes' sessions (cluster/router.hpp),
    /// given the first I/O thread's io_context and these options. Empty: no forwarding.
    std::function<std::unique_ptr<request_router>(net::io_context&, const server_options&)>
        make_router;
};

/// One row of the admin dashboard's sessions table.
struct session_row {
    std::string sid;
    fsm_state state;
    std::chrono::milliseconds age;
    std::size_t queued;
    std::size_t held;
    content_kind transport;
    peer_address peer;
};

class admin_console;

class server final : public broker,
                     private request_handler,
                     private channel_observer,
                     private bus_listener,
                     private history_source {
public:
    /// Handles a request on a route added with route(); answer through `in.ex`.
    using route_handler = std::function<void(incoming& in, std::string_view rest)>;

    explicit server(server_options options);
    ~server() override;

    /// Serves `app` with the JSON transport at POST `path` (e.g. "/comet").
    void mount(std::string path, application& app);
    /// Serves `app` with the BOSH transport (XEP-0124/0206) at POST `path` (e.g. "/bosh").
    void mount_bosh(std::string path, application& app);
    /// Serves `method` requests whose target starts with `prefix`; `rest` is what follows it.
    /// Who may use the route is `access`'s (app/access.hpp): open, or a key-guarded one.
    void route(http::verb method, std::string prefix, route_handler handler,
               route_access access = route_access::open);

    /// Binds, then starts the I/O threads. Returns once the server accepts connections.
    void start();
    /// The bound port (useful with port 0).
    unsigned short port() const noexcept { return port_; }
    /// With reuse_port: the port this process alone listens on (forwarded requests); else 0.
    unsigned short node_port() const noexcept { return node_port_; }
    /// The internal listener's port (internal_port, or the one picked for 0), once started.
    unsigned short internal_port() const noexcept { return internal_port_; }
    /// The bound HTTPS port; 0 without HTTPS.
    unsigned short tls_port() const noexcept { return tls_port_; }
    /// Blocks until stop() has finished.
    void wait();
    /// Closes the listening sockets and returns once they are closed: another server may bind
    /// the port now. Requests on open connections are answered 503 system-shutdown. Any
    /// thread but a shard's own.
    void stop_accepting();
    /// Graceful stop: stop_accepting(), ends every session (held requests are answered
    /// `{"type":"terminate","condition":"system-shutdown"}`, each answer closing its
    /// connection), waits until every outstanding answer is written or `drain` has passed,
    /// then stops the threads. Any thread.
    void stop();

    const server_options& options() const noexcept { return options_; }

    // broker
    using broker::broadcast;
    using broker::publish;
    using broker::push;
    void push(std::string_view sid, packet p) override;
    void publish(std::string_view channel, packet p,
                 std::function<void(const publish_result&)> done = {}) override;
    /// As publish(), for a caller ready for `done` inside this call (the /publish route, whose
    /// answer then goes out in the same turn): publish() queues `done` on a shard instead.
    void publish_now(std::string_view channel, packet p, std::function<void(publish_result)> done);
    void broadcast(packet p) override;
    void subscribe(std::string_view sid, std::string_view channel) override;
    void unsubscribe(std::string_view sid, std::string_view channel) override;
    void close(std::string_view sid) override;
    void with_session(std::string_view sid, std::function<void(session&)> f) override;

    /// Total sessions (sums every shard; for tests and diagnostics, blocks briefly).
    std::size_t session_count();

    /// Every shard's counters summed (any thread, never blocks).
    metrics_snapshot metrics() const;
    /// Rows [offset, offset + limit) of the sessions, shard by shard, and the total; `done`
    /// runs on a server thread. Each shard lists at most offset + limit of its sessions.
    void list_sessions(std::size_t offset, std::size_t limit,
                       std::function<void(std::size_t total, std::vector<session_row>)> done);

    /// The cluster's live nodes (the router's, cluster/router.hpp); none without a router.
    /// `done` runs on the router's thread, or inside this call when there is none.
    void cluster_nodes(std::function<void(std::vector<cluster_node>)> done);

private:
    struct shard;
    struct mount_point {
        std::string path;
        application* app;
        const session_codec* codec;
        /// The streaming transports of its sessions (JSON mounts: WebSocket, SSE).
        std::vector<const stream_transport*> streams;
    };
    struct route_entry {
        http::verb method;
        std::string prefix;
        route_handler handler;
        route_access access;
    };

    // request_handler
    void handle(incoming& in) override;
    response refuse(std::string_view target, unsigned status) override;
    bool draining() const noexcept override { return stopping_; }
    void exchange_started() noexcept override { ++exchanges_; }
    void exchange_finished() noexcept override { --exchanges_; }

    // channel_observer: which shards have subscribers of a channel (from the shards' threads)
    std::atomic<std::int64_t>* channel_opened(unsigned shard, std::string_view channel) override;
    void channel_closed(unsigned shard, std::string_view channel) override;

    // bus_listener: a message for this process's subscribers (from the bus)
    std::size_t deliver(std::string_view channel, const packet& stamped,
                        std::uint64_t offset) override;
    // history_source: an engine's subscription from a cursor
    void recover(unsigned shard, std::string_view channel, const stream_position& since,
                 std::function<void(recovery)> done) override;

    void handle_session_request(incoming& in, const mount_point& m);
    /// The streaming transport a request to `path` opens a stream of, if any.
    static const stream_transport* stream_of(const mount_point& m, const incoming& in,
                                             std::string_view path) noexcept;
    /// Opens a stream of `transport` for the request's session, on the session's shard.
    void handle_stream_request(incoming& in, const stream_transport& transport);
    /// A request for a session of another thread's shard, read on a plain connection: the
    /// connection moves there, once, and the request is read again there. True when it moved
    /// (the request is no longer this call's).
    bool moved_to_session_thread(incoming& in, shard& sh, transport_kind kind);
    /// True when `path` is the mount's, or the mount's followed by "/<node id>".
    static bool serves(const mount_point& m, std::string_view path) noexcept;
    /// Runs `f(engine&)` on the shard that owns `sid` (nothing if none does).
    template <class F>
    void on_shard_of(std::string_view sid, F&& f);
    shard* current_shard() const noexcept;

    server_options options_;
    coarse_clock_source clock_;
    std::unique_ptr<net::ssl::context> tls_context_; // before shards_: outlives connections
    std::atomic<std::size_t> session_total_{0};      // every shard's sessions (max_sessions)
    std::vector<std::unique_ptr<shard>> shards_;
    std::unique_ptr<sse_transport> sse_;
    std::unique_ptr<websocket_transport> websocket_;
    std::vector<mount_point> mounts_;
    std::vector<route_entry> routes_;
    std::optional<static_files> files_;
    std::shared_ptr<spdlog::logger> access_log_; // when options_.log.access_log is set
    rate_limiter creations_;
    std::shared_ptr<http_listener> listener_;
    std::shared_ptr<http_listener> tls_listener_;
    std::shared_ptr<http_listener> node_listener_; // with http.reuse_port
    http_options node_http_;                       // its options: http without reuse_port
    unsigned short node_port_ = 0;
    std::shared_ptr<http_listener> internal_listener_; // the internal door
    http_options internal_http_;                       // its options: http, internal
    unsigned short internal_port_ = 0;
    std::unique_ptr<thread_placement> placement_; // which thread takes a new connection
    /// Channel name -> bit i set when shard i has subscribers (a publish goes to those only),
    /// and how many sessions subscribe on all shards (a publish's answer, given at once).
    struct channel_entry {
        std::uint64_t shards = 0;
        std::atomic<std::int64_t> members{0}; // kept by the engines (channel_observer)
    };
    std::shared_mutex channel_shards_mutex_;
    string_map<channel_entry> channel_shards_;
    std::unique_ptr<bus> bus_;
    std::unique_ptr<request_router> router_; // after shards_: goes before their io_contexts
    std::atomic<bool> stopping_{false};
    std::atomic<std::ptrdiff_t> exchanges_{0}; // requests whose answer is not written yet
    std::once_flag stop_accepting_once_;
    unsigned short port_ = 0;
    unsigned short tls_port_ = 0;
    std::once_flag stop_once_;
    std::unique_ptr<admin_console> admin_; // last: goes first
};

} // namespace megaphone
