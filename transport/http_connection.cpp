#include "transport/http_connection.hpp"

#include "fsm/metrics.hpp"

#include <boost/asio/bind_allocator.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/ssl.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace megaphone {

std::string_view content_type(content_kind k) noexcept {
    switch (k) {
    case content_kind::json:
        return "application/json";
    case content_kind::xml:
        return "text/xml; charset=utf-8";
    case content_kind::html:
        return "text/html; charset=utf-8";
    case content_kind::text:
        return "text/plain; charset=utf-8";
    case content_kind::javascript:
        return "text/javascript; charset=utf-8";
    case content_kind::css:
        return "text/css; charset=utf-8";
    case content_kind::svg:
        return "image/svg+xml";
    case content_kind::png:
        return "image/png";
    case content_kind::binary:
        return "application/octet-stream";
    case content_kind::event_stream:
        return "text/event-stream";
    }
    return "application/octet-stream";
}

std::string_view status_text(unsigned status) noexcept {
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

namespace {

bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin) {
    for (const auto& a : allowed)
        if (a == "*" || a == origin)
            return true;
    return false;
}

} // namespace

//--------------------------------------------------------------------------------------------------
// http_connection

struct http_connection::tls_stream {
    net::ssl::stream<socket_type&> stream;
};

template <class F>
void http_connection::with_stream(F&& f) {
    if (tls_)
        f(tls_->stream);
    else
        f(socket_);
}

http_connection::http_connection(socket_type&& socket, request_handler& handler,
                                 const http_options& options, net::ssl::context* tls,
                                 std::shared_ptr<std::atomic<std::size_t>> open)
    : socket_{std::move(socket)}
    , handler_{handler}
    , options_{options}
    , open_{std::move(open)} {
    beast::error_code ec;
    remote_ = socket_.remote_endpoint(ec);
    if (tls)
        tls_.reset(new tls_stream{{socket_, *tls}});
}

http_connection::~http_connection() {
    finish_exchange();
    if (open_)
        open_->fetch_sub(1, std::memory_order_relaxed);
}

void http_connection::finish_exchange() noexcept {
    if (std::exchange(counted_, false))
        handler_.exchange_finished();
}

void http_connection::set_deadline(std::chrono::milliseconds d, std::optional<refusal> counted) {
    deadline_kind_ = counted;
    timed_out_ = false;
    deadlines_->arm(*this, d, &http_connection::on_deadline);
}

void http_connection::clear_deadline() noexcept {
    deadline_service::cancel(*this);
}

void http_connection::on_deadline(deadline& d) {
    auto& self = static_cast<http_connection&>(d);
    // Out of time: counted first (the client sees the close at once), then closing the socket
    // ends the pending operation (operation_aborted), whose handler sees timed_out_.
    if (self.deadline_kind_)
        count_refusal(*self.deadline_kind_);
    self.timed_out_ = true;
    beast::error_code ignored;
    self.socket_.close(ignored);
}

void http_connection::prime(std::string_view bytes) {
    const auto space = buffer_.prepare(bytes.size());
    std::memcpy(space.data(), bytes.data(), bytes.size());
    buffer_.commit(bytes.size());
}

void http_connection::start() {
    deadlines_ = &deadline_service::of(socket_.get_executor().context());
    // Accepted into this connection's own io_context: enter it before touching the stream.
    net::dispatch(
        socket_.get_executor(),
        beast::bind_front_handler(tls_ ? &http_connection::do_detect : &http_connection::do_read,
                                  shared_from_this()));
}

void http_connection::do_detect() {
    // The first bytes tell a TLS ClientHello from plain HTTP; detection and handshake together
    // must finish within the read timeout (a silent or slow client is cut off).
    set_deadline(options_.read_timeout);
    beast::async_detect_ssl(
        socket_, buffer_,
        beast::bind_front_handler(&http_connection::on_detect, shared_from_this()));
}

void http_connection::on_detect(beast::error_code ec, bool is_tls) {
    if (ec)
        return do_close();
    if (!is_tls) {
        // Plain HTTP sent to the HTTPS port: read the request whole (so the client is not cut
        // off while it writes), then say so in plain HTTP and close (on_read).
        tls_.reset();
        plain_on_tls_port_ = true;
        return do_read();
    }
    // The detected bytes are the start of the handshake. (The size_t defaults: Boost 1.81's
    // constraint on this overload checks the handler against a one-argument signature.)
    tls_->stream.async_handshake(
        net::ssl::stream_base::server, buffer_.data(),
        [self = shared_from_this()](beast::error_code hec, std::size_t used = 0) {
            self->on_handshake(hec, used);
        });
}

