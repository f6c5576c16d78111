// --auth-url against a real HTTP backend (tests/auth/auth_backend.py, Python's http.server):
// the hub asks it whether a session may subscribe or publish (auth/auth_hook.hpp); 200 allows,
// 403 denies, an error status, no answer in time or no backend at all deny too and are counted;
// answers are cached per user (or sid), channel and action; one session's publishes keep their
// order while the backend decides.
#include "auth/token_kit.hpp"
#include "support/child_process.hpp"
#include "support/http_client.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <set>

using namespace megaphone;
using namespace megaphone::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// The backend, on a free loopback port; killed on destruction.
struct auth_backend {
    explicit auth_backend(std::optional<double> keepalive = std::nullopt) {
        log = (scratch_dir() / ("auth-backend-" + std::to_string(::getpid()) + "-" +
                                std::to_string(count++) + ".log"))
                  .string();
        std::ofstream{log}; // empty
        on_a_free_port([&](unsigned short p) {
            std::vector<std::string> args{"/usr/bin/python3",
                                          MEGAPHONE_SOURCE_DIR "/tests/auth/auth_backend.py",
                                          std::to_string(p), log};
            if (keepalive)
                args.push_back(std::to_string(*keepalive));
            pid = spawn_quiet(args);
            const bool up = wait_ready(
                pid,
                [p] {
                    try {
                        http_client probe{p};
                        return true;
                    } catch (const std::exception&) {
                        return false;
                    }
                },
                10s);
            if (!up) {
                stop();
                throw std::runtime_error("auth_backend.py did not start");
            }
            port = p;
        });
    }
    ~auth_backend() { stop(); }
    void stop() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            pid = -1;
        }
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/check"; }
    /// Every line the backend logged: {"question": {...}, "content_type": ..., "path": ...}.
    std::vector<json> lines() const {
        std::vector<json> out;
        std::istringstream in{file_text(log)};
        for (std::string line; std::getline(in, line);)
            if (!line.empty())
                out.push_back(json::parse(line));
        return out;
    }
    /// How many questions were about `channel` and `action`.
    std::size_t asked(const std::string& channel, const std::string& action = "subscribe") const {
        std::size_t n = 0;
        for (const json& l : lines())
            n += l.at("question").at("channel") == channel &&
                 l.at("question").at("action") == action;
        return n;
    }

    static inline int count = 0;
    std::string log;
    pid_t pid = -1;
    unsigned short port = 0;
};

server_options hook_options(const std::string& url, std::chrono::milliseconds timeout = 2s,
                            std::chrono::milliseconds cache = 30s) {
    server_options o = test_options();
    auto rules = std::make_shared<session_rules>();
    auth::token_options t;
    t.secret = test_secret;
    rules->tokens = std::make_shared<const auth::token_verifier>(t);
    rules->wall_clock = [] { return token_now; };
    rules->client_publish = auth::pattern_set::parse({}).value(); // (the hook decides instead)
    o.engine.rules = rules;
    o.clients.hook.url = url;
    o.clients.hook.timeout = timeout;
    o.clients.hook.cache_for = cache;
    return o;
}

std::string token_of(const std::string& user) {
    json claims = good_claims();
    claims["sub"] = user;
    return mint_one({{"alg", "HS256"}, {"key", test_secret}, {"claims", claims}});
}

/// A session's requests and the messages they bring back (a request that carries messages is
/// held like a poll, so its answer may bring what they caused).
struct poller {
    http_client& c;
    std::string sid;
    std::uint64_t rid;
    std::vector<json> got = {};

    void send(json messages) {
        const http_reply r = c.post_json("/comet", request_body(sid, ++rid, std::move(messages)));
        REQUIRE(r.status == 200);
        for (const json& m : r.json().value("messages", json::array()))
            got.push_back(m);
    }
    /// The next `n` messages, polling until they have come (or 10 s: then what has).
    std::vector<json> take(std::size_t n) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (got.size() < n && std::chrono::steady_clock::now() < deadline)
            send(json());
        std::vector<json> out(got.begin(), got.begin() + std::min(n, got.size()));
        got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(out.size()));
        return out;
    }
};

