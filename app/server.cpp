#include "app/server.hpp"

#include "app/admin.hpp"
#include "app/redact.hpp"

#include "cluster/local_bus.hpp"

#include "transport/bosh_codec.hpp"
#include "transport/json_codec.hpp"

#include <boost/asio/ssl/context.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <future>
#include <mutex>
#include <numeric>
#include <pthread.h>
#include <stdexcept>

namespace megaphone {

//--------------------------------------------------------------------------------------------------
// shard: one thread, one io_context, one engine

struct server::shard {
    shard(server& srv, unsigned index)
        : work{net::make_work_guard(ioc)}
        , eng{srv.options_.engine, srv.clock_, srv, index}
        , wakeup{ioc} {}

    /// Runs `f(eng)` on this shard's thread, inline when already there.
    template <class F>
    void run(F&& f) {
        net::dispatch(ioc, [this, f = std::forward<F>(f)]() mutable {
            f(eng);
            reschedule();
        });
    }

    /// Delivers a published message to this shard's subscribers of `channel`, later, on its
    /// thread. Any thread. A burst of deliveries costs one post (one wake-up) while the shard
    /// has not started on them, not one each.
    void deliver(std::string_view channel, const packet& stamped) {
        push_inbox(inbox_item{std::string(channel), stamped, {}});
    }
    /// Runs `f` on this shard's thread after the deliveries queued before it.
    void enqueue(std::function<void()> f) { push_inbox(inbox_item{{}, {}, std::move(f)}); }

    /// Keeps the one OS timer of this shard at the engine's earliest deadline. It is only moved
    /// earlier; when it fires late for a cancelled timer it simply re-arms.
    void reschedule() {
        const auto next = eng.next_deadline();
        if (!next || *next >= scheduled)
            return;
        scheduled = *next;
        wakeup.expires_at(*next);
        wakeup.async_wait([this](beast::error_code ec) {
            if (ec)
                return; // moved earlier meanwhile: that wait owns the timer now
            scheduled = time_point::max();
            eng.expire_timers();
            reschedule();
        });
    }

    struct inbox_item {
        std::string channel;
        packet stamped;
        std::function<void()> other; // set: not a delivery
    };
    void push_inbox(inbox_item item) {
        bool post = false;
        {
            std::lock_guard lock{inbox_mutex};
            inbox.push_back(std::move(item));
            post = !inbox_posted;
            inbox_posted = true;
        }
        if (post)
            net::post(ioc, [this] { drain_inbox(); });
    }
    void drain_inbox() {
        {
            std::lock_guard lock{inbox_mutex};
            draining.swap(inbox);
            inbox_posted = false;
        }
        for (inbox_item& item : draining) {
            if (item.other)
                item.other();
            else
                eng.publish(item.channel, item.stamped);
        }
        draining.clear(); // (keeps its capacity for the next burst)
        reschedule();
    }

    std::mutex inbox_mutex;
    std::vector<inbox_item> inbox;    // guarded by inbox_mutex
    bool inbox_posted = false;        // a drain_inbox() is queued (guarded by inbox_mutex)
    std::vector<inbox_item> draining; // this shard's thread only

