// The XMPP example on the application API (examples/xmpp/xmpp_app.hpp), driven through
// megaphone::testing's BOSH clients: the whole XEP-0206 login, routing between sessions through
// the broker, and presence when a session terminates.
#include "app/testing.hpp"
#include "examples/xmpp/xmpp_app.hpp"

#include <catch2/catch.hpp>

using megaphone::examples::xmpp_app;
using megaphone::testing::client;
using megaphone::testing::harness;
using namespace megaphone::examples::xmpp;

namespace {

config test_config() {
    config cfg;
    cfg.users = {{"alice", "alice"}, {"bob", "bob"}};
    return cfg;
}

element only(const std::vector<std::string>& stanzas) {
    REQUIRE(stanzas.size() == 1);
    std::optional<element> e = parse(stanzas[0]);
    REQUIRE(e);
    return *e;
}

std::string attr(const element& e, std::string_view name) {
    const std::string* v = e.attr(name);
    return v ? *v : "<absent>";
}

/// SASL (PLAIN with user:user, or ANONYMOUS), restart, bind `resource`: the bound JID.
std::string login(client& c, const std::string& user, const std::string& resource) {
    const element features = only(c.stanzas());
    REQUIRE(features.is(ns_stream, "features"));
    // "\0alice\0alice" and "\0bob\0bob" in base64.
    const std::string plain = user == "alice" ? "AGFsaWNlAGFsaWNl" : "AGJvYgBib2I=";
    auto& auth = c.send_xml(
        {user.empty() ? "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"
                      : "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
                            plain + "</auth>"});
    REQUIRE(auth.answered());
    CHECK(only(auth.stanzas()).is(ns_sasl, "success"));

    auto& restart = c.restart();
    REQUIRE(restart.answered());
    CHECK(only(restart.stanzas()).child(ns_bind, "bind"));

    // Like the transcripts' clients: the bind iq declares jabber:client itself.
    auto& bind = c.send_xml({"<iq type='set' id='bind_1' xmlns='jabber:client'><bind "
                             "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" +
                             resource + "</resource></bind></iq>"});
    REQUIRE(bind.answered());
    const element result = only(bind.stanzas());
    REQUIRE(attr(result, "type") == "result");
    return result.child(ns_bind, "bind")->child(ns_bind, "jid")->text();
}

} // namespace

TEST_CASE("xmpp app: two BOSH clients log in and chat through the broker") {
    xmpp_app app{test_config()};
    harness h{app};
    auto& a = h.connect_bosh();
    auto& b = h.connect_bosh();
    const std::string alice = login(a, "alice", "A");
    const std::string bob = login(b, "", "B");
    CHECK(alice == "alice@localhost/A");
    CHECK(app.core().bound_jid(b.sid()) == bob);

    // B holds a poll; A's message (relying on <body/>'s default namespace) answers it.
    auto& held = b.send_xml({});
    CHECK_FALSE(held.answered());
    auto& sent = a.send_xml({"<message to='" + bob +
                             "' type='chat' id='ab_1'><body>hello B"
                             "</body></message>"});
    REQUIRE(held.answered());
    const element m = only(held.stanzas());
    CHECK(m.is(ns_client, "message"));
    CHECK(attr(m, "from") == alice);
    CHECK(attr(m, "id") == "ab_1");
    CHECK(m.child(ns_client, "body")->text() == "hello B");
    CHECK(held.stanzas()[0].find("xmlns='jabber:client'") != std::string::npos);
    // A's own request is held (nothing for A), as a BOSH request with nothing to say is.
    CHECK_FALSE(sent.answered());

    // The echo bot answers on A's held request at once.
    auto& echo = a.send_xml({"<message to='echo@localhost' type='chat' xmlns='jabber:client'>"
                             "<body>ping</body></message>"});
    REQUIRE(sent.answered());
    const element reply = only(sent.stanzas());
    CHECK(attr(reply, "from") == "echo@localhost/bot");
    CHECK(reply.child(ns_client, "body")->text() == "ping");
    CHECK_FALSE(echo.answered());

    // A sends B directed presence, then terminates with an unavailable presence (as clients
    // do): B sees it once, and nothing more comes when A's session ends.
    auto& b_poll = b.send_xml({});
    a.send_xml({"<presence to='" + bob + "' xmlns='jabber:client'/>"});
    REQUIRE(b_poll.answered());
    CHECK(attr(only(b_poll.stanzas()), "from") == alice);
    auto& b_poll2 = b.send_xml({});
    auto& bye =
        a.send_xml({"<presence type='unavailable' xmlns='jabber:client'/>"}, "type='terminate'");
    REQUIRE(bye.answered());
    CHECK(a.closed());
    REQUIRE(b_poll2.answered());
    const element gone = only(b_poll2.stanzas());
    CHECK(attr(gone, "type") == "unavailable");
    CHECK(attr(gone, "from") == alice);
    CHECK_FALSE(app.core().bound_jid(a.sid()));

    // A message to A now bounces to B.
    auto& late = b.send_xml({"<message to='" + alice +
                             "' type='chat' id='late' "
                             "xmlns='jabber:client'><body>still there?"
                             "</body></message>"});
    REQUIRE(late.answered());
    const element bounce = only(late.stanzas());
    CHECK(attr(bounce, "type") == "error");
    CHECK(bounce.child(ns_client, "error")->child(ns_stanzas, "service-unavailable"));
}

TEST_CASE("xmpp app: a session that ends without a word still tells its directed targets") {
    xmpp_app app{test_config()};
    harness h{app};
    auto& a = h.connect_bosh();
    auto& b = h.connect_bosh();
    const std::string alice = login(a, "alice", "A");
    const std::string bob = login(b, "bob", "B");
    a.send_xml({"<presence to='bob@localhost' xmlns='jabber:client'/>"}); // bob: not available
    b.send_xml({"<presence xmlns='jabber:client'/>"});
    a.send_xml({"<presence to='" + bob + "' xmlns='jabber:client'/>"});
    const std::size_t before = b.stanzas().size();
    // A's client vanishes: its session ends at inactivity, while B keeps polling.
    for (int i = 0; i < 60 && !a.closed(); ++i) {
        if (b.held() == 0)
            b.send_xml({});
        h.advance(std::chrono::seconds(5));
    }
    REQUIRE(a.closed());
    b.send_xml({});
    const auto all = b.stanzas();
    bool saw_unavailable = false;
    for (std::size_t i = before; i < all.size(); ++i) {
        const auto e = parse(all[i]);
        if (e && attr(*e, "type") == "unavailable" && attr(*e, "from") == alice)
            saw_unavailable = true;
    }
    CHECK(saw_unavailable);
    CHECK(app.core().connections() == 1);
}

TEST_CASE("xmpp app: JSON sessions are refused") {
    xmpp_app app{test_config()};
    harness h{app};
    // The session is closed as it opens (the kit's JSON client may not even get a sid).
    try {
        auto& c = h.connect();
        CHECK(c.closed());
    } catch (const std::exception&) {
    }
    CHECK(app.core().connections() == 0);
}
