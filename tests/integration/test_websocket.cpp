// The WebSocket transport end to end (transport/websocket.hpp, docs/PROTOCOL.md "WebSocket"): an
// in-process server on loopback, clients written with Beast's websocket::stream, sessions made
// over POST /comet and fed by POST /publish on the internal door.
//
// The client (tests/support/ws_client.hpp) runs its own io_context: each read is an async_read
// run for at most a deadline, so a test that waits for a frame fails after it instead of
// hanging. Where a test
// must know that the server reached some point, it waits for a frame that proves it (ready, an
// answer) or asks the recording application, never a sleep.
#include "support/http_client.hpp"
#include "support/test_server.hpp"
#include "support/tls.hpp"
#include "support/ws_client.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::test_certificate;
using megaphone::test::test_options;
using megaphone::test::test_server;
using megaphone::test::ws_client;
using megaphone::test::ws_event;
using megaphone::test::ws_options;
using megaphone::test::wss_client;
using json = nlohmann::json;

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

ws_options with_protocol(std::string protocol) {
    ws_options o;
    o.protocol = std::move(protocol);
    return o;
}
ws_options with_origin(std::string origin) {
    ws_options o;
    o.origin = std::move(origin);
    return o;
}
ws_options with_receive_buffer(int bytes) {
    ws_options o;
    o.receive_buffer = bytes;
    return o;
}

json subscribe_to(const std::string& channel) {
    return {{"messages", json::array({{{"subscribe", channel}}})}};
}

void publish(unsigned short internal_port, const std::string& channel, const json& data) {
    http_client pub{internal_port};
    const auto r = pub.post("/publish/" + channel, data.dump());
    REQUIRE(r.status == 200);
}

/// The data of every message in `batch` ({"id":N,"messages":[...]}).
std::vector<json> data_of(const json& batch) {
    std::vector<json> out;
    for (const auto& m : batch["messages"])
        out.push_back(m["data"]);
    return out;
}

/// Reads until a frame request's answer (a frame with a rid) and some messages have come: the
/// answer, and the data of the messages read meanwhile.
template <class Client>
std::pair<json, std::vector<json>> answer_and_data(Client& ws) {
    std::optional<json> answer;
    std::vector<json> got;
    while (!answer || got.empty()) {
        json f = ws.next();
        REQUIRE(!f.is_null()); // (the stream ended or timed out)
        if (f.contains("rid"))
            answer = f;
        else
            for (auto& d : data_of(f))
                got.push_back(d);
    }
    return {*answer, got};
}

} // namespace

TEST_CASE("websocket: the upgrade needs the megaphone subprotocol and answers it") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100);

    SECTION("offered: 101 with Sec-WebSocket-Protocol: megaphone, then ready") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid, with_protocol("chat, megaphone")};
        CHECK(ws.status == 101);
        CHECK(ws.protocol == "megaphone");
        const json ready = ws.next();
        CHECK(ready == json{{"type", "ready"}, {"heartbeat", 15000}});
    }
    SECTION("not offered: 400 before the upgrade") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid, with_protocol("")};
        CHECK(ws.status == 400);
    }
}

TEST_CASE("websocket: Origin is checked against --cors-origin before the upgrade") {
    auto o = test_options();
    o.http.cors_origins = {"https://app.example"};
    test_server ts{o};
    http_client c{ts.port()};
    const auto s = create_session(c, 100);

    SECTION("allowed") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid, with_origin("https://app.example")};
        CHECK(ws.status == 101);
        CHECK(ws.next()["type"] == "ready");
    }
    SECTION("not allowed: 403") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid, with_origin("https://evil.example")};
        CHECK(ws.status == 403);
    }
    SECTION("none (not a browser): allowed") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid};
        CHECK(ws.status == 101);
    }
}