    metrics_block stats; // written by this shard's thread only
    net::io_context ioc{1};
    net::executor_work_guard<net::io_context::executor_type> work;
    engine eng;
    net::steady_timer wakeup;
    time_point scheduled = time_point::max();
    std::thread thread;
    std::atomic<int> cpu_clock{-1}; // the thread's CPU clock id, for placement_ (-1: not yet)
};

namespace {
thread_local void* tls_shard = nullptr; // the shard whose thread this is

/// A sid kept inline, for the callbacks of a held request or stream (shard_of() accepts at most
/// 32 bytes): no allocation of its own while the request is held.
struct inline_sid {
    explicit inline_sid(std::string_view sid) noexcept
        : size{static_cast<std::uint8_t>(std::min(sid.size(), bytes.size()))} {
        std::copy_n(sid.begin(), size, bytes.begin());
    }
    std::string_view view() const noexcept { return {bytes.data(), size}; }
    std::array<char, 32> bytes{};
    std::uint8_t size = 0;
};

/// GET on a BOSH endpoint: a page for people who open it in a browser (as ejabberd does).
packet bosh_info_page() {
    static const packet page = packet::from(
        "<!doctype html><html><head><meta charset='utf-8'><title>Megaphone BOSH</title></head>"
        "<body><h1>Megaphone BOSH endpoint</h1><p>This is a BOSH connection manager "
        "(XEP-0124, XEP-0206). Point an XMPP client such as Strophe.js at this URL; it speaks "
        "HTTP POST.</p></body></html>\n");
    return page;
}

/// A refused BOSH body that is still a well-formed <body/> with neither `sid` nor `ver` is a
/// legacy client's session request: it gets the bare HTTP code (XEP-0124 §17.1).
bool legacy_bosh_creation(std::string_view body) {
    const auto parsed = parse_bosh_body(body);
    const auto* b = std::get_if<bosh_body>(&parsed);
    return b && !b->attribute("sid") && !b->attribute("ver");
}

/// A request's method or target as one access-log field: bytes that would break the line's
/// key=value form (controls, space, quote, backslash, non-ASCII) are percent-encoded. (A target
/// goes through redact_target first: no credential is ever written.)
std::string log_field(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if (b <= 0x20 || b >= 0x7f || c == '"' || c == '\\') {
            out += '%';
            out += hex[b >> 4];
            out += hex[b & 15];
        } else {
            out += c;
        }
    }
    return out;
}

/// The access log: key=value lines, UTC time first, every line flushed.
std::shared_ptr<spdlog::logger> open_access_log(const std::string& where) {
    spdlog::sink_ptr sink;
    if (where == "-")
        sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    else
        sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(where);
    auto log = std::make_shared<spdlog::logger>("megaphone.access", std::move(sink));
    log->set_pattern("time=%Y-%m-%dT%H:%M:%S.%fZ %v", spdlog::pattern_time_type::utc);
    log->set_level(spdlog::level::info);
    log->flush_on(spdlog::level::info);
    return log;
}
} // namespace

//--------------------------------------------------------------------------------------------------

server::server(server_options options)
    : options_{std::move(options)}
    , creations_{options_.creation_rate, options_.creation_burst} {
    if (!options_.engine.rules)
        options_.engine.rules = make_session_rules(options_.clients); // throws on a bad key
    sse_ = std::make_unique<sse_transport>(options_.sse);
    // The WebSocket takes SSE's heartbeat, the POST body limit (a frame is a POST body) and
    // the CORS origins; each frame request comes back to handle() as a POST.
    options_.websocket.heartbeat = options_.sse.heartbeat;
    options_.websocket.max_message = options_.http.max_body;
    options_.websocket.origins = options_.http.cors_origins;
    websocket_ = std::make_unique<websocket_transport>(options_.websocket);
    websocket_->use_handler(*this);
    // 0: one per core. Placement `fill` (app/placement.hpp) keeps the work on the first thread
    // until it is busy and a core is spare, so that a second thread costs nothing where it
    // would only share a core (docs/PERFORMANCE.md, "Every core").
    unsigned n = options_.threads ? options_.threads : std::thread::hardware_concurrency();
    n = std::max(1u, n);
    if (n > 64)
        throw std::invalid_argument("server: at most 64 threads");
    for (unsigned i = 0; i < n; ++i) {
        shards_.push_back(std::make_unique<shard>(*this, i));
        shards_.back()->eng.share_session_count(session_total_); // max_sessions is a total
        shards_.back()->eng.observe_channels(this);
        shards_.back()->eng.use_history(this);
    }
    bus_ = options_.make_bus ? options_.make_bus(shards_.front()->ioc, options_.history)
                             : std::make_unique<local_bus>(options_.history);
    if (options_.make_router)
        router_ = options_.make_router(shards_.front()->ioc, options_);
    if (!options_.static_dir.empty())
        files_.emplace(options_.static_dir);
    if (options_.metrics)
        route(
            http::verb::get, "/metrics",
            [this](incoming& in, std::string_view rest) {
                if (!rest.empty())
                    return in.ex.reply({404, content_kind::text, packet::from("not found\n")});
                std::string text = prometheus_text(metrics());
                bus_->write_metrics(text); // the bus's own (Redis connections, recoveries)
                in.ex.reply({200, content_kind::text, packet::from(text),
                             packet::from(prometheus_content_type)});
            },
            route_access::metrics);
    if (!options_.admin_token.empty())
        admin_ = std::make_unique<admin_console>(*this, options_.admin_token);
}

void server::cluster_nodes(std::function<void(std::vector<cluster_node>)> done) {
    if (router_)
        return router_->nodes(std::move(done));
    done({});
}

server::~server() {
    stop();
    wait();
}

