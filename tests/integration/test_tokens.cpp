// Client tokens against a real server (app/access.hpp, docs/PROTOCOL.md "Tokens"): a session
// created with a token has a user and may subscribe and publish where its patterns say; without
// --require-token a session without one may not subscribe to private- channels and publishes
// where --client-publish allows; a refused subscribe or publish is told `forbidden` and the
// session goes on; an expired token ends the session at its next request unless the request
// brings a fresh one. Tokens are minted by PyJWT (tests/auth/token_kit.hpp); the server's wall
// clock is the test's (session_rules::wall_clock), so nothing waits for real time.
#include "auth/token_kit.hpp"
#include "support/bosh_client.hpp"
#include "support/http_client.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>

using namespace megaphone;
using namespace megaphone::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// The wall clock the server checks tokens against, moved by the test.
struct test_wall_clock {
    std::shared_ptr<std::atomic<long long>> offset = std::make_shared<std::atomic<long long>>(0);
    std::function<std::chrono::system_clock::time_point()> function() const {
        return [o = offset] { return token_now + std::chrono::seconds(o->load()); };
    }
};

/// Pushes {"user": ...} when a session opens (mounted at /who next to the hub).
class whoami final : public application {
public:
    void on_open(session& s) override { s.push(json{{"user", s.user()}}); }
};

/// application::authorize at work (mounted at /gate): a client with the cookie `session=ok`
/// is carol; the token of mallory is refused; only loopback clients get in. On open it pushes
/// what it was told and what the default rules then allow.
class gate final : public application {
public:
    authorization authorize(const connect_info& who) override {
        const std::lock_guard lock{mutex};
        seen_peer_v4 = !who.peer.v6 && who.peer.bytes[0] == 127;
        seen_agent = std::string(who.header("user-agent"));
        seen_transport = who.transport;
        if (!seen_peer_v4)
            return authorization::deny();
        if (who.claims && who.claims->subject == "mallory")
            return authorization::deny();
        if (who.header("COOKIE") == "session=ok")
            return authorization::allow_as("carol");
        return authorization::allow();
    }
    void on_open(session& s) override {
        s.push(json{{"user", s.user()},
                    {"private", may_subscribe(s, "private-x")},
                    {"news", may_subscribe(s, "news.eu")}});
    }
    struct seen {
        bool peer_v4;
        std::string agent;
        content_kind transport;
    };
    seen last() {
        const std::lock_guard lock{mutex};
        return {seen_peer_v4, seen_agent, seen_transport};
    }

private:
    std::mutex mutex;
    bool seen_peer_v4 = false;
    std::string seen_agent;
    content_kind seen_transport = content_kind::binary;
};

/// A server with the recording hub at /comet (JSON) and /bosh (BOSH), whoami at /who, and
/// tokens signed with test_secret.
struct token_server {
    explicit token_server(bool require_token, std::vector<std::string> client_publish = {"*"},
                          std::uint32_t publish_burst = 500)
        : srv{options(require_token, client_publish, publish_burst)}
        , hub{srv} {
        srv.mount("/comet", hub);
        srv.mount_bosh("/bosh", hub);
        srv.mount("/who", who);
        srv.mount("/gate", gatekeeper);
        srv.mount_bosh("/gate-bosh", gatekeeper);
        srv.start();
    }
    ~token_server() {
        srv.stop();
        srv.wait();
    }
    server_options options(bool require_token, const std::vector<std::string>& client_publish,
                           std::uint32_t publish_burst) {
        auto rules = std::make_shared<session_rules>();
        auth::token_options t;
        t.secret = test_secret;
        rules->tokens = std::make_shared<const auth::token_verifier>(t);
        rules->require_token = require_token;
        rules->client_publish = auth::pattern_set::parse(client_publish).value();
        rules->wall_clock = clock.function();
        rules->publish_rate = 0.001; // (no refill within the test)
        rules->publish_burst = publish_burst;
        server_options o = test_options();
        o.engine.rules = rules;
        return o;
    }
    unsigned short port() const noexcept { return srv.port(); }
    /// How many sessions a publish on `channel` reaches (through the internal door).
    std::size_t reach(const std::string& channel) {
        http_client c{srv.internal_port()};
        const http_reply r = c.post("/publish/" + channel, "0");
        REQUIRE(r.status == 200);
        return r.json().at("sessions").get<std::size_t>();
    }

