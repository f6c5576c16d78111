// http_connection: one TCP connection speaking HTTP/1.1, plain or over TLS, and http_listener,
// which accepts them.
//
// A connection reads one request, hands it to the request_handler as an exchange, and writes the
// answer whenever it comes (at once for a static file, up to `wait` seconds later for a held
// long-poll). While the answer is outstanding the connection keeps watching the socket, as
// Erlang's {active, once} does: a client that goes away is noticed at once and reported through
// the exchange's on_lost hook, so the session's machine gets `connection_closed` immediately
// instead of writing into a dead socket `wait` seconds later. Bytes of a pipelined next request
// that arrive meanwhile are read aside (up to one request's worth) and watching goes on.
//
// Limits (refusal in fsm/metrics.hpp): an idle connection is closed after idle_timeout; a request
// must arrive whole within read_timeout of its first byte; `Expect: 100-continue` is answered
// once the headers pass the size limits; the listener refuses connections beyond
// max_connections with 503, and pauses (never spins) when accept fails, e.g. out of descriptors.
//
// TLS (a listener given an ssl::context): the connection first reads a few bytes to tell a TLS
// ClientHello from plain HTTP (answered with 400 and closed), then handshakes, all within the read
// timeout; from then on the same code runs over Asio's ssl::stream, which lies on top of the same
// socket. Plain connections carry no TLS state and take one branch per read or write, not per
// byte.
//
// Memory: a held long-poll costs its connection object (a socket bound to the io_context's own
// executor: no type-erased executor, no separately allocated stream state), the pending
// readiness wait, and the reactor's descriptor state. Timeouts are one intrusive deadline per
// connection (transport/deadlines.hpp: no timer object, no allocation, no lock); when one
// expires the socket is closed and the phase's pending operation ends with timed_out_ set.
//
// Lifetime: the connection lives while an operation holds a shared_ptr to it. Everything runs on
// the executor of the io_context it was accepted into (one thread per io_context).
#pragma once

#include "fsm/metrics.hpp"
#include "transport/deadlines.hpp"
#include "transport/exchange.hpp"
#include "transport/net.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
template <typename Stream>
class stream;
} // namespace boost::asio::ssl

namespace megaphone {

/// One answered request, for an access log.
struct access_record {
    const tcp::endpoint& remote;
    std::string_view method;
    std::string_view target;
    unsigned status;
    std::size_t bytes;                            ///< written, head and body
    std::chrono::steady_clock::duration duration; ///< from the request read to the answer written
};

struct http_options {
    /// Longest time to receive one whole request, headers and body, from its first byte: a
    /// client that sends byte by byte (slowloris) is cut off.
    std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};
    /// A connection with no request in flight (none being read, none awaiting its answer) is
    /// closed after this long. A held long-poll is in flight: never idle.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
    /// Longest time to write one answer to a client that does not read.
    std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
    /// Request bodies above this many bytes are refused with 413.
    std::size_t max_body = 64 * 1024;
    /// Request headers above this many bytes are refused.
    std::uint32_t max_header = 16 * 1024;
    /// Most connections open at once; a connection beyond it is answered 503 and closed.
    /// 0: the process's open-file limit (RLIMIT_NOFILE) minus 128, read when the listener starts.
    std::size_t max_connections = 0;
    /// SO_REUSEPORT on the listening sockets: several processes (each its own node, joined
    /// through Redis) listen on one port and the kernel spreads connections among them.
    bool reuse_port = false;
    /// The listener is the internal door (app/access.hpp): its requests say so
    /// (incoming::internal).
    bool internal = false;
    /// Origins allowed to call cross-origin (CORS); "*" allows any. Empty: no CORS headers.
    std::vector<std::string> cors_origins{"*"};
    /// Called on the connection's thread after each answer is written; when empty (the
    /// default) nothing is recorded for it.
    std::function<void(const access_record&)> access_log;
};