void server::mount(std::string path, application& app) {
    mounts_.push_back(
        {std::move(path), &app, &json_codec::instance(), {websocket_.get(), sse_.get()}});
}

void server::mount_bosh(std::string path, application& app) {
    mounts_.push_back({std::move(path), &app, &bosh_codec::instance(), {}});
}

void server::route(http::verb method, std::string prefix, route_handler handler,
                   route_access access) {
    routes_.push_back({method, std::move(prefix), std::move(handler), access});
}

void server::start() {
    set_log_level(options_.log.level);
    if (!options_.log.access_log.empty()) {
        access_log_ = open_access_log(options_.log.access_log);
        options_.http.access_log = [log = access_log_](const access_record& r) {
            log->info("client={}:{} method={} path={} status={} bytes={} duration_ms={:.3f}",
                      r.remote.address().to_string(), r.remote.port(), log_field(r.method),
                      log_field(redact_target(r.target)), r.status, r.bytes,
                      std::chrono::duration<double, std::milli>(r.duration).count());
        };
    }
    const auto address = net::ip::make_address(options_.address);
    // Placement runs on the listeners' thread (shard 0's, and this one before it runs).
    placement_ = std::make_unique<thread_placement>(
        static_cast<unsigned>(shards_.size()), options_.placement,
        [this] {
            std::vector<int> clocks;
            clocks.reserve(shards_.size());
            for (auto& sh : shards_)
                clocks.push_back(sh->cpu_clock.load(std::memory_order_acquire));
            return thread_placement::read_system(clocks);
        },
        [] { return std::chrono::steady_clock::now().time_since_epoch(); });
    auto pick = [this]() -> net::io_context& { return shards_[placement_->pick()]->ioc; };
    if (!options_.tls_cert.empty()) {
        // Loaded before anything listens: a bad certificate or key fails start() with the
        // reason, and no HTTP listener is left behind.
        tls_context_ = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
        tls_context_->set_options(net::ssl::context::default_workarounds |
                                  net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                                  net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1 |
                                  net::ssl::context::single_dh_use);
        tls_context_->use_certificate_chain_file(options_.tls_cert.string());
        tls_context_->use_private_key_file(
            (options_.tls_key.empty() ? options_.tls_cert : options_.tls_key).string(),
            net::ssl::context::pem);
    }
    listener_ =
        std::make_shared<http_listener>(shards_.front()->ioc, tcp::endpoint{address, options_.port},
                                        pick, static_cast<request_handler&>(*this), options_.http);
    port_ = listener_->local_endpoint().port();
    if (tls_context_) {
        tls_listener_ = std::make_shared<http_listener>(
            shards_.front()->ioc, tcp::endpoint{address, options_.tls_port}, pick,
            static_cast<request_handler&>(*this), options_.http, tls_context_.get());
        tls_port_ = tls_listener_->local_endpoint().port();
        tls_listener_->start();
    }
    if (options_.http.reuse_port) {
        // The public port is shared by several processes: each also listens on a port of its
        // own, where the other nodes' forwarded requests reach this one (advertised for it).
        // (Listeners and connections keep a reference to their options: a member, not a local.)
        node_http_ = options_.http;
        node_http_.reuse_port = false;
        node_listener_ = std::make_shared<http_listener>(
            shards_.front()->ioc, tcp::endpoint{address, options_.node_port}, pick,
            static_cast<request_handler&>(*this), node_http_);
        node_port_ = node_listener_->local_endpoint().port();
        node_listener_->start();
    }
    {
        // The internal door: loopback by default (app/access.hpp).
        internal_http_ = options_.http;
        internal_http_.internal = true;
        internal_listener_ = std::make_shared<http_listener>(
            shards_.front()->ioc,
            tcp::endpoint{net::ip::make_address(options_.internal_address), options_.internal_port},
            pick, static_cast<request_handler&>(*this), internal_http_);
        internal_port_ = internal_listener_->local_endpoint().port();
        internal_listener_->start();
    }
    bus_->start(*this);
    if (router_) {
        // Before the public port accepts: route() may be called from then on. With --reuse-port
        // the processes of this machine hand connections to each other, into this listener.
        router_start where{node_listener_ ? node_port_ : port_, port_, {}};
        if (options_.http.reuse_port)
            where.adopt = [listener = listener_](int fd, std::string bytes) {
                listener->adopt(fd, std::move(bytes));
            };
        router_->start(where);
    }
    listener_->start();
    for (auto& sh : shards_) {
        shard* raw = sh.get();
        sh->thread = std::thread([raw] {
            tls_shard = raw;
            clockid_t id{};
            if (::pthread_getcpuclockid(::pthread_self(), &id) == 0)
                raw->cpu_clock.store(static_cast<int>(id), std::memory_order_release);
            current_metrics = &raw->stats;
            raw->ioc.run();
        });
    }
    logger().info("listening on {}:{} https_port={} threads={} wait={}ms inactivity={}ms "
                  "access_log={}",
                  options_.address, port_, tls_port_, shards_.size(),
                  options_.engine.max_wait.count(), options_.engine.inactivity.count(),
                  options_.log.access_log.empty() ? "none" : options_.log.access_log);
    // Where writing is served, and what guards it (never the keys themselves).
    logger().info("internal door on {}:{} (POST /publish, GET /metrics, no key); public port: "
                  "POST /publish {}, GET /metrics {}",
                  options_.internal_address, internal_port_,
                  options_.keys.publish_key.empty() ? "not served (no --publish-key)"
                                                    : "with the publish key (Bearer)",
                  !options_.metrics                     ? "off"
                  : options_.keys.metrics_token.empty() ? "open (no --metrics-token)"
                                                        : "with the metrics token (Bearer)");
}

