#include "cluster/forwarder.hpp"
#include "cluster/stream_relay.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <charconv>
#include <future>
#include <optional>
#include <unordered_map>
#include <vector>

namespace megaphone {

std::string_view to_string(relay_outcome o) noexcept {
    switch (o) {
    case relay_outcome::relayed:
        return "relayed";
    case relay_outcome::unknown_node:
        return "unknown_node";
    case relay_outcome::unreachable:
        return "unreachable";
    }
    return "unknown";
}

std::string_view to_string(forward_outcome o) noexcept {
    switch (o) {
    case forward_outcome::answered:
        return "answered";
    case forward_outcome::unknown_node:
        return "unknown_node";
    case forward_outcome::unreachable:
        return "unreachable";
    case forward_outcome::lost:
        return "lost";
    case forward_outcome::timeout:
        return "timeout";
    case forward_outcome::busy:
        return "busy";
    case forward_outcome::cancelled:
        return "cancelled";
    case forward_outcome::shutdown:
        return "shutdown";
    }
    return "?";
}

void forwarding_stats::write(std::string& out) const {
    out += "# HELP megaphone_forwarded_requests_total Requests of sessions of other nodes, "
           "forwarded to their node, by outcome.\n"
           "# TYPE megaphone_forwarded_requests_total counter\n";
    for (std::size_t i = 0; i < forward_outcome_count; ++i) {
        out += "megaphone_forwarded_requests_total{outcome=\"";
        out += to_string(static_cast<forward_outcome>(i));
        out += "\"} ";
        out += std::to_string(forwarded[i].load(std::memory_order_relaxed));
        out += '\n';
    }
    out += "# HELP megaphone_relayed_streams_total Streams (SSE, WebSocket) of sessions of other "
           "nodes, relayed byte for byte to their node, by outcome.\n"
           "# TYPE megaphone_relayed_streams_total counter\n";
    for (std::size_t i = 0; i < relay_outcome_count; ++i) {
        out += "megaphone_relayed_streams_total{outcome=\"";
        out += to_string(static_cast<relay_outcome>(i));
        out += "\"} ";
        out += std::to_string(relayed[i].load(std::memory_order_relaxed));
        out += '\n';
    }
    out += "# HELP megaphone_internal_requests_refused_total Requests carrying the cluster's "
           "internal headers without the right cluster key, answered 403.\n"
           "# TYPE megaphone_internal_requests_refused_total counter\n"
           "megaphone_internal_requests_refused_total ";
    out += std::to_string(refused.load(std::memory_order_relaxed));
    out += '\n';
    handover.write(out);
}

std::optional<host_port> split_address(std::string_view a) {
    host_port hp;
    std::string_view port;
    if (a.starts_with('[')) {
        const auto close = a.find(']');
        if (close == std::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':')
            return std::nullopt;
        hp.host = a.substr(1, close - 1);
        port = a.substr(close + 2);
    } else {
        const auto colon = a.rfind(':');
        if (colon == std::string_view::npos)
            return std::nullopt;
        hp.host = a.substr(0, colon);
        port = a.substr(colon + 1);
    }
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), hp.port);
    if (hp.host.empty() || ec != std::errc{} || end != port.data() + port.size() || hp.port == 0)
        return std::nullopt;
    return hp;
}

namespace {

void close_socket(tcp::socket& s) noexcept {
    beast::error_code ignored;
    s.shutdown(tcp::socket::shutdown_both, ignored); // the peer reads end-of-stream at once
    s.close(ignored);
}

constexpr std::uint64_t max_answer = 64 * 1024 * 1024;

} // namespace

//--------------------------------------------------------------------------------------------------
// forwarder

struct forwarder::impl : std::enable_shared_from_this<impl> {
    struct connection {
        explicit connection(net::io_context& ioc)
            : socket{ioc} {}
        tcp::socket socket;
        beast::flat_buffer buffer;
        std::optional<http::response_parser<http::string_body>> parser; // the answer being read
        std::uint64_t watch = 0; // generation of the idle watch: a stale one does nothing
        bool reused = false;
    };
    struct pool {
        std::vector<std::shared_ptr<connection>> idle;
        std::size_t busy = 0; // connecting or carrying a request
    };
    struct op {
        explicit op(net::io_context& ioc)
            : timer{ioc} {}
        std::uint64_t id = 0;
        std::string address;
        http::request<http::string_body> req;
        // Set while it counts in its pool's `busy`. Every pending operation on a connection
        // holds it too, and does nothing once it is no longer its op's (dropped, or a retry's).
        std::shared_ptr<connection> conn;
        net::steady_timer timer;
        std::unique_ptr<tcp::resolver> resolver;
        callback done;
        bool timed_out = false;
        bool retried = false;
        bool over = false;
    };

