// A WebSocket client for integration tests (Beast's websocket::stream, over TLS when asked):
// each read is an async_read run on the client's own io_context for at most a deadline
// (run_for), so a test that waits for a frame fails after it instead of hanging.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace megaphone::test {

namespace ws_detail {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using namespace std::chrono_literals;

/// One frame as read, or how the stream ended.
struct ws_event {
    std::optional<json> frame;      // a text frame, parsed
    bool binary = false;            // a binary frame came (never, from this server)
    std::optional<unsigned> closed; // the server's close code (0: closed without one)
    std::string reason;             // its reason
    bool timed_out = false;
};

struct ws_options {
    std::string protocol = "megaphone"; // empty: none offered
    std::string origin;                 // empty: no Origin header
    int receive_buffer = 0;             // SO_RCVBUF before connecting (0: the default)
};

/// A WebSocket client, over TLS (wss://) when `Tls`: then the constructor takes the client's
/// TLS context.
template <bool Tls>
class basic_ws_client {
    using next_layer = std::conditional_t<Tls, beast::ssl_stream<tcp::socket>, tcp::socket>;

public:
    /// Connects and upgrades `target`; `status` is the handshake's HTTP status (101 on
    /// success, the refusal's otherwise).
    basic_ws_client(unsigned short port, const std::string& target, ws_options o = {},
                    net::ssl::context* tls = nullptr) {
        if constexpr (Tls)
            ws_.emplace(ioc_, *tls);
        else
            ws_.emplace(ioc_);
        tcp::socket& s = beast::get_lowest_layer(*ws_);
        s.open(tcp::v4());
        if (o.receive_buffer)
            s.set_option(net::socket_base::receive_buffer_size(o.receive_buffer));
        s.connect({net::ip::make_address("127.0.0.1"), port});
        if constexpr (Tls)
            ws_->next_layer().handshake(net::ssl::stream_base::client);
        ws_->set_option(websocket::stream_base::decorator([o](websocket::request_type& req) {
            if (!o.protocol.empty())
                req.set(http::field::sec_websocket_protocol, o.protocol);
            if (!o.origin.empty())
                req.set(http::field::origin, o.origin);
        }));
        websocket::response_type res;
        beast::error_code ec;
        ws_->handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
        status = res.result_int();
        protocol = std::string(res[http::field::sec_websocket_protocol]);
    }

    /// The next frame or the end, within `within`.
    ws_event read(std::chrono::milliseconds within = 5s) {
        ws_event e;
        bool done = false;
        beast::error_code result;
        ws_->async_read(buffer_, [&](beast::error_code ec, std::size_t) {
            result = ec;
            done = true;
        });
        ioc_.restart();
        ioc_.run_for(within);
        if (!done) {
            // The stream cannot go on after a cancelled read: the test has failed anyway.
            beast::error_code ignored;
            beast::get_lowest_layer(*ws_).close(ignored);
            ioc_.restart();
            ioc_.run_for(1s);
            e.timed_out = true;
            return e;
        }
        if (result) {
            // A close frame read counts even if the TCP teardown after it failed (the server
            // may have closed its end first).
            const bool closed = result == websocket::error::closed || ws_->reason().code != 0;
            e.closed = closed ? ws_->reason().code : 0;
            e.reason = closed ? std::string(ws_->reason().reason.c_str()) : result.message();
            return e;
        }
        e.binary = ws_->got_binary();
        e.frame = json::parse(beast::buffers_to_string(buffer_.data()));
        buffer_.consume(buffer_.size());
        return e;
    }

    /// The next frame that is not a heartbeat ping; a null json when the stream ended first.
    json next(std::chrono::milliseconds within = 5s) {
        for (;;) {
            ws_event e = read(within);
            if (!e.frame)
                return json();
            if (e.frame->value("type", "") != "ping")
                return *e.frame;
        }
    }

    /// Reads until the stream ends; the close code (nullopt: timed out). Frames read meanwhile
    /// are kept in `seen`.
    std::optional<unsigned> close_code(std::chrono::milliseconds within = 5s) {
        for (;;) {
            ws_event e = read(within);
            if (e.timed_out)
                return std::nullopt;
            if (e.closed) {
                reason = e.reason;
                return e.closed;
            }
            seen.push_back(*e.frame);
        }
    }

    void send(const std::string& text) { ws_->write(net::buffer(text)); }
    void send_binary(const std::string& bytes) {
        ws_->binary(true);
        ws_->write(net::buffer(bytes));
        ws_->text(true);
    }
    /// A message in fragments of `piece` bytes (RFC 6455 5.4).
    void send_fragmented(const std::string& text, std::size_t piece) {
        for (std::size_t at = 0; at < text.size(); at += piece) {
            const bool last = at + piece >= text.size();
            ws_->write_some(last, net::buffer(text.data() + at, std::min(piece, text.size() - at)));
        }
    }
    /// Bytes as they are (frames a conforming client would not send), through TLS if any.
    void send_raw(const std::string& bytes) { net::write(ws_->next_layer(), net::buffer(bytes)); }
    /// A ping; `pongs` counts the pongs read (by read()).
    void ping() {
        ws_->control_callback([this](websocket::frame_type kind, beast::string_view) {
            if (kind == websocket::frame_type::pong)
                ++pongs;
        });
        ws_->ping({});
    }
    /// The close handshake (code 1000); the server's close code (0: none came). The TCP
    /// teardown after it may fail: the server closes first (RFC 6455 7.1.1).
    unsigned close() {
        beast::error_code ignored;
        ws_->close(websocket::close_code::normal, ignored);
        return ws_->reason().code;
    }
    /// Drops the TCP connection without a close handshake.
    void drop() {
        beast::error_code ignored;
        beast::get_lowest_layer(*ws_).close(ignored);
    }

    unsigned status = 0;
    int pongs = 0;
    std::string protocol;
    std::string reason;
    std::vector<json> seen;

private:
    net::io_context ioc_;
    std::optional<websocket::stream<next_layer>> ws_;
    beast::flat_buffer buffer_;
};

using ws_client = basic_ws_client<false>;
using wss_client = basic_ws_client<true>;

} // namespace ws_detail

using ws_detail::basic_ws_client;
using ws_detail::ws_client;
using ws_detail::ws_event;
using ws_detail::ws_options;
using ws_detail::wss_client;

} // namespace megaphone::test
