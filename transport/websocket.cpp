#include "transport/websocket.hpp"

#include "transport/deadlines.hpp"
#include "transport/json_codec.hpp"
#include "transport/protocol.hpp"
#include "transport/sse.hpp" // query_parameter, parse_event_id

#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

namespace megaphone {

namespace websocket = beast::websocket;

namespace {

/// The stream's own exchange on a ws_connection; frame requests get the sequence numbers after
/// it.
constexpr std::uint32_t stream_seq = 1;

/// Digits of `n` in decimal.
std::size_t digits(std::uint64_t n) noexcept {
    std::size_t d = 1;
    while (n >= 10) {
        n /= 10;
        ++d;
    }
    return d;
}

bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin) {
    for (const auto& a : allowed)
        if (a == "*" || a == origin)
            return true;
    return false;
}

/// Whether the comma-separated `Sec-WebSocket-Protocol` list names "megaphone".
bool offers_megaphone(std::string_view list) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
            item.remove_suffix(1);
        if (item == "megaphone")
            return true;
        if (comma == std::string_view::npos)
            break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

std::int64_t steady_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

//--------------------------------------------------------------------------------------------------
// ws_connection

/// One WebSocket: the session's stream (the exchange `stream_seq`) and its frame requests
/// (each its own exchange), written one frame at a time in the order their answers came.
///
/// Lifetime: a shared_ptr held by the pending read (or readiness wait) and the pending write;
/// exchanges hold it weakly. It ends when the socket is closed and both have completed.
class ws_connection final : public exchange_target,
                            public connection_taker,
                            public std::enable_shared_from_this<ws_connection>,
                            private deadline {
public:
    ws_connection(const websocket_transport& transport, request_handler& handler, std::string path,
                  std::string sid)
        : transport_{transport}
        , handler_{handler}
        , path_{std::move(path)}
        , sid_{std::move(sid)} {}

    ~ws_connection() override {
        for (std::size_t i = 0; i < in_flight_.size(); ++i)
            handler_.exchange_finished();
        if (counted_)
            handler_.exchange_finished();
        if (open_)
            open_->fetch_sub(1, std::memory_order_relaxed);
        if (ws_)
            if (metrics_block* m = current_metrics)
                m->websockets.add(-1);
    }

    void take(connection_socket socket, incoming in,
              std::shared_ptr<std::atomic<std::size_t>> open) override {
        open_ = std::move(open);
        remote_ = in.remote;
        on_lost_ = std::move(in.on_lost);
        on_written_ = std::move(in.on_written);
        deadlines_ = &deadline_service::of(socket.get_executor().context());
        ws_.emplace(std::move(socket));
        if (metrics_block* m = current_metrics)
            m->websockets.add();
        // The stream counts as an outstanding exchange until the connection ends: a stopping
        // server waits for its terminate frame to be written.
        counted_ = true;
        handler_.exchange_started();

        const websocket_options& o = transport_.options();
        ws_->read_message_max(o.max_message);
        ws_->auto_fragment(false);
        websocket::stream_base::timeout t{};
        t.handshake_timeout = o.handshake_timeout;
        t.idle_timeout = o.idle_timeout;
        t.keep_alive_pings = true;
        ws_->set_option(t);
        ws_->set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
            res.set(http::field::server, "megaphone");
            res.set(http::field::sec_websocket_protocol, "megaphone");
        }));
        // The request, kept only until the handshake is answered.
        auto request = std::make_shared<http::request<http::string_body>>(std::move(in.request));
        ws_->async_accept(*request, [self = shared_from_this(), request](beast::error_code ec) {
            self->on_accept(ec);
        });
    }

    void deliver(std::uint32_t seq, response r) override {
        // From any thread; always posted, so that a session's answer never runs inside the
        // handler that made it.
        net::post(ws_executor(), [self = shared_from_this(), seq, r = std::move(r)]() mutable {
            self->on_deliver(seq, std::move(r));
        });
    }

    void write(std::uint32_t seq, packet body, bool last, std::int64_t pushed_at_ns) override {
        net::post(ws_executor(), [self = shared_from_this(), seq, body = std::move(body), last,
                                  pushed_at_ns]() mutable {
            if (seq != stream_seq || self->closing_)
                return;
            if (last) {
                // The stream ends: after its terminate frame (the session ended), or at once,
                // empty, when a newer stream of the session replaced this one.
                const bool terminated = body.size() != 0;
                if (terminated)
                    self->enqueue(std::move(body), false, pushed_at_ns);
                self->close_after(terminated ? ws_close::normal : ws_close::replaced);
            } else {
                self->enqueue(std::move(body), true, pushed_at_ns);
            }
            self->do_write();
        });
    }

    /// Set once, by the transport's connect(), before take(): the executor it runs on.
    void bind(net::io_context& ioc) noexcept { ioc_ = &ioc; }