void http_connection::on_handshake(beast::error_code ec, std::size_t used) {
    if (ec)
        return do_close(); // not TLS after all, no shared cipher, timeout: nothing to say
    buffer_.consume(used);
    // Held requests probe the TLS stream without blocking (still_there); async operations are
    // not affected by this flag.
    socket_.non_blocking(true, ec);
    do_read();
}

void http_connection::do_read() {
    if (buffer_.size() > 0) {
        if (carry_ != carry::none) {
            // The watch read this request already (still_there()): it is not needed any more.
            beast::error_code ignored;
            socket_.cancel(ignored);
            watch_live_ = false;
            carry_ = carry::none;
        }
        return read_request(); // a pipelined request is already (partly) in
    }
    // Idle: no request in flight. The first byte of the next one starts its read_timeout.
    set_deadline(options_.idle_timeout, refusal::idle_timeout);
    switch (std::exchange(carry_, carry::none)) {
    case carry::pending:
        carry_ = carry::waiting; // the held request's watch, still pending, wakes the read
        return;
    case carry::fired:
        return read_now(); // it completed while the answer was written: bytes or a close
    default:
        return read_async();
    }
}

void http_connection::read_async() {
    // 512 bytes hold a typical long-poll request whole and stay in the allocator's small-chunk
    // caches (a 1 KiB block would make glibc consolidate its fast bins on every request); a
    // longer request is read on into a grown buffer.
    with_stream([&](auto& stream) {
        stream.async_read_some(
            buffer_.prepare(512),
            beast::bind_front_handler(&http_connection::on_first_bytes, shared_from_this()));
    });
}

std::size_t http_connection::receive_now(net::mutable_buffer space, beast::error_code& ec) {
    const auto got = ::recv(socket_.native_handle(), space.data(), space.size(), MSG_DONTWAIT);
    if (got > 0)
        return static_cast<std::size_t>(got);
    if (got == 0)
        ec = net::error::eof;
    else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        ec = net::error::would_block;
    else
        ec = beast::error_code(errno, beast::system_category());
    return 0;
}

void http_connection::read_now() {
    beast::error_code ec;
    if (const std::size_t n = receive_now(buffer_.prepare(512), ec); n > 0) {
        buffer_.commit(n);
        return read_request();
    }
    if (ec == net::error::would_block)
        return read_async(); // (readable, then not: wait as usual)
    do_close();              // the client closed, or the connection failed
}

void http_connection::on_carried_watch(beast::error_code ec) {
    const carry c = std::exchange(carry_, carry::none);
    if (ec == net::error::operation_aborted)
        return; // the socket was closed (a deadline, the server's stop): nothing pending now
    if (c == carry::pending) {
        carry_ = carry::fired; // the answer is still being written: do_read goes on from here
        return;
    }
    read_now();
}

void http_connection::on_first_bytes(beast::error_code ec, std::size_t bytes) {
    if (ec) {
        return do_close(); // a timeout is counted by on_deadline
    }
    buffer_.commit(bytes);
    read_request();
}

void http_connection::read_request() {
    parser_ = std::make_unique<http::request_parser<http::string_body>>();
    parser_->body_limit(options_.max_body);
    parser_->header_limit(options_.max_header);
    set_deadline(options_.read_timeout, refusal::request_timeout);
    // A long-poll request is usually in the buffer whole after its first read: parse it here.
    // (async_read_header and async_read would each complete through the scheduler.) What is
    // not complete yet is read on asynchronously by the same parser.
    beast::error_code ec;
    std::size_t used = 0;
    while (buffer_.size() > 0 && !parser_->is_done()) {
        const std::size_t n = parser_->put(buffer_.data(), ec);
        buffer_.consume(n);
        used += n;
        if (ec == http::error::need_more)
            ec = {};
        if (ec || n == 0)
            break;
    }
    if (ec || parser_->is_done())
        return on_read(ec, used);
    if (parser_->is_header_done())
        return on_header({}, used);
    if (metrics_block* m = current_metrics)
        m->bytes_in.add(used);
    with_stream([&](auto& stream) {
        http::async_read_header(
            stream, buffer_, *parser_,
            beast::bind_front_handler(&http_connection::on_header, shared_from_this()));
    });
}

