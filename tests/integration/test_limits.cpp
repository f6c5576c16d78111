// Every limit of docs/PROTOCOL.md ("Limits") over real sockets, with short configured values:
// each test shows the error a client gets when it goes over the limit, and that another session
// (the "bystander", with a request held throughout) keeps working meanwhile. Also: `Expect:
// 100-continue`, a pipelined request behind a held one, and what a wrong sid reveals (nothing).
#include "app/engine.hpp"
#include "fsm/metrics.hpp"
#include "support/http_client.hpp"
#include "support/stamps.hpp"
#include "support/test_server.hpp"
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::refusal;
using megaphone::refusals;
using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::http_reply;
using megaphone::test::read_publish_answer;
using megaphone::test::request_body;
using megaphone::test::stamp_of;
using megaphone::test::without_stamps;
using json = nlohmann::json;
namespace http = boost::beast::http;

namespace {

using steady = std::chrono::steady_clock;

const std::string policy_violation = R"({"type":"terminate","condition":"policy-violation"})";
const std::string not_found = R"({"type":"terminate","condition":"item-not-found"})";

json subscribe(const std::string& channel) {
    return json::array({{{"subscribe", channel}}});
}

std::string bosh_creation(std::uint64_t rid, bool with_ver = true) {
    return "<body rid='" + std::to_string(rid) + "' to='localhost' wait='30' hold='1'" +
           (with_ver ? " ver='1.6'" : "") +
           " xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>";
}

/// A BOSH answer's `type` and `condition` attributes, as "type/condition".
std::string bosh_outcome(const http_reply& r) {
    auto parsed = megaphone::parse_bosh_body(r.body);
    const auto* b = std::get_if<megaphone::bosh_body>(&parsed);
    if (!b)
        return "not a <body/>: " + r.body;
    const std::string* type = b->attribute("type");
    const std::string* cond = b->attribute("condition");
    return (type ? *type : "") + "/" + (cond ? *cond : "");
}

/// Test options: short timeouts, long waits (the bystander's request stays held throughout).
megaphone::server_options options() {
    auto o = megaphone::test::test_options();
    o.engine.max_wait = 30s;
    o.engine.inactivity = 10s;
    return o;
}

/// The JSON hub at /comet (test_server) and the same hub over BOSH at /bosh.
class limits_server {
public:
    explicit limits_server(megaphone::server_options o = options())
        : srv_{std::move(o)}
        , app_{srv_} {
        srv_.mount("/comet", app_);
        srv_.mount_bosh("/bosh", app_);
        srv_.start();
    }
    ~limits_server() {
        srv_.stop();
        srv_.wait();
    }
    megaphone::server& srv() { return srv_; }
    megaphone::test::recording_app& app() { return app_; }
    unsigned short port() const { return srv_.port(); }
    unsigned short internal_port() const noexcept { return srv_.internal_port(); }

private:
    megaphone::server srv_;
    megaphone::test::recording_app app_;
};

/// A JSON session with a request held on its own connection, from before a limit is hit until
/// check_alive(): a publish answers the held request, and the session goes on holding.
class bystander {
public:
    explicit bystander(limits_server& s)
        : s_{s}
        , c_{s.port()}
        , poll_{s.port()}
        , publisher_{s.internal_port()} {
        session_ = create_session(c_, 5000, {{"messages", subscribe("bystander")}});
        poll_.send_json("/comet", request_body(session_.sid, ++rid_ + 5000, subscribe("b")));
        REQUIRE(s_.app().wait_messages(session_.sid, 2)); // held
    }
    void check_alive() {
        // A fresh connection: the last one may be closing for idleness right now (a write
        // into it would meet a broken pipe).
        publisher_.connect();
        const http_reply p = publisher_.post("/publish/bystander", std::to_string(rid_));
        REQUIRE(p.status == 200);
        const auto published = read_publish_answer(p.json());
        REQUIRE(published.has_value());
        CHECK(published->sessions == 1);
        const http_reply r = poll_.receive();
        CHECK(r.status == 200);
        const json messages = r.json().at("messages");
        CHECK(without_stamps(messages) ==
              json::array({{{"channel", "bystander"}, {"data", rid_}}}));
        REQUIRE(messages.size() == 1);
        const auto stamped = stamp_of(messages[0]);
        REQUIRE(stamped.has_value());
        CHECK(*stamped == published->position); // at the position the publish answered
        poll_.send_json("/comet", request_body(session_.sid, ++rid_ + 5000));
        CHECK_FALSE(poll_.readable_within(20ms)); // held again
        CHECK_FALSE(s_.app().snapshot().close_reason_of(session_.sid).has_value());
    }
    const std::string& sid() const { return session_.sid; }

private:
    limits_server& s_;
    http_client c_;
    http_client poll_;
    http_client publisher_; // the internal door: POST /publish
    megaphone::test::created_session session_;
    std::uint64_t rid_ = 0;
};

/// A raw TCP connection for bytes no well-behaved client sends.
megaphone::test::fd_stream raw_connect(unsigned short port) {
    return megaphone::test::connect_loopback(port, 5s);
}

void send_all(megaphone::test::fd_stream& s, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(s.native_handle(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

/// Reads what arrives within `within` (until the peer closes or nothing more comes); sets
/// `closed` when the peer closed.
std::string read_for(megaphone::test::fd_stream& s, std::chrono::milliseconds within,
                     bool* closed = nullptr) {
    std::string out;
    const auto deadline = steady::now() + within;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        if (left.count() <= 0)
            return out;
        pollfd p{s.native_handle(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            return out;
        char buf[4096];
        const ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
        if (n <= 0) {
            if (closed)
                *closed = true;
            return out;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
}

/// Reads one whole answer (headers, then Content-Length bytes of body), for at most `within`.
std::string read_response(megaphone::test::fd_stream& s, std::chrono::milliseconds within = 2s) {
    std::string out;
    const auto deadline = steady::now() + within;
    for (;;) {
        const auto end = out.find("\r\n\r\n");
        if (end != std::string::npos) {
            std::size_t length = 0;
            const auto at = out.find("Content-Length: ");
            if (at != std::string::npos && at < end)
                length = std::stoul(out.substr(at + 16));
            if (out.size() >= end + 4 + length)
                return out;
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        if (left.count() <= 0)
            return out;
        pollfd p{s.native_handle(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            return out;
        char buf[4096];
        const ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
        if (n <= 0)
            return out;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

} // namespace

//--------------------------------------------------------------------------------------------------
// Sessions

TEST_CASE("limits: defaults let 1,000 sessions be created at once from one address") {
    auto o = options();
    REQUIRE(o.creation_burst == 1000);
    REQUIRE(o.engine.max_sessions == 0);
    REQUIRE(o.engine.max_queue >= 100);
    limits_server s{o};
    constexpr int threads = 4, each = 250;
    std::vector<int> ok(threads, 0);
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t)
        clients.emplace_back([&, t] {
            http_client c{s.port()};
            for (int i = 0; i < each; ++i)
                if (c.post_json("/comet", {{"rid", 1000 + i}}).status == 200)
                    ++ok[static_cast<std::size_t>(t)];
        });
    for (auto& t : clients)
        t.join();
    for (int t = 0; t < threads; ++t)
        CHECK(ok[static_cast<std::size_t>(t)] == each);
    CHECK(s.srv().session_count() == threads * each);
}

TEST_CASE("limits: --max-sessions: one more creation gets policy-violation (JSON and BOSH)") {
    auto o = options();
    o.engine.max_sessions = 3; // across both threads
    limits_server s{o};
    bystander b{s};
    http_client c{s.port()};
    const auto second = create_session(c, 1);
    create_session(c, 2);
    const auto before = refusals(refusal::too_many_sessions);

    const http_reply j = c.post_json("/comet", {{"rid", 3}});
    CHECK(j.status == 403);
    CHECK(j.body == policy_violation);
    const http_reply x = c.post("/bosh", bosh_creation(4));
    CHECK(x.status == 200);
    CHECK(bosh_outcome(x) == "terminate/policy-violation");
    const http_reply legacy = c.post("/bosh", bosh_creation(5, false));
    CHECK(legacy.status == 403);
    CHECK(legacy.body.empty());
    CHECK(refusals(refusal::too_many_sessions) == before + 3);
    CHECK(s.srv().session_count() == 3);
    b.check_alive();

    // One ends: there is room again.
    json term = request_body(second.sid, 2);
    term["type"] = "terminate";
    REQUIRE(c.post_json("/comet", term).status == 200);
    REQUIRE(s.app().wait_closed(second.sid).has_value());
    bool created = false;
    for (int i = 0; i < 100 && !created; ++i) // the reap may trail the answer by a moment
        created = c.post_json("/comet", {{"rid", 6}}).status == 200 ||
                  (std::this_thread::sleep_for(10ms), false);
    CHECK(created);
}

TEST_CASE("limits: --creation-burst/--creation-rate: over the bucket gets 429 policy-violation") {
    auto o = options();
    o.creation_burst = 4; // the bystander takes one
    o.creation_rate = 0.001;
    limits_server s{o};
    bystander b{s};
    http_client c{s.port()};
    for (int i = 0; i < 3; ++i)
        create_session(c, 10 + static_cast<std::uint64_t>(i));
    const auto before = refusals(refusal::creation_rate);

    const http_reply j = c.post_json("/comet", {{"rid", 20}});
    CHECK(j.status == 429);
    CHECK(j.header("Content-Type") == "application/json");
    CHECK(j.body == policy_violation);
    const http_reply x = c.post("/bosh", bosh_creation(21));
    CHECK(x.status == 200);
    CHECK(bosh_outcome(x) == "terminate/policy-violation");
    const http_reply legacy = c.post("/bosh", bosh_creation(22, false));
    CHECK(legacy.status == 403);
    CHECK(refusals(refusal::creation_rate) == before + 3);
    CHECK(s.srv().session_count() == 4);
    // Requests of existing sessions are not creations: never rate limited.
    b.check_alive();
    b.check_alive();
}

TEST_CASE("limits: --max-queue: one packet more ends the session with policy-violation") {
    auto o = options();
    o.engine.max_queue = 3;
    limits_server s{o};
    bystander b{s};
    http_client c{s.port()};
    const auto flooded = create_session(c, 100, {{"messages", subscribe("flood")}});
    const auto before = refusals(refusal::queue_overflow);
    // No request held: the packets queue. Three are kept...
    http_client publisher{s.internal_port()};
    for (int i = 0; i < 3; ++i)
        REQUIRE(publisher.post("/publish/flood", std::to_string(i)).json().at("sessions") == 1);
    CHECK_FALSE(s.app().snapshot().close_reason_of(flooded.sid).has_value());
    // ...the fourth ends the session.
    publisher.post("/publish/flood", "3");
    CHECK(s.app().wait_closed(flooded.sid) == close_reason::queue_overflow);
    CHECK(refusals(refusal::queue_overflow) == before + 1);
    // Its client learns it at its next request.
    const http_reply r = c.post_json("/comet", request_body(flooded.sid, 101));
    CHECK(r.status == 403);
    CHECK(r.body == policy_violation);
    b.check_alive();
}

TEST_CASE("limits: hold: a request beyond the window of `requests` gets policy-violation") {
    auto o = options();
    o.engine.max_hold = 2; // requests 3
    limits_server s{o};
    bystander b{s};
    http_client c{s.port()}, h1{s.port()}, h2{s.port()}, early{s.port()};
    const auto x = create_session(c, 200, {{"hold", 2}});
    REQUIRE(x.answer.at("requests") == 3);
    h1.send_json("/comet", request_body(x.sid, 201, subscribe("1")));
    h2.send_json("/comet", request_body(x.sid, 202, subscribe("2")));
    REQUIRE(s.app().wait_messages(x.sid, 2)); // both held
    early.send_json("/comet", request_body(x.sid, 204));
    CHECK_FALSE(early.readable_within(50ms)); // waits for 203: three outstanding
    const auto before = refusals(refusal::too_many_requests);
    const http_reply r = c.post_json("/comet", request_body(x.sid, 205)); // a fourth
    CHECK(r.status == 403);
    CHECK(r.body == policy_violation);
    CHECK(refusals(refusal::too_many_requests) == before + 1);
    CHECK(s.app().wait_closed(x.sid) == close_reason::policy_violation);
    for (http_client* held : {&h1, &h2, &early})
        CHECK(held->receive().json().at("condition") == "policy-violation");
    b.check_alive();
}

TEST_CASE("limits: --polling: a polling session polling too fast gets policy-violation") {
    auto o = options();
    o.engine.polling = 2s;
    limits_server s{o};
    bystander b{s};
    http_client c{s.port()};
    const auto p = create_session(c, 300, {{"hold", 0}});
    CHECK(c.post_json("/comet", request_body(p.sid, 301)).status == 200); // answered at once
    const auto before = refusals(refusal::polling_too_fast);
    const http_reply r = c.post_json("/comet", request_body(p.sid, 302)); // at once again
    CHECK(r.status == 403);
    CHECK(r.body == policy_violation);
    CHECK(refusals(refusal::polling_too_fast) == before + 1);
    CHECK(s.app().wait_closed(p.sid) == close_reason::policy_violation);
    b.check_alive();
}

//--------------------------------------------------------------------------------------------------
// Requests and connections

TEST_CASE("limits: --max-body: 413 policy-violation (JSON and BOSH), connection closed") {
    auto o = options();
    o.http.max_body = 512;
    limits_server s{o};
    bystander b{s};
    const auto before = refusals(refusal::body_too_large);
    http_client c{s.port()};
    const http_reply j = c.post("/comet", R"({"rid":1,"x":")" + std::string(600, 'x') + "\"}");
    CHECK(j.status == 413);
    CHECK(j.body == policy_violation);
    CHECK(c.closed_by_server_within(2s));
    c.connect();
    const http_reply x = c.post("/bosh", "<body rid='1'>" + std::string(600, ' ') + "</body>");
    CHECK(x.status == 200);
    CHECK(bosh_outcome(x) == "terminate/policy-violation");
    CHECK(c.closed_by_server_within(2s));
    CHECK(refusals(refusal::body_too_large) == before + 2);
    b.check_alive();
}

TEST_CASE("limits: --read-timeout: a client sending its headers byte by byte is cut off") {
    auto o = options();
    o.http.read_timeout = 300ms;
    limits_server s{o};
    bystander b{s};
    const auto before = refusals(refusal::request_timeout);
    auto raw = raw_connect(s.port());
    const std::string request =
        "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(200, 'z') +
        "\r\nContent-Length: 2\r\n\r\n{}";
    // One byte every 20 ms would take 5 s; the server cuts it off after 300 ms.
    bool closed = false;
    std::size_t sent = 0;
    const auto t0 = steady::now();
    while (!closed && sent < request.size() && steady::now() - t0 < 5s) {
        if (::send(raw.native_handle(), request.data() + sent, 1, MSG_NOSIGNAL) != 1)
            break; // reset by the server: cut off too
        ++sent;
        const std::string got = read_for(raw, 20ms, &closed);
        CHECK(got.empty()); // cut off without an answer
    }
    if (!closed)
        read_for(raw, 2s, &closed);
    CHECK(closed);
    CHECK(sent < request.size());
    CHECK(steady::now() - t0 < 3s);
    CHECK(refusals(refusal::request_timeout) == before + 1);
    b.check_alive();
}

TEST_CASE("limits: --idle-timeout closes idle keep-alive connections, never a held long-poll") {
    auto o = options();
    o.http.idle_timeout = 300ms;
    limits_server s{o};
    bystander b{s};
    const auto before = refusals(refusal::idle_timeout);

    SECTION("an idle connection after an answer, and one that never sent anything") {
        http_client c{s.port()};
        CHECK(c.get("/nothing-here").status == 404);
        const auto t0 = steady::now();
        CHECK(c.closed_by_server_within(3s));
        CHECK(steady::now() - t0 >= 250ms);
        http_client silent{s.port()};
        CHECK(silent.closed_by_server_within(3s));
        CHECK(refusals(refusal::idle_timeout) >= before + 2);
    }
    SECTION("a request held for 1 s (longer than idle) is answered, and the connection lives") {
        http_client c{s.port()};
        const auto x = create_session(c, 400, {{"wait", 1}});
        const auto t0 = steady::now();
        const http_reply r = c.post_json("/comet", request_body(x.sid, 401));
        CHECK(steady::now() - t0 >= 900ms); // held until `wait`, not cut off at 300 ms
        CHECK(r.status == 200);
        CHECK(r.body == R"({"rid":401,"messages":[]})");
        CHECK(c.post_json("/comet", request_body(x.sid, 402, subscribe("z"))).status == 200);
    }
    // The bystander's request has been held longer than the idle timeout.
    b.check_alive();
}

TEST_CASE("limits: --max-connections: one more connection gets 503 and is closed") {
    auto o = options();
    o.http.max_connections = 3;
    limits_server s{o};
    bystander b{s}; // two connections
    auto third = std::make_unique<http_client>(s.port());
    CHECK(third->get("/x").status == 404);
    const auto before = refusals(refusal::connections);

    http_client fourth{s.port()}; // sends nothing: reads the refusal
    const http_reply r = fourth.receive();
    CHECK(r.status == 503);
    CHECK(r.body == "too many connections\n");
    CHECK(r.header("Connection") == "close");
    CHECK(fourth.closed_by_server_within(2s));
    CHECK(refusals(refusal::connections) == before + 1);
    b.check_alive();

    // One closes: a new connection is served (once the server has seen the close).
    third.reset();
    bool served = false;
    for (int i = 0; i < 100 && !served; ++i) {
        // Until the server has seen the close, a new connection is still the one too many:
        // answered 503 and closed, maybe before the request is written (a broken pipe).
        try {
            http_client again{s.port()};
            again.send(http::verb::get, "/x");
            served = again.receive().status == 404;
        } catch (const std::exception&) {
        }
        if (!served)
            std::this_thread::sleep_for(10ms); // (the polling interval)
    }
    CHECK(served);
}

TEST_CASE("limits: out of file descriptors: the listener pauses without spinning and recovers") {
    // A megaphone process with 64 descriptors and no connection limit of its own: accept()
    // fails with EMFILE once they are used up.
    const std::string binary = MEGAPHONE_BINARY_DIR "/bin/megaphone";
    REQUIRE(::access(binary.c_str(), X_OK) == 0);
    int out[2];
    REQUIRE(::pipe(out) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        ::close(out[0]);
        ::close(out[1]);
        rlimit lim{64, 64};
        ::setrlimit(RLIMIT_NOFILE, &lim);
        ::execl(binary.c_str(), binary.c_str(), "--port", "0", "--internal-port", "0", "--threads",
                "1", "--max-connections", "100000", "--idle-timeout", "30", nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    struct reaper {
        pid_t pid;
        ~reaper() {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    } reap{pid};
    // "megaphone: internal door on ...", then "megaphone: listening on http://127.0.0.1:PORT"
    std::string banner;
    const auto listening_line = [&banner] {
        const auto at = banner.find("listening on ");
        return at != std::string::npos && banner.find('\n', at) != std::string::npos;
    };
    {
        pollfd p{out[0], POLLIN, 0};
        const auto deadline = steady::now() + 10s;
        while (!listening_line() && steady::now() < deadline && ::poll(&p, 1, 100) >= 0) {
            char buf[256];
            if (p.revents & (POLLIN | POLLHUP)) {
                const ssize_t n = ::read(out[0], buf, sizeof buf);
                if (n <= 0)
                    break;
                banner.append(buf, static_cast<std::size_t>(n));
            }
        }
    }
    ::close(out[0]);
    const auto colon = banner.rfind(':');
    REQUIRE(colon != std::string::npos);
    const auto port = static_cast<unsigned short>(std::stoi(banner.substr(colon + 1)));

    // Connections until one is not served: the server is out of descriptors.
    std::vector<std::unique_ptr<http_client>> served;
    std::unique_ptr<http_client> waiting;
    for (int i = 0; i < 100 && !waiting; ++i) {
        auto c = std::make_unique<http_client>(port, 5s);
        c->send(http::verb::get, "/x");
        if (c->readable_within(500ms)) {
            REQUIRE(c->receive().status == 404);
            served.push_back(std::move(c));
        } else {
            waiting = std::move(c);
        }
    }
    REQUIRE(waiting);
    INFO(served.size() << " connections served before the limit");
    CHECK(served.size() > 20);
    CHECK(served.size() < 64);

    // Out of descriptors for a second: the process uses almost no CPU meanwhile.
    const auto cpu_ticks = [pid] {
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(stat, line);
        std::istringstream fields(line.substr(line.rfind(')') + 2));
        std::string skip;
        for (int i = 0; i < 11; ++i) // state .. cmajflt: fields 3-13
            fields >> skip;
        long utime = 0, stime = 0;
        fields >> utime >> stime;
        return utime + stime;
    };
    const long ticks0 = cpu_ticks();
    CHECK_FALSE(waiting->readable_within(1s));
    const long used = cpu_ticks() - ticks0;
    const long per_second = ::sysconf(_SC_CLK_TCK);
    INFO("CPU ticks used in 1 s while out of descriptors: " << used << " of " << per_second);
    CHECK(used * 10 < per_second); // under 10% of one core

    // Descriptors free up: the waiting connection is served, and new ones too.
    served.resize(served.size() - 4);
    REQUIRE(waiting->readable_within(3s));
    CHECK(waiting->receive().status == 404);
    http_client fresh{port, 5s};
    CHECK(fresh.get("/x").status == 404);
}

//--------------------------------------------------------------------------------------------------
// HTTP details

TEST_CASE("limits: Expect: 100-continue is answered before the body is read") {
    auto o = options();
    o.http.max_body = 1024;
    limits_server s{o};
    const std::string body = R"({"rid":77})";
    auto raw = raw_connect(s.port());
    send_all(raw, "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                  "Content-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n");
    CHECK(read_response(raw) == "HTTP/1.1 100 Continue\r\n\r\n");
    send_all(raw, body);
    const std::string answer = read_response(raw);
    CHECK(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(answer.find("\"sid\"") != std::string::npos);

    // A body announced over --max-body: 413 at once, no 100 Continue.
    auto big = raw_connect(s.port());
    send_all(big, "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                  "Content-Length: 5000\r\n\r\n");
    bool closed = false;
    const std::string refused = read_for(big, 2s, &closed);
    CHECK(refused.starts_with("HTTP/1.1 413 Payload Too Large\r\n"));
    CHECK(refused.ends_with(policy_violation));
    CHECK(closed);
}

TEST_CASE("limits: a pipelined request behind a held one does not hide the client's close") {
    limits_server s;
    http_client c{s.port()}, backend{s.internal_port()};
    const auto x = create_session(c, 500, {{"messages", subscribe("ch")}});
    c.send_json("/comet", request_body(x.sid, 501, subscribe("ch")));
    REQUIRE(s.app().wait_messages(x.sid, 2)); // held
    c.send(http::verb::get, "/pipelined");    // behind it, on the same connection
    c.shutdown_send();
    // The server notices the close (it reports the held request lost, and closes its end)...
    CHECK(c.closed_by_server_within(3s));
    // ...so a publish is queued for the session instead of going into the dead connection.
    CHECK(backend.post("/publish/ch", "\"after\"").json().at("sessions") == 1);
    const http_reply r = backend.post_json("/comet", request_body(x.sid, 502));
    CHECK(without_stamps(r.json().at("messages")) ==
          json::array({{{"channel", "ch"}, {"data", "after"}}}));

    SECTION("and a pipelined request is served after the held one is answered") {
        http_client p{s.port()};
        p.send_json("/comet", request_body(x.sid, 503, subscribe("ch")));
        REQUIRE(s.app().wait_messages(x.sid, 3));
        p.send(http::verb::get, "/second");
        CHECK_FALSE(p.readable_within(50ms));
        CHECK(backend.post("/publish/ch", "1").json().at("sessions") == 1);
        CHECK(p.receive().json().at("rid") == 503);
        CHECK(p.receive().status == 404);
    }
}

//--------------------------------------------------------------------------------------------------
// Session ids

TEST_CASE("limits: a wrong sid gets the same item-not-found whether or not a similar one lives") {
    limits_server s;
    http_client c{s.port()};
    const auto live = create_session(c, 600);
    const std::string& sid = live.sid;
    REQUIRE(sid.size() == 3 + 1 + 22); // "n0-", the shard, 128 bits

    std::string last_char_changed = sid;
    last_char_changed.back() = sid.back() == 'A' ? 'Q' : 'A';
    std::string middle_changed = sid;
    middle_changed[10] = sid[10] == 'x' ? 'y' : 'x';
    std::string other_shard = sid;
    other_shard[3] = sid[3] == '0' ? '1' : '0';
    const std::vector<std::string> wrong{last_char_changed,
                                         middle_changed,
                                         other_shard,
                                         sid.substr(0, sid.size() - 1),
                                         sid + "A",
                                         "n0-0" + std::string(22, 'A'),
                                         "n0-z" + std::string(22, 'A'),
                                         "n9-" + sid.substr(3),
                                         "garbage",
                                         "-",
                                         std::string(300, '%')};

    const auto answer_to = [&](const std::string& bad, const std::string& path) {
        const std::string body =
            path == "/comet"
                ? request_body(bad, 601).dump()
                : "<body rid='601' sid='" + bad + "' xmlns='http://jabber.org/protocol/httpbind'/>";
        auto raw = raw_connect(s.port());
        send_all(raw, "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body);
        return read_response(raw); // the whole answer: status line, headers, body
    };
    for (const std::string path : {"/comet", "/bosh"}) {
        // Random garbage is the reference: nothing like it exists.
        const std::string reference = answer_to("n0-0" + megaphone::random_token(16), path);
        if (path == "/comet") {
            CHECK(reference.starts_with("HTTP/1.1 404 Not Found\r\n"));
            CHECK(reference.ends_with(not_found));
        } else {
            CHECK(reference.find("condition='item-not-found'") != std::string::npos);
        }
        for (const std::string& bad : wrong) {
            INFO(path << " sid " << bad);
            CHECK(answer_to(bad, path) == reference);
        }
    }
    // The live session was not harmed by any of it.
    c.send_json("/comet", request_body(sid, 601, subscribe("ok")));
    CHECK(s.app().wait_messages(sid, 1)); // taken and held
    CHECK_FALSE(s.app().snapshot().close_reason_of(sid).has_value());
}
