#include "transport/websocket.hpp"

#include "transport/deadlines.hpp"
#include "transport/json_codec.hpp"
#include "transport/protocol.hpp"
#include "transport/sse.hpp" // query_parameter, parse_event_id

#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
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

using opcode = ws_opcode;

/// One WebSocket: the session's stream (the exchange `stream_seq`) and its frame requests
/// (each its own exchange), written one frame at a time in the order their answers came.
///
/// The opening handshake is Beast's (websocket::stream::async_accept on the socket, with the
/// megaphone subprotocol in the answer); the stream object is dropped once it is done. The
/// frames after it are read and written here (RFC 6455 section 5, the server's side: client
/// frames masked, server frames not, no extension): Beast's stream keeps about 2.5 KiB of fixed
/// buffers per connection for its whole life, more than an idle session may cost in all. While
/// idle the connection holds no buffer: it waits for readability with a one-byte MSG_PEEK
/// receive (as http_connection does for a held request), then reads what is there without
/// blocking into a per-thread scratch buffer; only an incomplete frame's bytes are kept.
///
/// Liveness, with the connection's one deadline: while a frame is written, the write timeout;
/// while idle, a tick every heartbeat that writes `{"type":"ping"}` and a ping frame (browsers
/// answer pings by themselves) when nothing came from the client since the last tick, and
/// closes a connection from which nothing came for idle_timeout (a half-open client).
///
/// Lifetime: a shared_ptr held by the pending readiness wait and the pending write; exchanges
/// hold it weakly.
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
        if (counted_)
            if (metrics_block* m = current_metrics)
                m->websockets.add(-1);
    }

    void take(connection_socket socket, incoming in,
              std::shared_ptr<std::atomic<std::size_t>> open) override {
        open_ = std::move(open);
        socket_.emplace(std::move(socket));
        begin(std::move(in), *socket_);
    }

    void take_tls(tls_link link, incoming in) override {
        tls_ = std::make_unique<tls_link>(std::move(link));
        begin(std::move(in), *tls_->stream);
    }

    void deliver(std::uint32_t seq, response r) override {
        // From any thread; always posted, so that a session's answer never runs inside the
        // handler that made it.
        if (seq == stream_seq)
            stream_posts_.fetch_add(1, std::memory_order_relaxed);
        net::post(executor(), [self = shared_from_this(), seq, r = std::move(r)]() mutable {
            if (seq == stream_seq)
                self->stream_posts_.fetch_sub(1, std::memory_order_relaxed);
            self->on_deliver(seq, std::move(r));
        });
    }

    void write(std::uint32_t seq, packet body, bool last, std::int64_t pushed_at_ns) override {
        if (seq != stream_seq)
            return;
        if (!last && executor().running_in_this_thread() && opened_ &&
            stream_posts_.load(std::memory_order_relaxed) == 0) {
            // A piece from the session's own thread (a moved connection runs there): queued
            // and written now, without a handler posted per frame. Only once the opening is in
            // the queue and nothing of the stream waits in a posted handler (the order of the
            // pieces is the order of the ids). Safe inside any handler of this connection: it
            // only adds a frame and starts a write if none is in flight.
            if (!closing_) {
                enqueue(opcode::text, std::move(body), true, pushed_at_ns);
                do_write();
            }
            return;
        }
        stream_posts_.fetch_add(1, std::memory_order_relaxed);
        net::post(executor(), [self = shared_from_this(), body = std::move(body), last,
                               pushed_at_ns]() mutable {
            self->stream_posts_.fetch_sub(1, std::memory_order_relaxed);
            if (self->closing_)
                return;
            if (last) {
                // The stream ends: after its terminate frame (the session ended), or at once,
                // empty, when a newer stream of the session replaced this one. (Always posted:
                // the close tells the session, which must not hear it inside its own call.)
                const bool terminated = body.size() != 0;
                if (terminated)
                    self->enqueue(opcode::text, std::move(body), false, pushed_at_ns);
                self->close_after(terminated ? ws_close::normal : ws_close::replaced);
            } else {
                self->enqueue(opcode::text, std::move(body), true, pushed_at_ns);
            }
            self->do_write();
        });
    }

    /// Set once, by the transport's connect(), before take(): the io_context it runs on.
    void bind(net::io_context& ioc) noexcept { ioc_ = &ioc; }

