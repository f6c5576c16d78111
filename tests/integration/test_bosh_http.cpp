// BOSH (XEP-0124/0206) end to end over real HTTP on loopback: an in-process server with short
// timers (wait 1 s, inactivity 2 s, polling 0.5 s) and a small XMPP-like application mounted at
// /bosh, one test case per scenario recorded against ejabberd and Prosody
// (shared/bosh/transcripts), sending the same client bodies (sid and rid adapted) and checking
// the behaviour chosen in shared/bosh/README.md ("what to take") and CHECKLIST.md. Then what the
// transcripts do not show: legacy clients, a re-sent pending rid, report/time, keys, payload
// pass-through, configured CORS origins.
//
// Every BOSH answer to a client that sent `ver` must have the status line "HTTP/1.1 200 OK"
// exactly; bodies are read back with megaphone::parse_bosh_body. Where a test must know that the
// server has reached some point, it waits (bounded) for the application to have seen a stanza,
// or for an answer with the client's receive timeout; timer-driven behaviour is checked against
// the short configured timers with bounded waits.
#include "support/bosh_client.hpp"

#include "app/server.hpp"
#include "app/session.hpp"
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::packet;
using megaphone::server;
using megaphone::server_options;
using megaphone::test::bosh_answer;
using megaphone::test::bosh_connection;
namespace http = boost::beast::http;

namespace {

using steady = std::chrono::steady_clock;

std::chrono::milliseconds since(steady::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0);
}

const std::string ns = "xmlns='http://jabber.org/protocol/httpbind'";
const std::string features =
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms "
    "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms>"
    "</stream:features>";
const std::string bind_features =
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind "
    "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
const std::string sasl_success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
const std::string empty_body = "<body xmlns='http://jabber.org/protocol/httpbind'/>";

// Client bodies, as in the transcripts.
const std::string auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>";
const std::string bind_iq = "<iq type='set' id='bind_1' xmlns='jabber:client'><bind "
                            "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>anchor</resource>"
                            "</bind></iq>";
const std::string unavailable = "<presence type='unavailable' xmlns='jabber:client'/>";

/// The creation request of the transcripts (Strophe-like: wait 60, hold 1, ver 1.6, XEP-0206).
std::string creation(std::uint64_t rid,
                     const std::string& attrs = "to='localhost' xml:lang='en' wait='60' hold='1' "
                                                "content='text/xml; charset=utf-8' ver='1.6' "
                                                "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'") {
    return "<body rid='" + std::to_string(rid) + "' " + ns + " " + attrs + "/>";
}

/// A request of session `sid`: `<body rid='..' sid='..' [extra] xmlns='..'>payload</body>`.
std::string request(const std::string& sid, std::uint64_t rid, const std::string& payload = {},
                    const std::string& extra = {}) {
    std::string b = "<body rid='" + std::to_string(rid) + "' sid='" + sid + "' ";
    if (!extra.empty())
        b += extra + " ";
    b += ns;
    return payload.empty() ? b + "/>" : b + ">" + payload + "</body>";
}

std::string message_to(const std::string& to, const std::string& id, const std::string& text) {
    return "<message to='" + to + "' type='chat' id='" + id + "' xmlns='jabber:client'><body>" +
           text + "</body></message>";
}

//--------------------------------------------------------------------------------------------------
// The application: an XMPP-like echo with routing between sessions, everything recorded.

struct seen_stanza {
    std::string sid;
    std::string text;
};

class xmpp_app final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override {
        update([&] { opened_.emplace_back(s.id()); });
        s.push(packet::from(features));
    }
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        const std::string text = m.text();
        update([&] { stanzas_.push_back({std::string(s.id()), text}); });
        if (text.starts_with("<crash"))
            throw std::runtime_error("crash requested by the test");
        if (text.starts_with("<auth")) {
            s.push(packet::from(sasl_success));
        } else if (text.starts_with("<iq") &&
                   text.find("urn:ietf:params:xml:ns:xmpp-bind") != std::string::npos) {
            s.push(packet::from("<iq type='result' id='bind_1' xmlns='jabber:client'><bind "
                                "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>" +
                                std::string(s.id()) + "@localhost/anchor</jid></bind></iq>"));
        } else if (text.starts_with("<message")) {
            // To another session (the local part of the JID is its sid) or back to the sender.
            static const std::regex to_re{R"(^<message[^>]*\sto=['"]([^'"@/]+))"};
            std::smatch match;
            if (std::regex_search(text, match, to_re) && match[1].str() != s.id())
                s.broker().push(match[1].str(), packet::from(text));
            else
                s.push(packet::from(text));
        }
    }
    void on_stream_restart(megaphone::session& s) override {
        update([&] { ++restarts_; });
        s.push(packet::from(bind_features));
    }
    void on_close(megaphone::session& s, close_reason why) override {
        update([&] { closed_.emplace_back(std::string(s.id()), why); });
    }

    /// Waits (bounded) until `pred()` holds, checked under the lock.
    template <class Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lock{mutex_};
        return changed_.wait_for(lock, timeout, pred);
    }
    /// Waits until the application has seen a stanza containing `fragment` from `sid`.
    bool wait_stanza(const std::string& sid, const std::string& fragment,
                     std::chrono::milliseconds timeout = 5s) {
        return wait_for(
            [&] {
                for (const auto& st : stanzas_)
                    if (st.sid == sid && st.text.find(fragment) != std::string::npos)
                        return true;
                return false;
            },
            timeout);
    }
    /// Waits until session `sid` has closed; its reason, or nullopt when it has not by then.
    std::optional<close_reason> wait_closed(const std::string& sid,
                                            std::chrono::milliseconds timeout = 5s) {
        std::optional<close_reason> why;
        wait_for(
            [&] {
                for (const auto& [id, reason] : closed_)
                    if (id == sid)
                        why = reason;
                return why.has_value();
            },
            timeout);
        return why;
    }
    std::vector<std::string> stanzas_of(const std::string& sid) const {
        std::lock_guard lock{mutex_};
        std::vector<std::string> out;
        for (const auto& st : stanzas_)
            if (st.sid == sid)
                out.push_back(st.text);
        return out;
    }
    bool opened(const std::string& sid) const {
        std::lock_guard lock{mutex_};
        return std::find(opened_.begin(), opened_.end(), sid) != opened_.end();
    }
    int restarts() const {
        std::lock_guard lock{mutex_};
        return restarts_;
    }

private:
    template <class F>
    void update(F&& f) {
        {
            std::lock_guard lock{mutex_};
            f();
        }
        changed_.notify_all();
    }

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> opened_;
    std::vector<seen_stanza> stanzas_;
    std::vector<std::pair<std::string, close_reason>> closed_;
    int restarts_ = 0;
};

//--------------------------------------------------------------------------------------------------
// The server