void server::wait() {
    for (auto& sh : shards_)
        if (sh->thread.joinable())
            sh->thread.join();
}

void server::stop_accepting() {
    std::call_once(stop_accepting_once_, [this] {
        stopping_ = true;
        if (admin_)
            admin_->stop();
        if (listener_)
            listener_->stop();
        if (tls_listener_)
            tls_listener_->stop();
        if (node_listener_)
            node_listener_->stop();
        if (internal_listener_)
            internal_listener_->stop();
        if (!listener_ || current_shard())
            return; // not started, or on a shard's thread: the close ran inline
        // The listeners close on the first shard's thread: wait (bounded) until it has run.
        auto closed = std::make_shared<std::promise<void>>(); // may outlive this wait
        auto done = closed->get_future();
        net::post(shards_.front()->ioc, [closed] { closed->set_value(); });
        done.wait_for(options_.drain);
    });
}

void server::stop() {
    std::call_once(stop_once_, [this] {
        const auto deadline = std::chrono::steady_clock::now() + options_.drain;
        if (listener_)
            logger().info("stopping: sessions end with system-shutdown, answers drain for at "
                          "most {}ms",
                          options_.drain.count());
        stop_accepting();
        if (router_)
            router_->stop(); // forwarded requests in flight are answered system-shutdown
        // Every session ends with system-shutdown: held requests get their answer.
        auto ended = std::make_shared<std::atomic<std::size_t>>(0);
        for (auto& sh : shards_)
            sh->run([ended](engine& e) {
                e.shutdown();
                ++*ended;
            });
        // Bounded: until every session has ended and every answer is written, or `drain`. (On
        // a shard's own thread this shard cannot write meanwhile: the wait runs to `drain`.)
        if (listener_)
            while (std::chrono::steady_clock::now() < deadline &&
                   (*ended < shards_.size() || exchanges_ > 0))
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (listener_)
            bus_->stop();
        for (auto& sh : shards_) {
            sh->work.reset();
            sh->ioc.stop();
        }
        if (listener_)
            logger().info("stopped");
        if (access_log_)
            access_log_->flush();
    });
}

server::shard* server::current_shard() const noexcept {
    for (auto& sh : shards_)
        if (sh.get() == tls_shard)
            return sh.get();
    return nullptr;
}

bool server::serves(const mount_point& m, std::string_view path) noexcept {
    // The mount's path, or it followed by "/<node id>": a balancer in front of a cluster can
    // route a session's requests to its node by the URL (examples/cluster/nginx.conf.in).
    if (!path.starts_with(m.path))
        return false;
    const std::string_view rest = path.substr(m.path.size());
    return rest.empty() || (rest.size() >= 2 && rest.size() <= 7 && rest[0] == '/' &&
                            rest.find_first_of("/-", 1) == std::string_view::npos);
}

template <class F>
void server::on_shard_of(std::string_view sid, F&& f) {
    if (auto index = engine::shard_of(sid); index && *index < shards_.size())
        shards_[*index]->run(std::forward<F>(f));
}

//--------------------------------------------------------------------------------------------------
// Routing

