// BOSH (XEP-0124/0206) rules of the session layer, through megaphone::testing's BOSH clients:
// the creation answer, payload pass-through, stream restart, pause, keys, legacy codes, report.
#include "app/session.hpp"
#include "app/testing.hpp"
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

using megaphone::close_reason;
using megaphone::fsm_state;
using megaphone::testing::harness;
using namespace std::chrono_literals;

namespace {

/// Greets with stream features, echoes every stanza back, marks a restart.
class echo_app final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override {
        s.push(megaphone::packet::from(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"));
    }
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        received.push_back(m.text());
        s.push(megaphone::packet::from(m.text()));
    }
    void on_stream_restart(megaphone::session& s) override {
        ++restarts;
        s.push(megaphone::packet::from("<restarted xmlns='urn:test'/>"));
    }
    std::vector<std::string> received;
    int restarts = 0;
};

const std::string creation_tail = " xmlns='http://jabber.org/protocol/httpbind'/>";

std::string attribute(std::string_view xml, const std::string& name) {
    auto parsed = megaphone::parse_bosh_body(xml);
    REQUIRE(std::holds_alternative<megaphone::bosh_body>(parsed));
    const std::string* v = std::get<megaphone::bosh_body>(parsed).attribute(name);
    return v ? *v : std::string("(absent)");
}

} // namespace

TEST_CASE("bosh: the creation answer carries the negotiated session attributes") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh("<body rid='500' to='example.org' xml:lang='en' ver='1.11' "
                             "wait='600' hold='3' xmpp:version='1.0' "
                             "xmlns:xmpp='urn:xmpp:xbosh'" +
                             creation_tail);
    const auto answer = c.creation().text();
    CHECK(attribute(answer, "sid") == c.sid());
    CHECK(attribute(answer, "wait") == "60");    // capped by the server
    CHECK(attribute(answer, "hold") == "1");     // capped
    CHECK(attribute(answer, "requests") == "2"); // hold + 1
    CHECK(attribute(answer, "inactivity") == "45");
    CHECK(attribute(answer, "polling") == "2");
    CHECK(attribute(answer, "maxpause") == "120");
    CHECK(attribute(answer, "ver") == "1.6"); // the lower of 1.11 and ours
    CHECK(attribute(answer, "from") == "example.org");
    CHECK(attribute(answer, "ack") == "(absent)"); // we never promise acks
    CHECK(answer.find("xmpp:version='1.0'") != std::string_view::npos);
    CHECK(answer.find("xmlns:stream=") != std::string_view::npos);
    // What the app pushed on open (stream features) is in the creation answer.
    REQUIRE(c.stanzas().size() == 1);
    CHECK(c.stanzas()[0].find("stream:features") != std::string::npos);
    const auto* s = h.engine().find(c.sid());
    REQUIRE(s);
    CHECK(s->host() == "example.org");
    CHECK(s->lang() == "en");
}

TEST_CASE("bosh: an older client version is answered with its own") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh("<body rid='1' to='localhost' ver='1.5'" + creation_tail);
    CHECK(attribute(c.creation().text(), "ver") == "1.5");
}

TEST_CASE("bosh: payloads pass through byte for byte, both ways") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    const std::string stanza = "<message to='bob@localhost' type=\"chat\" xmlns='jabber:client'>"
                               "<body>hi &amp; bye &#x263A;</body></message>";
    auto& r = c.send_xml({stanza});
    REQUIRE(app.received.size() == 1);
    CHECK(app.received[0] == stanza);
    REQUIRE(r.answered());
    REQUIRE(r.stanzas().size() == 1);
    CHECK(r.stanzas()[0] == stanza);
}

TEST_CASE("bosh: a stream restart reaches the application and answers with what it pushes") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    auto& r = c.restart();
    CHECK(app.restarts == 1);
    REQUIRE(r.answered());
    REQUIRE(r.stanzas().size() == 1);
    CHECK(r.stanzas()[0] == "<restarted xmlns='urn:test'/>");
}

TEST_CASE("bosh: pause answers the held request and stretches inactivity up to maxpause") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    auto& held = c.send_xml({});
    CHECK(c.state() == fsm_state::have_request);
    auto& paused = c.send_xml({}, "pause='100'");
    REQUIRE(held.answered());
    CHECK(held.stanzas().empty());
    REQUIRE(paused.answered());
    CHECK(paused.stanzas().empty());
    CHECK(c.state() == fsm_state::waiting);
    h.advance(99s); // far past the normal 45 s inactivity
    CHECK_FALSE(c.closed());
    h.advance(2s);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::inactivity);
}

TEST_CASE("bosh: after a pause, an answered request brings the normal inactivity back") {
    // 50 s into a 100 s pause an exchange restarts the die timer for the normal 45 s, which ends
    // before the pause would have: the session ends at 95 s, not at 100 s.
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    c.send_xml({}, "pause='100'");
    h.advance(50s);
    REQUIRE_FALSE(c.closed());
    auto& echoed = c.send_xml({"<message xmlns='jabber:client'/>"}); // answered at once
    REQUIRE(echoed.answered());
    CHECK(c.state() == fsm_state::waiting);
    h.advance(44s);
    CHECK_FALSE(c.closed());
    h.advance(1s);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::inactivity);
}

TEST_CASE("bosh: a pause longer than maxpause is held to maxpause, the next request ends it") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    c.send_xml({}, "pause='1000'");
    h.advance(119s);
    CHECK_FALSE(c.closed());
    auto& back = c.send_xml({}); // held: the die timer stops
    CHECK_FALSE(back.answered());
    h.advance(60s); // answered empty by wait; inactivity is 45 s again from here
    REQUIRE(back.answered());
    h.advance(46s);
    CHECK(c.closed());
}