void http_connection::on_header(beast::error_code ec, std::size_t bytes) {
    if (ec || parser_->is_done())
        return on_read(ec, bytes);
    if (metrics_block* m = current_metrics)
        m->bytes_in.add(bytes); // the header's; on_read counts the body's
    // The client waits for a go-ahead before it sends the body (RFC 9110 §10.1.1). The header
    // passed the size limits (a Content-Length over max_body already failed above).
    const auto expect = parser_->get().find(http::field::expect);
    if (expect != parser_->get().end() && beast::iequals(expect->value(), "100-continue")) {
        static constexpr std::string_view go_ahead = "HTTP/1.1 100 Continue\r\n\r\n";
        return with_stream([&](auto& stream) {
            net::async_write(
                stream, net::buffer(go_ahead.data(), go_ahead.size()),
                beast::bind_front_handler(&http_connection::on_continue, shared_from_this()));
        });
    }
    on_continue({}, 0);
}

void http_connection::on_continue(beast::error_code ec, std::size_t) {
    if (ec)
        return do_close();
    with_stream([&](auto& stream) {
        http::async_read(stream, buffer_, *parser_,
                         beast::bind_front_handler(&http_connection::on_read, shared_from_this()));
    });
}

void http_connection::on_read(beast::error_code ec, std::size_t bytes) {
    if (metrics_block* m = current_metrics)
        m->bytes_in.add(bytes);
    if (ec && timed_out_) {
        // Not received whole within read_timeout of its first byte: a slow or stalled sender.
        // The socket is closed (and the refusal counted) already; there is nobody to answer.
        return do_close();
    }
    // The client closed its end between requests: nothing to say.
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted)
        return do_close();
    if (ec) {
        // A request we cannot read whole is refused, and the connection closed after the answer
        // (its remaining bytes cannot be framed).
        const bool too_large = ec == http::error::body_limit || ec == http::error::header_limit;
        const unsigned status = too_large ? 413 : 400;
        if (ec == http::error::body_limit)
            count_refusal(refusal::body_too_large);
        else if (ec == http::error::header_limit)
            count_refusal(refusal::header_too_large);
        if (!parser_->is_header_done() && status == 400 && buffer_.size() == 0)
            return do_close();
        // The target is known once the request line is parsed, before the header is done: a
        // Content-Length over the limit fails inside the header, and /comet must still answer
        // in JSON.
        std::string target{parser_->get().target()};
        if (options_.access_log)
            access_ = std::make_unique<access_state>(
                access_state{std::string(parser_->get().method_string()), target, clock::now()});
        keep_alive_ = false;
        preflight_ = false;
        origin_ = packet{};
        awaiting_ = false;
        return do_write(handler_.refuse(target, status));
    }

    if (plain_on_tls_port_) {
        keep_alive_ = false;
        preflight_ = false;
        origin_ = packet{};
        awaiting_ = false;
        response r;
        r.status = 400;
        r.kind = content_kind::text;
        r.body = packet::from("This port speaks HTTPS: use https://\n");
        return do_write(std::move(r));
    }

    incoming in{parser_->release(),
                remote_,
                exchange{weak_from_this(), ++seq_},
                nullptr,
                tls_ ? nullptr : static_cast<connection_transfer*>(this),
                options_.internal,
                nullptr,
                &socket_.get_executor().context(),
                nullptr};
    parser_.reset();
    if (options_.access_log)
        access_ = std::make_unique<access_state>(
            access_state{std::string(in.request.method_string()), std::string(in.request.target()),
                         clock::now()});
    keep_alive_ = in.request.keep_alive();
    preflight_ = in.request.method() == http::verb::options;
    auto origin = in.request.find(http::field::origin);
    origin_ = origin == in.request.end() ? packet{} : packet::from(origin->value());
    // A held request may wait long: no deadline while the answer is outstanding.
    clear_deadline();
    awaiting_ = true;

    counted_ = true;
    handler_.exchange_started();
    stream_.reset();
    {
        struct handling {
            bool& flag;
            ~handling() { flag = false; }
        } during{handling_ = true};
        handler_.handle(in);
    }
    if (in.taker)
        return hand_over(in);
    // A stream may have opened inside handle() already: its first write completes later.
    if (in.on_written && awaiting_) {
        if (!stream_)
            stream_ = std::make_unique<stream_state>();
        stream_->on_written = std::move(in.on_written);
    }
    // While a request waits for its answer the connection keeps no buffers (a held long-poll
    // costs no more); one answered at once keeps them for the next exchange, unless a large
    // request grew the read buffer.
    if (buffer_.size() == 0 && (awaiting_ || buffer_.capacity() > 512))
        buffer_.shrink_to_fit();
    if (awaiting_) {
        if (!(stream_ && stream_->writing))
            std::string().swap(head_); // (a stream's head may be being written already)
        on_lost_ = std::move(in.on_lost);
        // Over TLS, bytes the handshake or the last read left inside the TLS stream (a
        // close_notify right behind the request) would never wake the socket: look first.
        if (tls_)
            on_watch(seq_, {});
        else
            do_watch();
    }
    // Answered inside handle(), and written whole already (do_write): the exchange ends now.
    if (std::exchange(written_early_, false))
        on_write({}, head_.size() + answer_.body.size());
}