    impl(net::io_context& c, forwarder_options o)
        : ioc{c}
        , options{o} {}

    net::io_context& ioc;
    forwarder_options options;
    std::unordered_map<std::string, pool> pools;
    std::unordered_map<std::uint64_t, std::shared_ptr<op>> ops;
    std::uint64_t next_id = 0;
    bool stopped = false;

    void start(const std::shared_ptr<op>& o) {
        if (o->over)
            return;
        if (stopped)
            return finish(o, forward_outcome::shutdown);
        pool& p = pools[o->address];
        while (!p.idle.empty()) {
            auto conn = std::move(p.idle.back());
            p.idle.pop_back();
            if (!conn->socket.is_open())
                continue;
            ++conn->watch; // its idle watch ends (aborted) and does nothing
            beast::error_code ignored;
            conn->socket.cancel(ignored);
            conn->reused = true;
            ++p.busy;
            o->conn = std::move(conn);
            return send(o);
        }
        fresh(o);
    }

    /// A new connection for `o` (none of its own now).
    void fresh(const std::shared_ptr<op>& o) {
        pool& p = pools[o->address];
        if (p.busy + p.idle.size() >= options.max_per_node)
            return finish(o, forward_outcome::busy);
        ++p.busy;
        o->conn = std::make_shared<connection>(ioc);
        const auto hp = split_address(o->address);
        if (!hp)
            return finish(o, forward_outcome::unreachable);
        arm(o, options.connect_timeout);
        beast::error_code ec;
        const auto ip = net::ip::make_address(hp->host, ec);
        auto conn = o->conn;
        if (!ec) {
            conn->socket.async_connect(tcp::endpoint{ip, hp->port},
                                       [self = shared_from_this(), o, conn](beast::error_code e) {
                                           self->connected(o, conn, e);
                                       });
            return;
        }
        o->resolver = std::make_unique<tcp::resolver>(ioc);
        o->resolver->async_resolve(
            hp->host, std::to_string(hp->port),
            [self = shared_from_this(), o, conn](beast::error_code e,
                                                 tcp::resolver::results_type r) {
                if (o->over || o->conn != conn)
                    return;
                if (e)
                    return self->finish(o, forward_outcome::unreachable);
                net::async_connect(conn->socket, r,
                                   [self, o, conn](beast::error_code e2, const tcp::endpoint&) {
                                       self->connected(o, conn, e2);
                                   });
            });
    }

    void connected(const std::shared_ptr<op>& o, const std::shared_ptr<connection>& conn,
                   beast::error_code ec) {
        if (o->over || o->conn != conn)
            return;
        if (ec)
            return finish(o, forward_outcome::unreachable);
        beast::error_code ignored;
        o->conn->socket.set_option(tcp::no_delay{true}, ignored);
        send(o);
    }

    /// `o` fails (its connection closed, counted `timed_out`) unless over within `d`.
    void arm(const std::shared_ptr<op>& o, std::chrono::milliseconds d) {
        o->timer.expires_after(d);
        o->timer.async_wait([self = shared_from_this(), o](beast::error_code ec) {
            if (ec || o->over)
                return;
            o->timed_out = true;
            if (o->resolver)
                o->resolver->cancel();
            if (o->conn)
                close_socket(o->conn->socket); // the pending operation ends with an error
        });
    }

    void send(const std::shared_ptr<op>& o) {
        arm(o, options.timeout);
        auto conn = o->conn;
        conn->parser.emplace();
        conn->parser->body_limit(max_answer);
        http::async_write(conn->socket, o->req,
                          [self = shared_from_this(), o, conn](beast::error_code ec, std::size_t) {
                              if (o->over || o->conn != conn)
                                  return;
                              if (ec)
                                  return self->failed(o);
                              http::async_read(conn->socket, conn->buffer, *conn->parser,
                                               [self, o, conn](beast::error_code e, std::size_t) {
                                                   self->read(o, conn, e);
                                               });
                          });
    }