server_options bosh_options() {
    server_options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.placement.policy = megaphone::placement_policy::spread;
    o.drain = 20ms;
    o.http.read_timeout = 10s;
    o.http.write_timeout = 10s;
    o.engine.max_wait = 1s;
    o.engine.inactivity = 2s;
    o.engine.polling = 500ms;
    o.engine.max_hold = 1;
    o.log.level = megaphone::log_level::warn;
    return o;
}

/// A started server with the application at POST /bosh; stopped and joined on destruction.
class bosh_server {
public:
    explicit bosh_server(server_options options = bosh_options())
        : srv_{std::move(options)} {
        srv_.mount_bosh("/bosh", app_);
        srv_.start();
    }
    ~bosh_server() {
        srv_.stop(); // before the application goes: the shutdown calls on_close
        srv_.wait();
    }
    bosh_server(const bosh_server&) = delete;
    bosh_server& operator=(const bosh_server&) = delete;

    server& srv() noexcept { return srv_; }
    xmpp_app& app() noexcept { return app_; }
    unsigned short port() const noexcept { return srv_.port(); }
    bosh_connection connect() { return bosh_connection{srv_.port()}; }

private:
    xmpp_app app_;
    server srv_;
};

//--------------------------------------------------------------------------------------------------
// Checks

/// A BOSH answer to a client that sent `ver`: exactly "HTTP/1.1 200 OK", text/xml, a <body/>.
void check_ok(const bosh_answer& a) {
    INFO(a.status_line << "\n" << a.body);
    CHECK(a.status_line == "HTTP/1.1 200 OK");
    CHECK(a.header("Content-Type") == "text/xml; charset=utf-8");
    CHECK(a.has_header("Content-Length")); // never chunked (§5)
    CHECK_FALSE(a.has_header("Transfer-Encoding"));
    CHECK(a.parsed().has_value());
}

/// An ordinary answer: 200 OK, no type, exactly these payloads.
void check_data(const bosh_answer& a, const std::vector<std::string>& payloads = {}) {
    check_ok(a);
    INFO(a.body);
    CHECK_FALSE(a.attr("type"));
    CHECK(a.payloads() == payloads);
}

/// A terminate answer: 200 OK, type='terminate', this condition ("" for none).
void check_terminate(const bosh_answer& a, const std::string& condition) {
    check_ok(a);
    INFO(a.body);
    CHECK(a.attr("type") == "terminate");
    if (condition.empty())
        CHECK_FALSE(a.attr("condition"));
    else
        CHECK(a.attr("condition") == condition);
    CHECK(a.payloads().empty());
}

/// A bare legacy error code (§17.1): this status, empty body.
void check_legacy(const bosh_answer& a, unsigned status, const std::string& status_line) {
    INFO(a.status_line << "\n" << a.body);
    CHECK(a.status == status);
    CHECK(a.status_line == status_line);
    CHECK(a.body.empty());
}

struct session_ref {
    std::string sid;
    std::uint64_t rid; ///< the last rid used
    bosh_answer creation;
    std::uint64_t next() { return ++rid; }
};

/// Creates a session with `body` (a creation request with rid `rid`); REQUIREs a sid.
session_ref create(bosh_connection& c, std::uint64_t rid, const std::string& body) {
    bosh_answer a = c.post(body);
    INFO(a.status_line << "\n" << a.body);
    REQUIRE(a.status == 200);
    const auto sid = a.attr("sid");
    REQUIRE(sid);
    return session_ref{*sid, rid, std::move(a)};
}
session_ref create(bosh_connection& c, std::uint64_t rid) {
    return create(c, rid, creation(rid));
}

/// Waits (bounded) until one of two connections has an answer to read; that one, or nullptr.
bosh_connection* first_readable(bosh_connection& x, bosh_connection& y) {
    const auto deadline = steady::now() + 5s;
    while (steady::now() < deadline) {
        if (x.readable_within(20ms))
            return &x;
        if (y.readable_within(20ms))
            return &y;
    }
    return nullptr;
}

/// Scenario 08 with hold 2 (requests 3): 1001 and 1002 held, 1004 waiting for the missing 1003,
/// then a fourth unanswered request 1005 with `extra` (a terminate or a pause): allowed (§11).
void extra_request_allowed(const std::string& extra) {
    auto options = bosh_options();
    options.engine.max_hold = 2;
    bosh_server f{options};
    auto c = f.connect();
    auto s = create(c, 1000, creation(1000, "to='localhost' wait='60' hold='2' ver='1.6'"));
    REQUIRE(s.creation.attr("requests") == "3");
    auto a = f.connect();
    auto b = f.connect();
    a.send(request(s.sid, 1001));
    b.send(request(s.sid, 1002, "<presence id='held2' xmlns='jabber:client'/>"));
    REQUIRE(f.app().wait_stanza(s.sid, "id='held2'")); // 1001 and 1002 held
    // 1004 waits for 1003. A second copy of it answers the other copy with a recoverable error
    // at once: that shows 1004 is waiting before the fourth request goes out.
    const std::string early = request(s.sid, 1004, "<presence id='early' xmlns='jabber:client'/>");
    auto e1 = f.connect();
    auto e2 = f.connect();
    e1.send(early);
    e2.send(early);
    bosh_connection* replaced = first_readable(e1, e2);
    REQUIRE(replaced);
    bosh_connection& live = replaced == &e1 ? e2 : e1;
    const auto error = replaced->receive();
    check_ok(error);
    CHECK(error.attr("type") == "error");

    // The fourth unanswered request (1001, 1002, 1004, this one), shown waiting the same way.
    const std::string fourth = request(s.sid, 1005, "", extra);
    auto x1 = f.connect();
    auto x2 = f.connect();
    x1.send(fourth);
    x2.send(fourth);
    bosh_connection* x_replaced = first_readable(x1, x2);
    REQUIRE(x_replaced);
    bosh_connection& x = x_replaced == &x1 ? x2 : x1;
    const auto x_error = x_replaced->receive();
    check_ok(x_error);
    CHECK(x_error.attr("type") == "error"); // not policy-violation
    auto g = f.connect();
    g.send(request(s.sid, 1003)); // fills the gap: everything is processed in rid order
    check_data(a.receive());      // released by 1003
    check_data(b.receive());      // released by 1004
    const bool terminate = extra.find("terminate") != std::string::npos;
    for (bosh_connection* conn : {&g, &live, &x}) {
        const auto answer = conn->receive();
        if (terminate)
            check_terminate(answer, ""); // the session ended at the client's request
        else
            check_data(answer); // the pause answered everything held, and itself, empty
    }
    CHECK(f.app().stanzas_of(s.sid) ==
          std::vector<std::string>{"<presence id='held2' xmlns='jabber:client'/>",
                                   "<presence id='early' xmlns='jabber:client'/>"});
    if (terminate) {
        CHECK(f.app().wait_closed(s.sid) == close_reason::client_terminate);
    } else {
        check_terminate(c.post(request(s.sid, 1006, "", "type='terminate'")), "");
        CHECK(f.app().wait_closed(s.sid) == close_reason::client_terminate);
    }
}

} // namespace

//==================================================================================================
// The transcript scenarios

