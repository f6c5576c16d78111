#include "cluster/stream_relay.hpp"

#include "cluster/router.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <array>
#include <optional>

namespace megaphone {

namespace {

/// The request as the owning node needs it: as it came (every header: the WebSocket's key,
/// version, subprotocol and Origin, SSE's Last-Event-ID), Host the owner's, and the cluster's
/// headers (any the client sent are dropped: the server refused those already).
std::string relayed_request(const http::request<http::string_body>& req,
                            const stream_relay_options& o, const std::string& address) {
    std::string out;
    out.reserve(512);
    out += req.method_string();
    out += ' ';
    out += req.target();
    out += " HTTP/1.1\r\n";
    for (const auto& field : req) {
        const auto name = field.name_string();
        if (field.name() == http::field::host || field.name() == http::field::content_length ||
            field.name() == http::field::transfer_encoding ||
            beast::iequals(name, forwarded_by_header) || beast::iequals(name, cluster_key_header))
            continue;
        out += name;
        out += ": ";
        out += field.value();
        out += "\r\n";
    }
    out += "Host: " + address + "\r\n";
    out += std::string(forwarded_by_header) + ": " + o.node_id + "\r\n";
    out += std::string(cluster_key_header) + ": " + o.cluster_key + "\r\n\r\n";
    return out;
}

class relay final : public connection_taker, public std::enable_shared_from_this<relay> {
public:
    relay(net::io_context& ioc, http::request<http::string_body> request,
          const stream_relay_options& options, node_lookup lookup,
          std::shared_ptr<forwarding_stats> stats)
        : ioc_{ioc}
        , request_{std::move(request)}
        , options_{options}
        , lookup_{std::move(lookup)}
        , stats_{std::move(stats)}
        , websocket_{beast::websocket::is_upgrade(request_)}
        , owner_{ioc}
        , timer_{ioc} {}

    ~relay() override {
        if (open_)
            open_->fetch_sub(1, std::memory_order_relaxed);
    }

    void take(connection_socket socket, incoming,
              std::shared_ptr<std::atomic<std::size_t>> open) override {
        open_ = std::move(open);
        client_.emplace(std::move(socket));
        begin();
    }

    void take_tls(tls_link link, incoming) override {
        tls_ = std::make_unique<tls_link>(std::move(link));
        begin();
    }

private:
    connection_socket& client_socket() noexcept { return tls_ ? *tls_->socket : *client_; }

    void begin() {
        // The lookup may answer on another thread: back to this one.
        lookup_([self = shared_from_this()](std::string address) {
            net::post(self->ioc_, [self, address = std::move(address)]() mutable {
                self->connect(std::move(address));
            });
        });
    }

    void connect(std::string address) {
        const auto hp = split_address(address);
        if (address.empty() || !hp)
            return refuse(relay_outcome::unknown_node);
        beast::error_code ec;
        const auto ip = net::ip::make_address(hp->host, ec);
        if (ec)
            return refuse(relay_outcome::unreachable); // (the registry keeps addresses)
        head_ = relayed_request(request_, options_, address);
        request_ = {};
        timer_.expires_after(options_.connect_timeout);
        timer_.async_wait([self = shared_from_this()](beast::error_code e) {
            if (!e && !self->connected_) {
                beast::error_code ignored;
                self->owner_.close(ignored); // the connect completes with an error
            }
        });
        owner_.async_connect({ip, hp->port}, [self = shared_from_this()](beast::error_code e) {
            self->on_connect(e);
        });
    }

    void on_connect(beast::error_code ec) {
        connected_ = true;
        timer_.cancel();
        if (ec)
            return refuse(relay_outcome::unreachable);
        stats_->count(relay_outcome::relayed);
        net::async_write(owner_, net::buffer(head_),
                         [self = shared_from_this()](beast::error_code e, std::size_t) {
                             if (e)
                                 return self->finish();
                             std::string().swap(self->head_);
                             self->up_ = std::make_unique<std::array<char, 8192>>();
                             self->down_ = std::make_unique<std::array<char, 8192>>();
                             self->from_client();
                             self->from_owner();
                         });
    }

    /// The owner cannot be reached: answered here as an unknown session, then closed.
    void refuse(relay_outcome why) {
        stats_->count(why);
        head_ = websocket_
                    ? "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    : "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        to_client(net::buffer(head_),
                  [self = shared_from_this()](beast::error_code, std::size_t) { self->finish(); });
    }

    //----------------------------------------------------------------------------------------------
    // Both ways: one read and one write at a time in each direction (a TLS stream allows one of
    // each at once).

    void from_client() {
        auto done = [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            if (ec)
                return self->finish();
            net::async_write(self->owner_, net::buffer(self->up_->data(), n),
                             [self](beast::error_code e, std::size_t) {
                                 if (e)
                                     return self->finish();
                                 self->from_client();
                             });
        };
        if (tls_)
            tls_->stream->async_read_some(net::buffer(*up_), std::move(done));
        else
            client_->async_read_some(net::buffer(*up_), std::move(done));
    }

    void from_owner() {
        owner_.async_read_some(net::buffer(*down_),
                               [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                   if (ec)
                                       return self->finish();
                                   self->to_client(net::buffer(self->down_->data(), n),
                                                   [self](beast::error_code e, std::size_t) {
                                                       if (e)
                                                           return self->finish();
                                                       self->from_owner();
                                                   });
                               });
    }

    template <class Handler>
    void to_client(net::const_buffer bytes, Handler&& done) {
        if (tls_)
            net::async_write(*tls_->stream, bytes, std::forward<Handler>(done));
        else
            net::async_write(*client_, bytes, std::forward<Handler>(done));
    }

    /// Either side ended (or failed): both close, so that every pending operation ends and the
    /// relay with them. The owner's session hears its connection close, as for its own client.
    void finish() {
        if (finished_)
            return;
        finished_ = true;
        timer_.cancel();
        beast::error_code ignored;
        owner_.shutdown(tcp::socket::shutdown_both, ignored);
        owner_.close(ignored);
        if (client_ || tls_) {
            client_socket().shutdown(tcp::socket::shutdown_both, ignored);
            client_socket().close(ignored);
        }
    }

    net::io_context& ioc_;
    http::request<http::string_body> request_; // until the owner's address is known
    stream_relay_options options_;
    node_lookup lookup_;
    std::shared_ptr<forwarding_stats> stats_;
    bool websocket_;
    std::optional<connection_socket> client_; // plain HTTP: the client's socket, taken over
    std::unique_ptr<tls_link> tls_;           // HTTPS: the client's socket and TLS stream
    tcp::socket owner_;
    net::steady_timer timer_; // the connect timeout
    std::string head_;        // the request to the owner, or a refusal to the client
    std::unique_ptr<std::array<char, 8192>> up_;   // client -> owner
    std::unique_ptr<std::array<char, 8192>> down_; // owner -> client
    std::shared_ptr<std::atomic<std::size_t>> open_;
    bool connected_ = false;
    bool finished_ = false;
};

} // namespace

void relay_stream(incoming& in, const stream_relay_options& options, node_lookup lookup,
                  std::shared_ptr<forwarding_stats> stats) {
    in.taker = std::make_shared<relay>(*in.context, in.request, options, std::move(lookup),
                                       std::move(stats));
}

} // namespace megaphone