    void read(const std::shared_ptr<op>& o, const std::shared_ptr<connection>& conn,
              beast::error_code ec) {
        if (o->over || o->conn != conn)
            return;
        if (ec)
            return failed(o);
        response_type res = conn->parser->release();
        conn->parser.reset();
        release(o, res.keep_alive());
        finish(o, forward_outcome::answered, &res);
    }

    void failed(const std::shared_ptr<op>& o) {
        if (o->timed_out)
            return finish(o, forward_outcome::timeout);
        // A reused connection the peer had closed meanwhile (its idle timeout, say): the request
        // never reached it. Once more on a new connection.
        if (o->conn && o->conn->reused && !o->retried && o->conn->parser &&
            !o->conn->parser->got_some()) {
            o->retried = true;
            drop(o);
            return fresh(o);
        }
        finish(o, forward_outcome::lost);
    }

    /// `o`'s connection leaves it: closed.
    void drop(const std::shared_ptr<op>& o) {
        if (!o->conn)
            return;
        close_socket(o->conn->socket);
        --pools[o->address].busy;
        o->conn.reset();
    }

    /// `o`'s connection leaves it, answered: kept idle when it may be reused.
    void release(const std::shared_ptr<op>& o, bool keep_alive) {
        pool& p = pools[o->address];
        auto conn = std::move(o->conn);
        --p.busy;
        if (!keep_alive || stopped || !conn->socket.is_open() || conn->buffer.size() != 0 ||
            p.idle.size() >= options.max_idle_per_node) {
            close_socket(conn->socket);
            return;
        }
        conn->reused = false;
        p.idle.push_back(conn);
        // Readable while idle: the peer closed it (or sent what nobody asked for): dropped.
        const auto gen = ++conn->watch;
        conn->socket.async_wait(tcp::socket::wait_read, [weak = weak_from_this(), conn, gen,
                                                         address = o->address](beast::error_code) {
            auto self = weak.lock();
            if (!self || gen != conn->watch)
                return;
            ++conn->watch;
            close_socket(conn->socket);
            auto it = self->pools.find(address);
            if (it != self->pools.end())
                std::erase(it->second.idle, conn);
        });
    }

    void finish(const std::shared_ptr<op>& o, forward_outcome outcome,
                response_type* res = nullptr) {
        if (o->over)
            return;
        o->over = true;
        o->timer.cancel();
        if (o->resolver)
            o->resolver->cancel();
        drop(o);
        ops.erase(o->id);
        if (auto done = std::move(o->done))
            done(outcome, res);
    }

    void stop() {
        stopped = true;
        auto all = std::move(ops);
        ops.clear();
        for (auto& [id, o] : all)
            finish(o, forward_outcome::shutdown);
        for (auto& [address, p] : pools)
            for (auto& conn : p.idle) {
                ++conn->watch;
                close_socket(conn->socket);
            }
        pools.clear();
    }
};

forwarder::forwarder(net::io_context& ioc, forwarder_options options)
    : impl_{std::make_shared<impl>(ioc, options)} {}

forwarder::~forwarder() {
    impl_->stop();
}

std::uint64_t forwarder::forward(const std::string& address, http::request<http::string_body> req,
                                 callback done) {
    auto o = std::make_shared<impl::op>(impl_->ioc);
    o->id = ++impl_->next_id;
    o->address = address;
    o->req = std::move(req);
    o->done = std::move(done);
    impl_->ops.emplace(o->id, o);
    // Started from the queue: `done` never runs inside this call.
    net::post(impl_->ioc, [self = impl_, o] { self->start(o); });
    return o->id;
}

void forwarder::cancel(std::uint64_t id) {
    auto it = impl_->ops.find(id);
    if (it == impl_->ops.end())
        return;
    auto o = it->second;
    o->done = nullptr;
    impl_->finish(o, forward_outcome::cancelled);
}

void forwarder::stop() {
    impl_->stop();
}

std::size_t forwarder::connections(const std::string& address) const {
    auto it = impl_->pools.find(address);
    return it == impl_->pools.end() ? 0 : it->second.busy + it->second.idle.size();
}

//--------------------------------------------------------------------------------------------------
// forwarding_router