private:
    using stream_type = websocket::stream<connection_socket, false>;

    struct frame {
        packet body;
        std::int64_t pushed_at_ns = 0;
        bool reported = false; // the session's stream hears on_written after it
    };

    net::io_context::executor_type ws_executor() const noexcept { return ioc_->get_executor(); }

    void on_accept(beast::error_code ec) {
        if (ec)
            return lost();
        accepted_ = true;
        if (!close_code_)
            do_read(); // (a refused stream reads nothing but the close handshake's answer)
        do_write();    // whatever came meanwhile: the opening, or a refusal's close
    }

    //----------------------------------------------------------------------------------------------
    // Reading: one message at a time, into `message_`, released after it.

    void do_read() {
        if (closing_ || reading_ || in_flight_.size() >= transport_.options().max_in_flight)
            return;
        reading_ = true;
        ws_->async_read_some(net::buffer(chunk_),
                             [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                 self->on_read(ec, n);
                             });
    }

    void on_read(beast::error_code ec, std::size_t bytes) {
        reading_ = false;
        if (metrics_block* m = current_metrics)
            m->bytes_in.add(bytes);
        if (ec)
            return lost(); // closed by the client (or Beast after a message too big), a reset,
                           // a timeout: the stream's session hears connection_closed
        if (ws_->got_binary()) {
            std::string().swap(message_);
            return close_after(ws_close::unsupported), do_write();
        }
        message_.append(chunk_.data(), bytes);
        if (!ws_->is_message_done())
            return do_read();
        std::string text;
        text.swap(message_);
        on_message(std::move(text));
        do_read();
    }

    /// A frame request: handed to the server as the session's POST.
    void on_message(std::string text) {
        auto decoded = decode_json_request(text);
        if (auto* e = std::get_if<protocol_error>(&decoded))
            return error_frame(*e, std::nullopt);
        const client_request& req = std::get<client_request>(decoded);
        if (!req.sid.empty() && req.sid != sid_)
            return error_frame(protocol_error::bad_request, req.rid);
        if (req.sid.empty()) {
            // The connection's sid goes in first: `{` + `"sid":"...",` + the rest (a decoded
            // request is a JSON object, so its text starts with `{` after any whitespace, and
            // has a member after it: the rid).
            const auto brace = text.find('{');
            text.insert(brace + 1, "\"sid\":\"" + sid_ + "\",");
        }
        http::request<http::string_body> post{http::verb::post, path_, 11};
        post.set(http::field::content_type, "application/json");
        post.body() = std::move(text);
        post.prepare_payload();
        const std::uint32_t seq = ++seq_;
        in_flight_.push_back({seq, req.rid});
        incoming in{std::move(post), remote_, exchange{weak_from_this(), seq},
                    nullptr,         nullptr, false,
                    nullptr,         nullptr, nullptr};
        handler_.exchange_started();
        handler_.handle(in);
    }

    /// `{"type":"error","status":S,"condition":C[,"rid":R]}`: a frame request that failed, as
    /// a POST would have been answered with status S.
    void error_frame(unsigned status, std::string_view condition, std::optional<request_id> rid) {
        std::string text = "{\"type\":\"error\",\"status\":" + std::to_string(status) +
                           ",\"condition\":\"" + std::string(condition) + "\"";
        if (rid) {
            text += ",\"rid\":";
            text += std::to_string(*rid);
        }
        text += '}';
        enqueue(packet::from(text), false, 0);
        do_write();
    }
    void error_frame(protocol_error e, std::optional<request_id> rid) {
        error_frame(http_status(e), condition(e), rid);
    }

    //----------------------------------------------------------------------------------------------
    // Answers and the stream's pieces

    void on_deliver(std::uint32_t seq, response r) {
        if (seq == stream_seq)
            return on_stream_answer(std::move(r));
        // A frame request's answer.
        auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                               [seq](const pending_request& p) { return p.seq == seq; });
        if (it == in_flight_.end())
            return;
        const request_id rid = it->rid;
        in_flight_.erase(it);
        handler_.exchange_finished();
        if (!closing_) {
            if (r.status == 200) {
                enqueue(std::move(r.body), false, r.pushed_at_ns);
                do_write();
            } else {
                // The error's condition, from the body a POST would have had.
                std::string c = "bad-request";
                auto j = nlohmann::json::parse(r.body.view(), nullptr, false);
                if (j.is_object() && j.contains("condition") && j["condition"].is_string())
                    c = j["condition"].get<std::string>();
                error_frame(r.status, c, rid);
            }
        }
        do_read(); // it may have waited for this answer
    }

    void on_stream_answer(response r) {
        if (closing_)
            return;
        if (!r.stream) {
            // No stream: the close code travels as the status (refusal()).
            const auto code = r.status >= 1000 && r.status < 5000 ? static_cast<ws_close>(r.status)
                                                                  : ws_close::item_not_found;
            refusal_reason_ = std::string(r.body.view());
            return close_after(code), do_write();
        }
        // The session took the stream: ready first, then the replay and what was queued (the
        // opening may carry none: the session still hears on_written after it).
        heartbeat_every_ = r.heartbeat_every;
        const bool empty = r.body.size() == 0;
        enqueue(transport_.ready(), empty, 0);
        if (!empty)
            enqueue(std::move(r.body), true, r.pushed_at_ns);
        do_write();
    }

    void enqueue(packet body, bool reported, std::int64_t pushed_at_ns) {
        queue_.push_back({std::move(body), pushed_at_ns, reported});
    }

    void close_after(ws_close code) {
        if (!close_code_)
            close_code_ = code;
    }

    //----------------------------------------------------------------------------------------------
    // Writing: one frame at a time, then the close once the queue is empty.

    void do_write() {
        if (!accepted_ || writing_ || closing_ || !ws_)
            return;
        if (queue_.empty()) {
            if (close_code_)
                return do_close();
            if (queue_.capacity() > 4)
                std::vector<frame>().swap(queue_);
            return arm_heartbeat();
        }
        deadline_service::cancel(*this);
        writing_ = true;
        current_ = std::move(queue_.front());
        queue_.erase(queue_.begin());
        ws_->text(true);
        ws_->async_write(net::buffer(current_.body.view().data(), current_.body.size()),
                         [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                             self->on_write(ec, n);
                         });
    }

    void on_write(beast::error_code ec, std::size_t bytes) {
        writing_ = false;
        frame done = std::move(current_);
        current_ = {};
        if (metrics_block* m = current_metrics) {
            m->bytes_out.add(bytes);
            if (!ec && done.pushed_at_ns != 0)
                m->push_latency.observe_ns(static_cast<std::uint64_t>(
                    std::max<std::int64_t>(0, steady_now_ns() - done.pushed_at_ns)));
        }
        if (ec)
            return lost();
        if (done.reported && on_written_)
            on_written_();
        do_write();
    }

    void do_close() {
        closing_ = true;
        deadline_service::cancel(*this);
        websocket::close_reason why{static_cast<std::uint16_t>(*close_code_)};
        switch (*close_code_) {
        case ws_close::unsupported:
            why.reason = "text frames only";
            break;
        case ws_close::replaced:
            why.reason = "replaced";
            break;
        case ws_close::item_not_found:
            why.reason = refusal_reason_;
            break;
        default:
            break;
        }
        ws_->async_close(why, [self = shared_from_this()](beast::error_code) { self->lost(); });
    }

    //----------------------------------------------------------------------------------------------
    // Heartbeat: a ping frame on a stream idle for heartbeat_every.

    void arm_heartbeat() {
        if (heartbeat_every_.count() > 0 && !closing_)
            deadlines_->arm(*this, heartbeat_every_, &ws_connection::on_heartbeat);
    }

    static void on_heartbeat(deadline& d) {
        auto& self = static_cast<ws_connection&>(d);
        if (self.writing_ || self.closing_ || !self.queue_.empty())
            return;
        self.enqueue(self.transport_.ping(), false, 0);
        self.do_write();
    }

    //----------------------------------------------------------------------------------------------

    /// The connection is gone (or closed): the session hears it once; the socket is closed, so
    /// that every pending operation ends and the connection with them.
    void lost() {
        closing_ = true;
        deadline_service::cancel(*this);
        on_written_ = nullptr;
        if (auto f = std::exchange(on_lost_, nullptr))
            f();
        beast::error_code ignored;
        beast::get_lowest_layer(*ws_).close(ignored);
    }

    struct pending_request {
        std::uint32_t seq;
        request_id rid;
    };

    const websocket_transport& transport_;
    request_handler& handler_;
    net::io_context* ioc_ = nullptr;
    deadline_service* deadlines_ = nullptr;
    std::optional<stream_type> ws_;
    std::string path_; // the mount's path: frame requests are POSTs to it
    std::string sid_;
    tcp::endpoint remote_;
    std::function<void()> on_lost_;
    std::function<void()> on_written_;
    std::shared_ptr<std::atomic<std::size_t>> open_;
    std::vector<frame> queue_;
    frame current_;
    std::vector<pending_request> in_flight_;
    std::string message_; // a message being read; empty between messages
    std::string refusal_reason_;
    std::chrono::milliseconds heartbeat_every_{0};
    std::optional<ws_close> close_code_;
    std::uint32_t seq_ = stream_seq;
    bool accepted_ = false;
    bool reading_ = false;
    bool writing_ = false;
    bool closing_ = false;
    bool counted_ = false;
    std::array<char, 256> chunk_; // read_some's target: a message is copied out of it
};

} // namespace