/// Passes the connection that carries a request to another process (cluster/handover.hpp), which
/// then reads, answers and keeps it as if it had accepted it.
class connection_transfer {
public:
    /// Sends the socket's descriptor and the bytes read from it that are not answered yet.
    /// True: the descriptor went (the receiver holds its own copy of it).
    using sender = std::function<bool(int fd, std::string_view bytes)>;
    /// Only during request_handler::handle(), on its thread, before the request is answered.
    /// Calls `send` with the descriptor and `request` (serialized again: request line, header
    /// fields, body, the framing made Content-Length) followed by what was read after it
    /// (pipelined bytes). When `send` returns true this process lets go of the connection
    /// without closing the client's TCP connection (the receiver's copy keeps it open) and the
    /// request must not be answered here; false: nothing changed.
    virtual bool transfer(const http::request<http::string_body>& request, const sender& send) = 0;
    /// Only during request_handler::handle(), on its thread, before the request is answered:
    /// moves the connection to `target` (another io_context of this process), where `request`
    /// is read again and handled, and where the connection stays. At most once per connection
    /// (so that one carrying requests of sessions of every thread, a proxy's, does not bounce);
    /// false when it did not move (moved before, TLS, not awaiting): handle it here. `moving`
    /// is called on this thread once the move is certain, before the connection is handed to
    /// `target`: whatever counts the move counts it there (once handed over, the request may be
    /// answered, and the counters read, before this thread runs again).
    virtual bool move_to(net::io_context& target, const http::request<http::string_body>& request,
                         const std::function<void()>& moving) = 0;

protected:
    ~connection_transfer() = default;
};

/// The socket of a plain HTTP connection, bound to its io_context's executor.
using connection_socket = net::basic_stream_socket<tcp, net::io_context::executor_type>;

struct incoming;

/// An HTTPS connection after an upgrade: TLS keys and sequence numbers cannot move, and the TLS
/// stream refers to its socket, so both stay inside the HTTP connection, which `keep` keeps
/// alive (and counted as its listener's open connection) for as long as the taker holds this.
struct tls_link {
    std::shared_ptr<void> keep;
    connection_socket* socket = nullptr;                    // readiness, shutdown, close
    net::ssl::stream<connection_socket&>* stream = nullptr; // every byte read or written
};

/// A protocol that takes a connection over after its HTTP request: a WebSocket's upgrade
/// (transport/websocket.hpp).
class connection_taker {
public:
    virtual ~connection_taker() = default;
    /// Called once, on the connection's thread, right after request_handler::handle()
    /// returned: the connection's socket and the request with the hooks the handler set (the
    /// request's exchange is the taker's own). `open` counts the taker as an open connection
    /// of its listener until it lets it go (it was counted for it already). The HTTP connection
    /// keeps nothing of it and ends.
    virtual void take(connection_socket socket, incoming in,
                      std::shared_ptr<std::atomic<std::size_t>> open) = 0;
    /// The same for an HTTPS connection: its socket and TLS stream stay where they are (see
    /// tls_link); the HTTP connection does nothing more with them.
    virtual void take_tls(tls_link link, incoming in) = 0;
};

/// A request as handed to the application layer.
struct incoming {
    http::request<http::string_body> request;
    tcp::endpoint remote;
    exchange ex;
    /// Set by the handler when the answer may be deferred: called once, on the connection's
    /// thread, if the client closes the connection before the answer is written.
    std::function<void()> on_lost;
    /// Plain HTTP connections only (null over TLS, whose state cannot move): lets the handler
    /// pass the connection to another process. Valid during handle() only.
    connection_transfer* transfer = nullptr;
    /// It came through the internal listener (http_options::internal), not a public one.
    bool internal = false;
    /// Set by the handler when the answer may be a stream (response::stream): called on the
    /// connection's thread each time a piece of it (the head with its first bytes, then each
    /// exchange::write but the last) has been written whole. Heartbeats are not reported.
    std::function<void()> on_written;
    /// The connection's io_context, where a taker runs (null for a request that did not come
    /// on a connection: a WebSocket's frame request).
    net::io_context* context = nullptr;
    /// Set by the handler (only when `context` is set) to take the connection over once
    /// handle() returns: the connection then hands it its socket (or, over TLS, its tls_link)
    /// and this request (see connection_taker) and ends; the request is not answered over
    /// HTTP.
    std::shared_ptr<connection_taker> taker;
};

class request_handler {
public:
    virtual ~request_handler() = default;
    /// Handles one request; the answer goes through `in.ex`, now or later, from any thread.
    virtual void handle(incoming& in) = 0;
    /// The answer for a request that could not be read whole (status 400 or 413), by target.
    virtual response refuse(std::string_view target, unsigned status) = 0;
    /// True once the server is stopping: answers then close their connection.
    virtual bool draining() const noexcept { return false; }
    /// A request was handed to handle() / its answer is written or its client gone (any thread;
    /// lets a stopping server wait for outstanding answers).
    virtual void exchange_started() noexcept {}
    virtual void exchange_finished() noexcept {}
};

