// The XMPP example's core (examples/xmpp/xmpp_core.hpp): stanzas in, stanzas out, no sockets.
// Connections are named by made-up sids; every answer is parsed back to check it.
#include "examples/xmpp/xmpp_core.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

using namespace megaphone::examples::xmpp;

namespace {

std::string base64(std::string_view in) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned n = static_cast<unsigned char>(in[i]) << 16 |
                           static_cast<unsigned char>(in[i + 1]) << 8 |
                           static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6)
            out += alphabet[n >> s & 63];
    }
    if (i + 1 == in.size()) {
        const unsigned n = static_cast<unsigned char>(in[i]) << 16;
        out += alphabet[n >> 18 & 63];
        out += alphabet[n >> 12 & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const unsigned n =
            static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
        out += alphabet[n >> 18 & 63];
        out += alphabet[n >> 12 & 63];
        out += alphabet[n >> 6 & 63];
        out += '=';
    }
    return out;
}

config test_config() {
    config cfg;
    cfg.users = {{"alice", "alice"}, {"bob", "bob"}, {"echo", "echo"}};
    return cfg;
}

element parsed(const output& o) {
    std::optional<element> e = parse(o.xml);
    REQUIRE(e.has_value());
    return *e;
}

/// The one output of `out`, which must go to `conn`, parsed.
element only(const outputs& out, std::string_view conn) {
    REQUIRE(out.size() == 1);
    CHECK(out[0].conn == conn);
    CHECK_FALSE(out[0].close);
    return parsed(out[0]);
}

/// The outputs that go to `conn`, parsed.
std::vector<element> to(const outputs& out, std::string_view conn) {
    std::vector<element> r;
    for (const output& o : out)
        if (o.conn == conn)
            r.push_back(parsed(o));
    return r;
}

std::string attr(const element& e, std::string_view name) {
    const std::string* v = e.attr(name);
    return v ? *v : "<absent>";
}

/// The condition of an error stanza and its type, "type/condition".
std::string error_of(const element& e) {
    REQUIRE(attr(e, "type") == "error");
    const element* err = e.child(ns_client, "error");
    REQUIRE(err);
    REQUIRE(err->children.size() == 1);
    CHECK(err->children[0].ns == ns_stanzas);
    return attr(*err, "type") + "/" + err->children[0].name;
}

std::string plain(std::string_view authzid, std::string_view user, std::string_view password) {
    std::string msg(authzid);
    msg += '\0';
    msg += user;
    msg += '\0';
    msg += password;
    return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64(msg) +
           "</auth>";
}

const std::string anonymous_auth =
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>";
const std::string success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";

std::string bind_iq(std::string_view resource, std::string_view id = "bind_1") {
    std::string r = "<iq type='set' id='" + std::string(id) +
                    "' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>";
    if (!resource.empty())
        r += "<resource>" + std::string(resource) + "</resource>";
    return r + "</bind></iq>";
}

/// Opens `conn`, authenticates (PLAIN as `user`, or ANONYMOUS if empty), restarts, binds
/// `resource`; returns the bound full JID.
std::string login(core& xmpp, const std::string& conn, const std::string& user,
                  const std::string& resource) {
    xmpp.open(conn, "localhost");
    const outputs auth = xmpp.stanza(conn, user.empty() ? anonymous_auth : plain("", user, user));
    REQUIRE(auth.size() == 1);
    REQUIRE(auth[0].xml == success);
    xmpp.restart(conn);
    const element result = only(xmpp.stanza(conn, bind_iq(resource)), conn);
    REQUIRE(attr(result, "type") == "result");
    const element* jid = result.child(ns_bind, "bind")->child(ns_bind, "jid");
    REQUIRE(jid);
    return jid->text();
}

std::string available(std::string_view priority = "") {
    return priority.empty() ? "<presence xmlns='jabber:client'/>"
                            : "<presence xmlns='jabber:client'><priority>" + std::string(priority) +
                                  "</priority></presence>";
}

std::string chat(std::string_view to, std::string_view body, std::string_view type = "chat") {
    return "<message to='" + std::string(to) + "' type='" + std::string(type) +
           "' id='m1' xmlns='jabber:client'><body>" + std::string(body) + "</body></message>";
}

std::string body_of(const element& message) {
    const element* b = message.child(ns_client, "body");
    return b ? b->text() : "<no body>";
}

} // namespace