TEST_CASE("bosh scenario 00: session creation answers the negotiated attributes and features") {
    bosh_server f;
    auto c = f.connect();
    const auto a = c.post("<body rid='553532219' xmlns='http://jabber.org/protocol/httpbind' "
                          "to='localhost' xml:lang='en' wait='60' hold='1' content='text/xml; "
                          "charset=utf-8' ver='1.6' xmpp:version='1.0' "
                          "xmlns:xmpp='urn:xmpp:xbosh'/>");
    check_ok(a);
    const auto body = a.parsed();
    REQUIRE(body);
    const auto sid = a.attr("sid");
    REQUIRE(sid);
    CHECK(sid->size() >= 20);     // opaque and unguessable: 128 random bits
    CHECK(a.attr("wait") == "1"); // the client's 60, capped by the server
    CHECK(a.attr("hold") == "1");
    CHECK(a.attr("requests") == "2"); // hold + 1
    CHECK(a.attr("inactivity") == "2");
    CHECK(a.attr("polling") == "1");    // 0.5 s rounded up: never announce less than enforced
    CHECK(a.attr("maxpause") == "120"); // pauses are honoured (§10)
    CHECK(a.attr("ver") == "1.6");      // the lower of the client's and ours
    CHECK(a.attr("from") == "localhost");
    CHECK_FALSE(a.attr("ack")); // we never promise request acks
    CHECK_FALSE(a.attr("type"));
    CHECK(a.attr("{urn:xmpp:xbosh}version") == "1.0");
    CHECK(a.attr("{urn:xmpp:xbosh}restartlogic") == "true");
    REQUIRE(body->namespace_uri("stream"));
    CHECK(*body->namespace_uri("stream") == megaphone::xmpp_stream_namespace);
    REQUIRE(body->namespace_uri("xmpp"));
    CHECK(*body->namespace_uri("xmpp") == megaphone::xbosh_namespace);
    // What the application pushed on open is in the creation answer, as pushed.
    CHECK(body->payloads == std::vector<std::string>{features});
    CHECK(a.body.find(features) != std::string::npos);
    CHECK(f.app().opened(*sid));

    // Another creation: another sid.
    auto c2 = f.connect();
    const auto other = create(c2, 22360566);
    CHECK(other.sid != *sid);

    // Multiple streams (§16) are not offered (no `stream` above): a request that would add one
    // is an ordinary poll, answered without a `stream` attribute.
    CHECK_FALSE(a.attr("stream"));
    auto add_stream = f.connect();
    add_stream.send("<body rid='553532220' sid='" + *sid +
                    "' to='example.net' xml:lang='en' xmpp:version='1.0' "
                    "xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind'/>");
    CHECK_FALSE(add_stream.readable_within(200ms)); // held like any poll
    const std::string news = "<message xmlns='jabber:client'><body>news</body></message>";
    f.srv().push(*sid, packet::from(news));
    const auto polled = add_stream.receive();
    check_data(polled, {news});
    CHECK_FALSE(polled.attr("stream"));

    const auto t = c.post("<body rid='553532221' sid='" + *sid +
                          "' type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>");
    check_terminate(t, "");
    CHECK(f.app().wait_closed(*sid) == close_reason::client_terminate);
    CHECK(f.srv().session_count() == 1);
}

TEST_CASE("bosh scenario 01: full lifecycle: SASL, restart, bind, message, empty poll, repeat, "
          "terminate") {
    bosh_server f;
    auto c = f.connect();
    auto s = create(c, 208499336);
    check_ok(s.creation);
    CHECK(s.creation.payloads() == std::vector<std::string>{features});

    // SASL ANONYMOUS: the application answers with <success/> on the same request.
    const auto authed = c.post(request(s.sid, s.next(), auth));
    check_data(authed, {sasl_success});
    // Stream restart (XEP-0206): on_stream_restart, answered with the new features.
    const auto restarted = c.post(request(s.sid, s.next(), "",
                                          "to='localhost' xml:lang='en' xmpp:restart='true' "
                                          "xmlns:xmpp='urn:xmpp:xbosh'"));
    check_data(restarted, {bind_features});
    CHECK(f.app().restarts() == 1);
    // Resource bind.
    const auto bound = c.post(request(s.sid, s.next(), bind_iq));
    check_data(bound, {"<iq type='result' id='bind_1' xmlns='jabber:client'><bind "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>" +
                       s.sid + "@localhost/anchor</jid></bind></iq>"});

    // A held empty poll, then a message to self on the next rid: delivered once, on either.
    auto poll = f.connect();
    poll.send(request(s.sid, s.next()));
    CHECK_FALSE(poll.readable_within(200ms)); // held
    const std::string hello = message_to(s.sid + "@localhost/anchor", "msg_1", "hello self");
    auto msg = f.connect();
    msg.send(request(s.sid, s.next(), hello));
    const auto polled = poll.receive();
    const auto sent = msg.receive(); // the other one: empty, after wait at the latest
    check_data(polled, polled.payloads().empty() ? std::vector<std::string>{}
                                                 : std::vector<std::string>{hello});
    check_data(sent, sent.payloads().empty() ? std::vector<std::string>{}
                                             : std::vector<std::string>{hello});
    CHECK(polled.payloads().size() + sent.payloads().size() == 1);
    CHECK(f.app().stanzas_of(s.sid).size() == 3); // auth, bind, the message: nothing twice

    // An empty poll is answered empty after `wait` (1 s here; the client asked for 60).
    const auto t0 = steady::now();
    const std::string empty_poll = request(s.sid, s.next());
    const auto waited = c.post(empty_poll);
    const auto took = since(t0);
    check_data(waited);
    CHECK(waited.body == empty_body);
    CHECK(took >= 900ms);
    CHECK(took < 3s);

    // The same rid again: the very same answer, at once.
    const auto t1 = steady::now();
    const auto repeated = c.post(empty_poll);
    check_ok(repeated);
    CHECK(repeated.body == waited.body);
    CHECK(since(t1) < 500ms);

    // Terminate with a payload: forwarded, then the session ends.
    const auto bye = c.post(request(s.sid, s.next(), unavailable, "type='terminate'"));
    check_terminate(bye, "");
    CHECK(f.app().wait_closed(s.sid) == close_reason::client_terminate);
    CHECK(f.app().stanzas_of(s.sid).back() == unavailable);

    // A request on the terminated sid.
    check_terminate(c.post(request(s.sid, s.next())), "item-not-found");
}

TEST_CASE("bosh scenario 02: an unknown sid is item-not-found") {
    bosh_server f;
    auto c = f.connect();
    // The transcript's sid, not one of ours at all.
    check_terminate(c.post("<body rid='776976876' sid='0123456789abcdef0123456789abcdef01234567' "
                           "xmlns='http://jabber.org/protocol/httpbind'/>"),
                    "item-not-found");
    // One shaped like ours, on an existing shard, and on one that does not exist.
    auto s = create(c, 363082348);
    std::string forged = s.sid;
    forged.back() = forged.back() == 'A' ? 'B' : 'A';
    check_terminate(c.post(request(forged, s.rid + 1)), "item-not-found");
    std::string no_shard = s.sid;
    no_shard[no_shard.find('-') + 1] = 'z';
    check_terminate(c.post(request(no_shard, s.rid + 1)), "item-not-found");
    // The real session did not notice.
    const std::string hi = "<message id='m' xmlns='jabber:client'><body>hi</body></message>";
    check_data(c.post(request(s.sid, s.next(), hi)), {hi});
    CHECK(f.srv().session_count() == 1);
}

