// Routing without sticky sessions (cluster/forwarder.hpp): any node may receive any request; a
// request of a session of another node is forwarded to it over the nodes' internal connections
// and its answer relayed. Real redis-server, two or three in-process nodes with distinct ids
// and a cluster key; JSON clients through tests/support/http_client.hpp, BOSH clients through
// tests/support/bosh_client.hpp.
#include "app/cli.hpp"
#include "app/session.hpp"
#include "cluster/node_registry.hpp"
#include "support/bosh_client.hpp"
#include "support/cluster_node.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/test_server.hpp"
#include "support/tls.hpp"
#include "support/ws_client.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

using namespace megaphone;
using namespace megaphone::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string cluster_key = "fwd-test-key-9f2c1d7e5a3b4c6d";

server_options node_options(const redis_server& redis, std::string node_id,
                            std::string key = cluster_key) {
    return cluster_node_options(redis, std::move(node_id), std::move(key));
}

/// BOSH sessions: pushes a greeting on open, echoes every stanza.
class echo_app final : public application {
public:
    void on_open(session& s) override { s.push(packet::from("<hello xmlns='urn:test'/>")); }
    void on_message(session& s, const message& m) override { s.push(packet::from(m.text())); }
};

/// One node: the hub at /comet (JSON), the echo app at /bosh.
class node {
public:
    explicit node(server_options options)
        : srv_{std::move(options)}
        , app_{srv_} {
        srv_.mount("/comet", app_);
        srv_.mount_bosh("/bosh", echo_);
        srv_.start();
    }
    ~node() { stop(); }
    node(const node&) = delete;
    node& operator=(const node&) = delete;

    void stop() {
        srv_.stop();
        srv_.wait();
    }
    server& srv() noexcept { return srv_; }
    unsigned short port() const noexcept { return srv_.port(); }
    unsigned short internal_port() const noexcept { return srv_.internal_port(); }

private:
    server srv_;
    recording_app app_;
    echo_app echo_;
};

/// Waits until node `id` is in the registry (it announces itself once Redis answers).
bool registered(const redis_server& redis, const std::string& id, bool want = true,
                std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const bool there = redis.cli({"EXISTS", node_registry::key(id)}).starts_with("1");
        if (there == want)
            return true;
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(20ms);
    }
}

http_reply publish(unsigned short port, const std::string& channel, const json& value) {
    http_client c{port};
    return c.post("/publish/" + channel, value.dump());
}

/// POST with headers of our own (http_client takes only Beast's known fields).
http_reply raw_post(unsigned short port, const std::string& target, const std::string& body,
                    const std::string& extra_headers) {
    http_client c{port};
    c.send_raw("POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " +
               "application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
               extra_headers + "\r\n" + body);
    return c.receive();
}

std::string metrics_text(unsigned short port) {
    http_client c{port};
    const http_reply r = c.get("/metrics");
    REQUIRE(r.status == 200);
    return r.body;
}

/// The value of sample `key` in a /metrics text; -1 when absent.
double sample(const std::string& text, const std::string& key) {
    std::istringstream lines{text};
    for (std::string line; std::getline(lines, line);)
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ')
            return std::stod(line.substr(key.size() + 1));
    return -1;
}

double forwarded(unsigned short port, std::string_view outcome) {
    return sample(metrics_text(port),
                  "megaphone_forwarded_requests_total{outcome=\"" + std::string(outcome) + "\"}");
}

/// Session `sid`'s row on `srv`, if it lives there.
std::optional<session_row> row_of(server& srv, const std::string& sid) {
    std::promise<std::vector<session_row>> rows;
    auto got = rows.get_future();
    srv.list_sessions(0, 10'000, [&rows](std::size_t, std::vector<session_row> r) {
        rows.set_value(std::move(r));
    });
    for (auto& r : got.get())
        if (r.sid == sid)
            return r;
    return std::nullopt;
}

/// Waits until session `sid` on `srv` holds `n` requests.
bool holds(server& srv, const std::string& sid, std::size_t n,
           std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto row = row_of(srv, sid);
        if (row && row->held == n)
            return true;
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(10ms);
    }
}

const std::string ns = "xmlns='http://jabber.org/protocol/httpbind'";

