// The JSON long-poll transport end to end (docs/PROTOCOL.md): an in-process server on loopback
// with short timeouts, real sockets, the hub at /comet (recorded), clients written with Beast.
//
// Where a test must know that the server has reached some point before it goes on, it asks the
// server: a request carries a harmless message ({"subscribe": ...}) and the test waits until the
// application has seen it. The application sees a request's messages in the same step in which
// the session then holds the request, so once the message is seen the request is held.
#include "support/http_client.hpp"
#include "support/stamps.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <boost/asio.hpp>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::http_reply;
using megaphone::test::read_publish_answer;
using megaphone::test::request_body;
using megaphone::test::stamped_position;
using megaphone::test::stamps_of;
using megaphone::test::test_options;
using megaphone::test::test_server;
using megaphone::test::unstamped;
using json = nlohmann::json;
namespace http = boost::beast::http;

namespace {

using steady = std::chrono::steady_clock;

std::chrono::milliseconds since(steady::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0);
}

/// `{"rid":N,"messages":[...]}` exactly as the server writes it (once unstamped()).
std::string data_body(std::uint64_t rid, const std::vector<std::string>& messages = {}) {
    std::string out = "{\"rid\":" + std::to_string(rid) + ",\"messages\":[";
    for (std::size_t i = 0; i < messages.size(); ++i)
        out += (i ? "," : "") + messages[i];
    return out + "]}";
}

/// What a subscriber of `channel` receives for `data`, serialized, without its stamp.
std::string envelope(const std::string& channel, const json& data) {
    return json{{"channel", channel}, {"data", data}}.dump();
}

const std::string not_found_body = R"({"type":"terminate","condition":"item-not-found"})";
const std::string bad_request_body = R"({"type":"terminate","condition":"bad-request"})";

/// POST /publish/{channel}; its answer, {"epoch": E, "offset": K, "sessions": N}.
megaphone::test::publish_answer publish_at(http_client& c, const std::string& channel,
                                           const json& data) {
    const http_reply r = c.post("/publish/" + channel, data.dump());
    REQUIRE(r.status == 200);
    INFO(r.body);
    const auto answer = read_publish_answer(r.json());
    REQUIRE(answer.has_value());
    return *answer;
}

/// POST /publish/{channel}; returns how many sessions it reached.
std::size_t publish(http_client& c, const std::string& channel, const json& data) {
    return publish_at(c, channel, data).sessions;
}

/// A subscription message, used as the "seen by the application" barrier.
json subscribe(const std::string& channel) {
    return json::array({{{"subscribe", channel}}});
}

} // namespace

//--------------------------------------------------------------------------------------------------

TEST_CASE("long poll: create answers sid, capped wait/hold, requests, inactivity, polling") {
    auto options = test_options();
    options.engine.max_wait = 5s;
    options.engine.max_hold = 2;
    options.engine.inactivity = 1500ms;
    options.engine.polling = 2s;
    test_server ts{options};
    http_client c{ts.port()};

    const http_reply r = c.post(R"(/comet)", R"({"rid": 1000, "wait": 999, "hold": 5})");
    REQUIRE(r.status == 200);
    CHECK(r.header("Content-Type") == "application/json");
    const json a = r.json();
    INFO(r.body);

    const std::string sid = a.at("sid").get<std::string>();
    REQUIRE(sid.rfind("n0-", 0) == 0);
    CHECK(std::regex_match(sid.substr(3), std::regex("[A-Za-z0-9_-]{22,}")));
    CHECK(a.at("wait") == 5);     // the server's --wait, not 999
    CHECK(a.at("hold") == 2);     // the server's --hold, not 5
    CHECK(a.at("requests") == 3); // hold + 1
    CHECK(a.at("inactivity") == 1.5);
    CHECK(a.at("polling") == 2);
    CHECK(a.at("rid") == 1000);
    CHECK(a.at("messages") == json::array());

    // Values under the caps are kept; every session gets its own sid.
    const http_reply r2 = c.post("/comet", R"({"rid": 7, "wait": 2, "hold": 1})");
    REQUIRE(r2.status == 200);
    const json b = r2.json();
    CHECK(b.at("wait") == 2);
    CHECK(b.at("hold") == 1);
    CHECK(b.at("requests") == 2);
    CHECK(b.at("rid") == 7);
    CHECK(b.at("sid") != a.at("sid"));

    // No wait, no hold: the server's wait, hold 1 (capped).
    const json d = create_session(c, 1).answer;
    CHECK(d.at("wait") == 5);
    CHECK(d.at("hold") == 1);
    CHECK(d.at("requests") == 2);
    CHECK(ts.srv().session_count() == 3);
}

TEST_CASE("long poll: a held request is answered by a publish") {
    test_server ts;
    http_client poll{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(poll, 500, {{"messages", subscribe("ch")}});

    poll.send_json("/comet", request_body(s.sid, 501, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // the request is held now
    CHECK_FALSE(poll.readable_within(50ms));

    const auto published = publish_at(backend, "ch", {{"n", 42}});
    CHECK(published.sessions == 1);
    const http_reply r = poll.receive();
    CHECK(r.status == 200);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(unstamped(r.body) == data_body(501, {envelope("ch", {{"n", 42}})}));
    CHECK(unstamped(r.body) == R"({"rid":501,"messages":[{"channel":"ch","data":{"n":42}}]})");
    // The message carries its position, the one the publish answered, first in the object.
    CHECK(published.position.offset == 1); // the channel's first message
    CHECK(r.body == R"({"rid":501,"messages":[{"epoch":")" + published.position.epoch +
                        R"(","offset":1,"channel":"ch","data":{"n":42}}]})");
}

