// megaphone-asio-floor: the floor server of bench/floor_server.cpp written the idiomatic way on
// Boost.Asio and Boost.Beast instead of a raw epoll loop, so that bench/run (config asio-floor:N)
// can show what the framework itself costs per message next to floor:N.
//
// The same protocol (just enough of nchan's long-poll for megaphone-loadgen --target nchan):
// GET /sub/{ch} is held; POST /pub/{ch} answers every held GET of the channel with the same
// response (built once per thread and message) and the publisher with {"subscribers":N};
// GET /pub/{ch} answers {"subscribers":N}. No sessions, ids, queues, timeouts or message store.
//
// As a typical Beast server: one net::io_context{1} per thread (--threads, default 1), each run
// by its own thread with its own acceptor on the same port (SO_REUSEPORT); per connection a
// beast::flat_buffer and, per request, a fresh http::request_parser<http::string_body> read with
// http::async_read; answers are http::response<http::string_body> written with http::async_write,
// then the next request is read. A held GET reads nothing until it is answered. A publish reaches
// the other threads with net::post. Stops on SIGTERM/SIGINT, or after --max-seconds (default
// 3600) by itself.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "floor_process.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using response = http::response<http::string_body>;
using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::atomic<std::int64_t> held_total{0};
std::atomic<std::uint64_t> message_seq{0};

class session;

struct worker {
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    // channel → connections with a held GET
    std::unordered_map<std::string, std::vector<std::shared_ptr<session>>> held;
};

std::vector<std::unique_ptr<worker>> workers;

std::shared_ptr<const response> json_answer(http::status status, std::string body,
                                            bool keep_alive) {
    auto r = std::make_shared<response>(status, 11);
    r->set(http::field::content_type, "application/json");
    r->keep_alive(keep_alive);
    r->body() = std::move(body);
    r->prepare_payload();
    return r;
}

void publish(worker& w, std::string channel, std::string body);

class session : public std::enable_shared_from_this<session> {
public:
    session(worker& w, tcp::socket socket)
        : w_(w)
        , socket_(std::move(socket)) {}

    void start() { read(); }

    /// Answers the held GET (the caller has taken it off its channel).
    void answer(std::shared_ptr<const response> r) { write(std::move(r)); }

private:
    void read() {
        parser_.emplace();
        http::async_read(socket_, buffer_, *parser_,
                         beast::bind_front_handler(&session::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec)
            return close();
        http::request<http::string_body> req = parser_->release();
        keep_alive_ = req.keep_alive();
        const std::string_view target(req.target().data(), req.target().size());
        const bool get = req.method() == http::verb::get;
        if (get && target.starts_with("/sub/")) {
            w_.held[std::string(target.substr(5))].push_back(shared_from_this());
            ++held_total;
            return; // held: nothing read until it is answered
        }
        if (req.method() == http::verb::post && target.starts_with("/pub/")) {
            const std::int64_t n = held_total.load();
            publish(w_, std::string(target.substr(5)), std::move(req.body()));
            return write(json_answer(n > 0 ? http::status::created : http::status::accepted,
                                     "{\"subscribers\":" + std::to_string(n) + "}", keep_alive_));
        }
        if (get && target.starts_with("/pub/"))
            return write(json_answer(http::status::ok,
                                     "{\"subscribers\":" + std::to_string(held_total.load()) + "}",
                                     keep_alive_));
        write(json_answer(http::status::not_found, "{}", keep_alive_));
    }

    void write(std::shared_ptr<const response> r) {
        res_ = std::move(r);
        http::async_write(socket_, *res_,
                          beast::bind_front_handler(&session::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        res_.reset();
        if (ec)
            return;
        if (!keep_alive_)
            return close();
        read();
    }

    void close() {
        beast::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
    }

    worker& w_;
    tcp::socket socket_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<const response> res_; // the answer being written
    bool keep_alive_ = true;
};

/// Answers this thread's held GETs of a channel: one response for all of them.
void deliver(worker& w, const std::string& channel, const std::string& body) {
    auto it = w.held.find(channel);
    if (it == w.held.end() || it->second.empty())
        return;
    auto r = std::make_shared<response>(http::status::ok, 11);
    r->set(http::field::content_type, "text/plain");
    r->set(http::field::last_modified, "Thu, 01 Jan 1970 00:00:01 GMT");
    r->set(http::field::etag, std::to_string(++message_seq));
    r->keep_alive(true);
    r->body() = body;
    r->prepare_payload();
    std::vector<std::shared_ptr<session>> subscribers;
    subscribers.swap(it->second);
    held_total -= static_cast<std::int64_t>(subscribers.size());
    for (auto& s : subscribers)
        s->answer(r);
}

/// A publish reaches the other threads' holders (posted to their io_contexts) and this one's.
void publish(worker& w, std::string channel, std::string body) {
    for (auto& other : workers)
        if (other.get() != &w)
            net::post(other->ioc, [o = other.get(), channel, body] { deliver(*o, channel, body); });
    deliver(w, channel, body);
}

void accept(worker& w) {
    w.acceptor.async_accept(w.ioc, [&w](beast::error_code ec, tcp::socket socket) {
        if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            std::make_shared<session>(w, std::move(socket))->start();
        }
        if (w.acceptor.is_open())
            accept(w);
    });
}

} // namespace

int main(int argc, char** argv) {
    megaphone::bench::floor_options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!o.take(argv[i], argv[i + 1])) {
            std::fprintf(
                stderr, "usage: megaphone-asio-floor [--port N] [--threads T] [--max-seconds S]\n");
            return 2;
        }
    }
    if (argc % 2 == 0) {
        std::fprintf(stderr, "megaphone-asio-floor: %s wants a value\n", argv[argc - 1]);
        return 2;
    }
    megaphone::bench::prepare_process();

    // An acceptor per thread on the same port (the first one picks it when --port is 0).
    tcp::endpoint at{net::ip::address_v4::loopback(), static_cast<unsigned short>(o.port)};
    try {
        for (unsigned i = 0; i < o.threads; ++i) {
            auto w = std::make_unique<worker>();
            w->acceptor.open(at.protocol());
            w->acceptor.set_option(net::socket_base::reuse_address(true));
            w->acceptor.set_option(reuse_port(true));
            w->acceptor.bind(at);
            w->acceptor.listen(4096);
            at = w->acceptor.local_endpoint();
            accept(*w);
            workers.push_back(std::move(w));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "megaphone-asio-floor: listen on port %u: %s\n", o.port, e.what());
        return 2;
    }

    const sigset_t set = megaphone::bench::block_stop_signals(); // (the threads inherit it)
    std::vector<std::thread> pool;
    for (auto& w : workers)
        pool.emplace_back([&w] { w->ioc.run(); });
    std::printf("listening on http://127.0.0.1:%u\n", static_cast<unsigned>(at.port()));
    std::fflush(stdout);
    megaphone::bench::wait_for_stop(set, o.max_seconds);
    for (auto& w : workers)
        w->ioc.stop();
    for (auto& t : pool)
        t.join();
    for (auto& w : workers)
        w->held.clear(); // the held connections, before their io_context goes
    workers.clear();
    return 0;
}