std::string bosh_open(std::uint64_t rid) {
    return "<body rid='" + std::to_string(rid) + "' " + ns +
           " to='localhost' wait='2' hold='1' ver='1.6' xmpp:version='1.0' "
           "xmlns:xmpp='urn:xmpp:xbosh'/>";
}

std::string bosh_body_of(const std::string& sid, std::uint64_t rid,
                         const std::string& payload = {}) {
    std::string b = "<body rid='" + std::to_string(rid) + "' sid='" + sid + "' " + ns;
    return payload.empty() ? b + "/>" : b + ">" + payload + "</body>";
}

const json item_not_found = {{"type", "terminate"}, {"condition", "item-not-found"}};

} // namespace

TEST_CASE("forwarding: a JSON session of node a is polled through b, held, and answered by a "
          "publish on c, the answers are byte for byte the direct ones") {
    redis_server redis;
    node a{node_options(redis, "a")};
    node b{node_options(redis, "b")};
    node c{node_options(redis, "c")};
    for (const char* id : {"a", "b", "c"})
        REQUIRE(registered(redis, id)); // (each node's registry is connected: lookups work)

    http_client direct{a.port()};
    const auto s = create_session(direct, 1000, {{"recover", {{"news", json::object()}}}});
    REQUIRE(s.sid.starts_with("a-"));
    std::uint64_t rid = s.rid;

    // Through b: the recovery notice (a has subscribed in Redis once it is out).
    http_client via{b.port()};
    bool noticed = false;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!noticed && std::chrono::steady_clock::now() < deadline) {
        const http_reply r = via.post_json("/comet", request_body(s.sid, ++rid));
        REQUIRE(r.status == 200);
        const json answer = r.json(); // (a temporary's member would dangle in the loop)
        for (const json& m : answer.at("messages"))
            noticed = noticed || m.contains("recovered");
    }
    REQUIRE(noticed);

    // Held on a, through b, until a publish on c.
    via.send_json("/comet", request_body(s.sid, ++rid));
    REQUIRE(holds(a.srv(), s.sid, 1));
    CHECK_FALSE(via.readable_within(200ms));
    REQUIRE(publish(c.internal_port(), "news", json{{"n", 1}}).status == 200);
    REQUIRE(via.readable_within(5s));
    const http_reply held = via.receive();
    REQUIRE(held.status == 200);
    const json answer = held.json();
    REQUIRE(answer.at("messages").size() == 1);
    CHECK(answer.at("messages")[0].at("data") == json{{"n", 1}});
    CHECK(held.header("Content-Type") == "application/json");

    // The same rid at its own node: the cached answer, the same bytes.
    const http_reply again = direct.post_json("/comet", request_body(s.sid, rid));
    CHECK(again.status == held.status);
    CHECK(again.body == held.body);
    CHECK(again.header("Content-Type") == held.header("Content-Type"));

    // The other way round: answered directly, replayed through b.
    REQUIRE(publish(c.internal_port(), "news", json{{"n", 2}}).status == 200);
    http_reply first;
    for (int i = 0; i < 20; ++i) { // until the message is there (an empty answer otherwise)
        first = direct.post_json("/comet", request_body(s.sid, ++rid));
        REQUIRE(first.status == 200);
        if (!first.json().at("messages").empty())
            break;
    }
    REQUIRE(first.json().at("messages").size() == 1);
    const http_reply relayed = via.post_json("/comet", request_body(s.sid, rid));
    CHECK(relayed.status == first.status);
    CHECK(relayed.body == first.body);

    // CORS headers are the receiving node's own, as for any answer.
    http_client browser{b.port()};
    browser.send(http::verb::post, "/comet", request_body(s.sid, rid).dump(),
                 {{http::field::origin, "https://app.example"}});
    const http_reply cors = browser.receive();
    CHECK(cors.body == first.body);
    CHECK(cors.header("Access-Control-Allow-Origin") == "*");

    CHECK(forwarded(b.port(), "answered") >= 4);
    CHECK(forwarded(a.port(), "answered") == 0);
    CHECK(sample(metrics_text(b.port()), "megaphone_internal_requests_refused_total") == 0);
}