TEST_CASE("websocket: a stream that cannot open is upgraded, then closed 4404 item-not-found") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    std::string target;
    SECTION("unknown session") {
        target = "/comet?sid=n0-AAAAAAAAAAAAAAAAAAAAA";
    }
    SECTION("no sid") {
        target = "/comet";
    }
    SECTION("another node's session") {
        target = "/comet?sid=zz-AAAAAAAAAAAAAAAAAAAAA";
    }
    SECTION("a malformed lastEventId") {
        target = "/comet?sid=" + s.sid + "&lastEventId=x";
    }
    ws_client ws{ts.port(), target};
    REQUIRE(ws.status == 101);
    CHECK(ws.close_code() == 4404u);
    CHECK(ws.reason == "item-not-found");
    CHECK(ws.seen.empty()); // no ready
}

TEST_CASE("websocket: messages come in batches whose id is the last message's stream id") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100, subscribe_to("news"));
    publish(ts.internal_port(), "news", "before");     // queued before the stream: in the opening
    ws_client ws{ts.port(), "/comet/n0?sid=" + s.sid}; // the node route too
    REQUIRE(ws.status == 101);
    CHECK(ws.next()["type"] == "ready");
    json first = ws.next();
    CHECK(first["id"] == 1);
    CHECK(data_of(first) == std::vector<json>{"before"});
    publish(ts.internal_port(), "news", "a");
    publish(ts.internal_port(), "news", "b");
    std::vector<json> got;
    std::uint64_t last_id = 1;
    while (got.size() < 2) {
        json batch = ws.next();
        REQUIRE(batch.contains("id"));
        const auto n = batch["messages"].size();
        CHECK(batch["id"].get<std::uint64_t>() == last_id + n); // consecutive ids
        last_id += n;
        for (auto& d : data_of(batch))
            got.push_back(d);
    }
    CHECK(got == std::vector<json>{"a", "b"});
    CHECK(ts.srv().metrics().websockets == 1);
}

TEST_CASE("websocket: lastEventId acknowledges up to it and replays what followed exactly once") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100, subscribe_to("r"));
    {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid};
        CHECK(ws.next()["type"] == "ready");
        for (const char* d : {"1", "2", "3"})
            publish(ts.internal_port(), "r", d);
        std::size_t n = 0;
        while (n < 3)
            n += ws.next()["messages"].size();
        ws.drop();
    }
    // Once the session has let the dropped stream go (it hears of the close asynchronously):
    // otherwise "4" could still be written to the dead socket, with id 4.
    const auto t0 = std::chrono::steady_clock::now();
    while (ts.srv().metrics().streams > 0 && std::chrono::steady_clock::now() - t0 < 5s)
        std::this_thread::sleep_for(10ms); // a bounded wait for the server to notice the close
    REQUIRE(ts.srv().metrics().streams == 0);
    publish(ts.internal_port(), "r", "4"); // while no stream is attached

    SECTION("from 1: 2, 3, 4, then live") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid + "&lastEventId=1"};
        CHECK(ws.next()["type"] == "ready");
        std::vector<json> got;
        json batch;
        while (got.size() < 3) {
            batch = ws.next();
            for (auto& d : data_of(batch))
                got.push_back(d);
        }
        CHECK(got == std::vector<json>{"2", "3", "4"});
        CHECK(batch["id"] == 4);
        publish(ts.internal_port(), "r", "5");
        json live = ws.next();
        CHECK(data_of(live) == std::vector<json>{"5"});
        CHECK(live["id"] == 5);
    }
    SECTION("from 3 (all it was written): only the queued one, which gets id 4, then live") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid + "&lastEventId=3"};
        CHECK(ws.next()["type"] == "ready");
        json queued = ws.next();
        CHECK(data_of(queued) == std::vector<json>{"4"});
        CHECK(queued["id"] == 4);
        publish(ts.internal_port(), "r", "5");
        json live = ws.next();
        CHECK(data_of(live) == std::vector<json>{"5"});
        CHECK(live["id"] == 5);
    }
    SECTION("a position beyond the stream: closed 4404, the session ends") {
        ws_client ws{ts.port(), "/comet?sid=" + s.sid + "&lastEventId=4"};
        CHECK(ws.close_code() == 4404u);
        CHECK(ts.app().wait_closed(s.sid) == close_reason::item_not_found);
    }
}