void server::handle(incoming& in) {
    const std::string_view target = in.request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    const http::verb method = in.request.method();
    if (admin_ && !admin_->allows(path, in.request))
        return in.ex.reply(admin_console::forbidden());
    // Claims to come from another node (cluster/router.hpp) without the cluster's key: refused.
    if (check_internal(in.request, options_.cluster_key) == internal_request::refused) {
        if (router_)
            router_->refused();
        return in.ex.reply({403, content_kind::text, packet::from("forbidden\n")});
    }

    for (const mount_point& m : mounts_) {
        if (const stream_transport* t = stream_of(m, in, path)) {
            if (metrics_block* mb = current_metrics)
                mb->requests[static_cast<std::size_t>(transport_kind::json)].add();
            return handle_stream_request(in, *t);
        }
        if (!serves(m, path))
            continue;
        if (metrics_block* mb = current_metrics)
            mb->requests[static_cast<std::size_t>(m.codec->kind() == content_kind::xml
                                                      ? transport_kind::bosh
                                                      : transport_kind::json)]
                .add();
        if (method == http::verb::options) // CORS preflight; the connection adds the headers
            return in.ex.reply({204, content_kind::text, {}});
        if (method == http::verb::get && m.codec->kind() == content_kind::xml)
            return in.ex.reply({200, content_kind::html, bosh_info_page()});
        if (method != http::verb::post)
            return in.ex.reply({405, content_kind::text, packet::from("use POST\n")});
        if (stopping_)
            return in.ex.reply(m.codec->error_response(protocol_error::system_shutdown));
        return handle_session_request(in, m);
    }
    if (metrics_block* mb = current_metrics)
        mb->requests[static_cast<std::size_t>(transport_kind::other)].add();
    for (const route_entry& r : routes_) {
        if (!path.starts_with(r.prefix))
            continue;
        if (method == http::verb::options)
            return in.ex.reply({204, content_kind::text, {}});
        if (method != r.method)
            return in.ex.reply({405, content_kind::text, packet::from("method not allowed\n")});
        if (auto refused = check_access(r.access, in, options_.keys))
            return in.ex.reply(std::move(*refused));
        // A route is application code: whatever it throws is its request's 500, never the
        // server's end (an answer it gave already stands; a second one is dropped).
        try {
            return r.handler(in, path.substr(r.prefix.size()));
        } catch (const std::exception& e) {
            logger().error("route {} failed: {}", r.prefix, e.what());
        } catch (...) {
            logger().error("route {} failed", r.prefix);
        }
        return in.ex.reply({500, content_kind::text, packet::from("internal error\n")});
    }
    if (files_ && method == http::verb::get)
        return in.ex.reply(files_->get(target));
    in.ex.reply({404, content_kind::text, packet::from("not found\n")});
}

response server::refuse(std::string_view target, unsigned status) {
    const std::string_view path = target.substr(0, target.find('?'));
    const protocol_error e =
        status == 413 ? protocol_error::too_large : protocol_error::bad_request;
    transport_kind counted = transport_kind::other;
    for (const mount_point& m : mounts_)
        if (serves(m, path))
            counted =
                m.codec->kind() == content_kind::xml ? transport_kind::bosh : transport_kind::json;
    if (metrics_block* mb = current_metrics)
        mb->requests[static_cast<std::size_t>(counted)].add();
    for (const mount_point& m : mounts_)
        if (serves(m, path))
            return m.codec->error_response(e);
    return {status, content_kind::text, packet::from(std::string(status_text(status)) + "\n")};
}

bool server::moved_to_session_thread(incoming& in, shard& sh, transport_kind kind) {
    // On another thread's connection: the connection moves to the session's thread, which
    // reads the request again (and keeps the connection: a long-poll's next requests need no
    // hop). Once per connection: one that carries every thread's sessions (a proxy's) stays.
    if (!options_.move_connections || !in.transfer || !current_shard() || current_shard() == &sh)
        return false;
    // Counted while the connection is still this thread's: once posted to the session's
    // thread, the request may be answered there (and the counters read) before this thread
    // runs again.
    return in.transfer->move_to(sh.ioc, in.request, [kind] {
        if (metrics_block* mb = current_metrics) {
            // Counted again where it is read next: not twice in the totals (the counter wraps).
            mb->requests[static_cast<std::size_t>(kind)].add(~std::uint64_t{0});
            mb->connections_moved.add();
        }
    });
}