TEST_CASE("bosh scenario 03: a rid far beyond the window ends the session with item-not-found") {
    bosh_server f;
    auto c = f.connect();
    auto s = create(c, 611083389);
    // last rid + 10 (the window is `requests` = 2)
    check_terminate(c.post(request(s.sid, s.rid + 10)), "item-not-found");
    CHECK(f.app().wait_closed(s.sid) == close_reason::item_not_found);
    // The expected next rid: the session is gone.
    check_terminate(c.post(request(s.sid, s.rid + 1)), "item-not-found");
    CHECK(f.srv().session_count() == 0);
}

TEST_CASE("bosh scenario 03b: a rid gap within the window is buffered and answered in order") {
    bosh_server f;
    SECTION("empty polls, as recorded") {
        auto c = f.connect();
        auto s = create(c, 807778008);
        auto early = f.connect();
        early.send(request(s.sid, s.rid + 2));     // last + 2 first
        CHECK_FALSE(early.readable_within(300ms)); // waits for the gap
        auto gap = f.connect();
        gap.send(request(s.sid, s.rid + 1));
        const auto first = gap.receive(); // released at once by the buffered last + 2
        const auto t_first = steady::now();
        check_data(first);
        const auto second = early.receive(); // then held until wait
        CHECK(since(t_first) >= 700ms);
        check_data(second);
        s.rid += 2;
        check_terminate(c.post(request(s.sid, s.next(), "", "type='terminate'")), "");
    }
    SECTION("with payloads: forwarded and answered in rid order") {
        auto c = f.connect();
        auto s = create(c, 45848318);
        const std::string one = "<message id='one' xmlns='jabber:client'><body>1</body></message>";
        const std::string two = "<message id='two' xmlns='jabber:client'><body>2</body></message>";
        auto early = f.connect();
        early.send(request(s.sid, s.rid + 2, two));
        CHECK_FALSE(early.readable_within(300ms));
        CHECK(f.app().stanzas_of(s.sid).empty()); // not forwarded before its turn
        auto gap = f.connect();
        gap.send(request(s.sid, s.rid + 1, one));
        check_data(gap.receive(), {one});
        check_data(early.receive(), {two});
        CHECK(f.app().stanzas_of(s.sid) == std::vector<std::string>{one, two});
    }
}

TEST_CASE("bosh scenario 04: a repeated rid gets its cached answer while in the buffer") {
    bosh_server f;
    auto c = f.connect();
    auto s = create(c, 351042748);
    const std::string auth_req = request(s.sid, s.next(), auth);
    const auto authed = c.post(auth_req);
    check_data(authed, {sasl_success});
    const std::string restart_req = request(s.sid, s.next(), "",
                                            "to='localhost' xml:lang='en' xmpp:restart='true' "
                                            "xmlns:xmpp='urn:xmpp:xbosh'");
    const auto restarted = c.post(restart_req);
    check_data(restarted, {bind_features});
    const std::string bind_req = request(s.sid, s.next(), bind_iq);
    const auto bound = c.post(bind_req);
    REQUIRE(bound.payloads().size() == 1);

    // The last answered rid (bind), and an older one still in the buffer (restart): the same
    // bytes again, and nothing forwarded twice.
    const auto bound_again = c.post(bind_req);
    check_ok(bound_again);
    CHECK(bound_again.body == bound.body);
    const auto restarted_again = c.post(restart_req);
    check_ok(restarted_again);
    CHECK(restarted_again.body == restarted.body);
    CHECK(f.app().restarts() == 1);
    CHECK(f.app().stanzas_of(s.sid).size() == 2); // auth, bind

    // Older than the buffer (requests = 2 answers kept): item-not-found, the session ends.
    check_terminate(c.post(auth_req), "item-not-found");
    CHECK(f.app().wait_closed(s.sid) == close_reason::item_not_found);
    check_terminate(c.post(request(s.sid, s.next(), "", "type='terminate'")), "item-not-found");
}

TEST_CASE("bosh scenario 05: malformed XML is bad-request, no session is affected") {
    bosh_server f;
    auto c = f.connect();
    check_terminate(c.post("this is not xml"), "bad-request");
    check_terminate(c.post("<body rid='430289515' xmlns='http://jabber.org/protocol/httpbind' "
                           "to='localhost'><message></body>"),
                    "bad-request");
    CHECK(f.srv().session_count() == 0); // the unclosed creation created nothing

    auto s = create(c, 745934407);
    auto other_conn = f.connect();
    auto other = create(other_conn, 663020452);
    const std::string broken = "<body rid='" + std::to_string(s.rid + 1) + "' sid='" + s.sid +
                               "' xmlns='http://jabber.org/protocol/httpbind'><message "
                               "to='x'><body>oops</message></body>";
    check_terminate(c.post(broken), "bad-request");
    CHECK(f.app().stanzas_of(s.sid).empty());

    // The same rid, well-formed: the session is alive, the request is held until wait.
    const auto t0 = steady::now();
    const auto valid = c.post(request(s.sid, s.next()));
    check_data(valid);
    CHECK(since(t0) >= 900ms);
    // And another session never noticed.
    const std::string hi = "<message id='m' xmlns='jabber:client'><body>hi</body></message>";
    check_data(other_conn.post(request(other.sid, other.next(), hi)), {hi});
    CHECK(f.srv().session_count() == 2);
}

TEST_CASE("bosh scenario 06: a body that is not one is bad-request, no sid makes a session") {
    bosh_server f;
    auto c = f.connect();
    // No sid and no to: for us a session creation (the CM requires no `to`), never an error.
    const std::string stanza =
        "<message to='someone@localhost' xmlns='jabber:client'><body>x</body></message>";
    const auto created = c.post("<body rid='465355946' "
                                "xmlns='http://jabber.org/protocol/httpbind'>" +
                                stanza + "</body>");
    check_ok(created);
    const auto sid = created.attr("sid");
    REQUIRE(sid);
    CHECK(f.app().stanzas_of(*sid) == std::vector<std::string>{stanza});
    // A present but empty sid is bad-request.
    check_terminate(c.post("<body rid='465355947' sid='' " + ns + "/>"), "bad-request");
    // The root is not <body/>.
    check_terminate(c.post("<iq type='get' id='x' xmlns='jabber:client'/>"), "bad-request");
    // <body/> without the httpbind namespace.
    check_terminate(c.post("<body rid='156036836' to='localhost' wait='60' hold='1' ver='1.6'/>"),
                    "bad-request");
    CHECK(f.srv().session_count() == 1);
}