namespace {

/// A node id as --node-id allows it (1 to 6 characters, no '-'), printable ASCII: anything else
/// in a sid is forged, and is never looked up.
bool plausible_node(std::string_view node) noexcept {
    if (node.empty() || node.size() > 6)
        return false;
    for (const char c : node)
        if (c <= 0x20 || c >= 0x7f || c == '-')
            return false;
    return true;
}

content_kind kind_of(std::string_view content_type) noexcept {
    if (content_type.find("json") != std::string_view::npos)
        return content_kind::json;
    if (content_type.find("xml") != std::string_view::npos)
        return content_kind::xml;
    return content_kind::text;
}

class forwarding_router final : public request_router {
public:
    forwarding_router(net::io_context& ioc, redis::endpoint registry_server,
                      forwarding_router_options options, std::shared_ptr<forwarding_stats> stats)
        : state_{std::make_shared<state>(ioc, std::move(registry_server), std::move(options),
                                         std::move(stats))} {}

    ~forwarding_router() override { stop(); }

    void start(const router_start& where) override {
        auto& o = state_->options;
        if (o.handover && where.adopt) {
            // Listens at once (throws if this node id is taken here); the sender is published
            // for route() on the server's threads last.
            state_->receiver = std::make_unique<handover_receiver>(
                state_->ioc, where.public_port, o.node_id, where.adopt,
                std::shared_ptr<handover_stats>(state_->stats, &state_->stats->handover));
            state_->sender_owned = std::make_unique<handover_sender>(
                where.public_port,
                std::shared_ptr<handover_stats>(state_->stats, &state_->stats->handover));
            state_->sender.store(state_->sender_owned.get(), std::memory_order_release);
            say(false, "connection hand-over on: node " + o.node_id + " at @" +
                           handover_name(where.public_port, o.node_id));
        }
        if (o.cluster_key.empty()) {
            say(false, "cluster forwarding off: no --cluster-key; requests for sessions of other "
                       "nodes get item-not-found");
            return;
        }
        std::string address = o.advertise;
        if (address.empty()) {
            const bool v6 = o.listen_address.find(':') != std::string::npos;
            address = (v6 ? "[" + o.listen_address + "]" : o.listen_address) + ":" +
                      std::to_string(where.node_port);
            if (o.listen_address == "0.0.0.0" || o.listen_address == "::")
                say(true, "cluster forwarding: advertising " + address +
                              ", which other machines cannot reach: set --advertise HOST:PORT");
        }
        say(false, "cluster forwarding on: node " + o.node_id + " advertised at " + address);
        state_->started = true;
        net::post(state_->ioc, [s = state_, address] {
            if (!s->stopped)
                s->registry.start(address);
        });
    }

    void stop() override {
        auto s = state_;
        if (s->ioc.get_executor().running_in_this_thread() || s->ioc.stopped() || !s->started) {
            s->shut(nullptr);
            return;
        }
        // On the router's thread; waits (bounded) for the node's key to be deleted.
        auto over = std::make_shared<std::promise<void>>();
        auto done = over->get_future();
        net::post(s->ioc, [s, over] { s->shut([over] { over->set_value(); }); });
        done.wait_for(std::chrono::seconds(3));
    }

    bool route(incoming& in, std::string_view node, const session_codec& codec) override {
        auto& s = state_;
        if (!plausible_node(node)) {
            s->stats->count(forward_outcome::unknown_node);
            return false;
        }
        // The owner is a process of this machine: it gets the connection itself.
        if (transfer_local(in, node))
            return true;
        if (s->options.cluster_key.empty() || !s->started)
            return false;
        // The request as the owning node needs it: method, target, body, Content-Type, Origin,
        // X-Megaphone-Token (the admin console's sessions carry their token there: the owner
        // checks it again), and who we are. (The body is not needed here any more: moved.)
        http::request<http::string_body> out{in.request.method(), in.request.target(), 11};
        for (const auto field : {http::field::content_type, http::field::origin})
            if (auto it = in.request.find(field); it != in.request.end())
                out.set(field, it->value());
        if (auto it = in.request.find("X-Megaphone-Token"); it != in.request.end())
            out.set("X-Megaphone-Token", it->value());
        out.set(beast::string_view{forwarded_by_header.data(), forwarded_by_header.size()},
                s->options.node_id);
        out.set(beast::string_view{cluster_key_header.data(), cluster_key_header.size()},
                s->options.cluster_key);
        out.body() = std::move(in.request.body());
        out.keep_alive(true);
        out.prepare_payload();

        auto p = std::make_shared<pending>(in.ex, codec);
        in.on_lost = [weak = std::weak_ptr<state>(s), p] {
            if (auto self = weak.lock())
                net::post(self->ioc, [self, p] { self->lost(p); });
        };
        net::post(s->ioc, [s, p, node = std::string(node), out = std::move(out)]() mutable {
            s->begin(p, node, std::move(out));
        });
        return true;
    }