TEST_CASE("xmpp: stream features before authentication offer PLAIN and ANONYMOUS") {
    core xmpp{test_config()};
    const outputs out = xmpp.open("s1", "localhost");
    REQUIRE(out.size() == 1);
    CHECK(out[0].xml == "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
                        "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        "<mechanism>PLAIN</mechanism><mechanism>ANONYMOUS</mechanism>"
                        "</mechanisms></stream:features>");
    CHECK(xmpp.connections() == 1);
    CHECK_FALSE(xmpp.bound_jid("s1"));

    SECTION("the host is compared case-insensitively, and an empty one is the domain") {
        CHECK_FALSE(xmpp.open("s2", "LocalHost")[0].close);
        CHECK_FALSE(xmpp.open("s3", "")[0].close);
        CHECK(xmpp.connections() == 3);
    }
    SECTION("another host is refused with a host-unknown stream error") {
        const outputs refused = xmpp.open("s2", "example.org");
        REQUIRE(refused.size() == 1);
        CHECK(refused[0].conn == "s2");
        CHECK(refused[0].close);
        const element e = parsed(refused[0]);
        CHECK(e.is(ns_stream, "error"));
        CHECK(e.child(ns_streams_errors, "host-unknown"));
        CHECK(xmpp.connections() == 1);
    }
    SECTION("without anonymous logins only PLAIN is offered") {
        config cfg = test_config();
        cfg.anonymous = false;
        core strict{cfg};
        const element f = only(strict.open("s1", ""), "s1");
        const element* mechanisms = f.child(ns_sasl, "mechanisms");
        REQUIRE(mechanisms);
        REQUIRE(mechanisms->children.size() == 1);
        CHECK(mechanisms->children[0].text() == "PLAIN");
        CHECK(strict.stanza("s1", anonymous_auth)[0].xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>");
    }
}

TEST_CASE("xmpp: SASL ANONYMOUS, restart, bind without a resource, session") {
    core xmpp{test_config()};
    xmpp.open("s1", "localhost");
    CHECK(xmpp.stanza("s1", anonymous_auth) == outputs{{"s1", success}});

    // Before the restart, stanzas are refused.
    const element early = only(xmpp.stanza("s1", bind_iq("r")), "s1");
    CHECK(error_of(early) == "auth/not-authorized");

    const element features = only(xmpp.restart("s1"), "s1");
    CHECK(features.is(ns_stream, "features"));
    CHECK(features.child(ns_bind, "bind"));
    REQUIRE(features.child(ns_session, "session"));
    CHECK(features.child(ns_session, "session")->child(ns_session, "optional"));

    const element bound = only(xmpp.stanza("s1", bind_iq("")), "s1");
    CHECK(attr(bound, "type") == "result");
    CHECK(attr(bound, "id") == "bind_1");
    CHECK(attr(bound, "to") == "<absent>");
    const std::string jid = bound.child(ns_bind, "bind")->child(ns_bind, "jid")->text();
    static const std::regex anonymous_jid{
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}@localhost/"
        "[0-9a-f]{16}"};
    CHECK(std::regex_match(jid, anonymous_jid));
    CHECK(xmpp.bound_jid("s1") == jid);

    // The legacy session iq: an empty result, to the full JID.
    const element session =
        only(xmpp.stanza("s1", "<iq type='set' id='sess_1' xmlns='jabber:client'><session "
                               "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"),
             "s1");
    CHECK(attr(session, "type") == "result");
    CHECK(attr(session, "id") == "sess_1");
    CHECK(attr(session, "to") == jid);
    CHECK(attr(session, "from") == "<absent>");
    CHECK(session.children.empty());

    // A second bind on the stream is not allowed; a second restart has nothing to offer.
    CHECK(error_of(only(xmpp.stanza("s1", bind_iq("again", "b2")), "s1")) == "cancel/not-allowed");
    const element none = only(xmpp.restart("s1"), "s1");
    CHECK(none.is(ns_stream, "features"));
    CHECK(none.children.empty());

    SECTION("each anonymous login is a new account") {
        CHECK(login(xmpp, "s2", "", "r").substr(0, 36) != jid.substr(0, 36));
    }
    SECTION("SASL after success is ignored") {
        CHECK(xmpp.stanza("s1", anonymous_auth).empty());
    }
}