TEST_CASE(
    "websocket: a frame request is the session's POST, answered by a frame, and a repeated rid "
    "is answered from the cache") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100, subscribe_to("self"));
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");

    const std::string frame =
        json{{"rid", 101}, {"messages", json::array({{{"publish", "self"}, {"data", "x"}}})}}
            .dump();
    ws.send(frame);
    const auto [answer, got] = answer_and_data(ws);
    CHECK(answer == json{{"rid", 101}, {"messages", json::array()}});
    CHECK(got == std::vector<json>{"x"});

    ws.send(frame); // the same rid again: the same answer, not processed twice
    CHECK(ws.next() == answer);
    // A later request proves nothing more arrived meanwhile: its answer is the next frame.
    ws.send(json{{"sid", s.sid}, {"rid", 102}}.dump()); // the sid may be given, if it is the same
    CHECK(ws.next() == json{{"rid", 102}, {"messages", json::array()}});
    CHECK(ts.app().snapshot().messages_of(s.sid).size() == 2); // the subscribe and one publish
}

TEST_CASE("websocket: many frame requests at once are all answered, in order, though at most 4 "
          "wait for their answers at a time") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");
    // Sent back to back: the server reads several at once, stops taking them at 4 waiting for
    // answers, and goes on as the answers are written.
    for (int rid = 101; rid <= 112; ++rid)
        ws.send(json{{"rid", rid}}.dump());
    for (int rid = 101; rid <= 112; ++rid)
        CHECK(ws.next() == json{{"rid", rid}, {"messages", json::array()}});
}

TEST_CASE(
    "websocket: a bad frame gets an error frame or a close, and no other session is affected") {
    auto o = test_options();
    o.http.max_body = 1024;
    test_server ts{o};
    http_client c{ts.port()};
    const auto other = create_session(c, 100, subscribe_to("o"));
    ws_client bystander{ts.port(), "/comet?sid=" + other.sid};
    CHECK(bystander.next()["type"] == "ready");
    const auto s = create_session(c, 200);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");

    SECTION("malformed JSON: an error frame, and the socket goes on") {
        ws.send("{not json");
        CHECK(ws.next() == json{{"type", "error"}, {"status", 400}, {"condition", "bad-request"}});
        ws.send(json{{"rid", 201}}.dump());
        CHECK(ws.next() == json{{"rid", 201}, {"messages", json::array()}});
    }
    SECTION("another session's sid: an error frame with the rid") {
        ws.send(json{{"sid", other.sid}, {"rid", 201}}.dump());
        CHECK(ws.next() ==
              json{{"type", "error"}, {"status", 400}, {"condition", "bad-request"}, {"rid", 201}});
    }
    SECTION("a rid out of the window: the session's terminate, the error, and close 1000") {
        ws.send(json{{"rid", 9999}}.dump());
        CHECK(ws.close_code() == 1000u);
        REQUIRE(ws.seen.size() == 2);
        CHECK(ws.seen[0] == json{{"type", "terminate"}, {"condition", "item-not-found"}});
        CHECK(ws.seen[1] == json{{"type", "error"},
                                 {"status", 404},
                                 {"condition", "item-not-found"},
                                 {"rid", 9999}});
    }
    SECTION("binary: closed 1003") {
        ws.send_binary("{}");
        CHECK(ws.close_code() == 1003u);
    }
    SECTION("over --max-body: closed 1009") {
        ws.send(json{{"rid", 201}, {"pad", std::string(2000, 'x')}}.dump());
        const auto code = ws.close_code();
        INFO(ws.reason);
        CHECK(code == 1009u);
    }
    publish(ts.internal_port(), "o", "still");
    CHECK(data_of(bystander.next()) == std::vector<json>{"still"});
}