    bool hand_over(incoming& in, std::string_view node) override {
        if (transfer_local(in, node))
            return true;
        // The owner is another machine's node (or a local process that could not take it): the
        // stream is relayed to it byte for byte (cluster/stream_relay.hpp).
        auto& s = state_;
        if (!plausible_node(node) || s->options.cluster_key.empty() || !s->started || !in.context)
            return false;
        auto lookup = [weak = std::weak_ptr<state>(s),
                       node = std::string(node)](std::function<void(std::string)> found) {
            auto self = weak.lock();
            if (!self)
                return found({});
            net::post(self->ioc, [self, node, found = std::move(found)]() mutable {
                if (self->stopped)
                    return found({});
                self->registry.lookup(node, std::move(found));
            });
        };
        relay_stream(in, s->relay, std::move(lookup), s->stats);
        return true;
    }

    void refused() noexcept override { state_->stats->refused.fetch_add(1); }

    void nodes(std::function<void(std::vector<cluster_node>)> done) override {
        // Not started (forwarding off): no registry, no heartbeats, no nodes.
        if (!state_->started)
            return done({});
        net::post(state_->ioc, [weak = std::weak_ptr<state>(state_), done = std::move(done)] {
            if (auto s = weak.lock(); s && !s->stopped)
                s->registry.list(done);
        });
    }

private:
    /// The owner is a process of this machine (--reuse-port): the connection itself goes to it.
    bool transfer_local(incoming& in, std::string_view node) {
        handover_sender* sender = state_->sender.load(std::memory_order_acquire);
        return sender && in.transfer && plausible_node(node) &&
               in.transfer->transfer(in.request, [sender, node](int fd, std::string_view bytes) {
                   return sender->send(node, fd, bytes);
               });
    }

    /// One forwarded request, on the router's thread.
    struct pending {
        pending(exchange e, const session_codec& c)
            : ex{std::move(e)}
            , codec{c} {}
        exchange ex;
        const session_codec& codec; // a process-wide instance
        std::uint64_t id = 0;       // the forwarder's, once sent
        bool lost = false;          // the client went away
        bool over = false;          // answered or cancelled
    };

    struct state : std::enable_shared_from_this<state> {
        state(net::io_context& c, redis::endpoint where, forwarding_router_options o,
              std::shared_ptr<forwarding_stats> st)
            : ioc{c}
            , options{std::move(o)}
            , stats{st ? std::move(st) : std::make_shared<forwarding_stats>()}
            , registry{c, std::move(where), options.node_id, options.registry}
            , fwd{c, options.forward}
            , relay{options.node_id, options.cluster_key, options.forward.connect_timeout} {}

        net::io_context& ioc;
        forwarding_router_options options;
        std::shared_ptr<forwarding_stats> stats;
        node_registry registry;
        forwarder fwd;
        stream_relay_options relay;                  // streams of other nodes' sessions
        std::unique_ptr<handover_receiver> receiver; // with hand-over; set by start()
        std::unique_ptr<handover_sender> sender_owned;
        std::atomic<handover_sender*> sender{nullptr}; // what route() uses
        std::atomic<bool> started{false};
        bool stopped = false;

        void begin(const std::shared_ptr<pending>& p, const std::string& node,
                   http::request<http::string_body> req) {
            if (!usable(p))
                return;
            registry.lookup(node, [self = shared_from_this(), p,
                                   req = std::move(req)](std::string address) mutable {
                self->send(p, address, std::move(req));
            });
        }

        void send(const std::shared_ptr<pending>& p, const std::string& address,
                  http::request<http::string_body> req) {
            if (!usable(p))
                return;
            if (address.empty())
                return answer(p, forward_outcome::unknown_node, nullptr);
            req.set(http::field::host, address);
            p->id = fwd.forward(
                address, std::move(req),
                [self = shared_from_this(), p](forward_outcome o, forwarder::response_type* res) {
                    self->answer(p, o, res);
                });
        }