namespace {

/// Reads from `c` into `got` until it holds `what`; false when the connection ends first (or
/// the client's receive timeout passes).
bool read_until(http_client& c, std::string& got, std::string_view what) {
    char buf[4096];
    while (got.find(what) == std::string::npos) {
        beast::error_code ec;
        const std::size_t n = c.stream().read_some(boost::asio::buffer(buf), ec);
        if (ec)
            return false;
        got.append(buf, n);
    }
    return true;
}

double relayed(unsigned short port, std::string_view outcome) {
    return sample(metrics_text(port),
                  "megaphone_relayed_streams_total{outcome=\"" + std::string(outcome) + "\"}");
}

/// Waits until `srv` has `n` open streams.
bool streams_open(server& srv, std::int64_t n, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (srv.metrics().streams != n) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

} // namespace

TEST_CASE("forwarding: a stream of a session of node a opened at node b is relayed to a byte for "
          "byte, SSE and WebSocket, both ways, and its end is a's") {
    redis_server redis;
    node a{node_options(redis, "a")};
    node b{node_options(redis, "b")};
    REQUIRE(registered(redis, "a"));
    REQUIRE(registered(redis, "b"));
    http_client direct{a.port()};
    const auto s =
        create_session(direct, 100, {{"messages", json::array({{{"subscribe", "live"}}})}});
    REQUIRE(s.sid.starts_with("a-"));

    SECTION("SSE: the head and ready, then each publish with its id") {
        http_client via{b.port()};
        via.send_raw("GET /comet/events?sid=" + s.sid +
                     " HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
        std::string got;
        REQUIRE(read_until(via, got, "event: ready"));
        CHECK(got.starts_with("HTTP/1.1 200"));
        CHECK(got.find("Content-Type: text/event-stream") != std::string::npos);
        REQUIRE(streams_open(a.srv(), 1)); // on a, the session's own node
        CHECK(b.srv().metrics().streams == 0);
        REQUIRE(publish(b.internal_port(), "live", json{{"n", 1}}).status == 200);
        REQUIRE(read_until(via, got, "\"n\":1"));
        CHECK(got.find("id: 1\n") != std::string::npos);
        REQUIRE(publish(a.internal_port(), "live", json{{"n", 2}}).status == 200);
        REQUIRE(read_until(via, got, "\"n\":2"));
        CHECK(got.find("id: 2\n") != std::string::npos);
    }
    SECTION("WebSocket: the 101 and ready, batches, and frame requests answered by a") {
        ws_client ws{b.port(), "/comet?sid=" + s.sid};
        REQUIRE(ws.status == 101);
        CHECK(ws.protocol == "megaphone");
        CHECK(ws.next()["type"] == "ready");
        REQUIRE(streams_open(a.srv(), 1));
        REQUIRE(publish(b.internal_port(), "live", json{{"n", 1}}).status == 200);
        const json batch = ws.next();
        CHECK(batch["id"] == 1);
        CHECK(batch["messages"][0]["data"] == json{{"n", 1}});
        ws.send(json{{"rid", 101}, {"messages", json::array({{{"unsubscribe", "live"}}})}}.dump());
        CHECK(ws.next() == json{{"rid", 101}, {"messages", json::array()}});
        REQUIRE(publish(b.internal_port(), "live", json{{"n", 2}}).status == 200);
        ws.send(json{{"rid", 102}}.dump()); // its answer comes next: nothing of "live" since
        CHECK(ws.next() == json{{"rid", 102}, {"messages", json::array()}});
        // The client goes: a's session hears its stream close, and lives on.
        ws.drop();
        CHECK(streams_open(a.srv(), 0));
        CHECK(row_of(a.srv(), s.sid).has_value());
    }
    CHECK(relayed(b.port(), "relayed") == 1);
    CHECK(relayed(a.port(), "relayed") == 0);
}

TEST_CASE("forwarding: a WebSocket over HTTPS at node b, of a session of node a, is relayed to a "
          "from b's TLS stream") {
    std::signal(SIGPIPE, SIG_IGN); // OpenSSL writes with write(2): a dead peer is EPIPE
    redis_server redis;
    test_certificate cert;
    node a{node_options(redis, "a")};
    auto with_tls = node_options(redis, "b");
    with_tls.tls_cert = cert.cert_path();
    with_tls.tls_key = cert.key_path();
    with_tls.tls_port = 0;
    node b{with_tls};
    REQUIRE(registered(redis, "a"));
    REQUIRE(registered(redis, "b"));
    http_client direct{a.port()};
    const auto s =
        create_session(direct, 100, {{"messages", json::array({{{"subscribe", "live"}}})}});

    boost::asio::ssl::context ctx{boost::asio::ssl::context::tls_client};
    ctx.load_verify_file(cert.cert_path().string());
    ctx.set_verify_mode(boost::asio::ssl::verify_peer);
    wss_client ws{b.srv().tls_port(), "/comet?sid=" + s.sid, {}, &ctx};
    REQUIRE(ws.status == 101);
    CHECK(ws.next()["type"] == "ready");
    REQUIRE(streams_open(a.srv(), 1));
    REQUIRE(publish(a.internal_port(), "live", json{{"n", 1}}).status == 200);
    CHECK(ws.next()["messages"][0]["data"] == json{{"n", 1}});
    ws.send(json{{"rid", 101}}.dump());
    CHECK(ws.next() == json{{"rid", 101}, {"messages", json::array()}});
    CHECK(ws.close() == 1000u); // the close handshake, a's, through b
    CHECK(streams_open(a.srv(), 0));
    CHECK(relayed(b.port(), "relayed") == 1);
}

TEST_CASE("forwarding: a stream of a session of a node that does not exist is refused as an "
          "unknown session: SSE 204, WebSocket 404 before the upgrade") {
    redis_server redis;
    node b{node_options(redis, "b")};
    REQUIRE(registered(redis, "b"));
    // A well-formed sid of a node that never existed: one of b's, renamed.
    http_client direct{b.port()};
    const std::string sid = "zz" + create_session(direct, 100).sid.substr(1);
    {
        http_client via{b.port()};
        const http_reply r = via.get("/comet/events?sid=" + sid);
        CHECK(r.status == 204);
    }
    ws_client ws{b.port(), "/comet?sid=" + sid};
    CHECK(ws.status == 404);
    CHECK(relayed(b.port(), "unknown_node") == 2);
    CHECK(relayed(b.port(), "relayed") == 0);
}

TEST_CASE("forwarding: the client of a held forwarded poll goes away: the session sees its "
          "connection close at once") {
    redis_server redis;
    auto slow = [&](std::string id) {
        server_options o = node_options(redis, std::move(id));
        o.engine.max_wait = 20s;   // a poll is held far longer than the test waits
        o.engine.inactivity = 30s; // (make_router reads the options when the node is made)
        return o;
    };
    node a{slow("a")};
    node b{slow("b")};
    REQUIRE(registered(redis, "a"));
    REQUIRE(registered(redis, "b"));

    http_client direct{a.port()};
    const auto s = create_session(direct, 1000);
    {
        http_client via{b.port()};
        via.send_json("/comet", request_body(s.sid, s.rid + 1));
        REQUIRE(holds(a.srv(), s.sid, 1));
        via.close();
    }
    // Seen through the forward connection closing, long before the 20 s wait.
    CHECK(holds(a.srv(), s.sid, 0, 3s));
    CHECK(forwarded(b.port(), "cancelled") == 1);

    // The session lives on: the same rid, re-sent through b, is held again, and answered by
    // the next push.
    http_client via{b.port()};
    via.send_json("/comet", request_body(s.sid, s.rid + 1));
    REQUIRE(holds(a.srv(), s.sid, 1));
    CHECK_FALSE(via.readable_within(200ms));
    a.srv().push(s.sid, packet::from(R"({"hello":1})"));
    REQUIRE(via.readable_within(5s));
    const http_reply r = via.receive();
    CHECK(r.status == 200);
    CHECK(r.json().at("messages") == json::array({json{{"hello", 1}}}));
}

TEST_CASE("forwarding: the admin dashboard's session of node a is polled through b, its "
          "X-Megaphone-Token header carried along") {
    redis_server redis;
    const std::string token = "fwd-admin-token-3e8a";
    auto with_admin = [&](std::string id) {
        auto o = node_options(redis, std::move(id));
        o.admin_token = token;
        return o;
    };
    node a{with_admin("a")};
    node b{with_admin("b")};
    for (const char* id : {"a", "b"})
        REQUIRE(registered(redis, id));

    http_client direct{a.port()};
    const http_reply created = direct.request(http::verb::post, "/admin/comet", R"({"rid":100})",
                                              {{"X-Megaphone-Token", token}});
    REQUIRE(created.status == 200);
    const std::string sid = created.json().at("sid").get<std::string>();
    REQUIRE(sid.starts_with("a-"));

    // Through b: b checks the header, and a checks it again on the forwarded request.
    http_client via{b.port()};
    const http_reply polled =
        via.request(http::verb::post, "/admin/comet", request_body(sid, 101).dump(),
                    {{"X-Megaphone-Token", token}});
    CHECK(polled.status == 200);
    CHECK(via.post_json("/admin/comet", request_body(sid, 102)).status == 403);
    CHECK(forwarded(b.port(), "answered") >= 1);
}

TEST_CASE("forwarding: a BOSH session of node a continues through node b") {
    redis_server redis;
    node a{node_options(redis, "a")};
    node b{node_options(redis, "b")};
    REQUIRE(registered(redis, "a"));
    REQUIRE(registered(redis, "b"));

    bosh_connection direct{a.port()};
    const bosh_answer created = direct.post(bosh_open(5000));
    REQUIRE(created.status == 200);
    const auto sid = created.attr("sid");
    REQUIRE(sid);
    REQUIRE(sid->starts_with("a-"));

    bosh_connection via{b.port()};
    const std::string stanza = "<message xmlns='jabber:client' to='x'><body>hi</body></message>";
    const bosh_answer echoed = via.post(bosh_body_of(*sid, 5001, stanza));
    CHECK(echoed.status_line == "HTTP/1.1 200 OK");
    REQUIRE(echoed.payloads().size() == 1);
    CHECK(echoed.payloads()[0].find("<body>hi</body>") != std::string::npos);
    // Replayed by its own node: the same bytes, the same type.
    const bosh_answer replayed = direct.post(bosh_body_of(*sid, 5001, stanza));
    CHECK(replayed.body == echoed.body);
    CHECK(replayed.header("Content-Type") == echoed.header("Content-Type"));

    // A held request through b, answered by a stanza sent directly.
    via.send(bosh_body_of(*sid, 5002));
    REQUIRE(holds(a.srv(), *sid, 1));
    const bosh_answer sent = direct.post(bosh_body_of(*sid, 5003, stanza));
    CHECK(sent.status == 200);
    REQUIRE(via.readable_within(5s));
    const bosh_answer held = via.receive();
    CHECK(held.status_line == "HTTP/1.1 200 OK");
    CHECK(held.parsed().has_value());
}

TEST_CASE("forwarding: a sid naming no live node gets item-not-found, JSON and BOSH, and never "
          "another session's data") {
    redis_server redis;
    node a{node_options(redis, "a")};
    node b{node_options(redis, "b")};
    REQUIRE(registered(redis, "a"));
    REQUIRE(registered(redis, "b"));

    http_client c{b.port()};
    const http_reply local = c.post_json("/comet", request_body("b-0AAAAAAAAAAAAAAAAAAAAAA", 7));
    REQUIRE(local.status == 404);
    CHECK(local.json() == item_not_found);
    for (const std::string forged :
         {"zz-0AAAAAAAAAAAAAAAAAAAAAA", "nobody-0AAAAAAAAAAAAAAAAAAAAAA", "toolong7-0AAAAAAAAA",
          "-0AAAAAAAAAAAAAAAAAAAAAA", "a\r\nX-Megaphone-Forwarded-By: b-0AAAA", "\x01-0AAAAA",
          "a-0AAAAAAAAAAAAAAAAAAAAAA"}) {
        INFO(forged);
        const http_reply r = c.post_json("/comet", request_body(forged, 7));
        CHECK(r.status == 404);
        CHECK(r.body == local.body); // byte for byte: no clue which part was wrong
    }
    // A real session's sid with another node's prefix: not that session.
    http_client direct{a.port()};
    const auto s = create_session(direct, 1000);
    const std::string moved = "b" + s.sid.substr(1);
    const http_reply other = http_client{a.port()}.post_json("/comet", request_body(moved, 1001));
    CHECK(other.status == 404);
    CHECK(other.body == local.body);

    bosh_connection bosh{b.port()};
    const bosh_answer bosh_local = bosh.post(bosh_body_of("b-0AAAAAAAAAAAAAAAAAAAAAA", 9));
    CHECK(bosh_local.attr("type") == "terminate");
    CHECK(bosh_local.attr("condition") == "item-not-found");
    for (const std::string forged : {"zz-0AAAAAAAAAAAAAAAAAAAAAA", "nobody-0AAAAAAAAAAAAAA"}) {
        const bosh_answer r = bosh.post(bosh_body_of(forged, 9));
        CHECK(r.status_line == "HTTP/1.1 200 OK");
        CHECK(r.body == bosh_local.body);
    }
    CHECK(forwarded(b.port(), "unknown_node") >= 4);
    // Both nodes still serve.
    CHECK(create_session(c, 1).sid.starts_with("b-"));
}

TEST_CASE("forwarding: a node that stopped is gone from the registry: its sessions get "
          "item-not-found through the others") {
    redis_server redis;
    node a{node_options(redis, "a")};
    node b{node_options(redis, "b")};
    auto c = std::make_unique<node>(node_options(redis, "c"));
    for (const char* id : {"a", "b", "c"})
        REQUIRE(registered(redis, id));

    http_client on_c{c->port()};
    const auto s = create_session(on_c, 1000);
    http_client via_a{a.port()};
    // Forwarded while c lives (an answer in under the 2 s wait: a message to the hub).
    REQUIRE(via_a.post_json("/comet", request_body(s.sid, 1001, json::array({json{{"x", 1}}})))
                .status == 200);

    c.reset(); // stopped and gone, its sockets closed (as a process that exits)
    CHECK(registered(redis, "c", false, 0ms)); // deleted on stop
    for (unsigned short port : {a.port(), b.port()}) {
        http_client client{port};
        const http_reply r = client.post_json("/comet", request_body(s.sid, 1002));
        CHECK(r.status == 404);
        CHECK(r.json() == item_not_found);
    }
}

TEST_CASE("forwarding: a node that dies without stopping leaves the registry after the ttl") {
    redis_server redis;
    const auto where = redis::parse_url(redis.url()).value();
    node_registry_options o;
    o.heartbeat = 100ms;
    o.ttl = 1s;
    o.cache = 100ms;

    auto dead_ioc = std::make_unique<net::io_context>();
    auto dying = std::make_unique<node_registry>(*dead_ioc, where, "d", o);
    dying->start("127.0.0.1:9");
    std::thread runner{[&] { dead_ioc->run_for(5s); }};

    net::io_context ioc;
    node_registry reader{ioc, where, "r", o};
    reader.start("127.0.0.1:10");
    auto pump_until = [&](auto pred) { return run_until(ioc, pred); };
    auto lookup = [&](const std::string& id) {
        std::optional<std::string> got;
        reader.lookup(id, [&](std::string a) { got = std::move(a); });
        pump_until([&] { return got.has_value(); });
        return got.value_or("(no answer)");
    };
    REQUIRE(pump_until([&] { return registered(redis, "r", true, 0ms); }));
    REQUIRE(registered(redis, "d"));
    CHECK(lookup("d") == "127.0.0.1:9");
    CHECK(lookup("unknown").empty());

    dead_ioc->stop(); // its heartbeats end, and no DEL: as a crash
    runner.join();
    CHECK(registered(redis, "d", false, 4s));
    std::this_thread::sleep_for(150ms); // past the lookup cache
    CHECK(lookup("d").empty());

    bool stopped = false;
    reader.stop([&] { stopped = true; });
    CHECK(pump_until([&] { return stopped; }));
    CHECK(registered(redis, "r", false, 0ms)); // deleted before `done`
    dying.reset();
    dead_ioc.reset();
}

TEST_CASE("forwarding: internal headers need the cluster key, a forwarded request is never "
          "forwarded again, the key is never logged") {
    redis_server redis;
    const std::string log_dir =
        std::filesystem::temp_directory_path() / ("megaphone-fwd-" + std::to_string(::getpid()));
    std::filesystem::create_directories(log_dir);
    const std::string access_log = log_dir + "/access.log";
    const std::string err_log = log_dir + "/stderr.log";

    // stderr into a file while the nodes run (start-up lines at info).
    struct stderr_to {
        explicit stderr_to(const std::string& path) {
            std::fflush(stderr);
            saved = ::dup(2);
            const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(fd, 2);
            ::close(fd);
        }
        ~stderr_to() { restore(); }
        void restore() {
            if (saved < 0)
                return;
            std::fflush(stderr);
            ::dup2(saved, 2);
            ::close(saved);
            saved = -1;
            set_log_level(log_level::warn);
        }
        int saved = -1;
    } redirected{err_log};
    {
        auto with_log = [&](std::string id, std::string key) {
            server_options o = node_options(redis, std::move(id), std::move(key));
            o.log.level = log_level::info;
            o.log.access_log = access_log;
            return o;
        };
        node a{with_log("a", cluster_key)};
        node b{with_log("b", cluster_key)};
        node open{with_log("o", "")}; // --redis without a key: forwarding off
        REQUIRE(registered(redis, "a"));
        REQUIRE(registered(redis, "b"));

        http_client direct{a.port()};
        const auto s = create_session(direct, 1000);
        const std::string own = request_body(s.sid, 1001, json::array({json{{"x", 1}}})).dump();
        const std::string key_header = "X-Megaphone-Cluster-Key: " + cluster_key + "\r\n";
        const std::string by_b = "X-Megaphone-Forwarded-By: b\r\n";

        CHECK(raw_post(a.port(), "/comet", own, by_b).status == 403);
        CHECK(
            raw_post(a.port(), "/comet", own, by_b + "X-Megaphone-Cluster-Key: wrong\r\n").status ==
            403);
        CHECK(raw_post(a.port(), "/comet", own,
                       "X-Megaphone-Cluster-Key: " + cluster_key.substr(1) + "x\r\n")
                  .status == 403);
        CHECK(raw_post(a.port(), "/comet", own, by_b + key_header + key_header).status == 403);
        CHECK(sample(metrics_text(a.port()), "megaphone_internal_requests_refused_total") == 4);
        // A node with no key refuses even the right one.
        CHECK(raw_post(open.port(), "/comet", own, by_b + key_header).status == 403);

        // The right key: admitted, for a session of this node...
        CHECK(raw_post(a.port(), "/comet", own, by_b + key_header).status == 200);
        // ... and a session of another node (b lives) is item-not-found, not a second hop.
        http_client on_b{b.port()};
        const auto t = create_session(on_b, 2000);
        const http_reply r =
            raw_post(a.port(), "/comet", request_body(t.sid, 2001).dump(), by_b + key_header);
        CHECK(r.status == 404);
        CHECK(r.json() == item_not_found);
        CHECK(forwarded(a.port(), "answered") == 0);
        CHECK(forwarded(a.port(), "unknown_node") == 0);

        // Without a key, a foreign sid is item-not-found at once (nothing forwarded).
        http_client via_open{open.port()};
        const http_reply off = via_open.post_json("/comet", request_body(s.sid, 1002));
        CHECK(off.status == 404);
        CHECK(forwarded(open.port(), "answered") == 0);

        // With the key, a normal client's request through b is forwarded as usual.
        http_client via_b{b.port()};
        CHECK(via_b.post_json("/comet", request_body(s.sid, 1002, json::array({json{{"y", 2}}})))
                  .status == 200);
        CHECK(forwarded(b.port(), "answered") == 1);
    }
    redirected.restore();

    auto slurp = [](const std::string& path) {
        std::ifstream in{path};
        std::stringstream all;
        all << in.rdbuf();
        return all.str();
    };
    const std::string err = slurp(err_log), access = slurp(access_log);
    CHECK_THAT(err, Catch::Contains("cluster forwarding on: node a"));
    CHECK_THAT(err, Catch::Contains("cluster forwarding off"));
    CHECK(err.find(cluster_key) == std::string::npos);
    CHECK_THAT(access, Catch::Contains("status=403"));
    CHECK(access.find(cluster_key) == std::string::npos);
    std::filesystem::remove_all(log_dir);
}

TEST_CASE("forwarding: --cluster-key-file reads the key, a short key is refused without "
          "echoing it") {
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/test-fwd-key.txt";
    std::ofstream(path) << cluster_key << "\r\nsecond line\n";
    const auto parsed = parse_arguments({"--cluster-key-file", path, "--advertise", "10.0.0.2:80"});
    CHECK(parsed.options.cluster_key == cluster_key);
    CHECK(parsed.options.advertise == "10.0.0.2:80");
    try {
        parse_arguments({"--cluster-key", "short-secret"});
        FAIL("a short key was accepted");
    } catch (const usage_error& e) {
        CHECK(std::string(e.what()).find("short-secret") == std::string::npos);
    }
    CHECK_THROWS_AS(parse_arguments({"--advertise", "nohost"}), usage_error);
    CHECK_THROWS_AS(parse_arguments({"--cluster-key-file", "/nonexistent/key"}), usage_error);
    std::filesystem::remove(path);
}