TEST_CASE("server: an application's publish is answered later on its thread, never inside the "
          "call") {
    // The in-process bus knows the answer at once (the /publish route writes it in the same
    // turn); an application's `done` still runs after its call returns, as documented
    // (app/application.hpp), so that it may hold a lock across publish() that `done` takes.
    test_server ts;
    http_client poll{ts.port()};
    const auto s = create_session(poll, 100, {{"messages", subscribe("news")}});
    REQUIRE(ts.app().wait_messages(s.sid, 1));

    std::atomic<bool> inside{false};
    std::promise<void> told;
    struct seen {
        bool during_call = true;
        bool same_thread = false;
        megaphone::publish_result result;
    } got;
    ts.srv().with_session(s.sid, [&](megaphone::session&) {
        const auto here = std::this_thread::get_id();
        inside = true;
        ts.srv().publish("news", megaphone::packet::from(R"({"channel":"news","data":1})"),
                         [&, here](const megaphone::publish_result& r) {
                             got.during_call = inside.load();
                             got.same_thread = std::this_thread::get_id() == here;
                             got.result = r;
                             told.set_value();
                         });
        inside = false;
    });
    REQUIRE(told.get_future().wait_for(5s) == std::future_status::ready);
    CHECK_FALSE(got.during_call);
    CHECK(got.same_thread);
    CHECK(got.result.ok);
    CHECK(got.result.position.offset == 1);
    CHECK(got.result.sessions == std::size_t{1});
}

TEST_CASE("server: an answer larger than the socket takes at once is written whole, and logged "
          "with its size") {
    // Plain HTTP answers are written with one non-blocking sendmsg first; what the socket does
    // not take goes on asynchronously, and the access log counts both parts.
    const std::string log_path = std::string(MEGAPHONE_BINARY_DIR) + "/test-big-answer.log";
    std::filesystem::remove(log_path);
    auto options = test_options();
    options.log.access_log = log_path;
    const std::size_t size = 24u << 20; // more than loopback's socket buffers hold
    std::string body(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        body[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    std::size_t head_and_body = 0;
    {
        std::optional<megaphone::server> srv;
        srv.emplace(options);
        srv->route(http::verb::get, "/big/", [&body](megaphone::incoming& in, std::string_view) {
            in.ex.reply({200, megaphone::content_kind::text, megaphone::packet::from(body)});
        });
        srv->start();
        {
            http_client c{srv->port()};
            const http_reply r = c.get("/big/1");
            REQUIRE(r.status == 200);
            CHECK(r.body.size() == size);
            CHECK(r.body == body);
            // The same connection serves on.
            const http_reply again = c.get("/big/2");
            CHECK(again.body.size() == size);
            // The head as written: the status line, the fields in order, an empty line.
            std::string head = "HTTP/1.1 200 OK\r\n";
            for (const auto& field : r.headers)
                head +=
                    std::string(field.name_string()) + ": " + std::string(field.value()) + "\r\n";
            head_and_body = head.size() + 2 + size;
        }
        srv->stop();
        srv->wait();
    }
    std::ifstream in{log_path};
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    REQUIRE(lines.size() == 2);
    for (const auto& line : lines)
        CHECK_THAT(line, Catch::Contains(" bytes=" + std::to_string(head_and_body) + " "));
}

TEST_CASE("server: after a held request's answer the connection reads its next request, one "
          "sent during a long write too, and closes when idle") {
    // A held request's readiness watch goes on after its answer and wakes the next read: it must
    // read the next request whether it came during the answer's write or after, and the idle
    // timeout still applies.
    auto options = test_options();
    options.http.idle_timeout =
        2s; // long enough for a sanitizer build to read 24 MiB between requests
    const std::string big(24u << 20, 'x'); // more than loopback's socket buffers hold
    std::mutex m;
    std::condition_variable cv;
    std::optional<megaphone::exchange> held;
    std::optional<megaphone::server> srv;
    srv.emplace(options);
    srv->route(http::verb::get, "/hold/", [&](megaphone::incoming& in, std::string_view) {
        std::lock_guard lock{m};
        held = in.ex; // not answered here: the connection holds it and watches
        cv.notify_all();
    });
    srv->route(http::verb::get, "/release/", [&](megaphone::incoming& in, std::string_view what) {
        std::optional<megaphone::exchange> ex;
        {
            std::lock_guard lock{m};
            ex.swap(held);
        }
        if (ex)
            ex->reply({200, megaphone::content_kind::text,
                       megaphone::packet::from(what == "big" ? std::string_view{big} : what)});
        in.ex.reply({ex ? 200u : 404u, megaphone::content_kind::text, megaphone::packet::from("")});
    });
    srv->route(http::verb::get, "/echo/", [](megaphone::incoming& in, std::string_view what) {
        in.ex.reply({200, megaphone::content_kind::text, megaphone::packet::from(what)});
    });
    srv->start();
    {
        http_client c{srv->port()};
        // Each release on a fresh connection: one left idle meanwhile (a slow sanitizer build
        // reading 24 MiB) would meet the short idle timeout.
        const auto release = [&](std::string_view target) {
            return http_client{srv->port()}.get(target).status;
        };
        const auto hold = [&](std::string_view target) {
            c.send(http::verb::get, target);
            std::unique_lock lock{m};
            REQUIRE(cv.wait_for(lock, 10s, [&] { return held.has_value(); }));
        };

        // The next request comes while the large answer is still being written.
        hold("/hold/1");
        REQUIRE(release("/release/big") == 200);
        c.send(http::verb::get, "/echo/during");
        const http_reply first = c.receive();
        CHECK(first.body.size() == big.size());
        CHECK(c.receive().body == "during");

        // The next request comes after the answer.
        hold("/hold/2");
        REQUIRE(release("/release/small") == 200);
        CHECK(c.receive().body == "small");
        CHECK(c.get("/echo/after").body == "after");

        // Nothing comes after the answer: the idle timeout closes the connection.
        hold("/hold/3");
        REQUIRE(release("/release/last") == 200);
        CHECK(c.receive().body == "last");
        CHECK(c.closed_by_server_within(10s));
    }
    srv->stop();
    srv->wait();
}

TEST_CASE("long poll: published messages are stamped with the channel's epoch and offsets 1, 2, "
          "3...") {
    test_server ts;
    http_client poll{ts.port()}, other{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(poll, 100, {{"messages", subscribe("ch")}});
    const auto t = create_session(other, 200, {{"messages", subscribe("elsewhere")}});

    // Three publishes to "ch" while the session holds no request: queued, then one answer.
    std::vector<stamped_position> answered;
    for (const json& data : {json{{"n", 1}}, json("two"), json::object()})
        answered.push_back(publish_at(backend, "ch", data).position);
    // Another channel has a stream of its own: its own epoch, from offset 1.
    const auto elsewhere = publish_at(backend, "elsewhere", {{"n", 1}});

    const http_reply r = poll.post_json("/comet", request_body(s.sid, 101));
    REQUIRE(r.status == 200);
    INFO(r.body);
    // Every envelope is an object, whatever its data: each is stamped.
    CHECK(unstamped(r.body) == data_body(101, {envelope("ch", {{"n", 1}}), envelope("ch", "two"),
                                               envelope("ch", json::object())}));
    const auto stamps = stamps_of(r.body);
    REQUIRE(stamps.size() == 3);
    CHECK_FALSE(stamps[0].epoch.empty());
    CHECK(stamps[0].offset == 1);
    CHECK(stamps[1] == stamped_position{stamps[0].epoch, 2});
    CHECK(stamps[2] == stamped_position{stamps[0].epoch, 3});
    CHECK(stamps == answered); // the positions POST /publish answered
    const json got = r.json().at("messages");
    REQUIRE(got.size() == 3);
    for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].at("epoch") == stamps[0].epoch);
        CHECK(got[i].at("offset") == i + 1);
    }

    const http_reply r2 = other.post_json("/comet", request_body(t.sid, 201));
    CHECK(r2.body == R"({"rid":201,"messages":[{"epoch":")" + elsewhere.position.epoch +
                         R"(","offset":1,"channel":"elsewhere","data":{"n":1}}]})");
    CHECK(elsewhere.position.offset == 1);
    CHECK_FALSE(elsewhere.position.epoch.empty());
    CHECK(elsewhere.position.epoch != stamps[0].epoch);

    // The stream goes on from there.
    const auto fourth = publish_at(backend, "ch", 4);
    CHECK(fourth.position == stamped_position{stamps[0].epoch, 4});
    CHECK(fourth.sessions == 1);
}