TEST_CASE("bosh scenario 06b: a missing rid is bad-request, never a 5xx") {
    bosh_server f;
    auto c = f.connect();
    check_terminate(c.post("<body xmlns='http://jabber.org/protocol/httpbind' to='localhost' "
                           "wait='60' hold='1' ver='1.6' xmpp:version='1.0' "
                           "xmlns:xmpp='urn:xmpp:xbosh'/>"),
                    "bad-request");
    CHECK(f.srv().session_count() == 0);

    auto s = create(c, 935089683);
    const auto no_rid =
        c.post("<body sid='" + s.sid + "' xmlns='http://jabber.org/protocol/httpbind'/>");
    check_terminate(no_rid, "bad-request");
    CHECK(no_rid.status < 500);
    // Same connection (kept alive), next rid: the session survived.
    check_terminate(c.post(request(s.sid, s.next(), "", "type='terminate'")), "");
    CHECK(f.app().wait_closed(s.sid) == close_reason::client_terminate);
}

TEST_CASE("bosh scenario 07: wait and hold are clamped to the server's limits") {
    auto options = bosh_options();
    options.engine.max_wait = 5s;
    options.engine.max_hold = 2;
    bosh_server f{options};
    auto c = f.connect();

    const auto big = create(c, 255627462,
                            creation(255627462, "to='localhost' xml:lang='en' wait='3600' "
                                                "hold='5' content='text/xml; charset=utf-8' "
                                                "ver='1.6' xmpp:version='1.0' "
                                                "xmlns:xmpp='urn:xmpp:xbosh'"));
    check_ok(big.creation);
    CHECK(big.creation.attr("wait") == "5");
    CHECK(big.creation.attr("hold") == "2");
    CHECK(big.creation.attr("requests") == "3");
    check_terminate(c.post(request(big.sid, big.rid + 1, "", "type='terminate'")), "");

    // Below the limits: kept as asked.
    const auto small = create(c, 100, creation(100, "to='localhost' wait='3' hold='1' ver='1.6'"));
    CHECK(small.creation.attr("wait") == "3");
    CHECK(small.creation.attr("hold") == "1");
    CHECK(small.creation.attr("requests") == "2");

    // wait 0 / hold 0: a polling session; a terminate at once is no policy violation.
    auto polling = create(c, 868912354,
                          creation(868912354, "to='localhost' xml:lang='en' wait='0' hold='0' "
                                              "content='text/xml; charset=utf-8' ver='1.6' "
                                              "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'"));
    CHECK(polling.creation.attr("wait") == "0");
    CHECK(polling.creation.attr("hold") == "0");
    CHECK(polling.creation.attr("requests") == "1");
    check_terminate(c.post(request(polling.sid, polling.next(), "", "type='terminate'")), "");
    CHECK(f.app().wait_closed(polling.sid) == close_reason::client_terminate);

    // Any host is served (the application decides what it serves).
    const auto elsewhere =
        create(c, 496882519,
               creation(496882519, "to='unknown.example' xml:lang='en' wait='60' hold='1' "
                                   "ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'"));
    check_ok(elsewhere.creation);
    CHECK(elsewhere.creation.attr("from") == "unknown.example");
    // No xmpp:version (pre-XEP-0206 client): no XMPP attributes in the answer.
    const auto plain =
        create(c, 653347376,
               creation(653347376, "to='localhost' xml:lang='en' wait='60' hold='1' ver='1.6'"));
    check_ok(plain.creation);
    CHECK_FALSE(plain.creation.attr("{urn:xmpp:xbosh}version"));
    CHECK_FALSE(plain.creation.attr("{urn:xmpp:xbosh}restartlogic"));
    // `content` sets the Content-Type of every answer of the session (§7.1).
    auto typed = create(
        c, 900, creation(900, "to='localhost' ver='1.6' content='text/plain; charset=utf-8'"));
    CHECK(typed.creation.header("Content-Type") == "text/plain; charset=utf-8");
    const std::string hi = "<message id='m' xmlns='jabber:client'><body>hi</body></message>";
    const auto typed_answer = c.post(request(typed.sid, typed.next(), hi));
    CHECK(typed_answer.status_line == "HTTP/1.1 200 OK");
    CHECK(typed_answer.header("Content-Type") == "text/plain; charset=utf-8");
    CHECK(typed_answer.payloads() == std::vector<std::string>{hi});
    // ver: the lower of the client's and ours (minor numbers are integers).
    CHECK(create(c, 7, creation(7, "to='localhost' ver='1.11'")).creation.attr("ver") == "1.6");
    CHECK(create(c, 8, creation(8, "to='localhost' ver='1.5'")).creation.attr("ver") == "1.5");
}

TEST_CASE("bosh scenario 07b: a polling session is answered at once, polling too fast is "
          "policy-violation") {
    bosh_server f; // polling 0.5 s
    auto c = f.connect();
    auto s = create(c, 530303437,
                    creation(530303437, "to='localhost' xml:lang='en' wait='0' hold='0' "
                                        "content='text/xml; charset=utf-8' ver='1.6' "
                                        "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'"));
    CHECK(s.creation.attr("requests") == "1");
    CHECK(s.creation.attr("polling") == "1");
    CHECK(std::stoi(*s.creation.attr("inactivity")) > std::stoi(*s.creation.attr("polling")));

    // Empty polls spaced more than `polling` apart: answered empty at once.
    auto last = steady::now();
    for (int i = 0; i < 2; ++i) {
        std::this_thread::sleep_until(last + 600ms); // the client's own pacing
        const auto t0 = steady::now();
        const auto polled = c.post(request(s.sid, s.next()));
        last = steady::now();
        check_data(polled);
        CHECK(since(t0) < 500ms);
    }
    // One more at once: too frequent.
    check_terminate(c.post(request(s.sid, s.next())), "policy-violation");
    CHECK(f.app().wait_closed(s.sid) == close_reason::policy_violation);
    check_terminate(c.post(request(s.sid, s.next(), "", "type='terminate'")), "item-not-found");
}