TEST_CASE("bosh: key sequencing accepts the chain and ends the session on a wrong key") {
    using megaphone::bosh_key_sequence;
    // K(n) = SHA-1(K(n-1)): the client sends newkey=K(3), then key=K(2), key=K(1).
    const std::string k0 = "seed";
    const std::string k1 = bosh_key_sequence::sha1_hex(k0);
    const std::string k2 = bosh_key_sequence::sha1_hex(k1);
    const std::string k3 = bosh_key_sequence::sha1_hex(k2);
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh("<body rid='10' to='localhost' ver='1.6' newkey='" + k3 + "'" +
                             creation_tail);
    auto& ok = c.send_xml({"<a xmlns='urn:test'/>"}, "key='" + k2 + "'");
    CHECK(ok.status() == 200);
    CHECK(app.received.size() == 1);
    auto& bad = c.send_xml({"<b xmlns='urn:test'/>"}, "key='" + k2 + "'"); // replayed key
    CHECK(attribute(bad.text(), "type") == "terminate");
    CHECK(attribute(bad.text(), "condition") == "item-not-found");
    CHECK(app.received.size() == 1); // the request was not processed
    CHECK(c.closed());
}

TEST_CASE("bosh: clients that sent ver get errors in the body, legacy clients bare codes") {
    echo_app app;
    harness h{app};
    SECTION("with ver: 200 and a terminate body") {
        auto& c = h.connect_bosh();
        auto& far = c.send_xml_as(c.next_rid() + 5, {});
        CHECK(far.status() == 200);
        CHECK(attribute(far.text(), "type") == "terminate");
        CHECK(attribute(far.text(), "condition") == "item-not-found");
        CHECK(c.closed());
    }
    SECTION("without ver (legacy): bare 404, also on the held request") {
        auto& c = h.connect_bosh("<body rid='1' to='localhost' wait='60' hold='1'" + creation_tail);
        auto& held = c.send_xml({});
        auto& far = c.send_xml_as(c.next_rid() + 5, {});
        CHECK(far.status() == 404);
        CHECK(far.text().empty());
        REQUIRE(held.answered());
        CHECK(held.status() == 404);
        CHECK(c.closed());
    }
}

TEST_CASE("bosh: an ack that shows a lost answer is reported with report and time") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh("<body rid='1000' to='localhost' ver='1.6' ack='1'" + creation_tail);
    auto& first = c.send_xml({});  // rid 1001, held
    auto& second = c.send_xml({}); // rid 1002 releases 1001 (answered empty), is held
    REQUIRE(first.answered());
    h.advance(3s);
    // The client never got 1001's answer: its ack stays at 1000.
    auto& third = c.send_xml({}, "ack='1000'");
    REQUIRE(third.answered());
    CHECK(attribute(third.text(), "report") == "1001");
    CHECK(attribute(third.text(), "time") == "3000");
    CHECK_FALSE(second.answered());
    // The client re-sends 1001 and gets the very same answer.
    auto& again = c.resend(first);
    REQUIRE(again.answered());
    CHECK(again.text() == first.text());
}

TEST_CASE("bosh: the content attribute sets the answers' Content-Type") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh("<body rid='1' to='localhost' ver='1.6' "
                             "content='text/plain; charset=utf-8'" +
                             creation_tail);
    CHECK(c.creation().content_type() == "text/plain; charset=utf-8");
    auto& r = c.send_xml({"<x xmlns='urn:test'/>"});
    CHECK(r.content_type() == "text/plain; charset=utf-8");
}

TEST_CASE("bosh: terminate forwards its payloads, then ends the session") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    auto& held = c.send_xml({});
    auto& bye =
        c.send_xml({"<presence type='unavailable' xmlns='jabber:client'/>"}, "type='terminate'");
    REQUIRE(app.received.size() == 1);
    CHECK(app.received[0].find("unavailable") != std::string::npos);
    // The app's echo of the presence answered the held request before the session ended.
    REQUIRE(held.answered());
    CHECK(held.stanzas().size() == 1);
    REQUIRE(bye.answered());
    CHECK(attribute(bye.text(), "type") == "terminate");
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::client_terminate);
}

TEST_CASE("bosh: an app that does not serve the host ends the session with host-unknown") {
    class one_host final : public megaphone::application {
    public:
        void on_open(megaphone::session& s) override {
            if (s.host() != "localhost")
                s.close(close_reason::host_unknown);
        }
    };
    one_host app;
    harness h{app};
    SECTION("with ver: the creation answer is a terminate body") {
        auto& c = h.connect_bosh("<body rid='1' to='elsewhere.example' ver='1.6'" + creation_tail);
        CHECK(attribute(c.creation().text(), "type") == "terminate");
        CHECK(attribute(c.creation().text(), "condition") == "host-unknown");
        CHECK(c.closed());
    }
    SECTION("served host: the session opens") {
        auto& c = h.connect_bosh();
        CHECK(c.state() == fsm_state::waiting);
    }
}

TEST_CASE("bosh: a pause answer never carries payloads, queued data waits for the next request") {
    echo_app app;
    harness h{app};
    auto& c = h.connect_bosh();
    h.push(c.sid(), megaphone::packet::from("<queued xmlns='urn:test'/>"));
    h.settle();
    CHECK(c.state() == fsm_state::have_packet);
    auto& paused = c.send_xml({}, "pause='100'");
    REQUIRE(paused.answered());
    CHECK(paused.stanzas().empty());
    h.advance(99s); // the pause stretched the die timer of have_packet too
    CHECK_FALSE(c.closed());
    auto& next = c.send_xml({});
    REQUIRE(next.answered());
    REQUIRE(next.stanzas().size() == 1);
    CHECK(next.stanzas()[0] == "<queued xmlns='urn:test'/>");
}