    test_wall_clock clock; // before srv: its rules read it
    server srv;
    recording_app hub;
    whoami who;
    gate gatekeeper;
};

std::string token(json claims) {
    return mint_one(signed_spec("HS256", std::move(claims)));
}

const std::string not_authorized = R"({"type":"terminate","condition":"not-authorized"})";

/// The messages of an answer.
std::vector<json> messages_of(const http_reply& r) {
    const json answer = r.json();
    return answer.at("messages").get<std::vector<json>>();
}

} // namespace

TEST_CASE("tokens: --require-token refuses sessions without a valid token, JSON and BOSH, a "
          "valid one gives the session its user") {
    token_server ts{/*require_token=*/true};
    http_client c{ts.port()};
    const auto tokens = mint(json::array(
        {signed_spec("HS256", good_claims()),
         signed_spec("HS256", {{"sub", "late"}, {"exp", at(-3600)}}), // expired
         signed_spec("HS256", {{"sub", "early"}, {"exp", at(600)}, {"nbf", at(300)}}),
         json{{"alg", "HS256"}, {"key", other_secret}, {"claims", good_claims()}}, // forged
         json{{"alg", "none"}, {"claims", good_claims()}}}));

    // None, expired, not yet valid, wrongly signed, alg none, malformed, oversized: 401.
    for (const json& body :
         {json{{"rid", 1}}, json{{"rid", 1}, {"token", tokens[1]}},
          json{{"rid", 1}, {"token", tokens[2]}}, json{{"rid", 1}, {"token", tokens[3]}},
          json{{"rid", 1}, {"token", tokens[4]}}, json{{"rid", 1}, {"token", "a.b.c"}},
          json{{"rid", 1}, {"token", std::string(5000, 'a')}}}) {
        INFO(body.dump().substr(0, 200));
        const http_reply r = c.post_json("/comet", body);
        CHECK(r.status == 401);
        CHECK(r.body == not_authorized);
    }
    // Not a string: a malformed request.
    CHECK(c.post_json("/comet", {{"rid", 1}, {"token", 42}}).status == 400);

    // A valid token: the session is made, and its user is the token's `sub`.
    const auto s = create_session(c, 1, {{"token", tokens[0]}}, "/who");
    CHECK(s.answer.at("messages") == json::array({{{"user", "alice"}}}));

    // BOSH: the token is an attribute of the creation <body/>.
    http_client b{ts.port()};
    const std::string head = "<body rid='1' to='localhost' wait='60' hold='1' ver='1.6' "
                             "xmlns='http://jabber.org/protocol/httpbind'";
    const http_reply refused = b.post("/bosh", head + "/>");
    CHECK(refused.status == 200);
    CHECK(refused.body.find("type='terminate'") != std::string::npos);
    CHECK(refused.body.find("condition='not-authorized'") != std::string::npos);
    const http_reply admitted = b.post("/bosh", head + " token='" + tokens[0] + "'/>");
    CHECK(admitted.status == 200);
    CHECK(admitted.body.find("sid='") != std::string::npos);
    CHECK(admitted.body.find("terminate") == std::string::npos);
}