TEST_CASE("long poll: a publish to a channel name that is not UTF-8 is refused, nothing else "
          "changes") {
    test_server ts;
    http_client poll{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(poll, 700, {{"messages", subscribe("ch")}});
    poll.send_json("/comet", request_body(s.sid, 701));
    REQUIRE(ts.app().wait_messages(s.sid, 1));

    // Invalid UTF-8, an overlong '/', a surrogate, a control character: 400, not a crash.
    for (const char* name : {"%FF", "%C0%AF", "%ED%A0%80", "a%01b"}) {
        const http_reply r = backend.post(std::string("/publish/") + name, R"({"a":1})");
        CHECK(r.status == 400);
        CHECK(r.json() == json{{"error", "bad channel name"}});
    }
    // UTF-8 names work, and the held request of the bystander still gets its message.
    CHECK(publish(backend, "caf%C3%A9", "x") == 0);
    CHECK(publish(backend, "ch", {{"n", 1}}) == 1);
    const http_reply r = poll.receive();
    CHECK(unstamped(r.body) == R"({"rid":701,"messages":[{"channel":"ch","data":{"n":1}}]})");
}

TEST_CASE("server: an exception in a route is that request's 500, the server serves on") {
    megaphone::server srv{test_options()};
    srv.route(http::verb::post, "/boom/", [](megaphone::incoming& in, std::string_view rest) {
        if (rest == "throw")
            throw std::runtime_error("route failed on purpose");
        in.ex.reply({200, megaphone::content_kind::text, megaphone::packet::from("fine")});
    });
    srv.start();
    {
        http_client c{srv.port()};
        const http_reply bad = c.post("/boom/throw", "x");
        CHECK(bad.status == 500);
        CHECK(bad.body == "internal error\n");
        const http_reply good = c.post("/boom/ok", "x"); // same connection
        CHECK(good.status == 200);
        CHECK(good.body == "fine");
    }
    srv.stop();
    srv.wait();
}

TEST_CASE("long poll: wait expiry answers an empty message list after the configured wait") {
    auto options = test_options();
    options.engine.max_wait = 1s;
    test_server ts{options};
    http_client c{ts.port()};
    const auto s = create_session(c, 10);
    REQUIRE(s.answer.at("wait") == 1);

    const auto t0 = steady::now();
    const http_reply r = c.post_json("/comet", request_body(s.sid, 11));
    const auto elapsed = since(t0);
    CHECK(r.status == 200);
    CHECK(r.body == R"({"rid":11,"messages":[]})");
    CHECK(elapsed >= 1s - 50ms);
    CHECK(elapsed < 1s + 1s);

    // The session lives on: the next request is held and gets data.
    http_client backend{ts.internal_port()};
    c.send_json("/comet", request_body(s.sid, 12, subscribe("later")));
    REQUIRE(ts.app().wait_messages(s.sid, 1));
    CHECK(publish(backend, "later", "x") == 1);
    CHECK(unstamped(c.receive().body) == data_body(12, {envelope("later", "x")}));
}

TEST_CASE("long poll: inactivity closes the session, and its next request gets 404") {
    auto options = test_options();
    options.engine.inactivity = 500ms;
    options.engine.max_wait = 5s;
    test_server ts{options};
    http_client c{ts.port()}, held{ts.port()}, backend{ts.internal_port()};

    const auto t0 = steady::now();
    const auto idle = create_session(c, 100);
    // A second session holds a request all along: holding keeps it alive.
    const auto busy = create_session(held, 200, {{"messages", subscribe("busy")}});
    held.send_json("/comet", request_body(busy.sid, 201, subscribe("busy")));
    REQUIRE(ts.app().wait_messages(busy.sid, 2));

    const auto why = ts.app().wait_closed(idle.sid, 5s);
    const auto elapsed = since(t0);
    REQUIRE(why.has_value());
    CHECK(*why == close_reason::inactivity);
    CHECK(elapsed >= 500ms - 50ms);
    CHECK(elapsed < 500ms + 2s);

    const http_reply r = c.post_json("/comet", request_body(idle.sid, 101));
    CHECK(r.status == 404);
    CHECK(r.body == not_found_body);

    // Another inactivity period later, the session that holds a request is still there.
    CHECK_FALSE(ts.app().wait_closed(busy.sid, 700ms).has_value());
    CHECK(publish(backend, "busy", 1) == 1);
    CHECK(unstamped(held.receive().body) == data_body(201, {envelope("busy", 1)}));
}

TEST_CASE("long poll: a client closing its socket while its request is held is noticed at once") {
    // The wait is long (30 s): only noticing the close can explain what happens next.
    auto options = test_options();
    options.engine.max_wait = 30s;
    options.engine.inactivity = 1s;
    test_server ts{options};
    http_client c1{ts.port()}, c2{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(c1, 1000, {{"wait", 30}, {"messages", subscribe("ch")}});
    REQUIRE(s.answer.at("wait") == 30);

    c1.send_json("/comet", request_body(s.sid, 1001, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // held

    SECTION("half close: the server closes its end at once, and a publish stays queued") {
        // The client stops sending (FIN). The server's answer to that is to report the loss to
        // the session, then close its own end: seeing that close is seeing the loss reported.
        const auto t0 = steady::now();
        c1.shutdown_send();
        REQUIRE(c1.closed_by_server_within(3s));
        CHECK(since(t0) < 1s);

        // The session no longer holds a request: the publish is queued, not written into the
        // dead connection.
        CHECK(publish(backend, "ch", "after-close") == 1);

        SECTION("the next rid gets it at once") {
            const auto t1 = steady::now();
            c2.send_json("/comet", request_body(s.sid, 1002));
            REQUIRE(c2.readable_within(2s));
            const http_reply r = c2.receive();
            CHECK(since(t1) < 1s);
            CHECK(r.status == 200);
            CHECK(unstamped(r.body) == data_body(1002, {envelope("ch", "after-close")}));

            // The lost request left nothing behind: a held request plus an early one are two
            // requests, within the window of a hold-1 session.
            http_client c3{ts.port()}, c4{ts.port()};
            c2.send_json("/comet", request_body(s.sid, 1003, subscribe("ch")));
            REQUIRE(ts.app().wait_messages(s.sid, 3)); // 1003 held
            c3.send_json("/comet", request_body(s.sid, 1005));
            CHECK_FALSE(c3.readable_within(200ms)); // early: waits for 1004, not refused
            c4.send_json("/comet", request_body(s.sid, 1004));
            CHECK(c2.receive().body == data_body(1003));
            CHECK(c4.receive().body == data_body(1004));
            CHECK(publish(backend, "ch", "late") == 1);
            CHECK(unstamped(c3.receive().body) == data_body(1005, {envelope("ch", "late")}));
        }
        SECTION("the same rid sent again is held again and gets it at once") {
            const auto t1 = steady::now();
            c2.send_json("/comet", request_body(s.sid, 1001));
            REQUIRE(c2.readable_within(2s));
            const http_reply r = c2.receive();
            CHECK(since(t1) < 1s);
            CHECK(r.status == 200);
            CHECK(unstamped(r.body) == data_body(1001, {envelope("ch", "after-close")}));
            // Its messages were delivered the first time only.
            CHECK(ts.app().snapshot().messages_of(s.sid).size() == 2);
        }
        CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
    }
    SECTION("full close: the session stops holding at once, so its inactivity timer starts") {
        // With no request held, a session dies after `inactivity` (1 s); while one is held it
        // cannot (the wait is 30 s). Dying about 1 s after the close means the close was seen.
        const auto t0 = steady::now();
        c1.close();
        const auto why = ts.app().wait_closed(s.sid, 10s);
        REQUIRE(why.has_value());
        CHECK(*why == close_reason::inactivity);
        CHECK(since(t0) >= 1s - 50ms);
        CHECK(since(t0) < 1s + 1500ms);
    }
}

TEST_CASE("long poll: a repeated rid gets the byte-identical response") {
    test_server ts;
    http_client c{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(c, 4000, {{"messages", subscribe("ch")}});

    CHECK(publish(backend, "ch", {{"text", "héllo"}, {"n", 1.5}}) == 1);
    const http_reply first = c.post_json("/comet", request_body(s.sid, 4001, subscribe("x")));
    REQUIRE(first.status == 200);
    REQUIRE(unstamped(first.body) ==
            data_body(4001, {envelope("ch", {{"text", "héllo"}, {"n", 1.5}})}));
    REQUIRE(stamps_of(first.body).size() == 1);

    for (int i = 0; i < 3; ++i) {
        const http_reply again = c.post_json("/comet", request_body(s.sid, 4001, subscribe("x")));
        CHECK(again.status == 200);
        CHECK(again.body == first.body);
    }
    // The creation answer is kept too (the window holds the last `requests` = 2 answers).
    const http_reply created_again = c.post_json("/comet", json{{"sid", s.sid}, {"rid", 4000}});
    CHECK(created_again.status == 200);
    CHECK(created_again.body == s.body);

    // Repeats deliver no message twice, and the session goes on.
    CHECK(ts.app().snapshot().messages_of(s.sid).size() == 2);
    CHECK(publish(backend, "ch", 2) == 1);
    CHECK(unstamped(c.post_json("/comet", request_body(s.sid, 4002)).body) ==
          data_body(4002, {envelope("ch", 2)}));
}

TEST_CASE("long poll: an early rid waits for the gap") {
    auto options = test_options();
    options.engine.max_hold = 2;
    test_server ts{options};
    http_client c0{ts.port()}, c1{ts.port()}, c2{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(c0, 50, {{"hold", 2}, {"messages", subscribe("ch")}});
    REQUIRE(s.answer.at("requests") == 3);

    // 52 first, on its own connection; then 51 on another.
    c2.send_json("/comet", request_body(s.sid, 52, json::array({{{"subscribe", "second"}}})));
    // 52 is not answered: it waits for 51 (the pause also lets it reach the server first, so
    // the early path is the one taken; the outcome must be the same either way).
    CHECK_FALSE(c2.readable_within(100ms));
    c1.send_json("/comet", request_body(s.sid, 51, json::array({{{"subscribe", "first"}}})));
    REQUIRE(ts.app().wait_messages(s.sid, 3)); // both processed: both held (hold 2)

    // The application saw the messages in rid order.
    const auto seen = ts.app().snapshot().messages_of(s.sid);
    REQUIRE(seen.size() == 3);
    CHECK(seen[1] == R"({"subscribe":"first"})");
    CHECK(seen[2] == R"({"subscribe":"second"})");

    // Data goes to the oldest held request first: 51 gets the first publish, 52 the second.
    CHECK(publish(backend, "ch", "one") == 1);
    const http_reply r1 = c1.receive();
    CHECK(unstamped(r1.body) == data_body(51, {envelope("ch", "one")}));
    CHECK_FALSE(c2.readable_within(50ms));
    CHECK(publish(backend, "ch", "two") == 1);
    const http_reply r2 = c2.receive();
    CHECK(unstamped(r2.body) == data_body(52, {envelope("ch", "two")}));
}

TEST_CASE("long poll: a rid beyond the window terminates the session") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 300); // hold 1: a window of 2 requests
    REQUIRE(s.answer.at("requests") == 2);

    SECTION("too far ahead") {
        const http_reply r = c.post_json("/comet", request_body(s.sid, 303));
        CHECK(r.status == 404);
        CHECK(r.body == not_found_body);
    }
    SECTION("too far behind") {
        const http_reply r = c.post_json("/comet", request_body(s.sid, 290));
        CHECK(r.status == 404);
        CHECK(r.body == not_found_body);
    }
    const auto why = ts.app().wait_closed(s.sid, 5s);
    REQUIRE(why.has_value());
    CHECK(*why == close_reason::item_not_found);
    const http_reply after = c.post_json("/comet", request_body(s.sid, 301));
    CHECK(after.status == 404);
    CHECK(after.body == not_found_body);
    CHECK(ts.srv().session_count() == 0);
}

TEST_CASE("long poll: with hold 1, a second request releases the held one and is held itself") {
    test_server ts;
    http_client c1{ts.port()}, c2{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(c1, 70, {{"hold", 1}, {"messages", subscribe("ch")}});

    c1.send_json("/comet", request_body(s.sid, 71, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // 71 held
    c2.send_json("/comet", request_body(s.sid, 72, subscribe("ch")));

    const http_reply released = c1.receive();
    CHECK(released.status == 200);
    CHECK(released.body == R"({"rid":71,"messages":[]})");

    REQUIRE(ts.app().wait_messages(s.sid, 3));
    CHECK_FALSE(c2.readable_within(100ms)); // held, not answered
    CHECK(publish(backend, "ch", "for-72") == 1);
    CHECK(unstamped(c2.receive().body) == data_body(72, {envelope("ch", "for-72")}));
}

TEST_CASE("long poll: malformed JSON gets 400 while another session keeps long-polling") {
    test_server ts;
    http_client poll{ts.port()}, bad{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(poll, 900, {{"messages", subscribe("ch")}});
    poll.send_json("/comet", request_body(s.sid, 901, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2));

    const std::vector<std::string> bodies = {
        "",
        "{",
        "nope",
        R"({"rid": 1,})",
        "[]",
        "42",
        R"({"rid": "1"})",
        R"({"sid": ")" + s.sid + R"(", "rid": "x"})",
        R"({"sid": ")" + s.sid + R"(", "rid": 902, "messages": 3})",
        std::string("{\"rid\":1,\"messages\":[\"\xff\xfe\"]}"),
        std::string(60000, '['), // under --max-body (64 KiB), far over the depth limit
    };
    for (const auto& body : bodies) {
        INFO("body: " << body.substr(0, 60));
        const http_reply r = bad.post("/comet", body);
        CHECK(r.status == 400);
        CHECK(r.header("Content-Type") == "application/json");
        CHECK(r.body == bad_request_body);
    }

    CHECK_FALSE(poll.readable_within(50ms));
    CHECK(publish(backend, "ch", "still here") == 1);
    CHECK(unstamped(poll.receive().body) == data_body(901, {envelope("ch", "still here")}));
    CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
}

namespace {

/// A temporary directory tree, removed at the end.
struct temp_tree {
    std::filesystem::path base;
    temp_tree() {
        std::string templ = (std::filesystem::temp_directory_path() / "megaphone-it-XXXXXX");
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        base = templ;
    }
    ~temp_tree() {
        std::error_code ec;
        std::filesystem::remove_all(base, ec);
    }
    void write(const std::filesystem::path& rel, const std::string& content) const {
        std::filesystem::create_directories((base / rel).parent_path());
        std::ofstream{base / rel, std::ios::binary} << content;
    }
};

} // namespace

TEST_CASE("long poll: path traversal on static files is refused") {
    temp_tree tree;
    tree.write("www/index.html", "<h1>home</h1>");
    tree.write("www/app.js", "console.log(1)");
    tree.write("www/style.css", "body{}");
    tree.write("www/sub/page.txt", "page");
    tree.write("outside/secret.txt", "TOP-SECRET");
    std::filesystem::create_symlink(tree.base / "outside/secret.txt", tree.base / "www/escape.txt");
    std::filesystem::create_directory_symlink(tree.base / "outside", tree.base / "www/escdir");

    auto options = test_options();
    options.static_dir = tree.base / "www";
    test_server ts{options};
    http_client c{ts.port()};

    struct ok_case {
        std::string target, body, type;
    };
    for (const ok_case& k : std::vector<ok_case>{
             {"/", "<h1>home</h1>", "text/html; charset=utf-8"},
             {"/index.html", "<h1>home</h1>", "text/html; charset=utf-8"},
             {"/app.js", "console.log(1)", "text/javascript; charset=utf-8"},
             {"/style.css?v=3", "body{}", "text/css; charset=utf-8"},
             {"/sub/page.txt", "page", "text/plain; charset=utf-8"},
             {"/sub/%70age.txt", "page", "text/plain; charset=utf-8"},
         }) {
        INFO(k.target);
        const http_reply r = c.get(k.target);
        CHECK(r.status == 200);
        CHECK(r.body == k.body);
        CHECK(r.header("Content-Type") == k.type);
    }

    const std::string abs_secret = (tree.base / "outside/secret.txt").string();
    for (const std::string& target : std::vector<std::string>{
             "/../outside/secret.txt",
             "/sub/../../outside/secret.txt",
             "/%2e%2e/outside/secret.txt",
             "/%2E%2E/outside/secret.txt",
             "/.%2e/outside/secret.txt",
             "/%2e%2e%2foutside%2fsecret.txt",
             "/sub%2f..%2f..%2foutside%2fsecret.txt",
             "/..%5coutside%5csecret.txt",
             "/sub/..\\..\\outside/secret.txt",
             "/" + abs_secret,
             "/%2F" + abs_secret.substr(1),
             "%2F" + abs_secret.substr(1),
             abs_secret,
             "/escape.txt",
             "/escdir/secret.txt",
             "/sub/page.txt%00.html",
             "/missing.html",
             "/sub",
         }) {
        INFO(target);
        const http_reply r = c.get(target);
        CHECK(r.status == 404);
        CHECK(r.body.find("TOP-SECRET") == std::string::npos);
    }
}

//--------------------------------------------------------------------------------------------------
// Many sessions at once: one async client (one thread) drives every connection.

namespace {

namespace asio = boost::asio;
using asio_tcp = asio::ip::tcp;

/// One session of the fan-out test: create, then one request held until its data comes.
struct fan_client : std::enable_shared_from_this<fan_client> {
    fan_client(asio::io_context& ioc, asio_tcp::endpoint server, int index,
               std::atomic<int>& remaining, std::function<void()> all_done)
        : socket{ioc}
        , endpoint{server}
        , n{index}
        , remaining_{remaining}
        , all_done_{std::move(all_done)} {}

    void start() {
        socket.async_connect(endpoint, [self = shared_from_this()](boost::system::error_code ec) {
            if (ec)
                return self->fail("connect", ec);
            self->write(json{{"rid", 10}, {"wait", 30}, {"hold", 1}}, [](fan_client& me) {
                me.read([](fan_client& me2) {
                    if (me2.response.result_int() != 200)
                        return me2.fail("create: " + me2.response.body(), {});
                    me2.sid = json::parse(me2.response.body()).at("sid").get<std::string>();
                    me2.write(request_body(me2.sid, 11, subscribe(me2.channel())),
                              [](fan_client& me3) {
                                  me3.read([](fan_client& me4) {
                                      me4.status = me4.response.result_int();
                                      me4.body = me4.response.body();
                                      me4.finish();
                                  });
                              });
                });
            });
        });
    }

    std::string channel() const { return "c" + std::to_string(n); }
    std::string payload() const { return "payload-" + std::to_string(n * 7919 % 100003); }

    template <class Next>
    void write(const json& body, Next next) {
        request = http::request<http::string_body>{http::verb::post, "/comet", 11};
        request.set(http::field::host, "127.0.0.1");
        request.set(http::field::content_type, "text/plain");
        request.body() = body.dump();
        request.prepare_payload();
        http::async_write(
            socket, request,
            [self = shared_from_this(), next](boost::system::error_code ec, std::size_t) {
                if (ec)
                    return self->fail("write", ec);
                next(*self);
            });
    }

    template <class Next>
    void read(Next next) {
        response = {};
        http::async_read(
            socket, buffer, response,
            [self = shared_from_this(), next](boost::system::error_code ec, std::size_t) {
                if (ec)
                    return self->fail("read", ec);
                next(*self);
            });
    }

    void fail(const std::string& what, boost::system::error_code ec) {
        error = what + (ec ? ": " + ec.message() : std::string());
        finish();
    }
    void finish() {
        boost::system::error_code ignored;
        socket.close(ignored);
        if (--remaining_ == 0)
            all_done_();
    }

    asio_tcp::socket socket;
    asio_tcp::endpoint endpoint;
    int n;
    std::atomic<int>& remaining_;
    std::function<void()> all_done_;
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
    std::string sid;
    unsigned status = 0;
    std::string body;
    std::string error;
};

} // namespace

TEST_CASE("long poll: 1,000 concurrent sessions each get their own data") {
    constexpr int sessions = 1000;
    // Two descriptors per session (client and server end) plus slack.
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    if (lim.rlim_cur < 3 * sessions) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 3 * sessions);
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    REQUIRE(lim.rlim_cur >= 2 * sessions + 64);

    auto options = test_options();
    options.engine.max_wait = 30s;
    options.engine.inactivity = 30s;
    test_server ts{options};

    asio::io_context ioc;
    asio::steady_timer deadline{ioc};
    std::atomic<int> remaining{sessions};
    std::vector<std::shared_ptr<fan_client>> clients;
    const asio_tcp::endpoint server{asio::ip::make_address("127.0.0.1"), ts.port()};
    for (int i = 0; i < sessions; ++i)
        clients.push_back(std::make_shared<fan_client>(ioc, server, i, remaining,
                                                       [&deadline] { deadline.cancel(); }));
    for (auto& c : clients)
        c->start();
    // Nothing may hang: after 30 s every connection is closed, failing its read.
    deadline.expires_after(30s);
    deadline.async_wait([&clients](boost::system::error_code ec) {
        if (ec)
            return;
        for (auto& c : clients) {
            boost::system::error_code ignored;
            c->socket.close(ignored);
        }
    });
    std::thread io{[&ioc] { ioc.run(); }};
    // Whatever fails below, the client thread is stopped and joined.
    struct joiner {
        asio::io_context& ioc;
        std::thread& t;
        ~joiner() {
            if (t.joinable()) {
                ioc.stop();
                t.join();
            }
        }
    } join_on_exit{ioc, io};

    // Every session has sent its request (with its subscription) and the server holds it.
    const bool all_held = ts.app().wait_for(
        [](const megaphone::test::recording& r) { return r.messages.size() >= sessions; }, 30s);
    CHECK(all_held);
    std::vector<stamped_position> positions(sessions); // of each session's one message
    if (all_held) {
        CHECK(ts.srv().session_count() == sessions);
        http_client backend{ts.internal_port()};
        int reached = 0;
        for (auto& c : clients) {
            const auto published = publish_at(backend, c->channel(), c->payload());
            reached += static_cast<int>(published.sessions);
            positions[static_cast<std::size_t>(c->n)] = published.position;
        }
        CHECK(reached == sessions);
    }
    io.join();

    int ok = 0;
    for (auto& c : clients) {
        INFO("session " << c->n << ": " << c->error);
        const std::string expected = data_body(11, {envelope(c->channel(), c->payload())});
        // Each channel's first message: offset 1 in the epoch POST /publish answered.
        const std::vector<stamped_position> expected_stamps = {
            {positions[static_cast<std::size_t>(c->n)].epoch, 1}};
        if (c->error.empty() && c->status == 200 && unstamped(c->body) == expected &&
            stamps_of(c->body) == expected_stamps)
            ++ok;
        else {
            CHECK(unstamped(c->body) == expected); // reports the first few that differ
            CHECK(stamps_of(c->body) == expected_stamps);
        }
        if (c->n - ok > 5)
            break;
    }
    CHECK(ok == sessions);
}

TEST_CASE("long poll: terminate answers the held request and the session is gone") {
    test_server ts;
    http_client c1{ts.port()}, c2{ts.port()};
    const auto s = create_session(c1, 600, {{"messages", subscribe("ch")}});
    c1.send_json("/comet", request_body(s.sid, 601, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2));

    json term = request_body(s.sid, 602, json::array({{{"subscribe", "last words"}}}));
    term["type"] = "terminate";
    const http_reply r = c2.post_json("/comet", term);
    CHECK(r.status == 200);
    CHECK(r.body == R"({"rid":602,"type":"terminate"})");

    const http_reply held = c1.receive();
    CHECK(held.status == 200);
    CHECK(held.body == R"({"rid":601,"type":"terminate"})");
    CHECK_FALSE(held.json().contains("condition"));

    const auto why = ts.app().wait_closed(s.sid, 5s);
    REQUIRE(why.has_value());
    CHECK(*why == close_reason::client_terminate);
    // Its messages were delivered first.
    const auto seen = ts.app().snapshot().messages_of(s.sid);
    REQUIRE(seen.size() == 3);
    CHECK(seen.back() == R"({"subscribe":"last words"})");

    const http_reply after = c2.post_json("/comet", request_body(s.sid, 603));
    CHECK(after.status == 404);
    CHECK(after.body == not_found_body);
}

TEST_CASE("long poll: limits and errors: max body, unknown sid, missing rid, CORS preflight") {
    auto options = test_options();
    options.http.max_body = 1024;
    test_server ts{options};
    http_client c{ts.port()};

    SECTION("a body over --max-body gets 413 policy-violation and the connection is closed") {
        const std::string big = R"({"rid":1,"messages":[")" + std::string(2000, 'x') + "\"]}";
        const http_reply r = c.post("/comet", big);
        CHECK(r.status == 413);
        CHECK(r.header("Content-Type") == "application/json");
        CHECK(r.body == R"({"type":"terminate","condition":"policy-violation"})");
        CHECK(r.header("Connection") == "close");
        CHECK(c.closed_by_server_within(2s));

        // Far over the limit: the server answers before the body is in, and the client may find
        // the connection closed before it has written everything. The answer is there anyway.
        c.connect();
        try {
            c.send_post("/comet", R"({"rid":1,"messages":[")" + std::string(1 << 20, 'x') + "\"]}");
        } catch (const boost::system::system_error&) {
            // EPIPE / ECONNRESET while writing: expected, read the answer all the same
        }
        const http_reply huge = c.receive();
        CHECK(huge.status == 413);
        CHECK(huge.body == R"({"type":"terminate","condition":"policy-violation"})");

        // Exactly at the limit is fine.
        std::string at_limit = R"({"rid":1,"messages":[""]})";
        at_limit.insert(at_limit.size() - 3, std::string(1024 - at_limit.size(), 'y'));
        REQUIRE(at_limit.size() == 1024);
        c.connect();
        CHECK(c.post("/comet", at_limit).status == 200);
    }
    SECTION("an unknown sid gets 404 item-not-found") {
        for (const std::string& sid : std::vector<std::string>{
                 "n0-0AAAAAAAAAAAAAAAAAAAAAAA", "n0-1AAAAAAAAAAAAAAAAAAAAAAA",
                 "n0-zAAAAAAAAAAAAAAAAAAAAAAA", "nonsense", "n0-", std::string(300, 'a')}) {
            INFO(sid);
            const http_reply r = c.post_json("/comet", request_body(sid, 5));
            CHECK(r.status == 404);
            CHECK(r.body == not_found_body);
        }
    }
    SECTION("a missing rid gets 400 bad-request") {
        const auto s = create_session(c, 1);
        for (const json& body : {json{{"sid", s.sid}}, json::object(),
                                 json{{"sid", s.sid}, {"messages", json::array()}}}) {
            const http_reply r = c.post_json("/comet", body);
            CHECK(r.status == 400);
            CHECK(r.body == bad_request_body);
        }
    }
    SECTION("CORS: a preflight OPTIONS is answered 204 with Access-Control-Allow-Origin") {
        for (const char* target : {"/comet", "/publish/news"}) {
            INFO(target);
            const http_reply r =
                c.request(http::verb::options, target, {},
                          {{http::field::origin, "http://example.com"},
                           {http::field::access_control_request_method, "POST"},
                           {http::field::access_control_request_headers, "content-type"}});
            CHECK(r.status == 204);
            CHECK(r.header("Access-Control-Allow-Origin") == "*");
            CHECK(r.header("Access-Control-Allow-Methods") == "GET, POST, OPTIONS");
            CHECK(r.header("Access-Control-Allow-Headers") == "Content-Type");
            CHECK(r.header("Access-Control-Max-Age") == "86400");
            CHECK(r.body.empty());
        }
        // The actual request carries the header too.
        const http_reply r = c.request(http::verb::post, "/comet", R"({"rid":1})",
                                       {{http::field::origin, "http://example.com"}});
        CHECK(r.status == 200);
        CHECK(r.header("Access-Control-Allow-Origin") == "*");
    }
}

TEST_CASE("long poll: CORS with a list of origins answers only those") {
    auto options = test_options();
    options.http.cors_origins = {"http://good.example"};
    test_server ts{options};
    http_client c{ts.port()};

    const http_reply good = c.request(http::verb::options, "/comet", {},
                                      {{http::field::origin, "http://good.example"}});
    CHECK(good.status == 204);
    CHECK(good.header("Access-Control-Allow-Origin") == "http://good.example");
    const http_reply evil = c.request(http::verb::options, "/comet", {},
                                      {{http::field::origin, "http://evil.example"}});
    CHECK_FALSE(evil.has_header("Access-Control-Allow-Origin"));
}

TEST_CASE("long poll: a repeated rid whose request is still held takes its place") {
    test_server ts;
    http_client c1{ts.port()}, c2{ts.port()}, backend{ts.internal_port()};
    const auto s = create_session(c1, 80, {{"messages", subscribe("ch")}});

    c1.send_json("/comet", request_body(s.sid, 81, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // 81 held on c1
    c2.send_json("/comet", request_body(s.sid, 81, subscribe("ch")));

    const http_reply old_copy = c1.receive();
    CHECK(old_copy.status == 200);
    CHECK(old_copy.body == R"({"rid":81,"type":"error","condition":"replaced"})");

    CHECK_FALSE(c2.readable_within(50ms)); // the new copy is held
    CHECK(publish(backend, "ch", "for the new copy") == 1);
    CHECK(unstamped(c2.receive().body) == data_body(81, {envelope("ch", "for the new copy")}));

    // The session lives on; the repeat's messages were not delivered again.
    CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
    CHECK(ts.app().snapshot().messages_of(s.sid).size() == 2);
    CHECK(publish(backend, "ch", "next") == 1);
    CHECK(unstamped(c1.post_json("/comet", request_body(s.sid, 82)).body) ==
          data_body(82, {envelope("ch", "next")}));
}