void server::handle_session_request(incoming& in, const mount_point& m) {
    application& app = *m.app;
    const session_codec& codec = *m.codec;
    // Decoded here, on the connection's thread; only the result travels to the session's.
    client_request req;
    if (codec.kind() == content_kind::xml) {
        auto decoded = decode_bosh_request(in.request.body());
        if (auto* e = std::get_if<protocol_error>(&decoded))
            return in.ex.reply(codec.error_response(*e, legacy_bosh_creation(in.request.body())));
        req = to_client_request(std::move(std::get<bosh_request>(decoded)));
    } else {
        auto decoded = decode_json_request(in.request.body());
        if (auto* e = std::get_if<protocol_error>(&decoded))
            return in.ex.reply(codec.error_response(*e));
        req = std::move(std::get<client_request>(decoded));
    }

    // Who sent it: the session keeps its creator's address (the admin sessions table).
    if (in.remote.address().is_v4()) {
        const auto b = in.remote.address().to_v4().to_bytes();
        std::copy(b.begin(), b.end(), req.peer.bytes.begin());
    } else {
        const auto b = in.remote.address().to_v6().to_bytes();
        std::copy(b.begin(), b.end(), req.peer.bytes.begin());
        req.peer.v6 = true;
    }
    req.peer.port = in.remote.port();

    if (req.sid.empty()) {
        if (!creations_.allow(in.remote.address(), clock_.now())) {
            count_refusal(refusal::creation_rate);
            return in.ex.reply(
                codec.error_response(protocol_error::rate_limited, req.bosh && !req.bosh->ver));
        }
        // For application::authorize (creations only: no other request carries them).
        for (const auto& field : in.request)
            req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        // A new session lives on the shard of the connection that created it.
        shard* sh = current_shard();
        if (!sh)
            sh = shards_.front().get();
        return sh->run([&app, &codec, req = std::move(req), ex = in.ex](engine& e) mutable {
            e.create(std::move(req), app, codec, std::move(ex));
        });
    }

    const auto index = engine::shard_of(req.sid);
    if (!index)
        return in.ex.reply(codec.error_response(protocol_error::item_not_found));
    // A session of another node (its id prefixes the sid): forwarded there, unless it came
    // forwarded already (never a second hop); item-not-found when it cannot be.
    if (const std::string_view node = std::string_view(req.sid).substr(0, req.sid.find('-'));
        node != options_.engine.node_id) {
        if (!forwarded(in.request) && router_ && router_->route(in, node, codec))
            return;
        return in.ex.reply(codec.error_response(protocol_error::item_not_found));
    }
    if (*index >= shards_.size())
        return in.ex.reply(codec.error_response(protocol_error::item_not_found));
    shard* sh = shards_[*index].get();
    if (moved_to_session_thread(in, *sh,
                                codec.kind() == content_kind::xml ? transport_kind::bosh
                                                                  : transport_kind::json))
        return;
    // If the client goes away while this request is held, its session hears of it at once.
    const inline_sid sid{req.sid};
    in.on_lost = [sh, sid, rid = req.rid, ex = in.ex] {
        sh->run([sid, rid, ex](engine& e) { e.connection_lost(sid.view(), rid, ex); });
    };
    sh->run([&codec, req = std::move(req), ex = in.ex](engine& e) mutable {
        e.request(std::move(req), codec, std::move(ex));
    });
}

const stream_transport* server::stream_of(const mount_point& m, const incoming& in,
                                          std::string_view path) noexcept {
    if (m.streams.empty() || !path.starts_with(m.path))
        return nullptr;
    std::string_view rest = path.substr(m.path.size());
    // "<mount>/<node id>/..." as "<mount>/...": a balancer routes a session's streams by node.
    if (const auto slash = rest.find('/', 1);
        slash != std::string_view::npos && slash >= 2 && slash <= 7 &&
        rest.substr(1, slash - 1).find('-') == std::string_view::npos)
        if (const std::string_view after = rest.substr(slash); after.size() > 1)
            for (const stream_transport* t : m.streams)
                if (t->accepts(in.request, after))
                    return t;
    for (const stream_transport* t : m.streams)
        if (t->accepts(in.request, rest))
            return t;
    return nullptr;
}

