// A small blocking HTTP/1.1 client for integration tests: one keep-alive TCP connection to
// 127.0.0.1:port, Beast's serializer and parser over a plain socket with a receive timeout
// (SO_RCVTIMEO), so a test that waits for an answer that never comes fails instead of hanging.
//
// send() writes a request without reading (a long poll that will be held), receive() reads one
// answer, request() does both. Several clients make several connections.
//
// HTTPS: give the client an SSL_CTX (support/tls.hpp makes one) and it speaks TLS over the same
// socket (OpenSSL's SSL_read/SSL_write on the descriptor, under the same timeouts).
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace megaphone::test {

namespace beast = boost::beast;
namespace http = boost::beast::http;

/// A socket file descriptor as a Beast SyncReadStream/SyncWriteStream. Unlike a blocking Asio
/// socket (which polls forever after EAGAIN), a read that hits SO_RCVTIMEO fails with `timeout`.
/// After start_tls() it reads and writes through TLS.
class fd_stream {
public:
    explicit fd_stream(int fd = -1) noexcept
        : fd_{fd} {}
    fd_stream(fd_stream&& o) noexcept
        : fd_{std::exchange(o.fd_, -1)}
        , ssl_{std::exchange(o.ssl_, nullptr)} {}
    fd_stream& operator=(fd_stream&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
            ssl_ = std::exchange(o.ssl_, nullptr);
        }
        return *this;
    }
    ~fd_stream() { close(); }

    int native_handle() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    /// Closes the socket (over TLS without a close_notify, as a crashed client would).
    void close() noexcept {
        if (ssl_)
            SSL_free(std::exchange(ssl_, nullptr));
        if (fd_ >= 0)
            ::close(std::exchange(fd_, -1));
    }

    /// Handshakes as a TLS client; throws when the handshake fails.
    void start_tls(SSL_CTX* ctx) {
        ssl_ = SSL_new(ctx);
        if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1 || SSL_connect(ssl_) != 1)
            throw std::runtime_error("TLS handshake failed");
    }
    /// The TLS connection; null for plain HTTP.
    SSL* ssl() const noexcept { return ssl_; }

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
        ec = {};
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != boost::asio::buffer_sequence_end(buffers); ++it) {
            boost::asio::mutable_buffer b = *it;
            if (b.size() == 0)
                continue;
            if (ssl_)
                return tls_io(SSL_read(ssl_, b.data(), static_cast<int>(b.size())), ec);
            for (;;) {
                const ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
                if (n > 0)
                    return static_cast<std::size_t>(n);
                if (n == 0) {
                    ec = boost::asio::error::eof;
                    return 0;
                }
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    ec = beast::error::timeout;
                else
                    ec = beast::error_code(errno, boost::system::system_category());
                return 0;
            }
        }
        return 0;
    }
    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers) {
        beast::error_code ec;
        const auto n = read_some(buffers, ec);
        if (ec)
            throw boost::system::system_error(ec);
        return n;
    }

    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers, beast::error_code& ec) {
        ec = {};
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != boost::asio::buffer_sequence_end(buffers); ++it) {
            boost::asio::const_buffer b = *it;
            if (b.size() == 0)
                continue;
            if (ssl_)
                return tls_io(SSL_write(ssl_, b.data(), static_cast<int>(b.size())), ec);
            for (;;) {
                const ssize_t n = ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL);
                if (n >= 0)
                    return static_cast<std::size_t>(n);
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    ec = beast::error::timeout;
                else
                    ec = beast::error_code(errno, boost::system::system_category());
                return 0;
            }
        }
        return 0;
    }
    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers) {
        beast::error_code ec;
        const auto n = write_some(buffers, ec);
        if (ec)
            throw boost::system::system_error(ec);
        return n;
    }