class http_connection final : public exchange_target,
                              public connection_transfer,
                              public std::enable_shared_from_this<http_connection>,
                              private deadline {
public:
    /// Plain HTTP, or HTTPS when `tls` is given (it must outlive the connection). `open`
    /// (optional) counts open connections: this one until it is destroyed.
    /// A socket bound to its io_context's executor (no type-erased executor to store).
    using socket_type = connection_socket;

    http_connection(socket_type&& socket, request_handler& handler, const http_options& options,
                    net::ssl::context* tls = nullptr,
                    std::shared_ptr<std::atomic<std::size_t>> open = nullptr);
    ~http_connection() override;
    /// `bytes` were read from the socket already (a connection handed over by another process):
    /// they are parsed first. Before start().
    void prime(std::string_view bytes);
    void start();
    void deliver(std::uint32_t seq, response r) override;
    void write(std::uint32_t seq, packet body, bool last, std::int64_t pushed_at_ns) override;
    bool transfer(const http::request<http::string_body>& request, const sender& send) override;
    bool move_to(net::io_context& target, const http::request<http::string_body>& request,
                 const std::function<void()>& moving) override;

private:
    struct tls_stream;
    /// Calls f(stream) with the stream requests travel on: the TLS stream, or the TCP one.
    template <class F>
    void with_stream(F&& f);
    void do_detect();
    void on_detect(beast::error_code ec, bool is_tls);
    void on_handshake(beast::error_code ec, std::size_t used);
    void do_read();
    void on_first_bytes(beast::error_code ec, std::size_t bytes);
    void read_request();
    void on_header(beast::error_code ec, std::size_t bytes);
    void on_continue(beast::error_code ec, std::size_t bytes);
    void on_read(beast::error_code ec, std::size_t bytes);
    void do_watch();
    /// The carried watch (carry_) completed.
    void on_carried_watch(beast::error_code ec);
    /// Reads what the socket has now into buffer_ (plain HTTP) and parses it; asynchronously
    /// when it has nothing yet.
    void read_now();
    /// Waits for the next request's first bytes (do_read's asynchronous read).
    void read_async();
    /// One non-blocking recv into `space` (plain HTTP): the bytes read, or 0 with `ec` set to
    /// eof, would_block or the error.
    std::size_t receive_now(net::mutable_buffer space, beast::error_code& ec);
    void on_watch(std::uint32_t seq, beast::error_code ec);
    /// While a request is held: reads what arrived without blocking; false when the client is
    /// gone (EOF, close_notify, reset, a pipelined flood), true when it is still there.
    bool still_there();
    void on_deliver(std::uint32_t seq, response r);
    /// The handler took the connection over (incoming::taker): the socket and the request go to
    /// it, and this connection ends.
    void hand_over(incoming& in);
    void do_write(response r);
    /// Plain TCP: writes the answer with one non-blocking sendmsg when the socket takes it
    /// whole; false (nothing or part written: `sent`) when the asynchronous write must go on.
    bool write_now(std::size_t& sent);
    void on_write(beast::error_code ec, std::size_t bytes);
    // A streamed answer (response::stream): one piece written at a time, the rest waits.
    struct stream_piece {
        packet body;
        std::int64_t pushed_at_ns = 0;
        bool last = false;
        bool reported = true; // on_written after it (heartbeats are not)
    };
    void on_stream_piece(std::uint32_t seq, stream_piece piece);
    void do_stream_write(stream_piece piece);
    void on_stream_write(beast::error_code ec, std::size_t bytes);
    /// The stream's client is gone (a write failed or timed out): as a lost held request.
    void stream_lost();
    /// An idle stream writes its heartbeat after heartbeat_every.
    void arm_heartbeat();
    static void on_heartbeat(deadline& d);
    void do_close();
    void finish_exchange() noexcept;
    /// transfer() and move_to(): the request as it came, re-framed with Content-Length (the
    /// parser undid any chunking), then whatever the client sent after it.
    std::string resend_bytes(const http::request<http::string_body>& request) const;
    /// transfer() and move_to(): forgets the exchange and takes the descriptor out of this
    /// io_context's reactor; -1 when it could not.
    int let_go();
    /// The current phase (idle, reading, writing) must end within `d`, or the connection is
    /// closed (counted as a refusal by `counted`, if given) and the phase's pending operation
    /// completes with timed_out_ set.
    void set_deadline(std::chrono::milliseconds d, std::optional<refusal> counted = {});
    /// No deadline (a request is held, or the connection is closing).
    void clear_deadline() noexcept;
    static void on_deadline(deadline& d);

    using clock = std::chrono::steady_clock;
    socket_type socket_;
    deadline_service* deadlines_ = nullptr; // of the io_context; set by start()
    std::optional<refusal> deadline_kind_;
    bool timed_out_ = false;
    std::unique_ptr<tls_stream> tls_; // on top of socket_, for HTTPS; null for plain HTTP
    beast::flat_buffer buffer_;
    // Allocated while a request is read; none while one is held (memory per held connection).
    std::unique_ptr<http::request_parser<http::string_body>> parser_;
    request_handler& handler_;
    const http_options& options_;
    tcp::endpoint remote_;
    std::function<void()> on_lost_;
    std::string head_; // the answer's status line and headers, while it is written
    response answer_;  // the answer being written
    std::uint32_t seq_ = 0;
    bool awaiting_ = false; // an exchange is outstanding
    bool counted_ = false;  // exchange_started() was called, exchange_finished() not yet
    bool keep_alive_ = true;
    bool preflight_ = false;         // the request was a CORS preflight (OPTIONS)
    bool plain_on_tls_port_ = false; // plain HTTP came to the HTTPS port: refuse it
    bool moved_ = false;             // came here by move_to(): never moves again
    bool handling_ = false;          // inside handler_.handle(): on_read finishes the exchange
    bool written_early_ = false;     // ... whose answer was written whole meanwhile
    bool watch_live_ = false;        // a watch (do_watch) is pending, not cancelled, for seq_
    // After a held request's answer (plain HTTP), its watch goes on as the next read's wake-up:
    // no cancel, no aborted handler, no read tried before the client can have sent anything.
    enum class carry : std::uint8_t {
        none,
        pending, // the answer is being written; the watch is pending
        waiting, // idle (do_read ran): the watch's completion reads the next request
        fired,   // the watch completed before the answer was out: do_read reads at once
    };
    carry carry_ = carry::none;
    packet origin_; // the request's Origin, for CORS on the answer (8 B where a string is 32)
    // For the access log, only when options_.access_log is set.
    struct access_state {
        std::string method;
        std::string target;
        std::chrono::steady_clock::time_point start;
    };
    std::unique_ptr<access_state> access_;
    std::shared_ptr<std::atomic<std::size_t>> open_;
    // Only for an exchange whose handler set on_written (a stream may follow): long-polls pay
    // one pointer for it.
    struct stream_state {
        std::function<void()> on_written;
        bool open = false;      // the answer is a stream: its head is written or being written
        bool writing = false;   // a piece (or the head) is being written
        bool watch_due = false; // TLS: the readiness watch fired during a write (see on_watch)
        stream_piece current;   // being written
        std::vector<stream_piece> pending;
        packet heartbeat;
        std::chrono::milliseconds heartbeat_every{0};
    };
    std::unique_ptr<stream_state> stream_;
};