//--------------------------------------------------------------------------------------------------
// websocket_transport

websocket_transport::websocket_transport(websocket_options options)
    : options_{std::move(options)}
    , ready_{packet::from(
          "{\"type\":\"ready\",\"heartbeat\":" + std::to_string(options_.heartbeat.count()) + "}")}
    , ping_{packet::from("{\"type\":\"ping\"}")} {}

bool websocket_transport::accepts(const http::request<http::string_body>& request,
                                  std::string_view rest) const {
    if (request.method() != http::verb::get || !websocket::is_upgrade(request))
        return false;
    // The mount, or "<mount>/<node id>" (a node id: 1 to 6 characters, no '/' nor '-').
    return rest.empty() || (rest.size() >= 2 && rest.size() <= 7 && rest[0] == '/' &&
                            rest.find_first_of("/-", 1) == std::string_view::npos);
}

std::optional<stream_request>
websocket_transport::parse(const http::request<http::string_body>& request) const {
    stream_request r;
    auto sid = query_parameter(request.target(), "sid");
    if (!sid || sid->empty())
        return std::nullopt;
    r.sid = std::move(*sid);
    if (auto last = query_parameter(request.target(), "lastEventId"); last && !last->empty()) {
        r.last_id = parse_event_id(*last);
        if (!r.last_id)
            return std::nullopt;
    }
    return r;
}