/// Sessions a publish on `channel` reaches, once it is `expected` (or 10 s: then what it is).
std::size_t reach_becomes(test_server& ts, const std::string& channel, std::size_t expected) {
    std::size_t n = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
        http_client c{ts.internal_port()};
        n = c.post("/publish/" + channel, "0").json().at("sessions").get<std::size_t>();
    } while (n != expected && std::chrono::steady_clock::now() < deadline);
    return n;
}

std::uint64_t refused(test_server& ts, refusal r) {
    return ts.srv().metrics().refusals[static_cast<std::size_t>(r)];
}

json forbidden(const std::string& channel) {
    return {{"error", "forbidden"}, {"channel", channel}};
}

} // namespace

TEST_CASE("auth hook: 200 allows and 403 denies, per action, the backend is told the sid, the "
          "user, the channel and the action") {
    auth_backend backend;
    test_server ts{hook_options(backend.url())};
    http_client c{ts.port()};
    const auto alice = create_session(
        c, 1,
        {{"token", token_of("alice")},
         {"messages", json::array({{{"subscribe", "ok-a"}},
                                   {{"subscribe", "no-a"}},
                                   {{"subscribe", "ro-a"}},
                                   {{"publish", "ro-a"}, {"data", 1}},
                                   {{"subscribe", "user-alice"}},
                                   {{"subscribe", "user-bob"}},
                                   // not private to the hook: it decides instead of the rules
                                   {{"subscribe", "private-x"}}})}});
    poller p{c, alice.sid, alice.rid};
    const auto got = p.take(4);
    CHECK(std::multiset<json>(got.begin(), got.end()) ==
          std::multiset<json>{forbidden("no-a"), forbidden("ro-a"), forbidden("user-bob"),
                              forbidden("private-x")});
    CHECK(reach_becomes(ts, "ok-a", 1) == 1);
    CHECK(reach_becomes(ts, "ro-a", 1) == 1);
    CHECK(reach_becomes(ts, "user-alice", 1) == 1);
    CHECK(reach_becomes(ts, "no-a", 0) == 0);
    CHECK(reach_becomes(ts, "user-bob", 0) == 0);
    CHECK(refused(ts, refusal::forbidden) == 4);

    bool seen = false;
    for (const json& l : backend.lines())
        if (l.at("question").at("channel") == "ok-a") {
            seen = true;
            CHECK(l.at("question") == json{{"sid", alice.sid},
                                           {"user", "alice"},
                                           {"channel", "ok-a"},
                                           {"action", "subscribe"}});
            CHECK(l.at("content_type") == "application/json");
            CHECK(l.at("path") == "/check");
        }
    CHECK(seen);
    CHECK(backend.asked("ro-a", "publish") == 1);

    // Without a token: no user; the sid says who asks.
    const auto anon = create_session(c, 1, {{"messages", json::array({{{"subscribe", "ok-b"}}})}});
    CHECK(reach_becomes(ts, "ok-b", 1) == 1);
    for (const json& l : backend.lines())
        if (l.at("question").at("channel") == "ok-b")
            CHECK(l.at("question") == json{{"sid", anon.sid},
                                           {"user", ""},
                                           {"channel", "ok-b"},
                                           {"action", "subscribe"}});
}

TEST_CASE("auth hook: an error status, no answer in time and a backend that is gone all deny, "
          "are counted, and are not cached") {
    auth_backend backend;
    test_server ts{hook_options(backend.url(), /*timeout=*/300ms)};
    http_client c{ts.port()};
    const auto s = create_session(
        c, 1, {{"messages", json::array({{{"subscribe", "err-1"}}, {{"subscribe", "slow-1"}}})}});
    poller p{c, s.sid, s.rid};
    const auto got = p.take(2);
    CHECK(std::multiset<json>(got.begin(), got.end()) ==
          std::multiset<json>{forbidden("err-1"), forbidden("slow-1")});
    CHECK(refused(ts, refusal::auth_hook_failed) == 2);
    CHECK(reach_becomes(ts, "slow-1", 0) == 0);

    // Not cached: asked again.
    p.send(json::array({{{"subscribe", "err-1"}}}));
    CHECK(p.take(1) == std::vector<json>{forbidden("err-1")});
    CHECK(backend.asked("err-1") == 2);

    // No backend at all: denied.
    backend.stop();
    p.send(json::array({{{"subscribe", "ok-gone"}}}));
    CHECK(p.take(1) == std::vector<json>{forbidden("ok-gone")});
    CHECK(refused(ts, refusal::auth_hook_failed) == 4);
    CHECK(reach_becomes(ts, "ok-gone", 0) == 0);
}