void http_connection::hand_over(incoming& in) {
    // Another protocol (a WebSocket) goes on with the socket: this connection forgets its
    // exchange and ends once this handler returns (no operation holds it), keeping no copy;
    // over TLS it stays, idle, holding the socket and the TLS stream the taker uses.
    auto taker = std::move(in.taker);
    if (!awaiting_ || !socket_.is_open())
        return do_close(); // (cannot happen: a taker is set only while a request is handled)
    awaiting_ = false;
    keep_alive_ = false;
    on_lost_ = nullptr;
    access_.reset();
    stream_.reset();
    clear_deadline();
    finish_exchange();
    // Bytes after the request (a client must wait for the upgrade's answer before it sends
    // more: RFC 6455 4.1) are dropped with the buffer.
    buffer_.clear();
    buffer_.shrink_to_fit();
    if (tls_) {
        // This connection goes on counting as open until the taker lets go of the link.
        tls_link link{shared_from_this(), &socket_, &tls_->stream};
        return taker->take_tls(std::move(link), std::move(in));
    }
    // The taker counts as this listener's open connection from now; this one stops counting
    // when it goes.
    if (open_)
        open_->fetch_add(1, std::memory_order_relaxed);
    taker->take(std::move(socket_), std::move(in), open_);
}

std::string http_connection::resend_bytes(const http::request<http::string_body>& request) const {
    std::string bytes;
    bytes.reserve(256 + request.body().size() + buffer_.size());
    bytes += request.method_string();
    bytes += ' ';
    bytes += request.target();
    bytes += request.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
    for (const auto& field : request) {
        if (field.name() == http::field::content_length ||
            field.name() == http::field::transfer_encoding)
            continue;
        bytes += field.name_string();
        bytes += ": ";
        bytes += field.value();
        bytes += "\r\n";
    }
    if (!request.body().empty() || request.has_content_length() || request.chunked()) {
        bytes += "Content-Length: ";
        bytes += std::to_string(request.body().size());
        bytes += "\r\n";
    }
    bytes += "\r\n";
    bytes += request.body();
    bytes.append(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    return bytes;
}

int http_connection::let_go() {
    // This connection forgets the exchange and lets go of the descriptor: release() takes it
    // out of this io_context's reactor (whose registration would otherwise outlive the close,
    // or clash with the new owner's).
    awaiting_ = false;
    keep_alive_ = false;
    on_lost_ = nullptr;
    access_.reset();
    buffer_.clear();
    clear_deadline();
    finish_exchange();
    beast::error_code ec;
    const int fd = socket_.release(ec);
    if (ec || fd < 0) {
        socket_.close(ec);
        return -1;
    }
    return fd;
}

bool http_connection::transfer(const http::request<http::string_body>& request,
                               const sender& send) {
    // Only a plain connection whose request is being handled, unanswered, moves: TLS keeps
    // keys and sequence numbers in this process.
    if (tls_ || plain_on_tls_port_ || !awaiting_ || !socket_.is_open())
        return false;
    if (!send(socket_.native_handle(), resend_bytes(request)))
        return false;
    // Gone to the other process; a close without shutdown leaves the TCP connection to the
    // receiver's copy.
    if (const int fd = let_go(); fd >= 0)
        ::close(fd);
    return true;
}

bool http_connection::move_to(net::io_context& target,
                              const http::request<http::string_body>& request,
                              const std::function<void()>& moving) {
    if (moved_ || tls_ || plain_on_tls_port_ || !awaiting_ || !socket_.is_open())
        return false;
    beast::error_code ec;
    const tcp::endpoint local = socket_.local_endpoint(ec);
    if (ec)
        return false;
    std::string bytes = resend_bytes(request);
    const int fd = let_go();
    // Before the post: from then on the target's thread may read and answer the request.
    moving();
    if (fd < 0)
        return true; // (closed: the client sees its connection end, as on any error)
    // The new connection counts itself open from now; this one stops counting when it goes.
    if (open_)
        open_->fetch_add(1, std::memory_order_relaxed);
    net::post(target, [&target, fd, local, bytes = std::move(bytes), &handler = handler_,
                       &options = options_, open = open_]() mutable {
        socket_type socket{target};
        beast::error_code ec;
        socket.assign(local.protocol(), fd, ec);
        if (ec) {
            ::close(fd);
            if (open)
                open->fetch_sub(1, std::memory_order_relaxed);
            return;
        }
        auto moved = std::make_shared<http_connection>(std::move(socket), handler, options, nullptr,
                                                       std::move(open));
        moved->moved_ = true;
        moved->prime(bytes);
        moved->start();
    });
    return true;
}

void http_connection::do_watch() {
    // Wait for readability without reading: a close (EOF) is noticed at once, and no buffer is
    // held while the request waits. A wait costs one system call to start (Asio re-arms epoll
    // for a wait, with epoll_ctl) and none when it completes; a one-byte MSG_PEEK receive cost
    // two (tried at once, usually EAGAIN, and performed again when the bytes came). The watch
    // goes on after the answer (carry_) and wakes the next read: the next request is then read
    // once, by read_now().
    // The wait lasts as long as the request is held: it gets its own small allocation rather
    // than a block from Asio's per-thread recycling cache, which hands out the larger block of
    // the last write.
    watch_live_ = true;
    socket_.async_wait(tcp::socket::wait_read,
                       net::bind_allocator(std::allocator<void>{},
                                           beast::bind_front_handler(&http_connection::on_watch,
                                                                     shared_from_this(), seq_)));
}

void http_connection::on_watch(std::uint32_t seq, beast::error_code ec) {
    if (watch_live_ && seq == seq_) {
        watch_live_ = false; // this is the pending watch's completion (not a cancelled one's)
        if (carry_ != carry::none)
            return on_carried_watch(ec);
    }
    if (seq != seq_ || !awaiting_ || ec == net::error::operation_aborted)
        return;
    if (tls_ && stream_ && stream_->writing) {
        // still_there() reads through TLS, which must not run during the stream's write (one
        // TLS state): it runs when the write completes (on_stream_write).
        stream_->watch_due = true;
        return;
    }
    // Data, end of stream or an error: still_there() reads what there is and tells which.
    if (!ec && still_there())
        return do_watch();
    // The client is gone while its request was outstanding: tell the owner of the exchange.
    awaiting_ = false;
    if (auto lost = std::exchange(on_lost_, nullptr))
        lost();
    finish_exchange();
    do_close();
}

bool http_connection::still_there() {
    // What arrived is read into buffer_ without blocking. Data is a pipelined request, kept for
    // the next read while watching goes on (a close behind it is still seen, and the pending
    // wait keeps the connection alive); nothing yet means still there; end of stream, a reset
    // or an error means gone, and so does more pipelined data than one request may carry.
    // Over TLS readable bytes may be a record without data (a close_notify alert, a key update,
    // half a record; TLS 1.3 hides the record type): it reads through TLS, whose socket is
    // non-blocking for synchronous calls (on_handshake).
    beast::error_code ec;
    const auto space = buffer_.prepare(4096);
    std::size_t n = 0;
    if (tls_) {
        n = tls_->stream.read_some(space, ec);
    } else {
        n = receive_now(space, ec);
    }
    buffer_.commit(n);
    if (buffer_.size() > options_.max_header + options_.max_body)
        return false;
    return !ec || ec == net::error::would_block || ec == net::error::try_again;
}

void http_connection::deliver(std::uint32_t seq, response r) {
    // From any thread: run on this connection's executor (inline when already there).
    net::dispatch(socket_.get_executor(),
                  beast::bind_front_handler(&http_connection::on_deliver, shared_from_this(), seq,
                                            std::move(r)));
}

void http_connection::on_deliver(std::uint32_t seq, response r) {
    if (seq != seq_ || !awaiting_)
        return; // answered already, or the connection was lost: the cache keeps the answer
    if (r.stream && !(stream_ && stream_->open)) {
        // A stream opens: the exchange stays outstanding and the readiness watch goes on (a
        // client that leaves is still noticed at once); the body ends with the connection.
        if (!stream_)
            stream_ = std::make_unique<stream_state>();
        stream_->open = true;
        stream_->writing = true;
        stream_->current = {};
        stream_->heartbeat = r.heartbeat;
        stream_->heartbeat_every = r.heartbeat_every;
        keep_alive_ = false;
        return do_write(std::move(r));
    }
    awaiting_ = false;
    on_lost_ = nullptr;
    if (!tls_ && watch_live_) {
        // Plain HTTP: the watch goes on, and wakes the next read (carry_). Its client's next
        // request is all it can see now.
        carry_ = carry::pending;
    } else {
        // Stop watching: the pending wait is aborted and its handler returns early.
        beast::error_code ignored;
        socket_.cancel(ignored);
        watch_live_ = false;
    }
    do_write(std::move(r));
}

void http_connection::do_write(response r) {
    answer_ = std::move(r);
    if (metrics_block* m = current_metrics) {
        const auto transport = answer_.kind == content_kind::json  ? transport_kind::json
                               : answer_.kind == content_kind::xml ? transport_kind::bosh
                                                                   : transport_kind::other;
        m->responses[static_cast<std::size_t>(transport)][status_index(answer_.status)].add();
    }
    head_.clear();
    head_.reserve(256);
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(answer_.status);
    head_ += ' ';
    head_ += status_text(answer_.status);
    head_ += "\r\nContent-Type: ";
    head_ += answer_.content_type ? answer_.content_type.view() : content_type(answer_.kind);
    if (answer_.stream) {
        head_ += "\r\n"; // no length: the body ends with the connection; `headers` say the rest
    } else {
        head_ += "\r\nContent-Length: ";
        head_ += std::to_string(answer_.body.size());
        head_ += "\r\nCache-Control: no-store\r\n";
    }
    if (!origin_.empty() && origin_allowed(options_.cors_origins, origin_.view())) {
        head_ += "Access-Control-Allow-Origin: ";
        const bool any = std::find(options_.cors_origins.begin(), options_.cors_origins.end(),
                                   "*") != options_.cors_origins.end();
        head_ += any ? std::string_view("*") : origin_.view();
        head_ += "\r\nVary: Origin\r\n";
        if (preflight_)
            head_ += "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                     "Access-Control-Allow-Headers: Content-Type\r\n"
                     "Access-Control-Max-Age: 86400\r\n";
    }
    if (answer_.headers)
        head_ += answer_.headers.view();
    if (handler_.draining())
        keep_alive_ = false; // a stopping server: the client comes back on a new connection
    if (!keep_alive_)
        head_ += "Connection: close\r\n";
    head_ += "\r\n";

    std::array<net::const_buffer, 2> buffers{
        net::buffer(head_), net::buffer(answer_.body.view().data(), answer_.body.size())};
    std::size_t sent = 0;
    if (write_now(sent)) {
        // Written whole, with no completion queued through the scheduler (and no extra turn of
        // the reactor) before the next read starts. Inside handle() the exchange is finished by
        // on_read, once it is done with the request.
        if (handling_) {
            written_early_ = true;
            return;
        }
        return on_write({}, sent);
    }
    set_deadline(options_.write_timeout);
    if (sent > 0) {
        // Part of it went: the rest is written asynchronously, and counted with it.
        beast::buffers_suffix<std::array<net::const_buffer, 2>> rest{buffers};
        rest.consume(sent);
        return net::async_write(
            socket_, rest, [self = shared_from_this(), sent](beast::error_code ec, std::size_t n) {
                self->on_write(ec, n + sent);
            });
    }
    with_stream([&](auto& stream) {
        net::async_write(stream, buffers,
                         beast::bind_front_handler(&http_connection::on_write, shared_from_this()));
    });
}

bool http_connection::write_now(std::size_t& sent) {
    sent = 0;
    if (tls_ || answer_.stream || stream_ || buffer_.size() > 0)
        return false; // TLS writes through its stream; a pipelined request is read on after
    iovec iov[2] = {{head_.data(), head_.size()},
                    {const_cast<char*>(answer_.body.view().data()), answer_.body.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = answer_.body.size() > 0 ? 2 : 1;
    const ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0)
        return false; // the socket's buffer is full, or an error the asynchronous write reports
    sent = static_cast<std::size_t>(n);
    return sent == head_.size() + answer_.body.size();
}

void http_connection::on_write(beast::error_code ec, std::size_t bytes) {
    if (stream_ && stream_->open)
        return on_stream_write(ec, bytes); // the head of a stream, with its first bytes
    if (options_.access_log && access_) {
        options_.access_log({remote_, access_->method, access_->target, answer_.status, bytes,
                             clock::now() - access_->start});
        access_.reset();
    }
    if (metrics_block* m = current_metrics) {
        m->bytes_out.add(bytes);
        if (!ec && answer_.pushed_at_ns != 0) {
            const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now().time_since_epoch())
                                         .count();
            m->push_latency.observe_ns(
                static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - answer_.pushed_at_ns)));
        }
    }
    answer_ = {};
    finish_exchange();
    if (ec || !keep_alive_)
        return do_close();
    do_read();
}