bool websocket_transport::connect(incoming& in) const {
    // Refusals a client can see (before the upgrade): a browser page from an origin not
    // allowed; a client that does not speak this protocol; TLS, whose state stays with the
    // HTTP connection.
    if (auto origin = in.request.find(http::field::origin);
        origin != in.request.end() && !origin_allowed(options_.origins, origin->value())) {
        in.ex.reply({403, content_kind::text, packet::from("origin not allowed\n")});
        return false;
    }
    auto protocols = in.request.find(http::field::sec_websocket_protocol);
    if (protocols == in.request.end() || !offers_megaphone(protocols->value())) {
        in.ex.reply({400, content_kind::text,
                     packet::from("Sec-WebSocket-Protocol: megaphone is required\n")});
        return false;
    }
    if (!in.context || !handler_) {
        in.ex.reply({400, content_kind::text,
                     packet::from("WebSocket is served on plain HTTP only (TLS: a proxy)\n")});
        return false;
    }
    const std::string_view target = in.request.target();
    auto sid = query_parameter(target, "sid");
    auto conn = std::make_shared<ws_connection>(*this, *handler_,
                                                std::string(target.substr(0, target.find('?'))),
                                                sid ? std::move(*sid) : std::string());
    conn->bind(*in.context);
    in.ex = exchange{conn, stream_seq};
    in.taker = std::move(conn);
    return true;
}

response websocket_transport::refusal() const {
    return {static_cast<unsigned>(ws_close::item_not_found), content_kind::text,
            packet::from("item-not-found")};
}

response websocket_transport::opening(std::uint64_t first_id,
                                      std::span<const packet> packets) const {
    response r;
    r.status = 200;
    r.kind = content_kind::json;
    if (!packets.empty())
        r.body = websocket_batch(first_id, packets);
    r.stream = true;
    r.heartbeat = ping_;
    r.heartbeat_every = options_.heartbeat;
    for (const packet& p : packets)
        if (r.pushed_at_ns == 0 || (p.born_ns() != 0 && p.born_ns() < r.pushed_at_ns))
            r.pushed_at_ns = p.born_ns();
    return r;
}

packet websocket_transport::events(std::uint64_t first_id, std::span<const packet> packets) const {
    return websocket_batch(first_id, packets);
}

packet websocket_transport::closing(close_reason why) const {
    const std::string_view c = condition(why);
    std::string text = "{\"type\":\"terminate\"";
    if (!c.empty()) {
        text += ",\"condition\":\"";
        text += c;
        text += '"';
    }
    text += '}';
    return packet::from(text);
}

packet websocket_batch(std::uint64_t first_id, std::span<const packet> packets) {
    const std::uint64_t last_id = first_id + packets.size() - 1;
    std::size_t size = 22 + digits(last_id) + packets.size();
    for (const packet& p : packets)
        size += p.size();
    return packet::make(size, [&](packet::writer& w) {
        w << std::string_view("{\"id\":") << last_id << std::string_view(",\"messages\":[");
        bool first = true;
        for (const packet& p : packets) {
            if (!first)
                w << ',';
            first = false;
            w << p.view();
        }
        w << std::string_view("]}");
    });
}

} // namespace megaphone
