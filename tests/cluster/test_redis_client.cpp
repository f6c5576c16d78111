// The Redis client layer against a real redis-server (one per test, on a free port): commands,
// errors, fail-fast, the queue bound, a stalled Redis (SIGSTOP), kill and restart, pub/sub with
// many channels, and stop/destroy with work in flight (run under ASan).
//
// The io_context runs until a condition holds or a deadline passes, never for a guessed time.
#include "cluster/redis_client.hpp"
#include "support/redis_server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

namespace redis = megaphone::redis;
using megaphone::test::redis_server;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// An io_context that tests run step by step until what they wait for happens.
struct io_loop {
    boost::asio::io_context ctx;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard =
        boost::asio::make_work_guard(ctx);

    template <class Pred>
    bool run_until(Pred done, milliseconds limit = 5s) {
        auto deadline = steady::now() + limit;
        while (!done()) {
            if (steady::now() >= deadline)
                return false;
            ctx.run_one_for(10ms);
        }
        return true;
    }
    /// Runs whatever is ready or becomes ready within `d` (to see that nothing more happens).
    void run_for(milliseconds d) { ctx.run_for(d); }
};

redis::endpoint endpoint_of(const redis_server& srv, int db = 0) {
    return {"127.0.0.1", srv.port(), db};
}

/// Short timeouts and a fast backoff: every recovery in these tests is bounded by them.
redis::client_options fast_client() {
    redis::client_options o;
    o.command_timeout = 300ms;
    o.connect_timeout = 300ms;
    o.backoff_min = 20ms;
    o.backoff_max = 100ms;
    return o;
}

redis::subscriber_options fast_subscriber() {
    redis::subscriber_options o;
    o.command_timeout = 300ms;
    o.connect_timeout = 300ms;
    o.keepalive = 200ms;
    o.backoff_min = 20ms;
    o.backoff_max = 100ms;
    return o;
}

struct outcome {
    bool done = false;
    std::error_code ec;
    redis::reply r;
};

outcome call(io_loop& io, redis::client& c, std::vector<std::string> argv,
             milliseconds limit = 3s) {
    auto res = std::make_shared<outcome>();
    c.command(std::move(argv), [res](std::error_code ec, redis::reply r) {
        *res = {true, ec, std::move(r)};
    });
    REQUIRE(io.run_until([&] { return res->done; }, limit));
    return *res;
}

} // namespace

TEST_CASE("redis::parse_url accepts redis://host[:port][/db] and nothing else", "[redis]") {
    auto a = redis::parse_url("redis://localhost");
    REQUIRE(a);
    CHECK(a->host == "localhost");
    CHECK(a->port == 6379);
    CHECK(a->db == 0);

    auto b = redis::parse_url("redis://127.0.0.1:6380");
    REQUIRE(b);
    CHECK(b->host == "127.0.0.1");
    CHECK(b->port == 6380);
    CHECK(b->db == 0);

    auto c = redis::parse_url("redis://redis-1.internal:7000/3");
    REQUIRE(c);
    CHECK(c->host == "redis-1.internal");
    CHECK(c->port == 7000);
    CHECK(c->db == 3);

    auto d = redis::parse_url("redis://[::1]:6379/2");
    REQUIRE(d);
    CHECK(d->host == "::1");
    CHECK(d->db == 2);

    auto e = redis::parse_url("redis://h/15");
    REQUIRE(e);
    CHECK(e->port == 6379);
    CHECK(e->db == 15);

    for (std::string_view bad : {"",
                                 "redis://",
                                 "http://h",
                                 "rediss://h",
                                 "redis:/h",
                                 "h:6379",
                                 "redis://:6379",
                                 "redis://h:",
                                 "redis://h:0",
                                 "redis://h:65536",
                                 "redis://h:+1",
                                 "redis://h:12a",
                                 "redis://h/",
                                 "redis://h/x",
                                 "redis://h/-1",
                                 "redis://h/1/2",
                                 "redis://h:1/2/",
                                 "redis://u:p@h",
                                 "redis://h?db=1",
                                 "redis://h /1",
                                 "redis://[::1",
                                 "redis://[]:1",
                                 "redis://h/99999999999"}) {
        INFO(bad);
        CHECK_FALSE(redis::parse_url(bad));
    }
}