TEST_CASE("auth hook: answers are cached per user, channel and action (per sid without a user) "
          "for --auth-cache, 0 asks every time") {
    SECTION("cached for 30 s") {
        auth_backend backend;
        test_server ts{hook_options(backend.url())};
        http_client c{ts.port()};
        const std::string bob = token_of("bob");
        for (int i = 0; i < 2; ++i)
            create_session(c, 1,
                           {{"token", bob}, {"messages", json::array({{{"subscribe", "ok-c"}}})}});
        CHECK(reach_becomes(ts, "ok-c", 2) == 2);
        INFO(file_text(backend.log));
        CHECK(backend.asked("ok-c") == 1);
        // Another action is another question.
        const auto s = create_session(c, 1, {{"token", bob}, {"wait", 0}}); // (answers at once)
        CHECK(c.post_json("/comet", request_body(s.sid, 2,
                                                 json::array({{{"publish", "ok-c"}, {"data", 1}},
                                                              {{"publish", "ok-c"}, {"data", 2}}})))
                  .status == 200);
        // Both publishes reach the two subscribers (each one's poll ends with them).
        CHECK(reach_becomes(ts, "ok-c", 2) == 2);
        // Sessions without a user are asked about one by one.
        for (int i = 0; i < 2; ++i)
            create_session(c, 1, {{"messages", json::array({{{"subscribe", "ok-d"}}})}});
        CHECK(reach_becomes(ts, "ok-d", 2) == 2);
        CHECK(backend.asked("ok-d") == 2);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (backend.asked("ok-c", "publish") < 1 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(5ms); // (the polling interval)
        CHECK(backend.asked("ok-c", "publish") == 1);
    }
    SECTION("--auth-cache 0") {
        auth_backend backend;
        test_server ts{hook_options(backend.url(), 2s, /*cache=*/0ms)};
        http_client c{ts.port()};
        const std::string bob = token_of("bob");
        create_session(c, 1,
                       {{"token", bob}, {"messages", json::array({{{"subscribe", "ok-e"}}})}});
        CHECK(reach_becomes(ts, "ok-e", 1) == 1);
        create_session(c, 1,
                       {{"token", bob}, {"messages", json::array({{{"subscribe", "ok-e"}}})}});
        CHECK(reach_becomes(ts, "ok-e", 2) == 2);
        CHECK(backend.asked("ok-e") == 2);
    }
}

TEST_CASE("auth hook: a session's publishes on one channel arrive in order while the backend "
          "decides, a kept connection the backend closed is opened again") {
    // The backend closes connections idle for 0.2 s.
    auth_backend backend{0.2};
    test_server ts{hook_options(backend.url(), 2s, /*cache=*/0ms)};
    http_client c{ts.port()};
    const auto listener =
        create_session(c, 1, {{"messages", json::array({{{"subscribe", "ok-o"}}})}});
    REQUIRE(reach_becomes(ts, "ok-o", 1) == 1);
    poller p{c, listener.sid, listener.rid};
    REQUIRE(p.take(1).size() == 1); // (reach_becomes published one: taken)

    const auto sender = create_session(c, 1, {{"wait", 0}}); // (answers at once)
    std::uint64_t rid = sender.rid;
    for (int batch = 0; batch < 2; ++batch) {
        json messages = json::array();
        for (int i = 0; i < 20; ++i)
            messages.push_back({{"publish", "ok-o"}, {"data", batch * 20 + i}});
        REQUIRE(c.post_json("/comet", request_body(sender.sid, ++rid, messages)).status == 200);
    }
    std::vector<json> data;
    for (const json& m : p.take(40))
        data.push_back(m.at("data"));
    std::vector<json> expected;
    for (int i = 0; i < 40; ++i)
        expected.push_back(i);
    CHECK(data == expected);

    // Let the backend drop the hook's kept connections (idle 0.2 s), then ask again: answered.
    std::this_thread::sleep_for(500ms); // (making the state under test, not waiting for it)
    const auto late =
        create_session(c, 1, {{"messages", json::array({{{"subscribe", "ok-late"}}})}});
    CHECK(reach_becomes(ts, "ok-late", 1) == 1);
    CHECK(refused(ts, refusal::auth_hook_failed) == 0);
}
