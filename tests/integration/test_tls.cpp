// HTTPS next to HTTP: an in-process server with both listeners (--tls-cert/--tls-key/--tls-port),
// a certificate made by the test itself (support/tls.hpp), clients that speak TLS through
// OpenSSL. The same sessions, the same JSON and BOSH transports, over either port.
#include "support/http_client.hpp"
#include "support/stamps.hpp"
#include "support/test_server.hpp"
#include "support/tls.hpp"
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <string>
#include <variant>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::server;
using megaphone::server_options;
using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::http_reply;
using megaphone::test::recording_app;
using megaphone::test::request_body;
using megaphone::test::stamped_position;
using megaphone::test::stamps_of;
using megaphone::test::test_certificate;
using megaphone::test::test_options;
using megaphone::test::unstamped;
using json = nlohmann::json;
namespace http = boost::beast::http;

namespace {

/// The servers here serve POST /publish on their public doors (HTTP and HTTPS) with this key.
constexpr std::string_view publish_key = "tls-test-publish-key";
const std::string bearer = "Bearer " + std::string(publish_key);

/// A started server with HTTP and HTTPS on free ports, the recording hub at /comet (JSON) and
/// /bosh (BOSH); stopped and joined on destruction.
class tls_server {
public:
    explicit tls_server(server_options options = test_options())
        : srv_{with_tls(std::move(options), cert_)}
        , app_{srv_} {
        std::signal(SIGPIPE, SIG_IGN); // OpenSSL writes with write(2): a dead peer is EPIPE
        srv_.mount("/comet", app_);
        srv_.mount_bosh("/bosh", app_);
        srv_.start();
    }
    ~tls_server() {
        srv_.stop(); // before the application goes: the shutdown calls on_close
        srv_.wait();
    }
    tls_server(const tls_server&) = delete;
    tls_server& operator=(const tls_server&) = delete;

    recording_app& app() noexcept { return app_; }
    unsigned short port() const noexcept { return srv_.port(); }
    unsigned short internal_port() const noexcept { return srv_.internal_port(); }
    unsigned short tls_port() const noexcept { return srv_.tls_port(); }
    /// A client of the HTTPS port that verifies the server's certificate.
    http_client https(std::chrono::milliseconds timeout = 5s) {
        return http_client{tls_port(), timeout, cert_.client()};
    }
    http_client plain(std::chrono::milliseconds timeout = 5s) {
        return http_client{port(), timeout};
    }
    const test_certificate& cert() const noexcept { return cert_; }

private:
    static server_options with_tls(server_options o, const test_certificate& cert) {
        o.tls_cert = cert.cert_path();
        o.tls_key = cert.key_path();
        o.tls_port = 0;
        o.keys.publish_key = publish_key;
        return o;
    }

    test_certificate cert_;
    server srv_;
    recording_app app_;
};

json subscribe(const std::string& channel) {
    return json::array({{{"subscribe", channel}}});
}

std::size_t publish(http_client& c, const std::string& channel, const json& data) {
    const http_reply r = c.request(http::verb::post, "/publish/" + channel, data.dump(),
                                   {{http::field::authorization, bearer}});
    REQUIRE(r.status == 200);
    return r.json().at("sessions").get<std::size_t>();
}

/// What a held request of `rid` gets for one publish of `data` on `channel` (once unstamped()).
std::string one_message(std::uint64_t rid, const std::string& channel, const json& data) {
    return "{\"rid\":" + std::to_string(rid) + ",\"messages\":[" +
           json{{"channel", channel}, {"data", data}}.dump() + "]}";
}

} // namespace