TEST_CASE("redis::client round trip: binary strings, integers, EVAL arrays, error replies",
          "[redis]") {
    redis_server srv;
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv, 2), fast_client()};
    int connected = 0;
    c.on_connected([&] { ++connected; });
    c.start();
    REQUIRE(io.run_until([&] { return c.connected(); }));
    CHECK(connected == 1);

    const std::string key = std::string("k\0ey", 4);
    const std::string value = std::string("a\0b\xff\r\n", 6);
    auto set = call(io, c, {"SET", key, value});
    CHECK_FALSE(set.ec);
    CHECK(set.r.type == redis::reply::kind::status);
    CHECK(set.r.str == "OK");

    auto get = call(io, c, {"GET", key});
    CHECK_FALSE(get.ec);
    REQUIRE(get.r.type == redis::reply::kind::string);
    CHECK(get.r.str == value);
    CHECK(get.r.str.size() == 6);

    auto missing = call(io, c, {"GET", "missing"});
    CHECK(missing.r.is_nil());

    CHECK(call(io, c, {"INCR", "n"}).r.integer == 1);
    auto incr = call(io, c, {"INCR", "n"});
    CHECK(incr.r.type == redis::reply::kind::integer);
    CHECK(incr.r.integer == 2);

    // Lua false becomes a nil element; nested tables nested arrays.
    auto eval = call(io, c, {"EVAL", "return {1, ARGV[1], {3, false}}", "0", value});
    CHECK_FALSE(eval.ec);
    REQUIRE(eval.r.type == redis::reply::kind::array);
    REQUIRE(eval.r.elements.size() == 3);
    CHECK(eval.r.elements[0].integer == 1);
    CHECK(eval.r.elements[1].str == value);
    REQUIRE(eval.r.elements[2].elements.size() == 2);
    CHECK(eval.r.elements[2].elements[0].integer == 3);
    CHECK(eval.r.elements[2].elements[1].is_nil());

    // An error reply is a reply, not a failure.
    auto wrong = call(io, c, {"INCR", key});
    CHECK_FALSE(wrong.ec);
    CHECK(wrong.r.is_error());
    CHECK(wrong.r.str.starts_with("ERR"));
    CHECK(call(io, c, {"NOSUCHCOMMAND"}).r.is_error());

    // SELECT 2 was sent before the connection counted as up.
    CHECK(srv.cli({"-n", "2", "GET", "n"}) == "2");
    CHECK(srv.cli({"-n", "0", "EXISTS", "n"}) == "0");

    auto s = c.stats();
    CHECK(s.commands == 8);
    CHECK(s.error_replies == 2);
    CHECK(s.errors == 0);
    CHECK(s.reconnects == 0);
    CHECK(s.connected);
}

TEST_CASE("redis::client fails fast while not connected, and connects once Redis is there",
          "[redis]") {
    redis_server srv;
    srv.kill(); // its port is free now: nothing listens there
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv), fast_client()};

    // Not started: posted, never from inside command().
    std::optional<std::error_code> before;
    c.command({"PING"}, [&](std::error_code ec, redis::reply) { before = ec; });
    CHECK_FALSE(before);
    REQUIRE(io.run_until([&] { return before.has_value(); }, 1s));
    CHECK(*before == redis::errc::not_connected);

    c.start();
    io.run_for(100ms); // a few refused attempts
    CHECK_FALSE(c.connected());
    std::optional<std::error_code> during;
    auto t0 = steady::now();
    c.command({"PING"}, [&](std::error_code ec, redis::reply) { during = ec; });
    REQUIRE(io.run_until([&] { return during.has_value(); }, 1s));
    CHECK(*during == redis::errc::not_connected);
    CHECK(steady::now() - t0 < 100ms); // not after command_timeout (300 ms)
    CHECK(c.stats().errors == 2);

    srv.restart();
    REQUIRE(io.run_until([&] { return c.connected(); }));
    auto pong = call(io, c, {"PING"});
    CHECK_FALSE(pong.ec);
    CHECK(pong.r.str == "PONG");
}

TEST_CASE("redis::client refuses commands beyond max_pending with queue_full", "[redis]") {
    redis_server srv;
    io_loop io;
    auto options = fast_client();
    options.max_pending = 4;
    redis::client c{io.ctx, endpoint_of(srv), options};
    c.start();
    REQUIRE(io.run_until([&] { return c.connected(); }));

    int ok = 0, full = 0, other = 0;
    for (int i = 0; i < 10; ++i)
        c.command({"INCR", "q"}, [&](std::error_code ec, redis::reply r) {
            if (!ec && r.type == redis::reply::kind::integer)
                ++ok;
            else if (ec == redis::errc::queue_full)
                ++full;
            else
                ++other;
        });
    REQUIRE(io.run_until([&] { return ok + full + other == 10; }));
    CHECK(ok == 4);
    CHECK(full == 6);
    CHECK(other == 0);
    CHECK(srv.cli({"GET", "q"}) == "4");

    // Once answered, the slots are free again.
    CHECK(call(io, c, {"INCR", "q"}).r.integer == 5);
}