void server::handle_stream_request(incoming& in, const stream_transport& transport) {
    auto req = transport.parse(in.request);
    const auto index = req ? engine::shard_of(req->sid) : std::nullopt;
    // A session of another node: a process of this machine (--reuse-port) gets the connection
    // itself; another machine's node gets the stream relayed byte for byte (the router takes
    // the connection over); without forwarding the client is told to start over.
    if (req) {
        if (const std::string_view node = std::string_view(req->sid).substr(0, req->sid.find('-'));
            index && node != options_.engine.node_id && !forwarded(in.request) && router_ &&
            router_->hand_over(in, node))
            return;
    }
    const bool ours =
        index && *index < shards_.size() &&
        std::string_view(req->sid).substr(0, req->sid.find('-')) == options_.engine.node_id;
    shard* sh = ours ? shards_[*index].get() : nullptr;
    // As for long-polls: the connection moves to the session's thread, where its writes and
    // their completions need no hop (before the transport may take the connection over).
    if (sh && !stopping_ && moved_to_session_thread(in, *sh, transport_kind::json))
        return;
    // The stream's connection: the request's own (SSE), or one the transport takes it over
    // with (WebSocket), which then carries the refusal too.
    if (!transport.connect(in))
        return;
    if (!sh || stopping_)
        return in.ex.reply(transport.refusal());
    const inline_sid sid{req->sid};
    in.on_lost = [sh, sid, ex = in.ex] {
        sh->run([sid, ex](engine& e) { e.connection_lost(sid.view(), stream_sink_id, ex); });
    };
    in.on_written = [sh, sid, ex = in.ex] {
        sh->run([sid, ex](engine& e) { e.stream_written(sid.view(), ex); });
    };
    sh->run([&transport, req = std::move(*req), ex = in.ex](engine& e) mutable {
        e.open_stream(req, transport, std::move(ex));
    });
}

//--------------------------------------------------------------------------------------------------
// Broker: from any thread

void server::push(std::string_view sid, packet p) {
    on_shard_of(sid, [sid = std::string(sid), p = std::move(p)](engine& e) { e.push(sid, p); });
}

void server::publish(std::string_view channel, packet p,
                     std::function<void(const publish_result&)> done) {
    // An application's `done` runs later, never inside its own call (the bus may answer at
    // once): on this shard's thread, or the first shard's from any other thread.
    std::function<void(publish_result)> told;
    if (done) {
        shard* home = current_shard();
        told = [ioc = &(home ? home : shards_.front().get())->ioc,
                done = std::move(done)](publish_result r) mutable {
            net::post(*ioc, [done = std::move(done), r = std::move(r)] { done(r); });
        };
    }
    bus_->publish(channel, std::move(p), std::move(told));
}

void server::publish_now(std::string_view channel, packet p,
                         std::function<void(publish_result)> done) {
    // This shard's own subscribers still get the message from its queue (drain_inbox): under
    // load one drain serves the burst of publishes read in one turn of the reactor. Draining at
    // the end of this call instead saved 3 % of the CPU at 5,000 msg/s and cost 3 % at full
    // speed (bench/ab_throughput.py, 2026-12-04).
    bus_->publish(channel, std::move(p), std::move(done));
}

std::size_t server::deliver(std::string_view channel, const packet& stamped, std::uint64_t) {
    // Only the shards with subscribers of the channel are asked, through their inbox: the bus
    // calls this in offset order per channel, and each inbox keeps that order (and keeps a
    // recovery's answer, queued by recover(), between the right messages).
    std::uint64_t targets = 0;
    std::int64_t members = 0;
    {
        std::shared_lock lock{channel_shards_mutex_};
        if (auto it = channel_shards_.find(channel); it != channel_shards_.end()) {
            targets = it->second.shards;
            members = it->second.members.load(std::memory_order_relaxed);
        }
    }
    for (auto& sh : shards_)
        if ((targets & (std::uint64_t{1} << sh->eng.shard())) != 0)
            sh->deliver(channel, stamped);
    // The publisher is told how many sessions the message is for: every shard's subscribers
    // now (no hop back from the shards that deliver it).
    return static_cast<std::size_t>(std::max<std::int64_t>(members, 0));
}