        /// False (and the request is over) once stopped or its client is gone.
        bool usable(const std::shared_ptr<pending>& p) {
            if (p->over)
                return false;
            if (stopped) {
                answer(p, forward_outcome::shutdown, nullptr);
                return false;
            }
            if (p->lost) {
                p->over = true;
                stats->count(forward_outcome::cancelled);
                return false;
            }
            return true;
        }

        void lost(const std::shared_ptr<pending>& p) {
            if (p->over)
                return;
            p->lost = true;
            if (p->id == 0)
                return; // not sent yet: begin() or send() sees it
            p->over = true;
            stats->count(forward_outcome::cancelled);
            fwd.cancel(p->id); // the owning node sees its connection close
        }

        void answer(const std::shared_ptr<pending>& p, forward_outcome o,
                    forwarder::response_type* res) {
            if (p->over)
                return;
            p->over = true;
            stats->count(o);
            switch (o) {
            case forward_outcome::answered: {
                response r;
                r.status = res->result_int();
                const auto ct = (*res)[http::field::content_type];
                r.kind = kind_of({ct.data(), ct.size()});
                if (!ct.empty())
                    r.content_type = packet::from({ct.data(), ct.size()});
                r.body = packet::from(res->body());
                return p->ex.reply(std::move(r));
            }
            case forward_outcome::unknown_node:
            case forward_outcome::unreachable:
            case forward_outcome::lost:
                return p->ex.reply(p->codec.error_response(protocol_error::item_not_found));
            case forward_outcome::timeout:
                return p->ex.reply(
                    {504, content_kind::text, packet::from("the session's node did not answer\n")});
            case forward_outcome::busy:
                return p->ex.reply(
                    {503, content_kind::text, packet::from("too many forwarded requests\n")});
            case forward_outcome::shutdown:
                return p->ex.reply(p->codec.error_response(protocol_error::system_shutdown));
            case forward_outcome::cancelled:
                return;
            }
        }

        /// Answers what is in flight, then deletes this node's key; `done` once over.
        void shut(std::function<void()> done) {
            if (stopped) {
                if (done)
                    done();
                return;
            }
            stopped = true;
            fwd.stop();
            if (receiver)
                receiver->stop();
            if (!started) {
                if (done)
                    done();
                return;
            }
            registry.stop(std::move(done));
        }
    };

    void say(bool warning, const std::string& line) const {
        if (state_->options.log)
            state_->options.log(warning, line);
    }

    std::shared_ptr<state> state_;
};

/// A bus whose metrics also carry the forwarding counters.
class metrics_bus final : public bus {
public:
    metrics_bus(std::unique_ptr<bus> inner, std::shared_ptr<const forwarding_stats> stats)
        : inner_{std::move(inner)}
        , stats_{std::move(stats)} {}
    void start(bus_listener& to) override { inner_->start(to); }
    void stop() override { inner_->stop(); }
    void publish(std::string_view channel, packet payload,
                 std::function<void(publish_result)> done) override {
        inner_->publish(channel, std::move(payload), std::move(done));
    }
    void open(std::string_view channel) override { inner_->open(channel); }
    void close(std::string_view channel) override { inner_->close(channel); }
    void recover(std::string_view channel, const stream_position& since,
                 std::function<void(recovery)> done) override {
        inner_->recover(channel, since, std::move(done));
    }
    void write_metrics(std::string& out) const override {
        inner_->write_metrics(out);
        stats_->write(out);
    }

private:
    std::unique_ptr<bus> inner_;
    std::shared_ptr<const forwarding_stats> stats_;
};

} // namespace

std::unique_ptr<request_router> make_forwarding_router(net::io_context& ioc,
                                                       redis::endpoint registry_server,
                                                       forwarding_router_options options,
                                                       std::shared_ptr<forwarding_stats> stats) {
    return std::make_unique<forwarding_router>(ioc, std::move(registry_server), std::move(options),
                                               std::move(stats));
}

std::unique_ptr<bus> with_forwarding_metrics(std::unique_ptr<bus> inner,
                                             std::shared_ptr<const forwarding_stats> stats) {
    return std::make_unique<metrics_bus>(std::move(inner), std::move(stats));
}

} // namespace megaphone