TEST_CASE("redis::client: a stalled Redis (SIGSTOP) times out without blocking, then recovers",
          "[redis]") {
    redis_server srv;
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv), fast_client()}; // command_timeout 300 ms
    int connected = 0, disconnected = 0;
    c.on_connected([&] { ++connected; });
    c.on_disconnected([&] { ++disconnected; });
    c.start();
    // The subscriber sees the stall through its keepalive (200 ms) going unconfirmed (300 ms).
    redis::subscriber sub{io.ctx, endpoint_of(srv), fast_subscriber()};
    int confirmed = 0;
    std::optional<steady::time_point> sub_down_at;
    sub.on_subscribed([&](std::string_view) { ++confirmed; });
    sub.on_disconnected([&] { sub_down_at = steady::now(); });
    sub.subscribe("s");
    sub.start();
    REQUIRE(io.run_until([&] { return c.connected() && confirmed == 1; }));
    CHECK_FALSE(call(io, c, {"SET", "before", "1"}).ec);

    srv.pause();
    auto t0 = steady::now();
    std::optional<std::error_code> first, second;
    steady::time_point first_at;
    c.command({"GET", "before"}, [&](std::error_code ec, redis::reply) {
        first = ec;
        first_at = steady::now();
    });
    c.command({"GET", "before"}, [&](std::error_code ec, redis::reply) { second = ec; });

    // Other handlers keep running while the commands wait.
    boost::asio::steady_timer timer{io.ctx, 100ms};
    std::optional<steady::time_point> timer_at;
    timer.async_wait([&](const boost::system::error_code&) { timer_at = steady::now(); });

    REQUIRE(io.run_until([&] { return first && second; }, 3s));
    REQUIRE(timer_at);
    CHECK(*timer_at - t0 >= 100ms);
    CHECK(*timer_at - t0 < 250ms);
    CHECK(*timer_at < first_at);

    CHECK(*first == redis::errc::timeout);
    CHECK(first_at - t0 >= 300ms);
    CHECK(first_at - t0 <= 900ms);
    // The connection was dropped: the other command in flight has an unknown outcome too.
    CHECK(*second == redis::errc::connection_lost);
    CHECK(disconnected == 1);
    CHECK_FALSE(c.connected());
    CHECK(c.stats().timeouts == 1);

    // While Redis stays stalled, commands fail fast (attempts to reconnect time out).
    io.run_for(200ms);
    std::optional<std::error_code> meanwhile;
    auto t1 = steady::now();
    c.command({"PING"}, [&](std::error_code ec, redis::reply) { meanwhile = ec; });
    REQUIRE(io.run_until([&] { return meanwhile.has_value(); }, 1s));
    CHECK(*meanwhile == redis::errc::not_connected);
    CHECK(steady::now() - t1 < 100ms);

    REQUIRE(io.run_until([&] { return sub_down_at.has_value(); }, 2s));
    CHECK(*sub_down_at - t0 <= 1s);

    srv.resume();
    REQUIRE(io.run_until([&] { return c.connected() && confirmed == 2; }, 5s));
    CHECK(connected == 2);
    auto after = call(io, c, {"GET", "before"});
    CHECK_FALSE(after.ec);
    CHECK(after.r.str == "1");
    CHECK(c.stats().reconnects == 1);
}