private:
    /// The outcome of SSL_read/SSL_write as a byte count and an error code.
    std::size_t tls_io(int n, beast::error_code& ec) {
        if (n > 0)
            return static_cast<std::size_t>(n);
        const int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_ZERO_RETURN)
            ec = boost::asio::error::eof;
        else if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
                 (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)))
            ec = beast::error::timeout;
        else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL)
            ec = boost::asio::error::eof; // the peer closed without close_notify
        else
            ec = beast::error_code(EIO, boost::system::system_category());
        return 0;
    }

    int fd_;
    SSL* ssl_ = nullptr;
};

/// A blocking TCP connection to 127.0.0.1:port whose reads and writes give up after `timeout`
/// (SO_RCVTIMEO/SO_SNDTIMEO: a test never hangs), with Nagle off.
inline fd_stream connect_loopback(unsigned short port, std::chrono::milliseconds timeout) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "socket");
    fd_stream stream{fd};
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
            return stream;
        if (errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "connect");
    }
}

/// One request header: a known field, or any name (`{"X-Megaphone-Token", token}`).
struct request_header {
    request_header(http::field f, std::string_view v)
        : field{f}
        , value{v} {}
    request_header(std::string_view n, std::string_view v)
        : name{n}
        , value{v} {}
    http::field field = http::field::unknown;
    std::string_view name; // empty: `field`
    std::string_view value;
};

/// One answer as the client saw it.
struct http_reply {
    unsigned status = 0;
    std::string body;
    http::fields headers;

    /// The body parsed as JSON (throws when it is not JSON).
    nlohmann::json json() const { return nlohmann::json::parse(body); }
    /// A header's value, empty when absent.
    std::string header(std::string_view name) const {
        auto it = headers.find(beast::string_view(name.data(), name.size()));
        return it == headers.end() ? std::string() : std::string(it->value());
    }
    bool has_header(std::string_view name) const {
        return headers.find(beast::string_view(name.data(), name.size())) != headers.end();
    }
};

class http_client {
public:
    using clock = std::chrono::steady_clock;

    /// Plain HTTP, or HTTPS with `tls` (which must outlive the client).
    explicit http_client(unsigned short port,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10),
                         SSL_CTX* tls = nullptr)
        : port_{port}
        , timeout_{timeout}
        , tls_{tls} {
        connect();
    }

    /// (Re)connects: a fresh connection.
    void connect() {
        close();
        stream_ = connect_loopback(port_, timeout_);
        if (tls_)
            stream_.start_tls(tls_);
        buffer_.clear();
    }

    /// Writes one request and returns without reading its answer.
    void send(http::verb method, std::string_view target, std::string body = {},
              std::initializer_list<request_header> headers = {}) {
        http::request<http::string_body> req{method,
                                             beast::string_view(target.data(), target.size()), 11};
        req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
        req.set(http::field::user_agent, "megaphone-tests");
        for (const request_header& h : headers) {
            const beast::string_view value{h.value.data(), h.value.size()};
            if (h.name.empty())
                req.set(h.field, value);
            else
                req.set(beast::string_view{h.name.data(), h.name.size()}, value);
        }
        if (!body.empty() || method == http::verb::post) {
            if (req.find(http::field::content_type) == req.end())
                req.set(http::field::content_type, "text/plain");
            req.body() = std::move(body);
            req.prepare_payload();
        }
        req.keep_alive(true);
        http::write(stream_, req);
    }

    /// POST with a JSON body (written as is).
    void send_post(std::string_view target, std::string body) {
        send(http::verb::post, target, std::move(body));
    }
    void send_json(std::string_view target, const nlohmann::json& body) {
        send(http::verb::post, target, body.dump());
    }

    /// Writes bytes as they are (for requests a well-behaved client would not send).
    void send_raw(std::string_view bytes) {
        boost::asio::write(stream_, boost::asio::buffer(bytes.data(), bytes.size()));
    }

    /// Reads one answer; throws on timeout or when the server closed the connection.
    http_reply receive() {
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        http::read(stream_, buffer_, parser);
        auto res = parser.release();
        http_reply r;
        r.status = res.result_int();
        r.body = std::move(res.body());
        for (const auto& f : res.base())
            r.headers.insert(f.name_string(), f.value());
        return r;
    }

    http_reply request(http::verb method, std::string_view target, std::string body = {},
                       std::initializer_list<request_header> headers = {}) {
        send(method, target, std::move(body), headers);
        return receive();
    }
    http_reply post(std::string_view target, std::string body) {
        return request(http::verb::post, target, std::move(body));
    }
    http_reply post_json(std::string_view target, const nlohmann::json& body) {
        return request(http::verb::post, target, body.dump());
    }
    http_reply get(std::string_view target) { return request(http::verb::get, target); }

    /// True when bytes (or the end of the stream) can be read within `within`: an answer came.
    bool readable_within(std::chrono::milliseconds within) {
        if (buffer_.size() > 0 || (stream_.ssl() && SSL_pending(stream_.ssl()) > 0))
            return true;
        pollfd p{stream_.native_handle(), POLLIN, 0};
        for (;;) {
            const int n = ::poll(&p, 1, static_cast<int>(within.count()));
            if (n < 0 && errno == EINTR)
                continue;
            return n > 0;
        }
    }

    /// Waits (up to `within`) for the server to close its end; true when it did. Bytes that
    /// arrive meanwhile are discarded.
    bool closed_by_server_within(std::chrono::milliseconds within) {
        const auto deadline = clock::now() + within;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            if (left.count() <= 0)
                return false;
            pollfd p{stream_.native_handle(), POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            char scratch[4096];
            const ssize_t got = ::recv(stream_.native_handle(), scratch, sizeof scratch, 0);
            if (got == 0)
                return true;
            if (got < 0 && errno != EINTR && errno != EAGAIN)
                return true; // reset: closed too
        }
    }

    /// Half-closes: the server reads end-of-stream, and this side can still read.
    void shutdown_send() { ::shutdown(stream_.native_handle(), SHUT_WR); }

    void close() {
        stream_.close();
        buffer_.clear();
    }
    bool is_open() const noexcept { return stream_.is_open(); }
    unsigned short port() const noexcept { return port_; }
    /// The connection (for TLS-level moves such as SSL_shutdown or a key update).
    fd_stream& stream() noexcept { return stream_; }