private:
    /// Beast's stream for the opening handshake only, on our socket (or TLS stream), and the
    /// request it answers; dropped once the 101 is written.
    template <class Next>
    struct handshake {
        handshake(Next& next, http::request<http::string_body> r)
            : ws{next}
            , request{std::move(r)} {}
        websocket::stream<Next&, false> ws;
        http::request<http::string_body> request;
    };

    struct frame {
        packet body;
        std::int64_t pushed_at_ns = 0;
        ws_frame_head head;
        bool reported = false; // the session's stream hears on_written after it
    };

    net::io_context::executor_type executor() const noexcept { return ioc_->get_executor(); }

    /// The TCP socket: readiness, shutdown and close (over TLS, the one under the TLS stream).
    connection_socket& socket() noexcept { return tls_ ? *tls_->socket : *socket_; }

    /// take() and take_tls(): the hooks, then Beast's handshake on `next` (the socket or the
    /// TLS stream).
    template <class Next>
    void begin(incoming in, Next& next) {
        remote_ = in.remote;
        on_lost_ = std::move(in.on_lost);
        on_written_ = std::move(in.on_written);
        deadlines_ = &deadline_service::of(socket().get_executor().context());
        if (metrics_block* m = current_metrics)
            m->websockets.add();
        // The stream counts as an outstanding exchange until the connection ends: a stopping
        // server waits for its terminate frame to be written.
        counted_ = true;
        handler_.exchange_started();

        // The handshake: Beast checks the request and writes the 101 (no extension offered
        // back: permessage-deflate stays off), within handshake_timeout.
        auto hs = std::make_shared<handshake<Next>>(next, std::move(in.request));
        websocket::stream_base::timeout t{};
        t.handshake_timeout = transport_.options().handshake_timeout;
        t.idle_timeout = websocket::stream_base::none();
        t.keep_alive_pings = false;
        hs->ws.set_option(t);
        hs->ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
            res.set(http::field::server, "megaphone");
            res.set(http::field::sec_websocket_protocol, "megaphone");
        }));
        hs->ws.async_accept(hs->request, [self = shared_from_this(), hs](beast::error_code ec) {
            self->on_accept(ec);
        });
    }

    void on_accept(beast::error_code ec) {
        if (ec)
            return lost();
        accepted_ = true;
        received_ = true;
        beast::error_code ignored;
        socket().non_blocking(true, ignored); // reads are tried, never waited for
        if (!close_code_)
            do_watch(); // (a refused stream reads nothing but the close handshake's answer)
        do_write();     // whatever came meanwhile: the opening, or a refusal's close
    }

    //----------------------------------------------------------------------------------------------
    // Reading: readiness first, then what is there, parsed into frames.

    void do_watch() {
        if (watching_ || done_)
            return;
        watching_ = true;
        socket().async_receive(
            net::buffer(&probe_, 1), tcp::socket::message_peek,
            net::bind_allocator(std::allocator<void>{},
                                [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                    self->on_watch(ec);
                                }));
    }

    void on_watch(beast::error_code ec) {
        watching_ = false;
        if (done_)
            return;
        if (ec)
            return lost();
        read_available();
    }

    /// Everything there now, through a scratch buffer of this thread: the connection keeps
    /// only an incomplete frame's bytes. Over TLS, until the TLS stream has nothing either
    /// (it may hold records read from the socket already, which no readiness wait would
    /// announce), and never during a write (one TLS state): then once the write is done.
    void read_available() {
        static thread_local std::array<char, 16 * 1024> scratch;
        for (;;) {
            if (tls_ && writing_) { // (a frame just read may have started one: a pong)
                read_due_ = true;
                return;
            }
            beast::error_code rec;
            const std::size_t n = tls_ ? tls_->stream->read_some(net::buffer(scratch), rec)
                                       : socket_->read_some(net::buffer(scratch), rec);
            if (metrics_block* m = current_metrics)
                m->bytes_in.add(n);
            if (rec == net::error::would_block)
                break;
            if (rec || n == 0)
                return lost(); // EOF, reset: the stream's session hears connection_closed
            received_ = true;
            reader_.feed(scratch.data(), n);
            if (!parse() || done_ || paused())
                return resume_reading(false);
            if (!tls_ && n < scratch.size())
                break;
        }
        resume_reading(true);
    }

    /// Reading goes on, unless frame requests wait for their answers: then the client's next
    /// frames wait in the socket, and the connection holds itself (no operation does) until an
    /// answer comes. `drained`: nothing is left to read but what the socket will announce.
    void resume_reading(bool drained = false) {
        if (done_ || closing_ || close_code_)
            return;
        if (paused()) {
            if (!hold_)
                hold_ = shared_from_this();
            return;
        }
        if (hold_)
            release_hold();
        if (tls_ && !drained && !watching_)
            return read_available();
        do_watch();
    }

    /// Lets go of the connection's hold on itself once the current handler has returned.
    void release_hold() {
        net::post(executor(), [h = std::move(hold_)] {});
    }

    /// Frame requests wait for answers: the client's next frames wait in the socket.
    bool paused() const noexcept { return in_flight_.size() >= transport_.options().max_in_flight; }

    /// Takes the whole frames read so far, one at a time while reading is not paused; false
    /// when the connection is closing.
    bool parse() {
        while (!paused()) {
            ws_event e = reader_.next();
            switch (e.what) {
            case ws_event::kind::need_more:
                return true;
            case ws_event::kind::text:
                on_request(std::move(e.payload));
                break;
            case ws_event::kind::binary:
                return fail(ws_close::unsupported);
            case ws_event::kind::ping:
                enqueue(opcode::pong, packet::from(e.payload), false, 0);
                do_write();
                break;
            case ws_event::kind::pong:
                break; // liveness only (received_)
            case ws_event::kind::close:
                // The client closes: its code goes back (or 1000), then the TCP connection
                // ends.
                closing_by_client_ = true;
                close_code_ = e.code;
                queue_.clear();
                if (done_closing_write_)
                    return finish(), false; // our close was answered
                do_write();
                return false;
            case ws_event::kind::failure:
                return fail(e.code);
            }
        }
        return true;
    }

    /// A frame request: handed to the server as the session's POST.
    void on_request(std::string text) {
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
        enqueue(opcode::text, packet::from(text), false, 0);
        do_write();
    }
    void error_frame(protocol_error e, std::optional<request_id> rid) {
        error_frame(http_status(e), condition(e), rid);
    }

    /// The client broke the protocol: a close with `code`, and nothing more is read.
    bool fail(ws_close code) {
        reader_.stop();
        queue_.clear();
        close_after(code);
        do_write();
        return false;
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
        const bool was_paused = paused();
        in_flight_.erase(it);
        handler_.exchange_finished();
        if (closing_ || done_)
            return; // (a close already queued goes after it: the answer still goes first)
        if (r.status == 200) {
            enqueue(opcode::text, std::move(r.body), false, r.pushed_at_ns);
            do_write();
        } else {
            // The error's condition, from the body a POST would have had.
            std::string c = "bad-request";
            auto j = nlohmann::json::parse(r.body.view(), nullptr, false);
            if (j.is_object() && j.contains("condition") && j["condition"].is_string())
                c = j["condition"].get<std::string>();
            error_frame(r.status, c, rid);
        }
        // It waited for this answer: the frames read meanwhile first, then the socket.
        if (was_paused && !paused() && parse())
            resume_reading();
    }

    void on_stream_answer(response r) {
        if (closing_ || close_code_)
            return;
        if (!r.stream) {
            // No stream: the close code travels as the status (refusal()).
            close_after(r.status >= 1000 && r.status < 5000 ? static_cast<ws_close>(r.status)
                                                            : ws_close::item_not_found);
            return do_write();
        }
        // The session took the stream: ready first, then the replay and what was queued (the
        // opening may carry none: the session still hears on_written after it).
        opened_ = true;
        heartbeat_every_ = r.heartbeat_every;
        const bool empty = r.body.size() == 0;
        enqueue(opcode::text, transport_.ready(), empty, 0);
        if (!empty)
            enqueue(opcode::text, std::move(r.body), true, r.pushed_at_ns);
        do_write();
    }

    void enqueue(opcode op, packet body, bool reported, std::int64_t pushed_at_ns) {
        frame f;
        f.head = ws_frame_head(op, body.size());
        f.body = std::move(body);
        f.pushed_at_ns = pushed_at_ns;
        f.reported = reported;
        queue_.push_back(std::move(f));
    }

    void close_after(ws_close code) {
        if (!close_code_)
            close_code_ = code;
    }

    //----------------------------------------------------------------------------------------------
    // Writing: one frame at a time, then the close once the queue is empty.

    void do_write() {
        if (!accepted_ || writing_ || closing_ || done_)
            return;
        if (queue_.empty()) {
            if (close_code_)
                return write_close();
            if (queue_.capacity() > 4)
                std::vector<frame>().swap(queue_);
            return arm_tick();
        }
        writing_ = true;
        current_ = std::move(queue_.front());
        queue_.erase(queue_.begin());
        arm(transport_.options().write_timeout);
        const std::array<net::const_buffer, 2> buffers{
            net::buffer(current_.head.bytes.data(), current_.head.size),
            net::buffer(current_.body.view().data(), current_.body.size())};
        send(buffers);
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
        if (std::exchange(read_due_, false)) {
            read_available(); // (TLS) what arrived during the write
            if (done_)
                return; // (the client went meanwhile)
        }
        if (closing_) {
            // Our close frame is out. The client answered with its own already, or did the
            // closing: the TCP connection ends; else its answer is awaited (or the timeout).
            done_closing_write_ = true;
            if (closing_by_client_)
                return finish();
            arm(transport_.options().handshake_timeout);
            return do_watch();
        }
        if (done.reported && on_written_)
            on_written_();
        do_write();
    }

    /// Writes `buffers` (a frame's head and body) on the socket or the TLS stream.
    void send(const std::array<net::const_buffer, 2>& buffers) {
        auto done = [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            self->on_write(ec, n);
        };
        if (tls_)
            net::async_write(*tls_->stream, buffers, std::move(done));
        else
            net::async_write(*socket_, buffers, std::move(done));
    }

    /// The close frame: the code (and for 4404 its reason), after every queued frame.
    void write_close() {
        closing_ = true;
        const auto code = static_cast<std::uint16_t>(*close_code_);
        std::string body{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
        switch (*close_code_) {
        case ws_close::item_not_found:
            body += "item-not-found";
            break;
        case ws_close::replaced:
            body += "replaced";
            break;
        case ws_close::unsupported:
            body += "text frames only";
            break;
        default:
            break;
        }
        // The session need not wait for the close handshake: it is told now.
        if (auto f = std::exchange(on_lost_, nullptr))
            f();
        on_written_ = nullptr;
        frame f;
        f.head = ws_frame_head(opcode::close, body.size());
        f.body = packet::from(body);
        writing_ = true;
        current_ = std::move(f);
        arm(transport_.options().write_timeout);
        const std::array<net::const_buffer, 2> buffers{
            net::buffer(current_.head.bytes.data(), current_.head.size),
            net::buffer(current_.body.view().data(), current_.body.size())};
        send(buffers);
    }

    //----------------------------------------------------------------------------------------------
    // The deadline: a write's timeout, the close handshake's, or the idle tick.

    void arm(std::chrono::milliseconds after) {
        deadlines_->arm(*this, after, &ws_connection::on_deadline);
    }

    void arm_tick() {
        if (heartbeat_every_.count() > 0 && !closing_ && !done_)
            arm(heartbeat_every_);
    }

    static void on_deadline(deadline& d) {
        auto& self = static_cast<ws_connection&>(d);
        if (self.done_)
            return;
        if (self.writing_ || self.closing_)
            return self.lost(); // a write not taken, or a close not answered, in time
        // Idle for a heartbeat: the text ping for the page, a ping frame for the connection
        // when nothing came from the client since the last tick; nothing at all for
        // idle_timeout: a half-open client.
        const auto now = clock::now();
        if (self.received_) {
            self.received_ = false;
            self.last_received_ = now;
        } else if (now - self.last_received_ >= self.transport_.options().idle_timeout) {
            return self.lost();
        }
        self.enqueue(opcode::text, self.transport_.ping(), false, 0);
        if (now - self.last_received_ >= self.heartbeat_every_)
            self.enqueue(opcode::ping, packet{}, false, 0);
        self.do_write();
    }

    //----------------------------------------------------------------------------------------------

    /// The connection is gone: the session hears it (once), and the socket is closed, so that
    /// every pending operation ends and the connection with them.
    void lost() {
        if (auto f = std::exchange(on_lost_, nullptr))
            f();
        finish();
    }

    /// The end: the socket closes (the server closes first, RFC 6455 7.1.1).
    void finish() {
        done_ = true;
        closing_ = true;
        on_written_ = nullptr;
        on_lost_ = nullptr;
        deadline_service::cancel(*this);
        if (hold_)
            release_hold();
        beast::error_code ignored;
        if (tls_ && !writing_)
            tls_->stream->shutdown(ignored); // close_notify (not waiting for the client's)
        if (socket_ || tls_) {
            socket().shutdown(tcp::socket::shutdown_send, ignored);
            socket().close(ignored);
        }
    }

    struct pending_request {
        std::uint32_t seq;
        request_id rid;
    };
    using clock = std::chrono::steady_clock;

    const websocket_transport& transport_;
    request_handler& handler_;
    net::io_context* ioc_ = nullptr;
    deadline_service* deadlines_ = nullptr;
    std::optional<connection_socket> socket_; // plain HTTP: the socket, taken over
    std::unique_ptr<tls_link> tls_;           // HTTPS: the HTTP connection's socket and TLS
    std::string path_;                        // the mount's path: frame requests are POSTs to it
    std::string sid_;
    tcp::endpoint remote_;
    std::function<void()> on_lost_;
    std::function<void()> on_written_;
    std::shared_ptr<std::atomic<std::size_t>> open_;
    std::shared_ptr<ws_connection> hold_; // itself, while reading waits for answers
    std::vector<frame> queue_;
    frame current_;
    std::vector<pending_request> in_flight_;
    ws_frame_reader reader_{transport_.options().max_message}; // an incomplete frame, a message
    clock::time_point last_received_ = clock::now();
    std::chrono::milliseconds heartbeat_every_{0};
    std::optional<ws_close> close_code_;
    std::uint32_t seq_ = stream_seq;
    char probe_ = 0; // the readiness watch peeks one byte into it
    bool accepted_ = false;
    bool watching_ = false;
    bool writing_ = false;
    bool closing_ = false; // our close frame is being written or out
    bool closing_by_client_ = false;
    bool done_closing_write_ = false;
    bool done_ = false;     // the socket is closed
    bool received_ = false; // something came since the last tick
    bool read_due_ = false; // (TLS) readable during a write: read once it is done
    bool opened_ = false;   // the stream's opening is queued: later pieces may go inline
    std::atomic<std::uint32_t> stream_posts_{0}; // the stream's handlers posted, not yet run
    bool counted_ = false;
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
    auto parsed = stream_query(request.target()); // sid, and the rid fence as for SSE
    if (!parsed)
        return std::nullopt;
    stream_request& r = *parsed;
    if (auto last = query_parameter(request.target(), "lastEventId"); last && !last->empty()) {
        r.last_id = parse_event_id(*last);
        if (!r.last_id)
            return std::nullopt;
    }
    return parsed;
}

bool websocket_transport::connect(incoming& in) const {
    // Refusals a client can see (before the upgrade): a browser page from an origin not
    // allowed; a client that does not speak this protocol.
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
                     packet::from("WebSocket is served on a client's connection only\n")});
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
