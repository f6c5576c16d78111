// The SSE transport's framing and request reading (transport/sse.hpp): events, ids, data lines,
// the opening (with its `ready` event) and closing pieces, the `ping` heartbeat, the refusal, sid,
// Last-Event-ID from header or query, and the rid fence.
#include "transport/sse.hpp"

#include <catch2/catch.hpp>

#include <array>

using namespace megaphone;

namespace {

http::request<http::string_body> get(std::string target) {
    http::request<http::string_body> r{http::verb::get, target, 11};
    return r;
}

} // namespace

TEST_CASE("sse: packets are events numbered from the first id, one data line per line",
          "[transport][sse]") {
    const sse_transport sse;
    const std::array packets{packet::from("{\"a\":1}"), packet::from("{\"b\":\n2}"),
                             packet::from("x\r\ny\rz")};
    CHECK(sse.events(7, packets).view() == "id: 7\ndata: {\"a\":1}\n\n"
                                           "id: 8\ndata: {\"b\":\ndata: 2}\n\n"
                                           "id: 9\ndata: x\ndata: y\ndata: z\n\n");
    CHECK(sse.events(1, {}).view().empty());
}

TEST_CASE("sse: the opening is a 200 event stream with its fields, a comment, retry, ready, the "
          "events, and the heartbeat is a ping event",
          "[transport][sse]") {
    sse_options o;
    o.retry = std::chrono::milliseconds(1500);
    o.heartbeat = std::chrono::seconds(3);
    const sse_transport sse{o};
    const std::array packets{packet::from("1")};
    const response r = sse.opening(5, packets);
    CHECK(r.status == 200);
    CHECK(r.kind == content_kind::event_stream);
    CHECK(r.stream);
    CHECK(r.body.view() == ": megaphone\nretry: 1500\n\n"
                           "event: ready\ndata: {\"heartbeat\":3000}\n\n"
                           "id: 5\ndata: 1\n\n");
    CHECK(r.headers.view() == "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    // A named event with data and no id: an EventSource dispatches it (it never surfaces a
    // comment, nor an event whose data is empty) and keeps its Last-Event-ID.
    CHECK(r.heartbeat.view() == "event: ping\ndata: {}\n\n");
    // One packet made once, shared by every stream's heartbeats.
    CHECK(sse.opening(1, {}).heartbeat.view().data() == r.heartbeat.view().data());
    CHECK(r.heartbeat_every == std::chrono::seconds(3));
}

TEST_CASE("sse: a closing piece has no id and says the condition, the refusal is 204",
          "[transport][sse]") {
    const sse_transport sse;
    CHECK(sse.closing(close_reason::client_terminate).view() ==
          "data: {\"type\":\"terminate\"}\n\n");
    CHECK(sse.closing(close_reason::system_shutdown).view() ==
          "data: {\"type\":\"terminate\",\"condition\":\"system-shutdown\"}\n\n");
    CHECK(sse.refusal().status == 204);
}

TEST_CASE("sse: accepts GET <mount>/events only", "[transport][sse]") {
    const sse_transport sse;
    CHECK(sse.accepts(get("/comet/events?sid=a"), "/events"));
    CHECK_FALSE(sse.accepts(get("/comet/eventsx"), "/eventsx"));
    CHECK_FALSE(sse.accepts(get("/comet"), ""));
    auto post = get("/comet/events");
    post.method(http::verb::post);
    CHECK_FALSE(sse.accepts(post, "/events"));
}

TEST_CASE("sse: sid and position from the query, Last-Event-ID header first", "[transport][sse]") {
    const sse_transport sse;
    auto r = sse.parse(get("/comet/events?sid=n0-abc&lastEventId=12"));
    REQUIRE(r);
    CHECK(r->sid == "n0-abc");
    CHECK(r->last_id == 12u);

    auto with_header = get("/comet/events?lastEventId=12&sid=n0-abc");
    with_header.set("Last-Event-ID", "40");
    r = sse.parse(with_header);
    REQUIRE(r);
    CHECK(r->last_id == 40u);

    r = sse.parse(get("/comet/events?sid=n0-abc"));
    REQUIRE(r);
    CHECK_FALSE(r->last_id);

    CHECK_FALSE(sse.parse(get("/comet/events")));
    CHECK_FALSE(sse.parse(get("/comet/events?sid=")));
    CHECK_FALSE(sse.parse(get("/comet/events?sid=a&lastEventId=x1")));
    CHECK_FALSE(sse.parse(get("/comet/events?sid=a&lastEventId=-1")));
    CHECK_FALSE(sse.parse(get("/comet/events?sid=a&lastEventId=9007199254740992")));
    CHECK(sse.parse(get("/comet/events?sid=a&lastEventId=9007199254740991"))->last_id ==
          9007199254740991u);
}

TEST_CASE("sse: the rid fence from the query", "[transport][sse]") {
    const sse_transport sse;
    auto r = sse.parse(get("/comet/events?sid=n0-abc&rid=1048577&lastEventId=3"));
    REQUIRE(r);
    CHECK(r->rid == 1048577u);
    CHECK(r->last_id == 3u);
    CHECK_FALSE(sse.parse(get("/comet/events?sid=n0-abc"))->rid);
    CHECK_FALSE(sse.parse(get("/comet/events?sid=n0-abc&rid="))->rid);
    CHECK_FALSE(sse.parse(get("/comet/events?sid=a&rid=x")));
    CHECK_FALSE(sse.parse(get("/comet/events?sid=a&rid=9007199254740992")));
}