private:
    unsigned short port_;
    std::chrono::milliseconds timeout_;
    SSL_CTX* tls_ = nullptr;
    fd_stream stream_;
    beast::flat_buffer buffer_;
};

/// A session as created by create_session(): its sid and the whole creation answer.
struct created_session {
    std::string sid;
    std::uint64_t rid = 0; ///< the creation rid; the next request uses rid + 1
    nlohmann::json answer;
    std::string body; ///< the creation answer's bytes
};

/// Creates a JSON session at `path` with `fields` added to {"rid": rid}; throws unless the
/// answer is a 200 with a sid.
inline created_session create_session(http_client& c, std::uint64_t rid,
                                      nlohmann::json fields = nlohmann::json::object(),
                                      std::string_view path = "/comet") {
    fields["rid"] = rid;
    const http_reply r = c.post_json(path, fields);
    if (r.status != 200)
        throw std::runtime_error("create_session: status " + std::to_string(r.status) + ": " +
                                 r.body);
    created_session s;
    s.answer = r.json();
    s.body = r.body;
    if (!s.answer.contains("sid") || !s.answer["sid"].is_string())
        throw std::runtime_error("create_session: no sid in " + r.body);
    s.sid = s.answer["sid"].get<std::string>();
    s.rid = rid;
    return s;
}

/// Just the sid.
inline std::string create_sid(http_client& c, std::uint64_t rid,
                              nlohmann::json fields = nlohmann::json::object()) {
    return create_session(c, rid, std::move(fields)).sid;
}

/// The body of an ordinary request of session `sid`.
inline nlohmann::json request_body(std::string_view sid, std::uint64_t rid,
                                   nlohmann::json messages = nlohmann::json()) {
    nlohmann::json b = {{"sid", sid}, {"rid", rid}};
    if (!messages.is_null())
        b["messages"] = std::move(messages);
    return b;
}

} // namespace megaphone::test