TEST_CASE("xmpp: SASL PLAIN checks the users file") {
    core xmpp{test_config()};
    xmpp.open("s1", "localhost");
    const std::string not_authorized =
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>";

    SECTION("a right password succeeds, and binding gives user@domain/resource") {
        CHECK(xmpp.stanza("s1", plain("", "alice", "alice")) == outputs{{"s1", success}});
        xmpp.restart("s1");
        const element bound = only(xmpp.stanza("s1", bind_iq("home")), "s1");
        CHECK(bound.child(ns_bind, "bind")->child(ns_bind, "jid")->text() ==
              "alice@localhost/home");
    }
    SECTION("a wrong password or an unknown user fails; the client may try again") {
        CHECK(xmpp.stanza("s1", plain("", "alice", "bob")) == outputs{{"s1", not_authorized}});
        CHECK(xmpp.stanza("s1", plain("", "carol", "carol")) == outputs{{"s1", not_authorized}});
        CHECK(xmpp.stanza("s1", plain("", "alice", "")) == outputs{{"s1", not_authorized}});
        CHECK(xmpp.stanza("s1", plain("", "Alice", "alice")) == outputs{{"s1", success}});
    }
    SECTION("the echo bot's name cannot log in") {
        CHECK(xmpp.stanza("s1", plain("", "echo", "echo")) == outputs{{"s1", not_authorized}});
    }
    SECTION("the authorization identity may be empty, the user, or its JID; nobody else") {
        CHECK(xmpp.stanza("s1", plain("bob", "alice", "alice"))[0].xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-authzid/></failure>");
        CHECK(xmpp.stanza("s1", plain("alice@localhost", "alice", "alice"))[0].xml == success);
    }
    SECTION("user@domain as the authentication identity") {
        CHECK(xmpp.stanza("s1", plain("", "bob@localhost", "bob"))[0].xml == success);
    }
    SECTION("bad base64 and a message without its two NULs") {
        CHECK(xmpp.stanza("s1", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                "mechanism='PLAIN'>not*base64</auth>")[0]
                  .xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>");
        CHECK(xmpp.stanza("s1", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                "mechanism='PLAIN'>" +
                                    base64("alice") + "</auth>")[0]
                  .xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/></failure>");
        CHECK(xmpp.stanza("s1", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                "mechanism='PLAIN'>=</auth>")[0]
                  .xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/></failure>");
    }
    SECTION("PLAIN without an initial response gets an empty challenge") {
        CHECK(xmpp.stanza("s1", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                "mechanism='PLAIN'/>") ==
              outputs{{"s1", "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"}});
        std::string msg("\0bob\0bob", 8);
        CHECK(xmpp.stanza("s1", "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
                                    base64(msg) + "</response>") == outputs{{"s1", success}});
    }
    SECTION("abort, and an unknown mechanism") {
        CHECK(xmpp.stanza("s1", "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")[0].xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/></failure>");
        CHECK(xmpp.stanza("s1", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                "mechanism='SCRAM-SHA-1'>eA==</auth>")[0]
                  .xml ==
              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>");
    }
}

TEST_CASE("xmpp: the users file") {
    const auto path = std::filesystem::temp_directory_path() / "megaphone-xmpp-users-test.txt";
    {
        std::ofstream f{path, std::ios::binary};
        f << "# accounts\n\nAlice:secret\r\nbob:with:colons\n  # indented comment\ncarol:\n";
    }
    const auto users = load_users(path);
    CHECK(users.size() == 3);
    CHECK(users.at("alice") == "secret");
    CHECK(users.at("bob") == "with:colons");
    CHECK(users.at("carol").empty());

    {
        std::ofstream f{path, std::ios::binary};
        f << "alice:alice\nno colon here\n";
    }
    CHECK_THROWS_WITH(load_users(path), Catch::Contains(":2:"));
    {
        std::ofstream f{path, std::ios::binary};
        f << "a@b:pw\n";
    }
    CHECK_THROWS(load_users(path));
    std::filesystem::remove(path);
    CHECK_THROWS(load_users(path));

    // The repository's own file.
    const auto shipped = load_users(MEGAPHONE_SOURCE_DIR "/examples/xmpp/users.txt");
    CHECK(shipped.at("alice") == "alice");
    CHECK(shipped.at("bob") == "bob");
}

TEST_CASE("xmpp: binding a requested resource") {
    core xmpp{test_config()};
    CHECK(login(xmpp, "a1", "alice", "home") == "alice@localhost/home");

    SECTION("a resource the account has bound already gets a variant") {
        const std::string second = login(xmpp, "a2", "alice", "home");
        CHECK(second.starts_with("alice@localhost/home-"));
        CHECK(second.size() == std::string("alice@localhost/home-").size() + 8);
        CHECK(xmpp.bound_jid("a1") == "alice@localhost/home");
        // Once the first is gone, the name is free again.
        xmpp.close("a1");
        CHECK(login(xmpp, "a3", "alice", "home") == "alice@localhost/home");
    }
    SECTION("a bind that relied on <body/>'s default namespace (httpbind) works the same") {
        xmpp.open("b1", "localhost");
        xmpp.stanza("b1", plain("", "bob", "bob"));
        xmpp.restart("b1");
        const element bound = only(
            xmpp.stanza("b1", "<iq type='set' id='x' xmlns='http://jabber.org/protocol/httpbind'>"
                              "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web"
                              "</resource></bind></iq>"),
            "b1");
        CHECK(bound.child(ns_bind, "bind")->child(ns_bind, "jid")->text() == "bob@localhost/web");
    }
    SECTION("a resource with control characters is a bad request") {
        xmpp.open("b1", "localhost");
        xmpp.stanza("b1", plain("", "bob", "bob"));
        xmpp.restart("b1");
        CHECK(error_of(only(xmpp.stanza("b1", bind_iq("a&#9;b")), "b1")) == "modify/bad-request");
        CHECK_FALSE(xmpp.bound_jid("b1"));
    }
}

TEST_CASE("xmpp: roster, ping and service discovery") {
    core xmpp{test_config()};
    const std::string me = login(xmpp, "a", "alice", "r");

    SECTION("roster get: an empty roster; roster set: not offered") {
        const element r =
            only(xmpp.stanza("a", "<iq type='get' id='roster_1' xmlns='jabber:client'><query "
                                  "xmlns='jabber:iq:roster'/></iq>"),
                 "a");
        CHECK(attr(r, "type") == "result");
        CHECK(attr(r, "id") == "roster_1");
        CHECK(attr(r, "to") == me);
        REQUIRE(r.children.size() == 1);
        CHECK(r.children[0].is(ns_roster, "query"));
        CHECK(r.children[0].children.empty());
        CHECK(error_of(only(
                  xmpp.stanza("a", "<iq type='set' id='r2' xmlns='jabber:client'><query "
                                   "xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query>"
                                   "</iq>"),
                  "a")) == "cancel/service-unavailable");
    }
    SECTION("ping the server, the account, and with no `to`") {
        for (std::string to : {" to='localhost'", " to='alice@localhost'", ""}) {
            const element r = only(xmpp.stanza("a", "<iq type='get' id='p'" + to +
                                                        " xmlns='jabber:client'><ping "
                                                        "xmlns='urn:xmpp:ping'/></iq>"),
                                   "a");
            CHECK(attr(r, "type") == "result");
            CHECK(attr(r, "id") == "p");
            CHECK(attr(r, "from") ==
                  (to.empty() ? "<absent>" : to.substr(5, to.size() - 6))); // from = the `to`
            CHECK(r.children.empty());
        }
    }
    SECTION("disco#info of the server: identity and features") {
        const element r =
            only(xmpp.stanza("a", "<iq type='get' id='d1' to='localhost' xmlns='jabber:client'>"
                                  "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
                 "a");
        CHECK(attr(r, "type") == "result");
        CHECK(attr(r, "from") == "localhost");
        const element* q = r.child(ns_disco_info, "query");
        REQUIRE(q);
        const element* identity = q->child(ns_disco_info, "identity");
        REQUIRE(identity);
        CHECK(attr(*identity, "category") == "server");
        CHECK(attr(*identity, "type") == "im");
        std::vector<std::string> features;
        for (const element& f : q->children)
            if (f.name == "feature")
                features.push_back(attr(f, "var"));
        CHECK(features == std::vector<std::string>{std::string(ns_disco_info),
                                                   std::string(ns_disco_items),
                                                   std::string(ns_ping)});
    }
    SECTION("disco#items of the server: none; a node: item-not-found") {
        const element r =
            only(xmpp.stanza("a", "<iq type='get' id='d2' to='localhost' xmlns='jabber:client'>"
                                  "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>"),
                 "a");
        CHECK(attr(r, "type") == "result");
        REQUIRE(r.child(ns_disco_items, "query"));
        CHECK(r.child(ns_disco_items, "query")->children.empty());
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='d3' to='localhost' "
                                             "xmlns='jabber:client'><query xmlns='http://"
                                             "jabber.org/protocol/disco#info' node='x'/></iq>"),
                            "a")) == "cancel/item-not-found");
    }
    SECTION("disco#info of one's own account") {
        const element r = only(
            xmpp.stanza("a", "<iq type='get' id='d4' to='alice@localhost' xmlns='jabber:client'>"
                             "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
            "a");
        const element* identity = r.child(ns_disco_info, "query")->child(ns_disco_info, "identity");
        REQUIRE(identity);
        CHECK(attr(*identity, "category") == "account");
        CHECK(attr(*identity, "type") == "registered");
        login(xmpp, "anon", "", "r");
        const element a =
            only(xmpp.stanza("anon", "<iq type='get' id='d5' xmlns='jabber:client'><query "
                                     "xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
                 "anon");
        CHECK(attr(*a.child(ns_disco_info, "query")->child(ns_disco_info, "identity"), "type") ==
              "anonymous");
    }
}

TEST_CASE("xmpp: what the server does not support is service-unavailable") {
    core xmpp{test_config()};
    const std::string me = login(xmpp, "a", "alice", "r");
    login(xmpp, "b", "bob", "r");

    SECTION("an unknown namespace, to the server or to the account") {
        for (std::string to : {" to='localhost'", ""}) {
            const element r = only(
                xmpp.stanza("a", "<iq type='get' id='v1'" + to +
                                     " xmlns='jabber:client'><vCard xmlns='vcard-temp'/></iq>"),
                "a");
            CHECK(error_of(r) == "cancel/service-unavailable");
            CHECK(attr(r, "id") == "v1");
            CHECK(attr(r, "to") == me);
            CHECK(r.child("vcard-temp", "vCard")); // the request's payload comes back
        }
    }
    SECTION("another user's bare JID, an unbound full JID, another domain, a bad JID") {
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='1' to='bob@localhost' "
                                             "xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/>"
                                             "</iq>"),
                            "a")) == "cancel/service-unavailable");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='2' to='bob@localhost/gone' "
                                             "xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/>"
                                             "</iq>"),
                            "a")) == "cancel/service-unavailable");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='3' to='example.org' "
                                             "xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/>"
                                             "</iq>"),
                            "a")) == "cancel/remote-server-not-found");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='4' to='a@b@c' "
                                             "xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/>"
                                             "</iq>"),
                            "a")) == "modify/jid-malformed");
    }
    SECTION("results and errors to the server are never answered; no id, nothing to answer") {
        CHECK(xmpp.stanza("a", "<iq type='result' id='x' to='localhost' xmlns='jabber:client'/>")
                  .empty());
        CHECK(xmpp.stanza("a", "<iq type='error' id='x' xmlns='jabber:client'/>").empty());
        CHECK(xmpp.stanza("a", "<iq type='get' xmlns='jabber:client'><ping "
                               "xmlns='urn:xmpp:ping'/></iq>")
                  .empty());
    }
    SECTION("a bad type, and a get without exactly one payload, are bad requests") {
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='fetch' id='x' xmlns='jabber:client'/>"),
                            "a")) == "modify/bad-request");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='x' xmlns='jabber:client'/>"),
                            "a")) == "modify/bad-request");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='x' xmlns='jabber:client'><ping "
                                             "xmlns='urn:xmpp:ping'/><ping "
                                             "xmlns='urn:xmpp:ping'/></iq>"),
                            "a")) == "modify/bad-request");
    }
    SECTION("iq between clients is routed to full JIDs, both ways, from stamped") {
        const element fwd = only(xmpp.stanza("a", "<iq type='get' id='q1' to='bob@localhost/r' "
                                                  "from='mallory@evil' xmlns='jabber:client'>"
                                                  "<query xmlns='jabber:iq:version'/></iq>"),
                                 "b");
        CHECK(attr(fwd, "from") == "alice@localhost/r");
        CHECK(attr(fwd, "to") == "bob@localhost/r");
        CHECK(fwd.child("jabber:iq:version", "query"));
        const element back = only(xmpp.stanza("b", "<iq type='result' id='q1' "
                                                   "to='alice@localhost/r' "
                                                   "xmlns='jabber:client'/>"),
                                  "a");
        CHECK(attr(back, "from") == "bob@localhost/r");
        CHECK(attr(back, "type") == "result");
    }
    SECTION("stream management is not offered: <enable/> fails") {
        CHECK(xmpp.stanza("a", "<enable xmlns='urn:xmpp:sm:3' resume='true'/>") ==
              outputs{{"a", "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "
                            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"}});
    }
}

TEST_CASE("xmpp: messages between two bound sessions") {
    core xmpp{test_config()};
    const std::string alice = login(xmpp, "a", "alice", "A");
    const std::string bob = login(xmpp, "b", "bob", "B");

    SECTION("to a full JID: delivered with from stamped, whatever the client wrote there") {
        const outputs out = xmpp.stanza(
            "a", "<message to='bob@localhost/B' from='bob@localhost/B' type='chat' id='ab_1' "
                 "xmlns='jabber:client'><body>hello B</body></message>");
        const element m = only(out, "b");
        CHECK(out[0].xml == "<message xmlns='jabber:client' to='bob@localhost/B' "
                            "from='alice@localhost/A' type='chat' id='ab_1'><body>hello "
                            "B</body></message>");
        CHECK(attr(m, "from") == alice);
        CHECK(body_of(m) == "hello B");
    }
    SECTION("a message in httpbind's namespace is delivered in jabber:client") {
        const outputs out = xmpp.stanza(
            "a", "<message to='bob@localhost/B' type='chat' xmlns='http://jabber.org/protocol/"
                 "httpbind'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'"
                 "/></message>");
        REQUIRE(out.size() == 1);
        CHECK(out[0].xml.find("httpbind") == std::string::npos);
        const element m = parsed(out[0]);
        CHECK(m.is(ns_client, "message"));
        CHECK(body_of(m) == "hi");
        CHECK(m.child("http://jabber.org/protocol/chatstates", "active"));
    }
    SECTION("to one's own full JID (as in the transcripts)") {
        const element m = only(xmpp.stanza("a", chat(alice, "hello self")), "a");
        CHECK(attr(m, "from") == alice);
        CHECK(attr(m, "to") == alice);
    }
    SECTION("to a bare JID: available resources with priority >= 0, else silent ones") {
        // Bob has sent no presence: connected, not available; he gets it all the same.
        CHECK(attr(only(xmpp.stanza("a", chat("bob@localhost", "anyone?")), "b"), "from") == alice);

        // Once a resource is available, only available ones count.
        xmpp.stanza("b", available());
        const std::string bob2 = login(xmpp, "b2", "bob", "B2"); // silent
        CHECK(only(xmpp.stanza("a", chat("bob@localhost", "x")), "b").is(ns_client, "message"));
        xmpp.stanza("b2", available());
        const std::string bob3 = login(xmpp, "b3", "bob", "B3");
        xmpp.stanza("b3", available("-1"));
        const outputs out = xmpp.stanza("a", chat("Bob@LOCALHOST", "hi bob"));
        REQUIRE(out.size() == 2);
        CHECK(to(out, "b").size() == 1);
        CHECK(to(out, "b2").size() == 1);
        CHECK(to(out, "b3").empty());
        CHECK(attr(to(out, "b")[0], "from") == alice);
        CHECK(body_of(to(out, "b2")[0]) == "hi bob");

        // A full JID that is gone falls back to the bare JID for chat.
        xmpp.close("b");
        const outputs fallback = xmpp.stanza("a", chat(bob, "still there?"));
        REQUIRE(fallback.size() == 1);
        CHECK(fallback[0].conn == "b2");

        // Only a negative priority and an unavailable resource left: offline.
        xmpp.stanza("b2", "<presence type='unavailable' xmlns='jabber:client'/>");
        const element bounced = only(xmpp.stanza("a", chat("bob@localhost", "anyone?")), "a");
        CHECK(error_of(bounced) == "cancel/service-unavailable");
        CHECK(attr(bounced, "from") == "bob@localhost");
        CHECK(attr(bounced, "to") == alice);
        CHECK(attr(bounced, "id") == "m1");
        CHECK(body_of(bounced) == "anyone?"); // the original comes back with the error
    }
    SECTION("nobody online: chat and normal bounce; headline and error are dropped") {
        xmpp.close("b");
        CHECK(error_of(only(xmpp.stanza("a", chat(bob, "x")), "a")) ==
              "cancel/service-unavailable");
        CHECK(error_of(only(xmpp.stanza("a", chat("bob@localhost", "x", "normal")), "a")) ==
              "cancel/service-unavailable");
        CHECK(error_of(only(xmpp.stanza("a", chat("nobody@localhost", "x")), "a")) ==
              "cancel/service-unavailable");
        CHECK(xmpp.stanza("a", chat(bob, "x", "headline")).empty());
        CHECK(xmpp.stanza("a", chat(bob, "x", "error")).empty());
    }
    SECTION("groupchat to a user: bounced even when online") {
        xmpp.stanza("b", available());
        CHECK(error_of(only(xmpp.stanza("a", chat("bob@localhost", "x", "groupchat")), "a")) ==
              "cancel/service-unavailable");
    }
    SECTION("to the domain, to another domain, to a malformed JID") {
        CHECK(error_of(only(xmpp.stanza("a", chat("localhost", "x")), "a")) ==
              "cancel/service-unavailable");
        CHECK(error_of(only(xmpp.stanza("a", chat("bob@example.org", "x")), "a")) ==
              "cancel/remote-server-not-found");
        CHECK(error_of(only(xmpp.stanza("a", chat("@localhost", "x")), "a")) ==
              "modify/jid-malformed");
    }
    SECTION("before binding: not-authorized") {
        xmpp.open("c", "localhost");
        CHECK(error_of(only(xmpp.stanza("c", chat(bob, "x")), "c")) == "auth/not-authorized");
    }
}

TEST_CASE("xmpp: the echo bot returns every message to its sender") {
    core xmpp{test_config()};
    const std::string me = login(xmpp, "a", "", "web");

    for (std::string to : {"echo@localhost", "echo@localhost/bot", "Echo@localhost/anything"}) {
        const element m =
            only(xmpp.stanza("a", "<message to='" + to +
                                      "' type='chat' id='e1' xmlns='jabber:client'><body>ping "
                                      "&amp; pong</body><thread>t1</thread><active "
                                      "xmlns='http://jabber.org/protocol/chatstates'/></message>"),
                 "a");
        CHECK(attr(m, "from") == "echo@localhost/bot");
        CHECK(attr(m, "to") == me);
        CHECK(attr(m, "type") == "chat");
        CHECK(attr(m, "id") == "e1");
        CHECK(body_of(m) == "ping & pong");
        CHECK(m.child(ns_client, "thread"));
        CHECK_FALSE(m.child("http://jabber.org/protocol/chatstates", "active"));
    }
    SECTION("the type is kept, or left out like the sender did") {
        const element m = only(xmpp.stanza("a", "<message to='echo@localhost' "
                                                "xmlns='jabber:client'><body>x</body></message>"),
                               "a");
        CHECK(attr(m, "type") == "<absent>");
        CHECK(attr(m, "id") == "<absent>");
    }
    SECTION("nothing to echo: no body, or an error") {
        CHECK(xmpp.stanza("a", "<message to='echo@localhost' type='chat' xmlns='jabber:client'>"
                               "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
                               "</message>")
                  .empty());
        CHECK(xmpp.stanza("a", chat("echo@localhost", "x", "error")).empty());
    }
    SECTION("presence, probes, ping and disco") {
        const element p =
            only(xmpp.stanza("a", "<presence to='echo@localhost' xmlns='jabber:client'/>"), "a");
        CHECK(p.is(ns_client, "presence"));
        CHECK(attr(p, "from") == "echo@localhost/bot");
        CHECK(attr(p, "type") == "<absent>");
        CHECK(only(xmpp.stanza("a", "<presence to='echo@localhost' type='probe' "
                                    "xmlns='jabber:client'/>"),
                   "a")
                  .is(ns_client, "presence"));
        const element pong = only(xmpp.stanza("a", "<iq type='get' id='p' to='echo@localhost/bot'"
                                                   " xmlns='jabber:client'><ping "
                                                   "xmlns='urn:xmpp:ping'/></iq>"),
                                  "a");
        CHECK(attr(pong, "type") == "result");
        CHECK(attr(pong, "from") == "echo@localhost/bot");
        const element info = only(xmpp.stanza("a", "<iq type='get' id='d' to='echo@localhost' "
                                                   "xmlns='jabber:client'><query xmlns='http://"
                                                   "jabber.org/protocol/disco#info'/></iq>"),
                                  "a");
        CHECK(attr(*info.child(ns_disco_info, "query")->child(ns_disco_info, "identity"), "type") ==
              "bot");
        CHECK(error_of(only(xmpp.stanza("a", "<iq type='get' id='v' to='echo@localhost/bot' "
                                             "xmlns='jabber:client'><vCard "
                                             "xmlns='vcard-temp'/></iq>"),
                            "a")) == "cancel/service-unavailable");
    }
}

TEST_CASE("xmpp: presence: broadcast, directed, unavailable") {
    core xmpp{test_config()};
    const std::string alice = login(xmpp, "a", "alice", "A");
    const std::string bob = login(xmpp, "b", "bob", "B");

    SECTION("initial presence comes back to its sender, from stamped; others do not see it") {
        const element p = only(xmpp.stanza("a", "<presence xmlns='jabber:client'><show>away"
                                                "</show></presence>"),
                               "a");
        CHECK(attr(p, "from") == alice);
        CHECK(p.child(ns_client, "show")->text() == "away");
    }
    SECTION("the account's resources see each other's presence") {
        xmpp.stanza("a", available());
        const std::string alice2 = login(xmpp, "a2", "alice", "A2");
        const outputs out = xmpp.stanza("a2", available());
        // Both resources get a2's presence; a2 also gets a's.
        REQUIRE(to(out, "a").size() == 1);
        CHECK(attr(to(out, "a")[0], "from") == alice2);
        const auto to_a2 = to(out, "a2");
        REQUIRE(to_a2.size() == 2);
        CHECK(attr(to_a2[0], "from") == alice2);
        CHECK(attr(to_a2[1], "from") == alice);
        // Unavailable goes to both as well.
        const outputs gone = xmpp.stanza("a2", "<presence type='unavailable' "
                                               "xmlns='jabber:client'/>");
        CHECK(to(gone, "a").size() == 1);
        CHECK(to(gone, "a2").size() == 1);
        CHECK(attr(to(gone, "a")[0], "type") == "unavailable");
    }
    SECTION("directed presence reaches its target, and unavailable follows it on close") {
        const element p =
            only(xmpp.stanza("a", "<presence to='bob@localhost/B' xmlns='jabber:client'/>"), "b");
        CHECK(attr(p, "from") == alice);
        CHECK(attr(p, "to") == bob);
        const element u = only(xmpp.close("a"), "b");
        CHECK(u.is(ns_client, "presence"));
        CHECK(attr(u, "type") == "unavailable");
        CHECK(attr(u, "from") == alice);
    }
    SECTION("an explicit unavailable (as a terminate carries) is not repeated on close") {
        xmpp.stanza("a", available());
        xmpp.stanza("a", "<presence to='bob@localhost' xmlns='jabber:client'/>"); // b not avail.
        xmpp.stanza("b", available());
        xmpp.stanza("a", "<presence to='bob@localhost' xmlns='jabber:client'/>");
        const outputs gone =
            xmpp.stanza("a", "<presence type='unavailable' xmlns='jabber:client'/>");
        CHECK(to(gone, "a").size() == 1);
        CHECK(to(gone, "b").size() == 1);
        CHECK(xmpp.close("a").empty());
    }
    SECTION("a directed unavailable presence ends the tracking") {
        xmpp.stanza("a", "<presence to='bob@localhost/B' xmlns='jabber:client'/>");
        CHECK(to(xmpp.stanza("a", "<presence to='bob@localhost/B' type='unavailable' "
                                  "xmlns='jabber:client'/>"),
                 "b")
                  .size() == 1);
        CHECK(xmpp.close("a").empty());
    }
    SECTION("closing an available session tells its other resources") {
        xmpp.stanza("b", available());
        login(xmpp, "b2", "bob", "B2");
        xmpp.stanza("b2", available());
        const element u = only(xmpp.close("b"), "b2");
        CHECK(attr(u, "type") == "unavailable");
        CHECK(attr(u, "from") == bob);
        CHECK(xmpp.connections() == 2);
        CHECK_FALSE(xmpp.bound_jid("b"));
    }
    SECTION("subscriptions, probes, presence to unknown places and before binding: dropped") {
        for (std::string type : {"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"})
            CHECK(xmpp.stanza("a", "<presence to='bob@localhost' type='" + type +
                                       "' xmlns='jabber:client'/>")
                      .empty());
        CHECK(xmpp.stanza("a", "<presence to='x@example.org' xmlns='jabber:client'/>").empty());
        CHECK(
            xmpp.stanza("a", "<presence to='bob@localhost/gone' xmlns='jabber:client'/>").empty());
        xmpp.open("c", "localhost");
        CHECK(xmpp.stanza("c", available()).empty());
    }
}

TEST_CASE("xmpp: attribute values and text are escaped") {
    core xmpp{test_config()};
    const std::string alice = login(xmpp, "a", "alice", "a'b\"c&lt;d&gt;&amp;e");
    CHECK(alice == "alice@localhost/a'b\"c<d>&e");
    login(xmpp, "b", "bob", "B");

    const outputs out =
        xmpp.stanza("a", "<message to='bob@localhost/B' id=\"q'&quot;&lt;&amp;\" type='chat' "
                         "xmlns='jabber:client'><body>1 &lt; 2 &amp;&amp; 3 &gt; 2]]&gt;</body>"
                         "</message>");
    REQUIRE(out.size() == 1);
    CHECK(out[0].xml.find("from='alice@localhost/a&apos;b&quot;c&lt;d&gt;&amp;e'") !=
          std::string::npos);
    CHECK(out[0].xml.find("id='q&apos;&quot;&lt;&amp;'") != std::string::npos);
    CHECK(out[0].xml.find("<body>1 &lt; 2 &amp;&amp; 3 &gt; 2]]&gt;</body>") != std::string::npos);
    const element m = parsed(out[0]);
    CHECK(attr(m, "from") == alice);
    CHECK(attr(m, "id") == "q'\"<&");
    CHECK(body_of(m) == "1 < 2 && 3 > 2]]>");

    // The bind answer's <jid/> text is escaped too (parsed back by login() above), and the
    // echo bot's reply to the sender's full JID.
    const outputs echo = xmpp.stanza("a", chat("echo@localhost", "x"));
    REQUIRE(echo.size() == 1);
    CHECK(echo[0].xml.find("to='alice@localhost/a&apos;b&quot;c&lt;d&gt;&amp;e'") !=
          std::string::npos);
}

TEST_CASE("xmpp: malformed input is ignored and does no harm") {
    core xmpp{test_config()};
    login(xmpp, "a", "alice", "r");
    const std::string deep = [] {
        std::string s;
        for (int i = 0; i < 100; ++i)
            s += "<x>";
        for (int i = 0; i < 100; ++i)
            s += "</x>";
        return "<message to='echo@localhost' xmlns='jabber:client'><body>" + s +
               "</body></message>";
    }();
    for (std::string bad : {
             std::string(),
             std::string("not xml"),
             std::string("<message xmlns='jabber:client'>"),
             std::string("<message xmlns='jabber:client'/><message xmlns='jabber:client'/>"),
             std::string("<message xmlns='jabber:client'></presence>"),
             std::string("<p:message xmlns='jabber:client'/>"),
             std::string("<?xml version='1.0'?><!DOCTYPE m [<!ENTITY a 'aaaa'><!ENTITY b "
                         "'&a;&a;&a;&a;'>]><message xmlns='jabber:client'>&b;</message>"),
             std::string("<message xmlns='jabber:client'>&undefined;</message>"),
             std::string("<message xmlns='jabber:client' a='1' a='2'/>"),
             std::string("<message xmlns='jabber:client'>\xff\xfe</message>"),
             std::string("<message xmlns='jabber:client'/>trailing text"),
             std::string("<message xmlns='jabber:client'/>") + '\0',
             std::string("<unknown xmlns='jabber:client'/>"),
             std::string("<message/>"), // in no namespace
             std::string("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"),
             deep,
         }) {
        INFO(bad);
        CHECK(xmpp.stanza("a", bad).empty());
    }
    // Whitespace around a stanza is fine, and the connection still works.
    CHECK(only(xmpp.stanza("a", "\n <iq type='get' id='p' xmlns='jabber:client'><ping "
                                "xmlns='urn:xmpp:ping'/></iq> \n"),
               "a")
              .attr("type"));
    // A connection the core never saw is a fresh stream: not authorized.
    CHECK(error_of(only(xmpp.stanza("ghost", "<iq type='get' id='p' xmlns='jabber:client'><ping "
                                             "xmlns='urn:xmpp:ping'/></iq>"),
                        "ghost")) == "auth/not-authorized");
    CHECK(xmpp.close("never-opened").empty());
}

TEST_CASE("xmpp: the XML layer keeps namespaces when it writes elements back") {
    const std::optional<element> e =
        parse("<message xmlns='http://jabber.org/protocol/httpbind' xmlns:x='urn:x' "
              "xml:lang='en' x:flag='1'><body>a<![CDATA[<b>]]>c</body><x:data "
              "xmlns:y='urn:y' y:attr='v'><y:item/></x:data><plain xmlns=''/></message>");
    REQUIRE(e);
    CHECK(e->is(ns_client, "message"));
    CHECK(e->child(ns_client, "body")->text() == "a<b>c");
    const std::string xml = serialize(*e);
    CHECK(xml == "<message xmlns='jabber:client' xml:lang='en' xmlns:ns1='urn:x' ns1:flag='1'>"
                 "<body>a&lt;b&gt;c</body><data xmlns='urn:x' xmlns:ns2='urn:y' ns2:attr='v'>"
                 "<item xmlns='urn:y'/></data><plain xmlns=''/></message>");
    const std::optional<element> again = parse(xml);
    REQUIRE(again);
    CHECK(serialize(*again) == xml);
    CHECK(again->child("", "plain"));
    CHECK(again->child("urn:x", "data")->child("urn:y", "item"));
}

TEST_CASE("xmpp: JIDs") {
    CHECK(parse_jid("Alice@LocalHost/Res")->full() == "alice@localhost/Res");
    CHECK(parse_jid("localhost.")->bare() == "localhost");
    CHECK(parse_jid("a@b/c/d")->resource == "c/d");
    CHECK(parse_jid("a@b/c@d")->resource == "c@d");
    for (const std::string& bad :
         std::vector<std::string>{"", "@b", "a@", "a@b/", "a b@c", "a@b@c", "a\x01@b", "a:b@c",
                                  std::string(1024, 'a') + "@b"})
        CHECK_FALSE(parse_jid(bad));
}

TEST_CASE("xmpp: two threads routing through one core") {
    core xmpp{test_config()};
    login(xmpp, "a", "alice", "A");
    login(xmpp, "b", "bob", "B");
    std::atomic<int> delivered{0};
    auto run = [&](const char* from, const char* to_jid, const char* to_conn) {
        for (int i = 0; i < 2000; ++i) {
            const outputs out = xmpp.stanza(from, chat(to_jid, std::to_string(i)));
            if (out.size() == 1 && out[0].conn == to_conn)
                ++delivered;
            if (i % 500 == 0)
                xmpp.stanza(from, "<iq type='get' id='p' xmlns='jabber:client'><ping "
                                  "xmlns='urn:xmpp:ping'/></iq>");
        }
    };
    std::thread t1{run, "a", "bob@localhost/B", "b"};
    std::thread t2{run, "b", "alice@localhost/A", "a"};
    t1.join();
    t2.join();
    CHECK(delivered == 4000);
}

TEST_CASE("xmpp: mangled stanzas never break the core") {
    core xmpp{test_config()};
    const std::string alice = login(xmpp, "a", "alice", "A");
    login(xmpp, "b", "bob", "B");
    xmpp.stanza("b", available());
    const std::vector<std::string> seeds{
        chat("bob@localhost/B", "hello"),
        chat("bob@localhost", "hello", "normal"),
        chat("echo@localhost", "x"),
        "<iq type='get' id='1' to='localhost' xmlns='jabber:client'><query "
        "xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        "<iq type='set' id='2' xmlns='jabber:client'><bind "
        "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
        "<presence to='bob@localhost/B' xmlns='jabber:client'><priority>5</priority></presence>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNl</auth>",
    };
    std::mt19937 random{12345};
    std::size_t answered = 0;
    for (int i = 0; i < 5000; ++i) {
        std::string s = seeds[random() % seeds.size()];
        const int edits = 1 + static_cast<int>(random() % 4);
        for (int k = 0; k < edits && !s.empty(); ++k) {
            const std::size_t at = random() % s.size();
            switch (random() % 4) {
            case 0:
                s[at] = static_cast<char>(random() % 256);
                break;
            case 1:
                s.erase(at, 1 + random() % 8);
                break;
            case 2:
                s.insert(at, 1, "<>'\"&/=@ "[random() % 9]);
                break;
            default:
                s.resize(at);
            }
        }
        for (const output& o : xmpp.stanza(i % 2 ? "a" : "b", s)) {
            ++answered;
            // Whatever goes out parses back.
            CHECK(parse(o.xml).has_value());
        }
    }
    CHECK(answered > 0);
    // Both connections still work.
    CHECK(xmpp.bound_jid("a") == alice);
    CHECK(only(xmpp.stanza("a", chat("echo@localhost", "still ok")), "a").is(ns_client, "message"));
}