void http_connection::write(std::uint32_t seq, packet body, bool last, std::int64_t pushed_at_ns) {
    // From any thread: run on this connection's executor (inline when already there).
    net::dispatch(socket_.get_executor(),
                  beast::bind_front_handler(&http_connection::on_stream_piece, shared_from_this(),
                                            seq,
                                            stream_piece{std::move(body), pushed_at_ns, last}));
}

void http_connection::on_stream_piece(std::uint32_t seq, stream_piece piece) {
    if (seq != seq_ || !awaiting_ || !stream_ || !stream_->open)
        return; // the stream ended, or its client left: the session hears of it by on_lost
    if (stream_->writing)
        return stream_->pending.push_back(std::move(piece)); // behind a heartbeat, or the end
    do_stream_write(std::move(piece));
}

void http_connection::do_stream_write(stream_piece piece) {
    stream_->writing = true;
    stream_->current = std::move(piece);
    // A client that does not read for write_timeout is cut off (its session keeps the data).
    set_deadline(options_.write_timeout);
    const packet& body = stream_->current.body;
    with_stream([&](auto& stream) {
        net::async_write(
            stream, net::buffer(body.view().data(), body.size()),
            beast::bind_front_handler(&http_connection::on_stream_write, shared_from_this()));
    });
}

