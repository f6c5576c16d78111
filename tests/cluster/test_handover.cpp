// cluster/handover.hpp on its own: a real TCP connection on loopback passed from a sender to a
// receiver over the abstract Unix socket (SCM_RIGHTS), the bytes with it; what cannot be sent
// says so (no such node, too large), and a node id taken twice on one port is refused.
#include "cluster/handover.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <random>
#include <system_error>
#include <thread>

using namespace megaphone;
using namespace std::chrono_literals;

namespace {

/// A port number no test of another process uses for hand-over names at the same time.
unsigned short some_port() {
    std::random_device rd;
    return static_cast<unsigned short>(20000 + rd() % 40000);
}

/// A connected loopback TCP pair: `client` here, `server` the side a server would accept.
struct tcp_pair {
    net::io_context ioc;
    tcp::socket client{ioc};
    tcp::socket server{ioc};
    tcp_pair() {
        tcp::acceptor a{ioc, {net::ip::make_address("127.0.0.1"), 0}};
        client.connect(a.local_endpoint());
        server = a.accept();
    }
};

/// Runs an io_context on its own thread until destroyed.
struct running {
    net::io_context ioc;
    net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(ioc);
    std::thread thread{[this] { ioc.run(); }};
    ~running() {
        work.reset();
        ioc.stop();
        thread.join();
    }
};

} // namespace

TEST_CASE("handover: a TCP connection and its bytes reach the receiver, which then owns it") {
    const unsigned short port = some_port();
    auto stats = std::make_shared<handover_stats>();
    running r;
    std::promise<std::pair<int, std::string>> got;
    handover_receiver receiver{r.ioc, port, "own",
                               [&](int fd, std::string bytes) {
                                   got.set_value({fd, std::move(bytes)});
                               },
                               stats};
    handover_sender sender{port, stats};

    tcp_pair pair;
    const std::string bytes = "GET / HTTP/1.1\r\nHost: x\r\n\r\nand what came after";
    REQUIRE(sender.send("own", pair.server.native_handle(), bytes));
    // This side lets go of its copy, as the connection does once sent: the TCP connection
    // stays open through the receiver's.
    pair.server.close();

    auto done = got.get_future();
    REQUIRE(done.wait_for(5s) == std::future_status::ready);
    auto [fd, received] = done.get();
    CHECK(received == bytes);
    // The descriptor is the same connection: what the client writes is read here, and back.
    const std::string ping = "ping";
    pair.client.write_some(net::buffer(ping));
    char buf[16] = {};
    CHECK(::recv(fd, buf, sizeof buf, 0) == 4);
    CHECK(std::string(buf, 4) == "ping");
    CHECK(::send(fd, "pong", 4, MSG_NOSIGNAL) == 4);
    char back[4] = {};
    net::read(pair.client, net::buffer(back));
    CHECK(std::string(back, 4) == "pong");
    ::close(fd);
    CHECK(stats->sent == 1);
    CHECK(stats->adopted == 1);
    CHECK(stats->declined == 0);

    // Several in a row over the same kept connection, in order.
    std::vector<std::string> seen;
    std::mutex m;
    std::condition_variable cv;
    running r2;
    handover_receiver second{r2.ioc, port, "two",
                             [&](int dup, std::string b) {
                                 ::close(dup);
                                 std::lock_guard lock{m};
                                 seen.push_back(std::move(b));
                                 cv.notify_all();
                             },
                             stats};
    tcp_pair another;
    for (int i = 0; i < 20; ++i)
        REQUIRE(sender.send("two", another.server.native_handle(), "request " + std::to_string(i)));
    std::unique_lock lock{m};
    REQUIRE(cv.wait_for(lock, 5s, [&] { return seen.size() == 20; }));
    for (int i = 0; i < 20; ++i)
        CHECK(seen[static_cast<std::size_t>(i)] == "request " + std::to_string(i));
}

TEST_CASE("handover: no receiver for the node on this machine, or too many bytes: not sent, "
          "nothing changed") {
    const unsigned short port = some_port();
    auto stats = std::make_shared<handover_stats>();
    handover_sender sender{port, stats};
    tcp_pair pair;
    CHECK_FALSE(sender.send("absent", pair.server.native_handle(), "GET / HTTP/1.1\r\n\r\n"));
    CHECK_FALSE(sender.send("absent", pair.server.native_handle(), "again, remembered absent"));

    running r;
    int adopted = 0;
    handover_receiver receiver{r.ioc, port, "big",
                               [&](int fd, std::string) {
                                   ::close(fd);
                                   ++adopted;
                               },
                               stats};
    CHECK_FALSE(
        sender.send("big", pair.server.native_handle(), std::string(handover_max_bytes + 1, 'x')));
    CHECK_FALSE(sender.send("big", pair.server.native_handle(), ""));
    CHECK(stats->sent == 0);
    // The socket is still this side's, untouched: it still carries data.
    pair.client.write_some(net::buffer(std::string("still here")));
    char buf[10] = {};
    net::read(pair.server, net::buffer(buf));
    CHECK(std::string(buf, 10) == "still here");
}

TEST_CASE("handover: a node id taken on this port by another receiver is refused at start") {
    const unsigned short port = some_port();
    running r;
    handover_receiver first{r.ioc, port, "dup", [](int fd, std::string) { ::close(fd); }, nullptr};
    CHECK_THROWS_AS(handover_receiver(
                        r.ioc, port, "dup", [](int fd, std::string) { ::close(fd); }, nullptr),
                    std::system_error);
    // Another port, or another node id, is free.
    CHECK_NOTHROW(handover_receiver(
        r.ioc, static_cast<unsigned short>(port + 1), "dup",
        [](int fd, std::string) { ::close(fd); }, nullptr));
    CHECK_NOTHROW(handover_receiver(
        r.ioc, port, "dup2", [](int fd, std::string) { ::close(fd); }, nullptr));
}

TEST_CASE("handover: a receiver that stopped is gone: the send fails and says so") {
    const unsigned short port = some_port();
    auto stats = std::make_shared<handover_stats>();
    handover_sender sender{port, stats};
    tcp_pair pair;
    {
        running r;
        handover_receiver receiver{r.ioc, port, "gone", [](int fd, std::string) { ::close(fd); },
                                   stats};
        REQUIRE(sender.send("gone", pair.server.native_handle(), "first"));
        receiver.stop();
        // Stopped on its thread: wait until the listening socket is closed there.
        std::promise<void> closed;
        net::post(r.ioc, [&] { closed.set_value(); });
        closed.get_future().wait();
    }
    // The kept connection is broken and no fresh one can be made.
    CHECK_FALSE(sender.send("gone", pair.server.native_handle(), "second"));
    CHECK(stats->declined == 1);
}