TEST_CASE("websocket: the session's end is a terminate frame, then close 1000") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");
    ws.send(json{{"rid", 101}, {"type", "terminate"}}.dump());
    REQUIRE(ws.close_code() == 1000u);
    REQUIRE(ws.seen.size() == 2);
    CHECK(ws.seen[0] == json{{"type", "terminate"}}); // the stream's last frame
    CHECK(ws.seen[1]["rid"] == 101);                  // the request's answer
    CHECK(ts.app().wait_closed(s.sid) == close_reason::client_terminate);
}

TEST_CASE("websocket: a dropped connection lets the session's die timer run") {
    test_server ts; // inactivity 3 s
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");
    CHECK_FALSE(ts.app().wait_closed(s.sid, 3500ms)); // attached: no inactivity count
    const auto t0 = std::chrono::steady_clock::now();
    ws.drop();
    CHECK(ts.app().wait_closed(s.sid, 10s) == close_reason::inactivity);
    CHECK(std::chrono::steady_clock::now() - t0 >= 2500ms);
}

TEST_CASE("websocket: a second stream of the session replaces the first, which is closed 4409") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100, subscribe_to("two"));
    ws_client first{ts.port(), "/comet?sid=" + s.sid};
    CHECK(first.next()["type"] == "ready");

    SECTION("a WebSocket") {
        ws_client second{ts.port(), "/comet?sid=" + s.sid};
        CHECK(second.next()["type"] == "ready");
        CHECK(first.close_code() == 4409u);
        publish(ts.internal_port(), "two", "x");
        CHECK(data_of(second.next()) == std::vector<json>{"x"});
    }
    SECTION("Server-Sent Events") {
        http_client sse{ts.port()};
        sse.send(http::verb::get, "/comet/events?sid=" + s.sid);
        CHECK(first.close_code() == 4409u);
    }
}

TEST_CASE("websocket: a reader that does not read is backpressured by the session's queue") {
    auto o = test_options();
    o.engine.max_queue = 5;
    test_server ts{o};
    http_client c{ts.port()};
    const auto s = create_session(c, 100, subscribe_to("big"));
    ws_client ws{ts.port(), "/comet?sid=" + s.sid, with_receive_buffer(4096)};
    CHECK(ws.next()["type"] == "ready");
    // One write at a time: once one is stuck in full socket buffers the rest queue up, and the
    // sixth queued message ends the session (the same limit as long-polls).
    const std::string big(16000, 'x');
    for (int i = 0; i < 400 && !ts.app().snapshot().close_reason_of(s.sid); ++i)
        publish(ts.internal_port(), "big", big);
    CHECK(ts.app().wait_closed(s.sid, 5s) == close_reason::queue_overflow);
}

TEST_CASE("websocket: an idle stream gets a {\"type\":\"ping\"} frame every --heartbeat") {
    auto o = test_options();
    o.sse.heartbeat = 200ms;
    test_server ts{o};
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.read().frame == json{{"type", "ready"}, {"heartbeat", 200}});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(ws.read(2s).frame == json{{"type", "ping"}});
    CHECK(ws.read(2s).frame == json{{"type", "ping"}});
    CHECK(std::chrono::steady_clock::now() - t0 >= 350ms);
}

TEST_CASE("websocket: RFC 6455 framing from the client: fragments, pings, errors") {
    test_server ts;
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");

    SECTION("a request in fragments is one request") {
        ws.send_fragmented(
            json{{"rid", 101}, {"messages", json::array({{{"subscribe", "frag"}}})}}.dump(), 7);
        CHECK(ws.next() == json{{"rid", 101}, {"messages", json::array()}});
        CHECK(ts.app().wait_messages(s.sid, 1));
    }
    SECTION("a ping is answered with a pong") {
        ws.ping();
        ws.send(json{{"rid", 101}}.dump()); // its answer comes after the pong
        CHECK(ws.next() == json{{"rid", 101}, {"messages", json::array()}});
        CHECK(ws.pongs == 1);
    }
    SECTION("an unmasked frame: closed 1002, the session's stream is lost (its die timer runs)") {
        ws.send_raw(std::string("\x81\x02{}", 4));
        CHECK(ws.close_code() == 1002u);
        CHECK(ts.app().wait_closed(s.sid, 10s) == close_reason::inactivity);
    }
    SECTION("a continuation whose 64-bit length would wrap the message's size: closed 1009") {
        // A first fragment "{", then a continuation claiming 2^64 - 1 bytes, 14 more sent: the
        // sum of the two lengths must not wrap into a small number and pass the limit.
        ws.send_raw(std::string("\x01\x81\0\0\0\0{", 7));
        std::string huge("\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0", 14);
        ws.send_raw(huge + std::string(14, 'x'));
        CHECK(ws.close_code() == 1009u);
    }
    SECTION("a text message that is not UTF-8: closed 1007") {
        ws.send(std::string("{\"rid\":101,\"x\":\"\xff\xfe\"}"));
        CHECK(ws.close_code() == 1007u);
    }
    SECTION("the client closes: the server answers the close, the session's die timer runs") {
        ws.close();
        CHECK(ts.app().wait_closed(s.sid, 10s) == close_reason::inactivity);
    }
}