void http_connection::on_stream_write(beast::error_code ec, std::size_t bytes) {
    stream_state& st = *stream_;
    st.writing = false;
    if (options_.access_log && access_) {
        // The stream is logged once, when its head is out (its duration: until then).
        options_.access_log({remote_, access_->method, access_->target, answer_.status, bytes,
                             clock::now() - access_->start});
        access_.reset();
    }
    const std::int64_t pushed_at =
        answer_.pushed_at_ns != 0 ? answer_.pushed_at_ns : st.current.pushed_at_ns;
    if (metrics_block* m = current_metrics) {
        m->bytes_out.add(bytes);
        if (!ec && pushed_at != 0) {
            const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now().time_since_epoch())
                                         .count();
            m->push_latency.observe_ns(
                static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - pushed_at)));
        }
    }
    answer_ = {};
    std::string().swap(head_);
    const stream_piece done = std::exchange(st.current, {});
    if (!awaiting_)
        return; // its client left (on_watch closed it): nothing more to do
    if (ec)
        return stream_lost();
    if (done.last) {
        // The stream ended: the connection goes with it (its body is delimited by the close).
        awaiting_ = false;
        on_lost_ = nullptr;
        finish_exchange();
        return do_close();
    }
    if (!st.pending.empty()) {
        stream_piece next = std::move(st.pending.front());
        st.pending.erase(st.pending.begin());
        do_stream_write(std::move(next));
    } else {
        arm_heartbeat();
    }
    if (st.watch_due && !st.writing) {
        st.watch_due = false;
        on_watch(seq_, {}); // (TLS) the readiness watch that fired during the write
        if (!awaiting_)
            return;
    }
    if (done.reported && st.on_written)
        st.on_written(); // the writer may give the next piece now (inline)
}