TEST_CASE("tokens: a session with a token subscribes and publishes where its patterns say, "
          "anything else is forbidden and the session goes on") {
    token_server ts{/*require_token=*/false};
    http_client c{ts.port()};
    // good_claims(): channels news*, chat.lobby; publish chat.lobby.
    const auto s = create_session(c, 1, {{"token", token(good_claims())}});
    std::uint64_t rid = 1;
    auto send = [&](json messages) {
        return c.post_json("/comet", request_body(s.sid, ++rid, std::move(messages)));
    };
    // `news*` matches news and news.eu, not new; a forbidden subscribe is answered at once.
    const http_reply r = send(json::array({{{"subscribe", "new"}},
                                           {{"subscribe", "news.eu"}},
                                           {{"subscribe", "private-x"}},
                                           {{"publish", "news.eu"}, {"data", 1}}}));
    REQUIRE(r.status == 200);
    CHECK(messages_of(r) == std::vector<json>{{{"error", "forbidden"}, {"channel", "new"}},
                                              {{"error", "forbidden"}, {"channel", "private-x"}},
                                              {{"error", "forbidden"}, {"channel", "news.eu"}}});
    CHECK(ts.reach("news.eu") == 1);
    CHECK(ts.reach("new") == 0);

    // Its publish pattern: chat.lobby reaches the subscribers.
    const auto other = create_session(c, 1,
                                      {{"token", token(good_claims())},
                                       {"messages", json::array({{{"subscribe", "chat.lobby"}}})}});
    const http_reply p = send(json::array({{{"publish", "chat.lobby"}, {"data", "hi"}}}));
    REQUIRE(p.status == 200);
    const http_reply got = c.post_json("/comet", request_body(other.sid, 2));
    const auto data = messages_of(got);
    REQUIRE(data.size() == 1);
    CHECK(data.front().at("data") == "hi");
}

TEST_CASE("tokens: a session without a token may not subscribe to private- channels and "
          "publishes only where --client-publish allows") {
    token_server ts{/*require_token=*/false, {"chat.*"}};
    http_client c{ts.port()};
    const auto s = create_session(c, 1);
    const http_reply r =
        c.post_json("/comet", request_body(s.sid, 2,
                                           json::array({{{"subscribe", "private-alice"}},
                                                        {{"subscribe", "public"}},
                                                        {{"publish", "public"}, {"data", 1}},
                                                        {{"publish", "chat.room"}, {"data", 2}}})));
    REQUIRE(r.status == 200);
    CHECK(messages_of(r) ==
          std::vector<json>{{{"error", "forbidden"}, {"channel", "private-alice"}},
                            {{"error", "forbidden"}, {"channel", "public"}}});
    CHECK(ts.reach("public") == 1);
    // A recovery cursor at creation is a subscription too: refused the same way.
    const auto recovering = create_session(c, 1, {{"recover", {{"private-bob", json::object()}}}});
    CHECK(recovering.answer.at("messages") ==
          json::array({{{"error", "forbidden"}, {"channel", "private-bob"}}}));
}

TEST_CASE("tokens: an expired token ends the session at its next request, unless that request "
          "brings a fresh token of the same user") {
    token_server ts{/*require_token=*/false};
    http_client c{ts.port()};
    // exp: token_now + 60 s; the server's leeway is 30 s.
    const auto s = create_session(c, 1, {{"token", token(good_claims())}});
    auto poll = [&](std::uint64_t rid, json extra = json::object()) {
        json body =
            request_body(s.sid, rid, json::array({{{"publish", "chat.lobby"}, {"data", rid}}}));
        body.update(extra);
        return c.post_json("/comet", body);
    };
    ts.clock.offset->store(80); // past exp, within the leeway
    CHECK(poll(2).status == 200);

    // A refresh: a new token, exp an hour on; the session goes on past the old one's end.
    json fresh = good_claims();
    fresh["exp"] = at(3600);
    ts.clock.offset->store(100);
    CHECK(poll(3, {{"token", token(fresh)}}).status == 200);
    ts.clock.offset->store(1000);
    CHECK(poll(4).status == 200);

    // A refresh for another user is refused: the session ends.
    json mallory = fresh;
    mallory["sub"] = "mallory";
    const http_reply other_user = poll(5, {{"token", token(mallory)}});
    CHECK(other_user.status == 401);
    CHECK(other_user.body == not_authorized);
    CHECK(poll(6).status == 404); // the session is gone

    // And a token that runs out without a refresh: not-authorized at the next request.
    const auto t = create_session(c, 1, {{"token", token(fresh)}});
    ts.clock.offset->store(3600 + 31);
    const http_reply late = c.post_json("/comet", request_body(t.sid, 2));
    CHECK(late.status == 401);
    CHECK(late.body == not_authorized);
    CHECK(ts.hub.wait_closed(t.sid) == close_reason::not_authorized);
}

