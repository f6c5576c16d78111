// Who may publish and read the metrics (app/access.hpp): the public doors and the internal one.
// Without --publish-key, POST /publish is not served on the public port at all, not even from
// 127.0.0.1 and not through a real nginx on the same host (whose requests all come from
// 127.0.0.1, with an X-Forwarded-For the client may write); the internal door serves it. With a
// key, the public port serves it to `Authorization: Bearer <key>` only: 401 with
// WWW-Authenticate otherwise, counted.
#include "support/http_client.hpp"
#include "support/nginx_proxy.hpp"
#include "support/stamps.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using namespace megaphone;
using namespace megaphone::test;
using nlohmann::json;
namespace http = boost::beast::http;

namespace {

const std::string publish_key = "access-test-publish-key-5c1e";

/// megaphone_refusals_total{limit="unauthorized"} on the internal door's /metrics.
double unauthorized_count(test_server& s) {
    http_client c{s.internal_port()};
    const http_reply r = c.get("/metrics");
    REQUIRE(r.status == 200);
    std::istringstream lines{r.body};
    const std::string key = "megaphone_refusals_total{limit=\"unauthorized\"} ";
    for (std::string line; std::getline(lines, line);)
        if (line.starts_with(key))
            return std::stod(line.substr(key.size()));
    FAIL("no " << key << "sample");
    return -1;
}

/// A session on `channel` with a request held, and a way to see what reached it.
struct listener {
    http_client c;
    std::string sid;
    std::uint64_t rid = 10;
    listener(test_server& s, const std::string& channel)
        : c{s.port()} {
        sid = create_session(c, rid, {{"messages", json::array({{{"subscribe", channel}}})}}).sid;
    }
    /// The data of the messages answered to the next poll (held until a publish, or `wait`).
    std::vector<json> next() {
        json body = request_body(sid, ++rid);
        body["ack"] = rid - 1;
        const http_reply r = c.post_json("/comet", body);
        REQUIRE(r.status == 200);
        std::vector<json> data;
        const json answer = r.json();
        for (const json& m : answer.at("messages"))
            if (m.contains("data"))
                data.push_back(m.at("data"));
        return data;
    }
};

} // namespace

TEST_CASE("access: without a publish key the public port does not serve POST /publish, not "
          "from 127.0.0.1, not through nginx on the same host, the internal door does") {
    test_server s;
    REQUIRE(s.internal_port() != 0);
    REQUIRE(s.internal_port() != s.port());
    nginx_proxy nginx{s.port()};

    for (const unsigned short port : {s.port(), nginx.port()}) {
        INFO("through port " << port << (port == nginx.port() ? " (nginx)" : " (direct)"));
        http_client c{port};
        // A forged "I am local" changes nothing, nor does a key nobody configured.
        const http_reply r = c.request(http::verb::post, "/publish/news", "1",
                                       {{http::field::authorization, "Bearer " + publish_key}});
        CHECK(r.status == 404);
        CHECK(c.post("/publish/news", "1").status == 404);
        c.send(http::verb::post, "/publish/news", "1");
        CHECK(c.receive().status == 404);
    }
    // The internal door: served, and the message reaches the public port's sessions.
    listener l{s, "news"};
    http_client internal{s.internal_port()};
    const http_reply ok = internal.post("/publish/news", "\"from inside\"");
    REQUIRE(ok.status == 200);
    CHECK(read_publish_answer(ok.json()).value().sessions == 1);
    CHECK(l.next() == std::vector<json>{"from inside"});
}

TEST_CASE("access: with a publish key the public port serves POST /publish to the right bearer "
          "only, a wrong or missing key is 401 with WWW-Authenticate, counted") {
    server_options o = test_options();
    o.keys.publish_key = publish_key;
    test_server s{o};
    nginx_proxy nginx{s.port()};
    listener l{s, "news"};
    const double before = unauthorized_count(s);

    for (const unsigned short port : {s.port(), nginx.port()}) {
        INFO("through port " << port << (port == nginx.port() ? " (nginx)" : " (direct)"));
        http_client c{port};
        const auto with = [&](std::string authorization) {
            return c.request(http::verb::post, "/publish/news", "\"nope\"",
                             {{http::field::authorization, authorization}});
        };
        for (const http_reply& r :
             {c.post("/publish/news", "\"nope\""), with("Bearer wrong-key"),
              with("Bearer " + publish_key + "x"), with("Bearer " + publish_key.substr(1)),
              with("Basic " + publish_key), with(publish_key), with("Bearer "), with("Bearer")}) {
            INFO(r.body);
            CHECK(r.status == 401);
            CHECK(r.header("WWW-Authenticate").starts_with("Bearer"));
        }
    }
    CHECK(unauthorized_count(s) == before + 16);

    // The right key, direct and through nginx (the scheme's case does not matter): served.
    for (const unsigned short port : {s.port(), nginx.port()}) {
        http_client c{port};
        const std::string scheme = port == s.port() ? "Bearer " : "bearer ";
        const http_reply r = c.request(http::verb::post, "/publish/news", std::to_string(port),
                                       {{http::field::authorization, scheme + publish_key}});
        INFO(r.body);
        REQUIRE(r.status == 200);
        CHECK(l.next() == std::vector<json>{port});
    }
    // The internal door needs no key.
    http_client internal{s.internal_port()};
    CHECK(internal.post("/publish/news", "1").status == 200);
    CHECK(l.next() == std::vector<json>{1});
    // No message refused above reached anyone.
    CHECK(unauthorized_count(s) == before + 16);
}

TEST_CASE("access: GET /metrics is open on the public port unless a metrics token is set, the "
          "internal door serves it always") {
    SECTION("no token: open") {
        test_server s;
        http_client c{s.port()};
        CHECK(c.get("/metrics").status == 200);
    }
    SECTION("a token: the public port wants it") {
        server_options o = test_options();
        o.keys.metrics_token = "metrics-token-for-the-test";
        test_server s{o};
        http_client c{s.port()};
        const http_reply none = c.get("/metrics");
        CHECK(none.status == 401);
        CHECK(none.header("WWW-Authenticate").starts_with("Bearer"));
        CHECK(c.request(http::verb::get, "/metrics", {},
                        {{http::field::authorization, "Bearer not-the-token"}})
                  .status == 401);
        const http_reply ok =
            c.request(http::verb::get, "/metrics", {},
                      {{http::field::authorization, "Bearer metrics-token-for-the-test"}});
        CHECK(ok.status == 200);
        CHECK(ok.body.find("megaphone_refusals_total") != std::string::npos);
        http_client internal{s.internal_port()};
        CHECK(internal.get("/metrics").status == 200);
        // The publish key does not open /metrics, nor the other way round.
        CHECK(c.request(http::verb::post, "/publish/x", "1",
                        {{http::field::authorization, "Bearer metrics-token-for-the-test"}})
                  .status == 404);
    }
}