void http_connection::stream_lost() {
    awaiting_ = false;
    if (auto lost = std::exchange(on_lost_, nullptr))
        lost();
    finish_exchange();
    do_close();
}

void http_connection::arm_heartbeat() {
    if (stream_->heartbeat_every.count() <= 0) {
        clear_deadline();
        return;
    }
    deadline_kind_.reset();
    timed_out_ = false;
    deadlines_->arm(*this, stream_->heartbeat_every, &http_connection::on_heartbeat);
}

void http_connection::on_heartbeat(deadline& d) {
    auto& self = static_cast<http_connection&>(d);
    // Idle for heartbeat_every: a few bytes keep proxies (and the client) from timing it out.
    if (!self.awaiting_ || !self.stream_ || !self.stream_->open || self.stream_->writing)
        return;
    self.do_stream_write({self.stream_->heartbeat, 0, false, false});
}

void http_connection::do_close() {
    clear_deadline();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
}

//--------------------------------------------------------------------------------------------------
// http_listener

http_listener::http_listener(net::io_context& ioc, tcp::endpoint endpoint, context_picker pick,
                             request_handler& handler, const http_options& options,
                             net::ssl::context* tls)
    : acceptor_{ioc}
    , backoff_{ioc}
    , pick_{std::move(pick)}
    , handler_{handler}
    , options_{options}
    , tls_{tls}
    , max_connections_{options.max_connections} {
    if (max_connections_ == 0) {
        // Leave room below the open-file limit for the listener, files and the like: the limit
        // is then met with a clean 503 rather than with accept() failing.
        rlimit files{};
        const rlim_t soft = ::getrlimit(RLIMIT_NOFILE, &files) == 0 ? files.rlim_cur : 1024;
        const rlim_t cap = soft == RLIM_INFINITY ? rlim_t{1} << 20 : soft;
        max_connections_ = static_cast<std::size_t>(cap > 256 ? cap - 128 : cap / 2);
    }
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    if (options.reuse_port)
        acceptor_.set_option(net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
}

void http_listener::start() {
    do_accept();
}

void http_listener::stop() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
        beast::error_code ignored;
        self->acceptor_.close(ignored);
        self->backoff_.cancel();
    });
}