TEST_CASE("websocket: a client from which nothing comes is closed after idle_timeout") {
    auto o = test_options();
    o.sse.heartbeat = 100ms;
    o.websocket.idle_timeout = 400ms;
    test_server ts{o};
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");
    // Not reading: the server's ping frames go unanswered.
    const auto t0 = std::chrono::steady_clock::now();
    while (ts.srv().metrics().websockets > 0 && std::chrono::steady_clock::now() - t0 < 5s)
        std::this_thread::sleep_for(10ms); // a bounded wait for the server to close it
    CHECK(ts.srv().metrics().websockets == 0);
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
}

TEST_CASE("websocket: a client that answers pings stays open past idle_timeout") {
    auto o = test_options();
    o.sse.heartbeat = 100ms;
    o.websocket.idle_timeout = 400ms;
    test_server ts{o};
    http_client c{ts.port()};
    const auto s = create_session(c, 100);
    ws_client ws{ts.port(), "/comet?sid=" + s.sid};
    CHECK(ws.next()["type"] == "ready");
    // Reading answers the server's ping frames (Beast does, as browsers do): 12 heartbeats.
    int pings = 0;
    while (pings < 12) {
        ws_event e = ws.read(2s);
        REQUIRE(e.frame);
        if ((*e.frame)["type"] == "ping")
            ++pings;
    }
    CHECK(ts.srv().metrics().websockets == 1);
}

//--------------------------------------------------------------------------------------------------
// wss://: the same WebSocket on the HTTPS door (the TLS stream stays with the HTTP connection
// that read the upgrade; the frames go through it).

namespace {

/// A server with an HTTPS door too, its certificate made here, and a client TLS context that
/// trusts exactly it.
struct tls_setup {
    tls_setup() {
        std::signal(SIGPIPE, SIG_IGN); // OpenSSL writes with write(2): a dead peer is EPIPE
        ctx.load_verify_file(cert.cert_path().string());
        ctx.set_verify_mode(net::ssl::verify_peer);
    }
    static megaphone::server_options with_tls(const test_certificate& cert) {
        auto o = test_options();
        o.tls_cert = cert.cert_path();
        o.tls_key = cert.key_path();
        o.tls_port = 0;
        return o;
    }
    wss_client open(const std::string& target) {
        return wss_client{ts.srv().tls_port(), target, {}, &ctx};
    }

    test_certificate cert;
    net::ssl::context ctx{net::ssl::context::tls_client};
    test_server ts{with_tls(cert)};
};

/// A frame request that publishes `data` on `channel`.
std::string publishing(int rid, const std::string& channel, const json& data) {
    return json{{"rid", rid}, {"messages", json::array({{{"publish", channel}, {"data", data}}})}}
        .dump();
}

} // namespace