TEST_CASE("bosh scenario 08: a third request while two are out releases the oldest, no error") {
    SECTION("requests = 2 (hold 1), as recorded") {
        bosh_server f;
        auto c = f.connect();
        auto s = create(c, 500466525);
        auto a = f.connect();
        auto b = f.connect();
        auto d = f.connect();
        a.send(request(s.sid, s.rid + 1));
        // The second carries a stanza the application records: once seen, both are processed.
        const std::string mark = "<presence id='mark' xmlns='jabber:client'/>";
        b.send(request(s.sid, s.rid + 2, mark));
        REQUIRE(f.app().wait_stanza(s.sid, "id='mark'"));
        check_data(a.receive()); // released empty by the second
        const auto t0 = steady::now();
        d.send(request(s.sid, s.rid + 3));
        check_data(b.receive()); // released empty by the third, not after wait
        CHECK(since(t0) < 800ms);
        check_data(d.receive()); // held until wait
        CHECK(since(t0) >= 900ms);
        s.rid += 3;
        check_terminate(c.post(request(s.sid, s.next(), "", "type='terminate'")), "");
        CHECK(f.app().wait_closed(s.sid) == close_reason::client_terminate);
    }
    SECTION("more new requests unanswered than `requests` (a gap): policy-violation (§11)") {
        auto options = bosh_options();
        options.engine.max_hold = 2;
        bosh_server f{options};
        auto c = f.connect();
        auto s = create(c, 1000, creation(1000, "to='localhost' wait='60' hold='2' ver='1.6'"));
        REQUIRE(s.creation.attr("requests") == "3");
        std::vector<bosh_connection> conns;
        for (int i = 0; i < 4; ++i)
            conns.push_back(f.connect());
        conns[0].send(request(s.sid, 1001));
        conns[1].send(request(s.sid, 1002, "<presence id='held2' xmlns='jabber:client'/>"));
        REQUIRE(f.app().wait_stanza(s.sid, "id='held2'")); // 1001 and 1002 held
        conns[2].send(request(s.sid, 1004));               // 1003 skipped: waits for the gap
        conns[3].send(request(s.sid, 1005));               // a fourth unanswered request
        for (auto& conn : conns)
            check_terminate(conn.receive(), "policy-violation");
        CHECK(f.app().wait_closed(s.sid) == close_reason::policy_violation);
    }
    SECTION("one request more than `requests` is allowed when it is a terminate (§11)") {
        extra_request_allowed("type='terminate'");
    }
    SECTION("one request more than `requests` is allowed when it is a pause (§11)") {
        extra_request_allowed("pause='5'");
    }
}

TEST_CASE("bosh scenario 09: inactivity ends the session, later requests are item-not-found") {
    bosh_server f; // inactivity 2 s
    auto c = f.connect();
    const auto t0 = steady::now();
    auto s = create(c, 958788320);
    check_data(c.post(request(s.sid, s.next(), auth)), {sasl_success});
    const auto t1 = steady::now();
    CHECK(f.app().wait_closed(s.sid, 6s) == close_reason::inactivity);
    CHECK(since(t1) >= 1500ms); // 2 s from the answer, which the client read a bit later
    CHECK(since(t0) < 5s);
    check_terminate(c.post(request(s.sid, s.next())), "item-not-found");
}

TEST_CASE("bosh scenario 10: GET gives an info page, OPTIONS the CORS preflight, others 405") {
    bosh_server f; // CORS: any origin
    auto c = f.connect();

    const auto page = c.request(http::verb::get);
    CHECK(page.status_line == "HTTP/1.1 200 OK");
    CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(page.body.find("<html") != std::string::npos);
    CHECK(page.body.find("BOSH") != std::string::npos);

    const auto preflight =
        c.request(http::verb::options, {},
                  {{http::field::origin, "http://example.test"},
                   {http::field::access_control_request_method, "POST"},
                   {http::field::access_control_request_headers, "content-type"}});
    INFO(preflight.status_line);
    CHECK((preflight.status == 200 || preflight.status == 204));
    CHECK(preflight.header("Access-Control-Allow-Origin") == "*");
    const auto methods = preflight.header("Access-Control-Allow-Methods");
    CHECK(methods.find("POST") != std::string::npos);
    CHECK(methods.find("OPTIONS") != std::string::npos);
    CHECK(methods.find("GET") != std::string::npos);
    CHECK(preflight.header("Access-Control-Allow-Headers").find("Content-Type") !=
          std::string::npos);
    REQUIRE(preflight.has_header("Access-Control-Max-Age"));
    CHECK(std::stol(preflight.header("Access-Control-Max-Age")) > 0);

    // The POST that follows a preflight carries the origin too.
    const auto created = c.post(creation(1), {{http::field::origin, "http://example.test"}});
    check_ok(created);
    CHECK(created.header("Access-Control-Allow-Origin") == "*");

    // The request's Content-Type is ignored (§5).
    for (const char* type : {"application/x-www-form-urlencoded", "text/plain"}) {
        INFO(type);
        const auto typed = c.post(creation(3), {{http::field::content_type, type}});
        check_ok(typed);
        CHECK(typed.attr("sid"));
    }

    // An empty POST is no <body/>.
    check_terminate(c.post(""), "bad-request");

    for (const auto method : {http::verb::put, http::verb::delete_}) {
        auto other = f.connect();
        const auto refused = other.request(method, creation(2));
        INFO(refused.status_line);
        CHECK(refused.status == 405);
        CHECK(refused.status_line == "HTTP/1.1 405 Method Not Allowed");
    }
    CHECK(f.srv().session_count() == 3);
}

TEST_CASE("bosh scenario 11: pause answers the held request and stretches inactivity up to "
          "maxpause") {
    auto options = bosh_options();
    options.engine.maxpause = 3s; // inactivity stays 2 s
    bosh_server f{options};
    auto c = f.connect();
    auto s = create(c, 783115997);
    CHECK(s.creation.attr("maxpause") == "3");

    auto held = f.connect();
    held.send(request(s.sid, s.rid + 1));
    const auto t0 = steady::now();
    // pause='10', more than maxpause: held to 3 s.
    const auto paused = c.post(request(s.sid, s.rid + 2, "", "pause='10'"));
    check_data(paused); // answered at once, with no payload
    CHECK(since(t0) < 800ms);
    check_data(held.receive()); // the held request too, at once
    CHECK(since(t0) < 800ms);
    s.rid += 2;

    // Past the normal inactivity (2 s) the session lives on...
    CHECK_FALSE(f.app().wait_closed(s.sid, 2500ms));
    // ...until the pause (maxpause, 3 s) runs out.
    CHECK(f.app().wait_closed(s.sid, 3s) == close_reason::inactivity);
    CHECK(since(t0) >= 2900ms);
    check_terminate(c.post(request(s.sid, s.next())), "item-not-found");
}

TEST_CASE("bosh scenario 11b: a request during a pause resumes the session with the normal "
          "inactivity") {
    bosh_server f; // maxpause 120 s, inactivity 2 s
    auto c = f.connect();
    auto s = create(c, 506169746);
    check_data(c.post(request(s.sid, s.next(), "", "pause='10'")));
    CHECK_FALSE(f.app().wait_closed(s.sid, 1s));

    // The client is back: an ordinary request, held until wait.
    const auto t0 = steady::now();
    const auto resumed = c.post(request(s.sid, s.next()));
    check_data(resumed);
    CHECK(since(t0) >= 900ms);
    // The pause is over: the normal 2 s inactivity again, not 10 s.
    const auto t1 = steady::now();
    CHECK(f.app().wait_closed(s.sid, 5s) == close_reason::inactivity);
    CHECK(since(t1) >= 1500ms);
    CHECK(since(t1) < 4s);
}