TEST_CASE("tls: a JSON long poll over HTTPS: create, a held poll answered by a publish") {
    tls_server ts;
    REQUIRE(ts.tls_port() != 0);
    REQUIRE(ts.tls_port() != ts.port());
    http_client poll = ts.https(), backend = ts.https();
    const auto s = create_session(poll, 100, {{"messages", subscribe("ch")}});

    poll.send_json("/comet", request_body(s.sid, 101, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // held
    CHECK_FALSE(poll.readable_within(50ms));

    CHECK(publish(backend, "ch", {{"n", 1}}) == 1);
    const http_reply r = poll.receive();
    CHECK(r.status == 200);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(unstamped(r.body) == one_message(101, "ch", {{"n", 1}}));
    const auto first = stamps_of(r.body);
    REQUIRE(first.size() == 1);
    CHECK_FALSE(first[0].epoch.empty());
    CHECK(first[0].offset == 1);

    // Keep-alive over TLS: the next request of the session goes on the same connection.
    poll.send_json("/comet", request_body(s.sid, 102, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 3));
    CHECK(publish(backend, "ch", "again") == 1);
    const http_reply r2 = poll.receive();
    CHECK(unstamped(r2.body) == one_message(102, "ch", "again"));
    CHECK(stamps_of(r2.body) == std::vector<stamped_position>{{first[0].epoch, 2}});
}

TEST_CASE("tls: one session over HTTP and HTTPS at once") {
    tls_server ts;
    http_client plain = ts.plain(), secure = ts.https(), backend = ts.plain();
    const auto s = create_session(secure, 200, {{"messages", subscribe("ch")}});

    // Held over plain HTTP, answered by a publish made over HTTPS...
    plain.send_json("/comet", request_body(s.sid, 201, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2));
    http_client secure_backend = ts.https();
    CHECK(publish(secure_backend, "ch", "to-http") == 1);
    CHECK(unstamped(plain.receive().body) == one_message(201, "ch", "to-http"));

    // ...then held over HTTPS, answered by a publish made over plain HTTP.
    secure.send_json("/comet", request_body(s.sid, 202, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 3));
    CHECK(publish(backend, "ch", "to-https") == 1);
    CHECK(unstamped(secure.receive().body) == one_message(202, "ch", "to-https"));

    // A message sent over either port reaches the same session, in rid order.
    plain.send_json("/comet", request_body(s.sid, 203, json::array({{{"n", 1}}})));
    secure.send_json("/comet", request_body(s.sid, 204, json::array({{{"n", 2}}})));
    REQUIRE(ts.app().wait_messages(s.sid, 5));
    const auto seen = ts.app().snapshot().messages_of(s.sid);
    CHECK(seen[3] == R"({"n":1})");
    CHECK(seen[4] == R"({"n":2})");
    CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
}

TEST_CASE("tls: a BOSH session over HTTPS") {
    tls_server ts;
    http_client c = ts.https();
    const auto bosh = [&](const std::string& body) {
        const http_reply r = c.request(http::verb::post, "/bosh", body,
                                       {{http::field::content_type, "text/xml; charset=utf-8"}});
        REQUIRE(r.status == 200);
        CHECK(r.header("Content-Type") == "text/xml; charset=utf-8");
        auto parsed = megaphone::parse_bosh_body(r.body);
        REQUIRE(std::holds_alternative<megaphone::bosh_body>(parsed));
        return std::get<megaphone::bosh_body>(std::move(parsed));
    };
    const auto created = bosh("<body rid='300' to='example.com' wait='5' hold='1' ver='1.6' "
                              "xmlns='http://jabber.org/protocol/httpbind'/>");
    const std::string* sid = created.attribute("sid");
    REQUIRE(sid != nullptr);
    CHECK(created.attribute("type") == nullptr);

    const auto ended = bosh("<body rid='301' sid='" + *sid +
                            "' type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>");
    REQUIRE(ended.attribute("type") != nullptr);
    CHECK(*ended.attribute("type") == "terminate");
    CHECK(ts.app().wait_closed(*sid).has_value());
}

TEST_CASE("tls: a client leaving while its request is held is noticed over TLS too") {
    // The wait is long (30 s): only noticing the close explains the server closing its end.
    auto options = test_options();
    options.engine.max_wait = 30s;
    tls_server ts{options};
    http_client c1 = ts.https(), backend = ts.https();
    const auto s = create_session(c1, 400, {{"wait", 30}, {"messages", subscribe("ch")}});
    c1.send_json("/comet", request_body(s.sid, 401, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // held

    const auto lost_then_queued = [&] {
        // The server reported the loss, then closed its end; a publish is queued, not written
        // into the dead connection, and the next request (same rid again) gets it at once.
        REQUIRE(c1.closed_by_server_within(3s));
        CHECK(publish(backend, "ch", "after-close") == 1);
        http_client c2 = ts.https();
        c2.send_json("/comet", request_body(s.sid, 401));
        REQUIRE(c2.readable_within(2s));
        CHECK(unstamped(c2.receive().body) == one_message(401, "ch", "after-close"));
        CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
    };

    SECTION("close_notify (a clean TLS close) is a close") {
        REQUIRE(SSL_shutdown(c1.stream().ssl()) >= 0);
        lost_then_queued();
    }
    SECTION("EOF without close_notify is a close") {
        c1.shutdown_send();
        lost_then_queued();
    }
    SECTION("a TLS record without data (a key update) is not a close") {
        REQUIRE(SSL_key_update(c1.stream().ssl(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
        REQUIRE(SSL_do_handshake(c1.stream().ssl()) == 1); // sends it now
        CHECK_FALSE(c1.readable_within(300ms));            // not closed
        CHECK(publish(backend, "ch", "still-here") == 1);
        CHECK(unstamped(c1.receive().body) == one_message(401, "ch", "still-here"));
    }
}

TEST_CASE("tls: a pipelined request behind a held one is kept, over HTTP and HTTPS") {
    // The bytes that arrive while a request is held are read and kept: the connection stays
    // alive, answers the held request, then the pipelined one, in order; a close behind them is
    // still noticed.
    tls_server ts;
    const bool secure = GENERATE(false, true);
    INFO((secure ? "https" : "http"));
    http_client c1 = secure ? ts.https() : ts.plain(), backend = ts.plain();
    const auto s = create_session(c1, 700, {{"messages", subscribe("ch")}});
    c1.send_json("/comet", request_body(s.sid, 701, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // held
    c1.send(http::verb::post, "/publish/other", "1", {{http::field::authorization, bearer}});

    SECTION("both are answered, in order") {
        CHECK_FALSE(c1.readable_within(300ms)); // still held, not closed
        CHECK(publish(backend, "ch", "first") == 1);
        CHECK(unstamped(c1.receive().body) == one_message(701, "ch", "first"));
        const http_reply second = c1.receive();
        CHECK(second.status == 200);
        CHECK(second.json().at("sessions") == 0);
    }
    SECTION("a close behind them is noticed") {
        c1.shutdown_send();
        REQUIRE(c1.closed_by_server_within(3s));
        CHECK(publish(backend, "ch", "queued") == 1); // queued for the next request, not lost
        http_client c2 = ts.plain();
        CHECK(unstamped(c2.post_json("/comet", request_body(s.sid, 701)).body) ==
              one_message(701, "ch", "queued"));
    }
}

TEST_CASE("tls: plain HTTP sent to the HTTPS port gets a plain 400 and a close") {
    tls_server ts;
    http_client wrong{ts.tls_port(), 5s};
    const http_reply r = wrong.post("/comet", R"({"rid":1})");
    CHECK(r.status == 400);
    CHECK(r.header("Connection") == "close");
    CHECK(r.body.find("HTTPS") != std::string::npos);
    CHECK(wrong.closed_by_server_within(2s));
    CHECK(ts.app().snapshot().opened.empty()); // nothing reached the application
}

TEST_CASE("tls: bad handshakes and silent clients harm no other session") {
    auto options = test_options();
    options.http.read_timeout = 500ms; // also bounds the handshake
    tls_server ts{options};
    http_client poll = ts.https();
    const auto s = create_session(poll, 500, {{"messages", subscribe("ch")}});
    poll.send_json("/comet", request_body(s.sid, 501, subscribe("ch")));
    REQUIRE(ts.app().wait_messages(s.sid, 2)); // held while the others misbehave

    SECTION("garbage after a TLS record header") {
        http_client bad{ts.tls_port(), 5s};
        bad.send_raw(std::string("\x16\x03\x01\x00\x20", 5) + std::string(32, '\x7f'));
        CHECK(bad.closed_by_server_within(3s));
    }
    SECTION("a client that connects and never says anything is cut off") {
        http_client silent{ts.tls_port(), 5s};
        CHECK(silent.closed_by_server_within(3s));
    }
    SECTION("a client that stops in the middle of its handshake is cut off") {
        http_client stuck{ts.tls_port(), 5s};
        stuck.send_raw(std::string("\x16\x03\x01\x02\x00", 5)); // a record header, no record
        CHECK(stuck.closed_by_server_within(3s));
    }
    SECTION("a client offering only TLS 1.0 is refused") {
        std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> old{SSL_CTX_new(TLS_client_method()),
                                                              &SSL_CTX_free};
        SSL_CTX_set_security_level(old.get(), 0);
        SSL_CTX_set_min_proto_version(old.get(), TLS1_VERSION);
        SSL_CTX_set_max_proto_version(old.get(), TLS1_VERSION);
        CHECK_THROWS(http_client{ts.tls_port(), 5s, old.get()});
    }
    SECTION("a client that does not trust the certificate goes away") {
        std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> strict{SSL_CTX_new(TLS_client_method()),
                                                                 &SSL_CTX_free};
        SSL_CTX_set_verify(strict.get(), SSL_VERIFY_PEER, nullptr); // trusts nothing
        CHECK_THROWS(http_client{ts.tls_port(), 5s, strict.get()});
    }

    // The held session was not disturbed; new sessions still come in over HTTPS.
    CHECK_FALSE(poll.readable_within(10ms));
    http_client backend = ts.https();
    CHECK(publish(backend, "ch", "fine") == 1);
    CHECK(unstamped(poll.receive().body) == one_message(501, "ch", "fine"));
    http_client fresh = ts.https();
    CHECK_NOTHROW(create_session(fresh, 600));
    CHECK_FALSE(ts.app().snapshot().close_reason_of(s.sid).has_value());
}

TEST_CASE("tls: a Server-Sent Events stream over HTTPS: its head at once, then each publish") {
    tls_server ts;
    http_client c = ts.https(), backend = ts.https();
    const auto s = create_session(c, 100, {{"messages", subscribe("ch")}});
    REQUIRE(ts.app().wait_messages(s.sid, 1));

    c.send_raw("GET /comet/events?sid=" + s.sid +
               " HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    std::string got;
    const auto read_until = [&](std::string_view what) {
        char buf[4096];
        while (got.find(what) == std::string::npos) {
            boost::beast::error_code ec;
            const std::size_t n = c.stream().read_some(boost::asio::buffer(buf), ec);
            if (ec)
                return false;
            got.append(buf, n);
        }
        return true;
    };
    // The head and the opening are flushed through TLS before anything is published.
    REQUIRE(read_until("retry: 2000\n\n"));
    CHECK(got.starts_with("HTTP/1.1 200"));
    CHECK(got.find("Content-Type: text/event-stream") != std::string::npos);

    CHECK(publish(backend, "ch", {{"n", 1}}) == 1);
    REQUIRE(read_until("\"n\":1"));
    CHECK(got.find("id: 1\n") != std::string::npos);
    CHECK(publish(backend, "ch", {{"n", 2}}) == 1);
    REQUIRE(read_until("\"n\":2"));
    CHECK(got.find("id: 2\n") != std::string::npos);
}

TEST_CASE("tls: an answer larger than a TLS record (16 KiB) arrives whole over HTTPS") {
    // Beast's ssl_stream (its flat_stream) garbled a write of a header and a body over 16 KiB
    // (Boost 1.81): the connection now writes through Asio's ssl::stream directly.
    tls_server ts;
    http_client c = ts.https(), backend = ts.https();
    const auto s = create_session(c, 100, {{"messages", subscribe("big")}});
    REQUIRE(ts.app().wait_messages(s.sid, 1));
    for (const std::size_t size : {16'500u, 60'000u}) {
        const std::string data(size, 'y');
        CHECK(publish(backend, "big", data) == 1);
        const std::uint64_t rid = size == 16'500u ? 101 : 102;
        const http_reply r = c.post_json("/comet", request_body(s.sid, rid));
        REQUIRE(r.status == 200);
        CHECK(unstamped(r.body) == one_message(rid, "big", data));
    }
}