TEST_CASE("redis: kill and restart on the same port, client and subscriber recover by themselves",
          "[redis]") {
    redis_server srv{{.appendonly = true}};
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv), fast_client()};
    redis::subscriber sub{io.ctx, endpoint_of(srv), fast_subscriber()};
    int c_up = 0, c_down = 0, s_up = 0, s_down = 0, confirmed = 0;
    std::vector<std::string> received;
    c.on_connected([&] { ++c_up; });
    c.on_disconnected([&] { ++c_down; });
    sub.on_connected([&] { ++s_up; });
    sub.on_disconnected([&] { ++s_down; });
    sub.on_subscribed([&](std::string_view ch) {
        CHECK(ch == "news");
        ++confirmed;
    });
    sub.on_message([&](std::string_view ch, std::string_view data) {
        CHECK(ch == "news");
        received.emplace_back(data);
    });
    sub.subscribe("news");
    c.start();
    sub.start();
    REQUIRE(io.run_until([&] { return c.connected() && confirmed == 1; }));
    CHECK(s_up == 1);
    CHECK_FALSE(call(io, c, {"SET", "k", "v"}).ec);
    CHECK(call(io, c, {"PUBLISH", "news", "one"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 1; }));

    srv.kill();
    REQUIRE(io.run_until([&] { return c_down == 1 && s_down == 1; }, 3s));
    auto down = call(io, c, {"GET", "k"});
    CHECK(down.ec == redis::errc::not_connected);

    srv.restart();
    REQUIRE(io.run_until([&] { return c_up == 2 && confirmed == 2; }, 5s));
    CHECK(s_up == 2);
    CHECK(call(io, c, {"GET", "k"}).r.str == "v"); // appendonly: the data survived
    CHECK(call(io, c, {"PUBLISH", "news", "two"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 2; }));
    CHECK(received[1] == "two");

    SECTION("a restart that lost the data") {
        srv.restart_empty();
        REQUIRE(io.run_until([&] { return c_up == 3 && confirmed == 3; }, 5s));
        CHECK(c_down == 2);
        CHECK(s_down == 2);
        CHECK(call(io, c, {"GET", "k"}).r.is_nil());
        CHECK(call(io, c, {"PUBLISH", "news", "three"}).r.integer == 1);
        REQUIRE(io.run_until([&] { return received.size() == 3; }));
        CHECK(received[2] == "three");
        CHECK(c.stats().reconnects == 2);
        CHECK(sub.stats().reconnects == 2);
    }
}

TEST_CASE("redis::subscriber: binary channels and payloads, unsubscribe stops delivery",
          "[redis]") {
    redis_server srv;
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv), fast_client()};
    redis::subscriber sub{io.ctx, endpoint_of(srv), fast_subscriber()};
    const std::string a = "a";
    const std::string b = std::string("b\0c", 3);
    std::multiset<std::string> confirmed;
    std::vector<std::pair<std::string, std::string>> received;
    sub.on_subscribed([&](std::string_view ch) { confirmed.emplace(ch); });
    sub.on_message(
        [&](std::string_view ch, std::string_view data) { received.emplace_back(ch, data); });
    c.start();
    sub.start();
    sub.subscribe(a);
    sub.subscribe(b);
    sub.subscribe(a); // already wanted: nothing more
    REQUIRE(io.run_until([&] { return c.connected() && confirmed.size() == 2; }));
    CHECK(confirmed.count(a) == 1);
    CHECK(confirmed.count(b) == 1);
    CHECK(sub.stats().channels == 2);

    const std::string payload = std::string("x\0y\xff", 4);
    CHECK(call(io, c, {"PUBLISH", a, payload}).r.integer == 1);
    CHECK(call(io, c, {"PUBLISH", b, "second"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 2; }));
    CHECK(received[0] == std::pair{a, payload});
    CHECK(received[1] == std::pair{b, std::string{"second"}});

    sub.unsubscribe(a);
    CHECK_FALSE(sub.wanted(a));
    CHECK(sub.wanted(b));
    // Redis itself drops the subscription (not only our filter).
    REQUIRE(io.run_until(
        [&] {
            auto n = call(io, c, {"PUBSUB", "NUMSUB", a});
            return n.r.elements.size() == 2 && n.r.elements[1].integer == 0;
        },
        3s));
    CHECK(call(io, c, {"PUBLISH", a, "lost"}).r.integer == 0);
    CHECK(call(io, c, {"PUBLISH", b, "third"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 3; }));
    io.run_for(50ms);
    CHECK(received.size() == 3);
    CHECK(received[2] == std::pair{b, std::string{"third"}});
    CHECK(sub.stats().messages == 3);

    // Subscribing again is confirmed again.
    sub.subscribe(a);
    REQUIRE(io.run_until([&] { return confirmed.count(a) == 2; }));
    CHECK(call(io, c, {"PUBLISH", a, "back"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 4; }));
    CHECK(received[3].second == "back");
}