TEST_CASE("tokens: the hub refuses a session's publishes beyond its burst with rate-limited, "
          "the session goes on") {
    token_server ts{/*require_token=*/false, {"*"}, /*publish_burst=*/2};
    http_client c{ts.port()};
    const auto listener = create_session(c, 1, {{"messages", json::array({{{"subscribe", "x"}}})}});
    const auto s = create_session(c, 1);
    const http_reply r =
        c.post_json("/comet", request_body(s.sid, 2,
                                           json::array({{{"publish", "x"}, {"data", 1}},
                                                        {{"publish", "x"}, {"data", 2}},
                                                        {{"publish", "x"}, {"data", 3}}})));
    REQUIRE(r.status == 200);
    CHECK(messages_of(r) == std::vector<json>{{{"error", "rate-limited"}, {"channel", "x"}}});
    // Two got through, the third did not.
    const http_reply got = c.post_json("/comet", request_body(listener.sid, 2));
    std::vector<json> data;
    for (const json& m : messages_of(got))
        data.push_back(m.at("data"));
    CHECK(data == std::vector<json>{1, 2});
}

TEST_CASE("tokens: application::authorize sees the peer, the headers and the token's claims, "
          "and may refuse the client or name its user") {
    token_server ts{/*require_token=*/false};
    http_client c{ts.port()};

    // No cookie, no token: let in, no user; the tokenless rules apply.
    const auto plain = create_session(c, 1, {}, "/gate");
    CHECK(plain.answer.at("messages") ==
          json::array({{{"user", ""}, {"private", false}, {"news", true}}}));
    CHECK(ts.gatekeeper.last().peer_v4);
    CHECK(ts.gatekeeper.last().transport == content_kind::json);

    // The cookie names the user; without a token the tokenless rules still apply (the app's
    // user has no patterns).
    const http_reply named =
        c.request(http::verb::post, "/gate", json{{"rid", 1}}.dump(),
                  {{http::field::cookie, "session=ok"}, {http::field::user_agent, "gate-test/1"}});
    REQUIRE(named.status == 200);
    CHECK(named.json().at("messages") ==
          json::array({{{"user", "carol"}, {"private", false}, {"news", true}}}));
    CHECK(ts.gatekeeper.last().agent == "gate-test/1");

    // A token's claims reach the app: alice's patterns apply (channels news*, chat.lobby).
    const auto alice = create_session(c, 1, {{"token", token(good_claims())}}, "/gate");
    CHECK(alice.answer.at("messages") ==
          json::array({{{"user", "alice"}, {"private", false}, {"news", true}}}));
    // The cookie's user replaces the token's `sub`; the token's patterns stay.
    const http_reply both = c.request(http::verb::post, "/gate",
                                      json{{"rid", 1}, {"token", token(good_claims())}}.dump(),
                                      {{http::field::cookie, "session=ok"}});
    REQUIRE(both.status == 200);
    CHECK(both.json().at("messages") ==
          json::array({{{"user", "carol"}, {"private", false}, {"news", true}}}));

    // Refused by the app: 401 not-authorized, and no session was made (JSON and BOSH).
    json mallory = good_claims();
    mallory["sub"] = "mallory";
    const std::string refused_token = token(mallory);
    const http_reply refused = c.post_json("/gate", {{"rid", 1}, {"token", refused_token}});
    CHECK(refused.status == 401);
    CHECK(refused.body == not_authorized);
    http_client b{ts.port()};
    const http_reply bosh = b.post("/gate-bosh", "<body rid='1' to='localhost' wait='60' "
                                                 "hold='1' ver='1.6' token='" +
                                                     refused_token +
                                                     "' xmlns='http://jabber.org/protocol/"
                                                     "httpbind'/>");
    CHECK(bosh.status == 200);
    CHECK(bosh.body.find("condition='not-authorized'") != std::string::npos);
    CHECK(bosh.body.find("sid='") == std::string::npos);
    CHECK(ts.gatekeeper.last().transport == content_kind::xml);
}
