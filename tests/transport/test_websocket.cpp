// The WebSocket transport's framing and request reading (transport/websocket.hpp): batches with
// the last id, the ready/ping/terminate frames, the refusal's close code, which requests it
// takes, sid and lastEventId from the query. The connection itself is exercised end to end in
// tests/integration/test_websocket.cpp.
#include "transport/websocket.hpp"

#include <catch2/catch.hpp>

#include <array>

using namespace megaphone;

namespace {

http::request<http::string_body> upgrade(std::string target) {
    http::request<http::string_body> r{http::verb::get, target, 11};
    r.set(http::field::upgrade, "websocket");
    r.set(http::field::connection, "Upgrade");
    r.set(http::field::sec_websocket_version, "13");
    r.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    return r;
}

} // namespace

TEST_CASE("websocket: a batch names its last message's id and lists the messages in order",
          "[transport][websocket]") {
    const std::array packets{packet::from("{\"a\":1}"), packet::from("2"), packet::from("\"x\"")};
    CHECK(websocket_batch(7, packets).view() == "{\"id\":9,\"messages\":[{\"a\":1},2,\"x\"]}");
    CHECK(websocket_batch(123456, std::span(packets).first(1)).view() ==
          "{\"id\":123456,\"messages\":[{\"a\":1}]}");
}

TEST_CASE("websocket: the opening is a stream whose body is the first batch (or nothing)",
          "[transport][websocket]") {
    websocket_options o;
    o.heartbeat = std::chrono::seconds(3);
    const websocket_transport ws{o};
    const std::array packets{packet::from("1")};
    const response r = ws.opening(5, packets);
    CHECK(r.stream);
    CHECK(r.body.view() == "{\"id\":5,\"messages\":[1]}");
    CHECK(r.heartbeat_every == std::chrono::seconds(3));
    CHECK(ws.opening(1, {}).body.size() == 0);
    CHECK(ws.ready().view() == "{\"type\":\"ready\",\"heartbeat\":3000}");
    CHECK(ws.ping().view() == "{\"type\":\"ping\"}");
}

TEST_CASE("websocket: the closing frame says the condition, the refusal is close code 4404",
          "[transport][websocket]") {
    const websocket_transport ws;
    CHECK(ws.closing(close_reason::client_terminate).view() == "{\"type\":\"terminate\"}");
    CHECK(ws.closing(close_reason::queue_overflow).view() ==
          "{\"type\":\"terminate\",\"condition\":\"policy-violation\"}");
    CHECK(ws.refusal().status == 4404);
    CHECK(ws.refusal().body.view() == "item-not-found");
}

TEST_CASE("websocket: accepts an upgrade on the mount or <mount>/<node id> only",
          "[transport][websocket]") {
    const websocket_transport ws;
    CHECK(ws.accepts(upgrade("/comet?sid=a"), ""));
    CHECK(ws.accepts(upgrade("/comet/n0?sid=a"), "/n0"));
    CHECK_FALSE(ws.accepts(upgrade("/comet/events?sid=a"), "/events/x"));
    CHECK_FALSE(ws.accepts(upgrade("/comet/a-b?sid=a"), "/a-b"));
    http::request<http::string_body> plain{http::verb::get, "/comet?sid=a", 11};
    CHECK_FALSE(ws.accepts(plain, ""));
    auto post = upgrade("/comet?sid=a");
    post.method(http::verb::post);
    CHECK_FALSE(ws.accepts(post, ""));
}

TEST_CASE("websocket: sid, lastEventId and the rid fence come from the query",
          "[transport][websocket]") {
    const websocket_transport ws;
    auto r = ws.parse(upgrade("/comet?sid=n0-abc&rid=1007&lastEventId=41"));
    REQUIRE(r);
    CHECK(r->sid == "n0-abc");
    CHECK(r->last_id == 41u);
    CHECK(r->rid == 1007u);
    r = ws.parse(upgrade("/comet?sid=n0-abc"));
    REQUIRE(r);
    CHECK_FALSE(r->last_id);
    CHECK_FALSE(r->rid);
    CHECK_FALSE(ws.parse(upgrade("/comet?sid=n0-abc&rid=x")));
    CHECK_FALSE(ws.parse(upgrade("/comet")));
    CHECK_FALSE(ws.parse(upgrade("/comet?sid=n0-abc&lastEventId=-1")));
}