/// Accepts connections on one endpoint and spreads them over io_contexts.
class http_listener : public std::enable_shared_from_this<http_listener> {
public:
    using context_picker = std::function<net::io_context&()>;

    /// Accepts HTTPS connections when `tls` is given (it must outlive the listener and every
    /// connection), plain HTTP otherwise.
    http_listener(net::io_context& ioc, tcp::endpoint endpoint, context_picker pick,
                  request_handler& handler, const http_options& options,
                  net::ssl::context* tls = nullptr);
    void start();
    void stop();
    /// Takes a connected TCP socket `fd` (this process's descriptor now) handed over by another
    /// process, with `bytes` it read from it already, as if it had been accepted here: same
    /// options, limits and counting. Closed at once when the listener is stopped or full. Any
    /// thread.
    void adopt(int fd, std::string bytes);
    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    /// Connections open now (any thread).
    std::size_t open_connections() const noexcept { return open_->load(); }
    /// The connection limit in force (max_connections, or the one derived from RLIMIT_NOFILE).
    std::size_t max_connections() const noexcept { return max_connections_; }

private:
    void do_accept();
    void on_accept(beast::error_code ec, http_connection::socket_type socket);
    /// A new connection (accepted or adopted) with `bytes` already read; on the acceptor's thread.
    void open_connection(http_connection::socket_type socket, std::string_view bytes);
    /// Over the connection limit: answers 503 (plain HTTP only) without reading, and closes.
    static void refuse_connection(http_connection::socket_type& socket, bool plain);

    tcp::acceptor acceptor_;
    net::steady_timer backoff_;
    context_picker pick_;
    request_handler& handler_;
    const http_options& options_;
    net::ssl::context* tls_;
    std::shared_ptr<std::atomic<std::size_t>> open_ = std::make_shared<std::atomic<std::size_t>>(0);
    std::size_t max_connections_;
};

/// Status line text for the codes Megaphone sends.
std::string_view status_text(unsigned status) noexcept;

} // namespace megaphone