TEST_CASE("bosh scenario 12: a message from session A reaches session B's held request") {
    bosh_server f;
    auto ca = f.connect();
    auto cb = f.connect();
    auto a = create(ca, 211451868);
    auto b = create(cb, 698111827);

    auto b_poll = f.connect();
    b_poll.send(request(b.sid, b.next()));
    const std::string hello = message_to(b.sid + "@localhost/B", "ab_1", "hello B");
    auto a_msg = f.connect();
    a_msg.send(request(a.sid, a.next(), hello));
    check_data(b_poll.receive(), {hello}); // byte for byte, as A sent it

    // A leaves while its request is held: both answered, the held one with terminate (or empty
    // if its wait ran out first), never with the message.
    const auto a_bye = ca.post(request(a.sid, a.next(), unavailable, "type='terminate'"));
    check_terminate(a_bye, "");
    const auto a_held = a_msg.receive();
    check_ok(a_held);
    CHECK(a_held.payloads().empty());
    CHECK_FALSE(a_held.attr("condition"));
    CHECK(f.app().wait_closed(a.sid) == close_reason::client_terminate);

    // B polls again, then leaves.
    b_poll.send(request(b.sid, b.next()));
    const auto b_bye = cb.post(request(b.sid, b.next(), "", "type='terminate'"));
    check_terminate(b_bye, "");
    const auto b_held = b_poll.receive();
    check_ok(b_held);
    CHECK(b_held.payloads().empty());
    CHECK_FALSE(b_held.attr("condition"));
    CHECK(f.app().wait_closed(b.sid) == close_reason::client_terminate);

    // Delivered once: A's message was seen once, and only from A.
    CHECK(f.app().stanzas_of(a.sid) == std::vector<std::string>{hello, unavailable});
    CHECK(f.app().stanzas_of(b.sid).empty());
}

//==================================================================================================
// Beyond the transcripts

TEST_CASE("bosh: legacy clients (no ver at creation) get bare HTTP codes with empty bodies") {
    bosh_server f;
    SECTION("404 for a rid beyond the window, on the held request too") {
        auto c = f.connect();
        auto s = create(c, 42, creation(42, "to='localhost' xml:lang='en' wait='60' hold='1'"));
        check_ok(s.creation); // the creation itself is an ordinary answer
        auto held = f.connect();
        held.send(request(s.sid, 43, "<presence id='held' xmlns='jabber:client'/>"));
        REQUIRE(f.app().wait_stanza(s.sid, "id='held'"));
        check_legacy(c.post(request(s.sid, 53)), 404, "HTTP/1.1 404 Not Found");
        check_legacy(held.receive(), 404, "HTTP/1.1 404 Not Found");
        CHECK(f.app().wait_closed(s.sid) == close_reason::item_not_found);
    }
    SECTION("400 for a bad creation request") {
        auto c = f.connect();
        // Well-formed, no ver, but no rid.
        check_legacy(c.post("<body " + ns + " to='localhost' wait='60' hold='1'/>"), 400,
                     "HTTP/1.1 400 Bad Request");
        // With ver it is a modern client: 200 and a terminate body.
        check_terminate(c.post("<body " + ns + " to='localhost' wait='60' hold='1' ver='1.6'/>"),
                        "bad-request");
        CHECK(f.srv().session_count() == 0);
    }
    SECTION("403 for polling too fast") {
        auto c = f.connect();
        auto s = create(c, 77, creation(77, "to='localhost' wait='0' hold='0'"));
        const auto first = c.post(request(s.sid, s.next()));
        CHECK(first.status_line == "HTTP/1.1 200 OK");
        check_legacy(c.post(request(s.sid, s.next())), 403, "HTTP/1.1 403 Forbidden");
        CHECK(f.app().wait_closed(s.sid) == close_reason::policy_violation);
    }
}

TEST_CASE("bosh: a pending rid sent again (a proxy cut) takes the held copy's place") {
    bosh_server f;
    auto c = f.connect();
    auto s = create(c, 900);
    const std::string pushed =
        "<message from='server' xmlns='jabber:client'><body>news</body></message>";
    SECTION("the first copy's connection is still open: it gets a recoverable error") {
        const std::string mark = "<presence id='open' xmlns='jabber:client'/>";
        auto first = f.connect();
        first.send(request(s.sid, 901, mark));
        REQUIRE(f.app().wait_stanza(s.sid, "id='open'")); // held
        auto second = f.connect();
        second.send(request(s.sid, 901, mark)); // byte-identical, as §17.3 requires
        const auto replaced = first.receive();
        check_ok(replaced);
        CHECK(replaced.body == "<body type='error' xmlns='http://jabber.org/protocol/httpbind'/>");
        CHECK(replaced.attr("type") == "error");
        f.srv().push(s.sid, packet::from(pushed));
        check_data(second.receive(), {pushed}); // the newest copy carries the answer
        CHECK(f.app().stanzas_of(s.sid) == std::vector<std::string>{mark}); // forwarded once
    }
    SECTION("the first copy's connection was cut: the copy is held again, not re-forwarded") {
        const std::string mark = "<presence id='cut' xmlns='jabber:client'/>";
        auto first = f.connect();
        first.send(request(s.sid, 901, mark));
        REQUIRE(f.app().wait_stanza(s.sid, "id='cut'")); // held
        first.close();
        auto second = f.connect();
        second.send(request(s.sid, 901, mark));
        CHECK_FALSE(second.readable_within(200ms)); // held, not answered from the cache
        f.srv().push(s.sid, packet::from(pushed));
        check_data(second.receive(), {pushed});
        CHECK(f.app().stanzas_of(s.sid) == std::vector<std::string>{mark});
    }
    CHECK(f.srv().session_count() == 1);
}

TEST_CASE("bosh: an ack showing a lost answer older than 1 s gets report and time") {
    bosh_server f; // report_after 1 s
    auto c = f.connect();
    auto s = create(c, 2000, creation(2000, "to='localhost' wait='60' hold='1' ver='1.6' ack='1'"));
    CHECK_FALSE(s.creation.attr("ack")); // no request acks promised
    auto lost_conn = f.connect();
    const std::string lost_req = request(s.sid, 2001, "", "ack='2000'");
    lost_conn.send(lost_req);
    CHECK_FALSE(lost_conn.readable_within(200ms)); // held
    auto b = f.connect();
    b.send(request(s.sid, 2002, "", "ack='2000'")); // releases 2001: the answer the client "loses"
    const auto lost = lost_conn.receive();
    const auto t_lost = steady::now();
    check_data(lost);
    check_data(b.receive()); // empty after wait (1 s)
    if (since(t_lost) < 1100ms)
        std::this_thread::sleep_until(t_lost + 1100ms); // make sure the lost answer is > 1 s old
    // The client still acks only 2000: 2001's answer is reported missing.
    const auto reported = c.post(request(s.sid, 2003, "", "ack='2000'"));
    check_ok(reported);
    CHECK(reported.attr("report") == "2001");
    REQUIRE(reported.attr("time"));
    const auto ms = std::stol(*reported.attr("time"));
    CHECK(ms >= 1000);
    CHECK(ms < 5000);
    CHECK(reported.payloads().empty());
    // The client re-sends 2001: the very same answer.
    const auto again = c.post(lost_req);
    check_ok(again);
    CHECK(again.body == lost.body);
    CHECK(f.srv().session_count() == 1);
}