TEST_CASE("redis::subscriber: 2,000 channels subscribed, each confirmed once", "[redis]") {
    redis_server srv;
    io_loop io;
    redis::client c{io.ctx, endpoint_of(srv), fast_client()};
    redis::subscriber sub{io.ctx, endpoint_of(srv), fast_subscriber()};
    std::map<std::string, int> confirmed;
    std::vector<std::string> received;
    sub.on_subscribed([&](std::string_view ch) { ++confirmed[std::string{ch}]; });
    sub.on_message([&](std::string_view ch, std::string_view) { received.emplace_back(ch); });
    c.start();
    sub.start();
    REQUIRE(io.run_until([&] { return c.connected() && sub.connected(); }));

    constexpr int count = 2000;
    for (int i = 0; i < count; ++i)
        sub.subscribe("ch:" + std::to_string(i));
    REQUIRE(io.run_until([&] { return confirmed.size() == count; }, 10s));
    io.run_for(50ms);
    for (const auto& [ch, n] : confirmed) {
        INFO(ch);
        CHECK(n == 1);
    }
    auto numsub = call(io, c, {"PUBSUB", "NUMSUB", "ch:0", "ch:1999"});
    REQUIRE(numsub.r.elements.size() == 4);
    CHECK(numsub.r.elements[1].integer == 1);
    CHECK(numsub.r.elements[3].integer == 1);
    CHECK(call(io, c, {"PUBLISH", "ch:1234", "x"}).r.integer == 1);
    REQUIRE(io.run_until([&] { return received.size() == 1; }));
    CHECK(received[0] == "ch:1234");

    for (int i = 0; i < count; ++i)
        sub.unsubscribe("ch:" + std::to_string(i));
    CHECK(sub.stats().channels == 0);
    REQUIRE(io.run_until(
        [&] {
            return call(io, c, {"PUBSUB", "CHANNELS", "ch:*"}).r.elements.empty();
        },
        5s));
    CHECK(sub.connected());
}

TEST_CASE("redis: stop() then destroy with work in flight runs no callback and does not crash",
          "[redis]") {
    redis_server srv;
    io_loop io;
    bool stopped = false;
    int after_stop = 0, before_stop = 0;
    auto count = [&] { stopped ? ++after_stop : ++before_stop; };

    SECTION("client with a thousand commands in flight") {
        auto c = std::make_unique<redis::client>(io.ctx, endpoint_of(srv), fast_client());
        c->on_disconnected(count);
        c->start();
        REQUIRE(io.run_until([&] { return c->connected(); }));
        for (int i = 0; i < 1000; ++i)
            c->command({"INCR", "n"}, [&](std::error_code, redis::reply) { count(); });
        io.ctx.poll(); // some written, some answered
        c->stop();
        stopped = true;
        c->command({"PING"}, [&](std::error_code, redis::reply) { count(); });
        c.reset();
        io.run_for(200ms);
        CHECK(after_stop == 0);
    }
    SECTION("client destroyed without stop(), with a failure posted") {
        auto c = std::make_unique<redis::client>(io.ctx, endpoint_of(srv), fast_client());
        c->start();
        REQUIRE(io.run_until([&] { return c->connected(); }));
        c->command({"GET", "x"}, [&](std::error_code, redis::reply) { count(); });
        c->command({}, [&](std::error_code, redis::reply) { count(); }); // posted: bad_command
        stopped = true;
        c.reset();
        io.run_for(100ms);
        CHECK(after_stop == 0);
    }
    SECTION("client destroyed from inside a command's callback") {
        auto c = std::make_unique<redis::client>(io.ctx, endpoint_of(srv), fast_client());
        c->start();
        REQUIRE(io.run_until([&] { return c->connected(); }));
        int calls = 0;
        for (int i = 0; i < 100; ++i)
            c->command({"PING"}, [&](std::error_code, redis::reply) {
                ++calls;
                c.reset();
            });
        REQUIRE(io.run_until([&] { return calls > 0; }));
        io.run_for(100ms);
        CHECK(calls == 1);
    }
    SECTION("subscriber with subscriptions in flight") {
        auto sub = std::make_unique<redis::subscriber>(io.ctx, endpoint_of(srv), fast_subscriber());
        sub->on_subscribed([&](std::string_view) { count(); });
        sub->on_disconnected(count);
        sub->start();
        REQUIRE(io.run_until([&] { return sub->connected(); }));
        for (int i = 0; i < 500; ++i)
            sub->subscribe("s:" + std::to_string(i));
        io.ctx.poll();
        sub->stop();
        stopped = true;
        sub->subscribe("late");
        sub.reset();
        io.run_for(200ms);
        CHECK(after_stop == 0);
    }
    SECTION("subscriber destroyed from inside on_message") {
        redis::client c{io.ctx, endpoint_of(srv), fast_client()};
        auto sub = std::make_unique<redis::subscriber>(io.ctx, endpoint_of(srv), fast_subscriber());
        bool ready = false;
        int messages = 0;
        sub->on_subscribed([&](std::string_view) { ready = true; });
        sub->on_message([&](std::string_view, std::string_view) {
            ++messages;
            sub.reset();
        });
        sub->subscribe("m");
        sub->start();
        c.start();
        REQUIRE(io.run_until([&] { return ready && c.connected(); }));
        for (int i = 0; i < 10; ++i)
            c.command({"PUBLISH", "m", "x"}, nullptr);
        REQUIRE(io.run_until([&] { return messages > 0; }));
        io.run_for(100ms);
        CHECK(messages == 1);
    }
}