void http_listener::do_accept() {
    // Each connection goes to the next io_context, round robin: one thread serves it for life.
    acceptor_.async_accept(
        pick_(), beast::bind_front_handler(&http_listener::on_accept, shared_from_this()));
}

namespace {

/// A descriptor owned until it is given on (release()) or closed with the holder.
class owned_fd {
public:
    explicit owned_fd(int fd) noexcept
        : fd_{fd} {}
    owned_fd(owned_fd&& other) noexcept
        : fd_{std::exchange(other.fd_, -1)} {}
    owned_fd& operator=(owned_fd&&) = delete;
    ~owned_fd() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

} // namespace

void http_listener::adopt(int fd, std::string bytes) {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this(), held = owned_fd{fd},
                                             bytes = std::move(bytes)]() mutable {
        if (!self->acceptor_.is_open())
            return; // stopped: the client sees its connection close
        sockaddr_storage local{};
        socklen_t length = sizeof local;
        int type = 0;
        socklen_t type_length = sizeof type;
        if (::getsockname(held.get(), reinterpret_cast<sockaddr*>(&local), &length) != 0 ||
            (local.ss_family != AF_INET && local.ss_family != AF_INET6) ||
            ::getsockopt(held.get(), SOL_SOCKET, SO_TYPE, &type, &type_length) != 0 ||
            type != SOCK_STREAM)
            return; // not a TCP socket: closed
        http_connection::socket_type socket{self->pick_()};
        beast::error_code ec;
        socket.assign(local.ss_family == AF_INET ? tcp::v4() : tcp::v6(), held.get(), ec);
        if (ec)
            return;
        held.release();
        self->open_connection(std::move(socket), bytes);
    });
}

void http_listener::open_connection(http_connection::socket_type socket, std::string_view bytes) {
    if (open_->load(std::memory_order_relaxed) >= max_connections_)
        return refuse_connection(socket, /*plain=*/tls_ == nullptr);
    open_->fetch_add(1, std::memory_order_relaxed); // only this thread adds: never over the limit
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    auto connection =
        std::make_shared<http_connection>(std::move(socket), handler_, options_, tls_, open_);
    if (!bytes.empty())
        connection->prime(bytes);
    connection->start();
}

void http_listener::on_accept(beast::error_code ec, http_connection::socket_type socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open())
        return;
    if (ec) {
        // Out of file descriptors (EMFILE/ENFILE) or a transient error: pause instead of
        // spinning on a listen queue we cannot drain, then try again. Waiting clients stay in
        // the listen queue and are served once descriptors free up.
        count_refusal(refusal::accept_failed);
        backoff_.expires_after(std::chrono::milliseconds(50));
        backoff_.async_wait([self = shared_from_this()](beast::error_code wec) {
            if (!wec)
                self->do_accept();
        });
        return;
    }
    open_connection(std::move(socket), {});
    do_accept();
}

void http_listener::refuse_connection(http_connection::socket_type& socket, bool plain) {
    count_refusal(refusal::connections);
    static constexpr std::string_view busy = "HTTP/1.1 503 Service Unavailable\r\n"
                                             "Content-Type: text/plain; charset=utf-8\r\n"
                                             "Content-Length: 21\r\n"
                                             "Cache-Control: no-store\r\n"
                                             "Connection: close\r\n\r\n"
                                             "too many connections\n";
    // A fresh socket's send buffer is empty: one non-blocking send takes it all, or the client
    // is gone and sees the close alone. A TLS client just sees the close.
    if (plain) [[maybe_unused]]
        const auto sent =
            ::send(socket.native_handle(), busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    socket.close(ignored);
}

} // namespace megaphone