TEST_CASE("bosh: key sequencing accepts the chain and a rekey, a bad key is item-not-found") {
    using megaphone::bosh_key_sequence;
    // K(n) = SHA-1(K(n-1)): newkey K(3) at creation, then K(2), K(1) with a rekey, then K'(2).
    const auto k1 = bosh_key_sequence::sha1_hex("seed");
    const auto k2 = bosh_key_sequence::sha1_hex(k1);
    const auto k3 = bosh_key_sequence::sha1_hex(k2);
    const auto n1 = bosh_key_sequence::sha1_hex("another seed");
    const auto n2 = bosh_key_sequence::sha1_hex(n1);
    const auto n3 = bosh_key_sequence::sha1_hex(n2);
    bosh_server f;
    auto c = f.connect();
    auto s = create(
        c, 300, creation(300, "to='localhost' wait='60' hold='1' ver='1.6' newkey='" + k3 + "'"));
    auto msg = [](const std::string& id) {
        return "<message id='" + id + "' xmlns='jabber:client'><body>" + id + "</body></message>";
    };
    check_data(c.post(request(s.sid, s.next(), msg("a"), "key='" + k2 + "'")), {msg("a")});
    check_data(c.post(request(s.sid, s.next(), msg("b"), "key='" + k1 + "' newkey='" + n3 + "'")),
               {msg("b")});
    check_data(c.post(request(s.sid, s.next(), msg("c"), "key='" + n2 + "'")), {msg("c")});
    // A wrong key (the one just used again): not processed, the session ends.
    check_terminate(c.post(request(s.sid, s.next(), msg("d"), "key='" + n2 + "'")),
                    "item-not-found");
    CHECK(f.app().wait_closed(s.sid) == close_reason::item_not_found);
    CHECK(f.app().stanzas_of(s.sid) == std::vector<std::string>{msg("a"), msg("b"), msg("c")});

    // A missing key when one is expected.
    auto s2 = create(
        c, 400, creation(400, "to='localhost' wait='60' hold='1' ver='1.6' newkey='" + k3 + "'"));
    check_terminate(c.post(request(s2.sid, s2.next(), msg("e"))), "item-not-found");
    CHECK(f.app().wait_closed(s2.sid) == close_reason::item_not_found);
    CHECK(f.app().stanzas_of(s2.sid).empty());
}

TEST_CASE("bosh: payloads pass byte for byte, with the namespaces declared on <body/>") {
    bosh_server f;
    auto c = f.connect();
    auto s = create(c, 5000);
    // A prefix declared on <body/> and used by a payload: carried onto the payload.
    const std::string features_req =
        "<body rid='5001' sid='" + s.sid + "' " + ns +
        " xmlns:stream='http://etherx.jabber.org/streams'><stream:features><bind "
        "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        "<message id='m1' xmlns='jabber:client'>\r\n  <body a=\"double\" b='single'>hi &amp; "
        "bye &#x263A; &lt;3 \xE2\x98\x83</body>\n</message></body>";
    const std::string carried_features =
        "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind "
        "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
    const std::string message =
        "<message id='m1' xmlns='jabber:client'>\r\n  <body a=\"double\" b='single'>hi &amp; "
        "bye &#x263A; &lt;3 \xE2\x98\x83</body>\n</message>";
    const auto echoed = c.post(features_req);
    check_data(echoed, {message});
    CHECK(echoed.body ==
          "<body xmlns='http://jabber.org/protocol/httpbind'>" + message + "</body>");
    CHECK(f.app().stanzas_of(s.sid) == std::vector<std::string>{carried_features, message});

    // The default namespace declared on a prefixed <body/>: carried onto the unprefixed payload.
    const auto prefixed =
        c.post("<b:body rid='5002' sid='" + s.sid +
               "' xmlns:b='http://jabber.org/protocol/httpbind' xmlns='jabber:client'>"
               "<message id='m2'><body>x</body></message></b:body>");
    const std::string carried = "<message xmlns='jabber:client' id='m2'><body>x</body></message>";
    check_data(prefixed, {carried});
    CHECK(prefixed.body ==
          "<body xmlns='http://jabber.org/protocol/httpbind'>" + carried + "</body>");
    CHECK(f.app().stanzas_of(s.sid).back() == carried);
}

TEST_CASE("bosh: CORS with configured origins: the allowed origin is echoed, others get none") {
    auto options = bosh_options();
    options.http.cors_origins = {"http://a.example"};
    bosh_server f{options};
    auto c = f.connect();

    const auto allowed = c.post(creation(10), {{http::field::origin, "http://a.example"}});
    check_ok(allowed);
    CHECK(allowed.header("Access-Control-Allow-Origin") == "http://a.example");
    CHECK(allowed.header("Vary").find("Origin") != std::string::npos);

    const auto other = c.post(creation(20), {{http::field::origin, "http://b.example"}});
    check_ok(other);
    CHECK_FALSE(other.has_header("Access-Control-Allow-Origin"));

    const auto none = c.post(creation(30));
    check_ok(none);
    CHECK_FALSE(none.has_header("Access-Control-Allow-Origin"));

    const auto preflight = c.request(http::verb::options, {},
                                     {{http::field::origin, "http://a.example"},
                                      {http::field::access_control_request_method, "POST"}});
    CHECK(preflight.header("Access-Control-Allow-Origin") == "http://a.example");
    CHECK(preflight.has_header("Access-Control-Allow-Methods"));
    CHECK(preflight.has_header("Access-Control-Max-Age"));
    const auto refused = c.request(http::verb::options, {},
                                   {{http::field::origin, "http://b.example"},
                                    {http::field::access_control_request_method, "POST"}});
    CHECK_FALSE(refused.has_header("Access-Control-Allow-Origin"));
    CHECK_FALSE(refused.has_header("Access-Control-Allow-Methods"));
}

TEST_CASE("bosh: server shutdown and application errors end sessions with their condition") {
    auto options = bosh_options();
    options.drain = 500ms; // the held answers flush meanwhile
    bosh_server f{options};
    auto c = f.connect();
    auto s = create(c, 100);
    auto t = create(c, 200);
    // An application that throws ends only the session it was handling.
    check_terminate(c.post(request(s.sid, s.next(), "<crash xmlns='urn:test'/>")),
                    "internal-server-error");
    CHECK(f.app().wait_closed(s.sid) == close_reason::internal_error);
    // Shutdown: the held request of the other session is answered with system-shutdown.
    auto held = f.connect();
    held.send(request(t.sid, t.next(), "<presence id='held' xmlns='jabber:client'/>"));
    REQUIRE(f.app().wait_stanza(t.sid, "id='held'"));
    f.srv().stop();
    check_terminate(held.receive(), "system-shutdown");
    CHECK(f.app().wait_closed(t.sid) == close_reason::system_shutdown);
}