TEST_CASE("websocket over TLS: the upgrade on the HTTPS door, then batches and frame requests "
          "as over plain HTTP") {
    tls_setup t;
    http_client c{t.ts.port()};
    const auto s = create_session(c, 100, subscribe_to("news"));
    publish(t.ts.internal_port(), "news", "before");
    wss_client ws = t.open("/comet?sid=" + s.sid);
    REQUIRE(ws.status == 101);
    CHECK(ws.protocol == "megaphone");
    CHECK(ws.next() == json{{"type", "ready"}, {"heartbeat", 15000}});
    json first = ws.next();
    CHECK(first["id"] == 1);
    CHECK(data_of(first) == std::vector<json>{"before"});

    publish(t.ts.internal_port(), "news", "live");
    CHECK(data_of(ws.next()) == std::vector<json>{"live"});

    ws.send(publishing(101, "news", "mine"));
    const auto [answer, got] = answer_and_data(ws);
    CHECK(answer == json{{"rid", 101}, {"messages", json::array()}});
    CHECK(got == std::vector<json>{"mine"});
    CHECK(t.ts.srv().metrics().websockets == 1);

    // The client closes: the close handshake through TLS, the session goes on.
    CHECK(ws.close() == 1000u);
    const auto t0 = std::chrono::steady_clock::now();
    while (t.ts.srv().metrics().websockets > 0 && std::chrono::steady_clock::now() - t0 < 5s)
        std::this_thread::sleep_for(10ms); // a bounded wait for the server to let it go
    CHECK(t.ts.srv().metrics().websockets == 0);
    CHECK_FALSE(t.ts.app().snapshot().close_reason_of(s.sid).has_value());
}

TEST_CASE("websocket over TLS: large frames both ways at once, all answered and delivered in "
          "order, and a dropped connection resumes from lastEventId") {
    tls_setup t;
    http_client c{t.ts.port()};
    const auto s = create_session(c, 100, subscribe_to("bulk"));
    wss_client ws = t.open("/comet?sid=" + s.sid);
    REQUIRE(ws.status == 101);
    CHECK(ws.next()["type"] == "ready");

    // 60 requests of 3 KB back to back, each publishing to the stream's own channel: the server
    // reads them (4 waiting for answers at most) while it writes the answers and the batches.
    const std::string pad(3000, 'x');
    constexpr int n = 60;
    for (int i = 0; i < n; ++i)
        ws.send(publishing(101 + i, "bulk", pad + std::to_string(i)));
    std::vector<int> answered;
    std::vector<std::string> delivered;
    std::uint64_t last_id = 0;
    while (static_cast<int>(answered.size()) < n || static_cast<int>(delivered.size()) < n) {
        ws_event e = ws.read();
        INFO(answered.size() << " answered, " << delivered.size() << " delivered; closed "
                             << e.closed.value_or(9999) << " " << e.reason << " timed out "
                             << e.timed_out);
        REQUIRE(e.frame);
        json f = *e.frame;
        if (f.value("type", "") == "ping")
            continue;
        if (f.contains("rid")) {
            CHECK(f["messages"] == json::array());
            answered.push_back(f["rid"].get<int>());
        } else {
            last_id = f["id"].get<std::uint64_t>();
            for (auto& d : data_of(f))
                delivered.push_back(d.get<std::string>().substr(pad.size()));
        }
    }
    for (int i = 0; i < n; ++i) {
        CHECK(answered[i] == 101 + i);
        CHECK(delivered[i] == std::to_string(i));
    }
    CHECK(last_id == n);

    // Cut without a close handshake: the server notices, the session lives on.
    ws.drop();
    const auto t0 = std::chrono::steady_clock::now();
    while (t.ts.srv().metrics().streams > 0 && std::chrono::steady_clock::now() - t0 < 5s)
        std::this_thread::sleep_for(10ms); // a bounded wait for the server to notice the close
    REQUIRE(t.ts.srv().metrics().streams == 0);
    publish(t.ts.internal_port(), "bulk", "after");
    wss_client again = t.open("/comet?sid=" + s.sid + "&lastEventId=" + std::to_string(last_id));
    REQUIRE(again.status == 101);
    CHECK(again.next()["type"] == "ready");
    json resumed = again.next();
    CHECK(resumed["id"] == n + 1);
    CHECK(data_of(resumed) == std::vector<json>{"after"});
}
