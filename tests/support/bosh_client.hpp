// A blocking BOSH client connection for integration tests: one keep-alive TCP connection to
// 127.0.0.1:port (fd_stream from http_client.hpp, with a receive timeout), which keeps the raw
// status line of every answer (BOSH clients such as tsung accept exactly "HTTP/1.1 200 OK") and
// reads answer bodies back with megaphone::parse_bosh_body.
//
// A BOSH client uses one connection per outstanding request: a held request occupies its
// connection until it is answered. Tests open one bosh_connection per concurrent request.
#pragma once

#include "support/http_client.hpp"
#include "transport/bosh_codec.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
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
#include <variant>
#include <vector>

namespace megaphone::test {

/// One answer as the client saw it, with its status line as sent.
struct bosh_answer {
    std::string status_line; ///< e.g. "HTTP/1.1 200 OK", without CRLF
    unsigned status = 0;
    std::string body;
    http::fields headers;

    std::string header(std::string_view name) const {
        auto it = headers.find(beast::string_view(name.data(), name.size()));
        return it == headers.end() ? std::string() : std::string(it->value());
    }
    bool has_header(std::string_view name) const {
        return headers.find(beast::string_view(name.data(), name.size())) != headers.end();
    }
    /// The body as a <body/> wrapper; nullopt when it is not one.
    std::optional<bosh_body> parsed() const {
        auto r = parse_bosh_body(body);
        if (auto* b = std::get_if<bosh_body>(&r))
            return std::move(*b);
        return std::nullopt;
    }
    /// An attribute of the <body/>; nullopt when absent (or when the body is not a <body/>).
    std::optional<std::string> attr(std::string_view name) const {
        auto b = parsed();
        if (!b)
            return std::nullopt;
        const std::string* v = b->attribute(name);
        return v ? std::optional<std::string>(*v) : std::nullopt;
    }
    /// The payloads of the <body/>, standalone; empty when it has none or is not a <body/>.
    std::vector<std::string> payloads() const {
        auto b = parsed();
        return b ? b->payloads : std::vector<std::string>{};
    }
};

/// An fd_stream that also appends every byte it reads to `log`.
class recording_stream {
public:
    recording_stream(fd_stream& s, std::string& log)
        : s_{s}
        , log_{log} {}

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
        const std::size_t n = s_.read_some(buffers, ec);
        std::size_t left = n;
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             left > 0 && it != boost::asio::buffer_sequence_end(buffers); ++it) {
            boost::asio::mutable_buffer b = *it;
            const std::size_t k = std::min(left, b.size());
            log_.append(static_cast<const char*>(b.data()), k);
            left -= k;
        }
        return n;
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
        return s_.write_some(buffers, ec);
    }
    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers) {
        return s_.write_some(buffers);
    }

private:
    fd_stream& s_;
    std::string& log_;
};

class bosh_connection {
public:
    using header_list = std::initializer_list<std::pair<http::field, std::string_view>>;

    explicit bosh_connection(unsigned short port,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5),
                             std::string target = "/bosh")
        : port_{port}
        , timeout_{timeout}
        , target_{std::move(target)} {
        connect();
    }

    void connect() {
        close();
        stream_ = connect_loopback(port_, timeout_);
        buffer_.clear();
    }

    /// Writes one request (POST to the BOSH path unless told otherwise) without reading.
    void send(std::string body, http::verb method = http::verb::post, header_list headers = {}) {
        http::request<http::string_body> req{
            method, beast::string_view(target_.data(), target_.size()), 11};
        req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
        req.set(http::field::user_agent, "megaphone-bosh-tests");
        for (const auto& [name, value] : headers)
            req.set(name, beast::string_view(value.data(), value.size()));
        if (method == http::verb::post || !body.empty()) {
            if (req.find(http::field::content_type) == req.end())
                req.set(http::field::content_type, "text/xml; charset=utf-8");
            req.body() = std::move(body);
            req.prepare_payload();
        }
        req.keep_alive(true);
        http::write(stream_, req);
    }

    /// Reads one answer; throws on timeout or when the server closed the connection.
    bosh_answer receive() {
        // The answer starts with the bytes already buffered, then what is read now.
        std::string raw(static_cast<const char*>(buffer_.data().data()), buffer_.size());
        recording_stream rec{stream_, raw};
        http::response_parser<http::string_body> parser;
        parser.body_limit(16 * 1024 * 1024);
        http::read(rec, buffer_, parser);
        auto res = parser.release();
        bosh_answer a;
        a.status_line = raw.substr(0, raw.find("\r\n"));
        a.status = res.result_int();
        a.body = std::move(res.body());
        for (const auto& f : res.base())
            a.headers.insert(f.name_string(), f.value());
        return a;
    }

    bosh_answer post(std::string body, header_list headers = {}) {
        send(std::move(body), http::verb::post, headers);
        return receive();
    }
    bosh_answer request(http::verb method, std::string body = {}, header_list headers = {}) {
        send(std::move(body), method, headers);
        return receive();
    }

    /// True when bytes (or the end of the stream) can be read within `within`: an answer came.
    bool readable_within(std::chrono::milliseconds within) {
        if (buffer_.size() > 0)
            return true;
        pollfd p{stream_.native_handle(), POLLIN, 0};
        for (;;) {
            const int n = ::poll(&p, 1, static_cast<int>(within.count()));
            if (n < 0 && errno == EINTR)
                continue;
            return n > 0;
        }
    }

    void close() {
        stream_.close();
        buffer_.clear();
    }
    bool is_open() const noexcept { return stream_.is_open(); }

private:
    unsigned short port_;
    std::chrono::milliseconds timeout_;
    std::string target_;
    fd_stream stream_;
    beast::flat_buffer buffer_;
};

} // namespace megaphone::test