void server::recover(unsigned index, std::string_view channel, const stream_position& since,
                     std::function<void(recovery)> done) {
    // The bus calls back in order with its deliver() calls; posting to the shard's queue, as
    // deliver() does, keeps that order on the shard.
    shard* sh = shards_.at(index).get();
    bus_->recover(channel, since, [sh, done = std::move(done)](recovery r) mutable {
        sh->enqueue([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    });
}

std::atomic<std::int64_t>* server::channel_opened(unsigned shard, std::string_view channel) {
    std::unique_lock lock{channel_shards_mutex_};
    auto it = channel_shards_.find(channel);
    if (it == channel_shards_.end()) {
        it = channel_shards_.try_emplace(std::string(channel)).first;
        bus_->open(channel); // this process's first subscriber of the channel
    }
    it->second.shards |= std::uint64_t{1} << shard;
    return &it->second.members; // (a node of the map: stays put until erased)
}

void server::channel_closed(unsigned shard, std::string_view channel) {
    std::unique_lock lock{channel_shards_mutex_};
    auto it = channel_shards_.find(channel);
    if (it == channel_shards_.end())
        return;
    it->second.shards &= ~(std::uint64_t{1} << shard);
    if (it->second.shards == 0) {
        channel_shards_.erase(it);
        bus_->close(channel);
    }
}

void server::broadcast(packet p) {
    for (auto& sh : shards_)
        net::post(sh->ioc, [raw = sh.get(), p] {
            raw->eng.broadcast(p);
            raw->reschedule();
        });
}

void server::with_session(std::string_view sid, std::function<void(session&)> f) {
    const auto index = engine::shard_of(sid);
    if (!index || *index >= shards_.size())
        return;
    shard* sh = shards_[*index].get();
    net::post(sh->ioc, [sh, sid = std::string(sid), f = std::move(f)] {
        sh->eng.with_session(sid, f);
        sh->reschedule();
    });
}

void server::subscribe(std::string_view sid, std::string_view channel) {
    on_shard_of(sid, [sid = std::string(sid), ch = std::string(channel)](engine& e) {
        e.subscribe(sid, ch);
    });
}

void server::unsubscribe(std::string_view sid, std::string_view channel) {
    on_shard_of(sid, [sid = std::string(sid), ch = std::string(channel)](engine& e) {
        e.unsubscribe(sid, ch);
    });
}

void server::close(std::string_view sid) {
    on_shard_of(sid, [sid = std::string(sid)](engine& e) { e.close(sid); });
}

std::size_t server::session_count() {
    std::size_t total = 0;
    for (auto& sh : shards_) {
        std::promise<std::size_t> count;
        auto result = count.get_future();
        net::post(sh->ioc, [raw = sh.get(), &count] { count.set_value(raw->eng.size()); });
        total += result.get();
    }
    return total;
}

metrics_snapshot server::metrics() const {
    metrics_snapshot s;
    for (const auto& sh : shards_)
        s.add(sh->stats);
    return s;
}

void server::list_sessions(std::size_t offset, std::size_t limit,
                           std::function<void(std::size_t, std::vector<session_row>)> done) {
    // Each shard lists its first offset + limit sessions on its own thread; the last one to
    // finish puts the shards' lists end to end and cuts the page out.
    struct gather {
        std::mutex mutex;
        std::vector<std::vector<session_row>> rows;
        std::vector<std::size_t> counts;
        std::size_t pending;
        std::function<void(std::size_t, std::vector<session_row>)> done;
    };
    auto g = std::make_shared<gather>();
    g->rows.resize(shards_.size());
    g->counts.resize(shards_.size());
    g->pending = shards_.size();
    g->done = std::move(done);
    const std::size_t want = offset + limit;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        net::post(shards_[i]->ioc, [raw = shards_[i].get(), i, g, want, offset, limit] {
            std::vector<session_row> rows;
            const time_point now = raw->eng.clock().now();
            raw->eng.for_each([&](const session& s) {
                if (rows.size() >= want || s.closed())
                    return;
                rows.push_back(
                    {std::string(s.id()), s.state(),
                     std::chrono::duration_cast<std::chrono::milliseconds>(now - s.created()),
                     s.queued(), s.held(), s.kind(), s.peer()});
            });
            std::unique_lock lock{g->mutex};
            g->rows[i] = std::move(rows);
            g->counts[i] = raw->eng.size();
            if (--g->pending != 0)
                return;
            std::size_t total = 0, skip = offset;
            std::vector<session_row> page;
            for (std::size_t k = 0; k < g->rows.size(); ++k) {
                total += g->counts[k];
                for (auto& row : g->rows[k]) {
                    if (skip > 0) {
                        --skip;
                        continue;
                    }
                    if (page.size() < limit)
                        page.push_back(std::move(row));
                }
            }
            lock.unlock();
            g->done(total, std::move(page));
        });
    }
}

} // namespace megaphone
