// A session's streaming sink (app/stream_sink.hpp, fsm states `streaming` and `writing`) driven
// through the engine with the testing kit's manual clock: the die timer stops while a stream is
// attached and starts when it closes; one write at a time, pushes meanwhile in the next; ids
// continue across writes and streams; a reconnect replays exactly what followed its position;
// --max-queue ends a session whose reader never finishes a write. Then the upgrade's rules
// (docs/PROTOCOL.md, "Upgrade"): a long-poll's `stream_ack` hands back what a dead stream never
// delivered, first and once; `streaming` requests are answered at once and empty; the rid fence
// keeps a request older than the stream's opening from rewinding it, and a stream its client gave
// up before it arrived from taking the session's packets.
#include "app/session.hpp"
#include "app/testing.hpp"
#include "transport/sse.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using megaphone::testing::harness;
using namespace megaphone;

namespace {

class quiet_app final : public application {};

/// One stream's connection: records its opening and every piece written.
struct stream_target final : exchange_target {
    void deliver(std::uint32_t, response r) override {
        status = r.status;
        pieces.emplace_back(r.body.view());
        opened = r.stream;
    }
    void write(std::uint32_t, packet body, bool last, std::int64_t) override {
        pieces.emplace_back(body.view());
        ended = ended || last;
    }
    unsigned status = 0;
    bool opened = false;
    bool ended = false;
    std::vector<std::string> pieces;
};

struct test_stream {
    std::shared_ptr<stream_target> target = std::make_shared<stream_target>();
    exchange ex{target, 1};
};

const sse_transport sse;

test_stream open(harness& h, const std::string& sid, std::optional<std::uint64_t> last = {},
                 std::optional<std::uint64_t> fence = {}) {
    test_stream s;
    h.engine().open_stream(stream_request{sid, last, fence}, sse, s.ex);
    h.settle();
    return s;
}

void written(harness& h, const std::string& sid, const test_stream& s) {
    h.engine().stream_written(sid, s.ex);
    h.settle();
}

void push(harness& h, const std::string& sid, std::string_view text) {
    h.engine().push(sid, packet::from(text));
    h.settle();
}

const std::string opening =
    ": megaphone\nretry: 2000\n\nevent: ready\ndata: {\"heartbeat\":15000}\n\n";

void lose(harness& h, const std::string& sid, const test_stream& s) {
    h.engine().connection_lost(sid, stream_sink_id, s.ex);
    h.settle();
}

/// The messages of an answer, as their text.
std::vector<std::string> texts(const megaphone::testing::request& r) {
    std::vector<std::string> out;
    for (const auto& m : r.messages())
        out.push_back(m.dump());
    return out;
}
using strings = std::vector<std::string>;

/// A stream of `c` opened after its latest request, each of `texts` pushed and written on it
/// (ids 1, 2, ...).
test_stream flowing(harness& h, megaphone::testing::client& c, const strings& texts) {
    auto s = open(h, c.sid(), {}, c.next_rid() - 1);
    written(h, c.sid(), s);
    for (const std::string& p : texts) {
        push(h, c.sid(), p);
        written(h, c.sid(), s);
    }
    return s;
}

} // namespace

TEST_CASE("stream: no inactivity while attached, the die timer starts when it closes") {
    quiet_app app;
    engine_config config;
    config.inactivity = std::chrono::seconds(10);
    harness h{app, config};
    auto& c = h.connect();
    auto s = open(h, c.sid());
    REQUIRE(s.target->status == 200);
    CHECK(s.target->pieces == std::vector<std::string>{opening});
    CHECK(c.state() == fsm_state::writing);
    written(h, c.sid(), s);
    CHECK(c.state() == fsm_state::streaming);
    h.advance(std::chrono::seconds(35));
    CHECK(c.state() == fsm_state::streaming);

    h.engine().connection_lost(c.sid(), stream_sink_id, s.ex);
    h.settle();
    CHECK(c.state() == fsm_state::waiting);
    h.advance(std::chrono::seconds(9));
    CHECK(c.state() == fsm_state::waiting);
    h.advance(std::chrono::seconds(2));
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::inactivity);
}

TEST_CASE("stream: one write at a time, what is pushed meanwhile goes in the next") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto s = open(h, c.sid());
    push(h, c.sid(), "\"a\""); // the opening is still being written: queued
    CHECK(s.target->pieces.size() == 1);
    CHECK(c.queued() == 1);
    written(h, c.sid(), s);
    CHECK(s.target->pieces.back() == "id: 1\ndata: \"a\"\n\n");
    push(h, c.sid(), "\"b\"");
    push(h, c.sid(), "\"c\"");
    CHECK(s.target->pieces.size() == 2);
    written(h, c.sid(), s);
    CHECK(s.target->pieces.back() == "id: 2\ndata: \"b\"\n\nid: 3\ndata: \"c\"\n\n");
    written(h, c.sid(), s);
    CHECK(c.state() == fsm_state::streaming);
    push(h, c.sid(), "\"d\""); // idle: written at once
    CHECK(s.target->pieces.back() == "id: 4\ndata: \"d\"\n\n");
    CHECK(c.state() == fsm_state::writing);
}

TEST_CASE("stream: a reconnect replays exactly what followed its position, then the queue") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto first = open(h, c.sid());
    written(h, c.sid(), first);
    for (const char* p : {"1", "2", "3"}) {
        push(h, c.sid(), p);
        written(h, c.sid(), first);
    }
    h.engine().connection_lost(c.sid(), stream_sink_id, first.ex);
    h.settle();
    push(h, c.sid(), "4"); // no stream: queued
    CHECK(c.state() == fsm_state::have_packet);

    auto second = open(h, c.sid(), 1);
    CHECK(second.target->pieces ==
          std::vector<std::string>{opening +
                                   "id: 2\ndata: 2\n\nid: 3\ndata: 3\n\nid: 4\ndata: 4\n\n"});
    // A stale completion of the old stream is not this one's.
    written(h, c.sid(), first);
    CHECK(c.state() == fsm_state::writing);
    written(h, c.sid(), second);
    CHECK(c.state() == fsm_state::streaming);

    // A third stream replaces it (the newest wins): the second one is ended.
    auto third = open(h, c.sid(), 4);
    CHECK(second.target->ended);
    CHECK(third.target->pieces == std::vector<std::string>{opening});
    // A position older than one the client has since started from (1 < 4) is an older request
    // of it, delivered late: 204, and the session and the third stream go on.
    auto stale = open(h, c.sid(), 1);
    CHECK(stale.target->status == 204);
    CHECK_FALSE(c.closed());
    CHECK_FALSE(third.target->ended);
    written(h, c.sid(), third);
    push(h, c.sid(), "5");
    CHECK(third.target->pieces.back() == "id: 5\ndata: 5\n\n");
}

TEST_CASE("stream: a held long-poll is answered empty when a stream opens, requests then "
          "answer at once") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto& held = c.poll();
    CHECK_FALSE(held.answered());
    auto s = open(h, c.sid());
    REQUIRE(held.answered());
    CHECK(held.messages() == nlohmann::json::array());
    auto& sent = c.send({{{"hello", 1}}});
    CHECK(sent.answered());
    CHECK(c.state() == fsm_state::writing);
}

TEST_CASE("stream: --max-queue ends a session whose reader never finishes a write") {
    quiet_app app;
    engine_config config;
    config.max_queue = 2;
    harness h{app, config};
    auto& c = h.connect();
    auto s = open(h, c.sid());
    push(h, c.sid(), "1");
    push(h, c.sid(), "2");
    CHECK_FALSE(c.closed());
    push(h, c.sid(), "3");
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::queue_overflow);
    CHECK(s.target->ended);
    CHECK(s.target->pieces.back() ==
          "data: {\"type\":\"terminate\",\"condition\":\"policy-violation\"}\n\n");
}

TEST_CASE("stream: an unknown session, or a BOSH one, gets 204") {
    quiet_app app;
    harness h{app};
    auto unknown = open(h, "n0-0nosuchsession");
    CHECK(unknown.target->status == 204);
    auto& b = h.connect_bosh();
    auto bosh = open(h, b.sid());
    CHECK(bosh.target->status == 204);
    CHECK_FALSE(b.closed());
}

//--------------------------------------------------------------------------------------------------
// The upgrade and its fallback

TEST_CASE("upgrade: a stream_ack hands back what the dead stream never delivered, first, once") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto s = flowing(h, c, {"1", "2", "3"});
    lose(h, c.sid(), s); // the client received id 1 only
    push(h, c.sid(), "4");
    auto& back = c.send_json({{"stream_ack", 1}});
    REQUIRE(back.answered());
    CHECK(texts(back) == strings{"2", "3", "4"});
    // The same position again (every request of the fallback says it): nothing comes twice.
    auto& again = c.send_json({{"stream_ack", 1}});
    CHECK_FALSE(again.answered());
    push(h, c.sid(), "5");
    CHECK(texts(again) == strings{"5"});

    // A new stream from the client's position: nothing to replay, ids go on.
    auto next = open(h, c.sid(), 1, c.next_rid() - 1);
    CHECK(next.target->pieces == strings{opening});
    written(h, c.sid(), next);
    push(h, c.sid(), "6");
    CHECK(next.target->pieces.back() == "id: 4\ndata: 6\n\n");
}

TEST_CASE("upgrade: a stream_ack lets a half-open stream go, its unacknowledged tail goes first") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto s = open(h, c.sid(), {}, c.next_rid() - 1);
    written(h, c.sid(), s);
    push(h, c.sid(), "\"a\"");
    written(h, c.sid(), s);
    push(h, c.sid(), "\"b\""); // in flight when the client gives up
    push(h, c.sid(), "\"c\""); // queued behind it
    CHECK(c.state() == fsm_state::writing);
    auto& back = c.send_json({{"stream_ack", 0}});
    CHECK(s.target->ended);
    REQUIRE(back.answered());
    CHECK(texts(back) == strings{"\"a\"", "\"b\"", "\"c\""});
    // The old stream's late news changes nothing.
    written(h, c.sid(), s);
    lose(h, c.sid(), s);
    CHECK(c.state() == fsm_state::waiting);
    auto& poll = c.poll();
    push(h, c.sid(), "\"d\"");
    CHECK(texts(poll) == strings{"\"d\""});
}

TEST_CASE("upgrade: streaming requests are answered at once and empty, the queue stays for the "
          "stream") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    push(h, c.sid(), "\"a\""); // have_packet: a plain poll would take it
    auto& r = c.send_json(
        {{"streaming", true}, {"messages", nlohmann::json::array({nlohmann::json{{"hello", 1}}})}});
    REQUIRE(r.answered());
    CHECK(texts(r).empty());
    CHECK(c.queued() == 1);
    auto s = open(h, c.sid(), {}, r.rid());
    CHECK(s.target->pieces == strings{opening + "id: 1\ndata: \"a\"\n\n"});
}

TEST_CASE("upgrade: a held long-poll released by the stream's opening carries what came before") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto& held = c.poll();
    push(h, c.sid(), "\"a\""); // answers the held poll
    CHECK(texts(held) == strings{"\"a\""});
    auto& held2 = c.poll();
    auto s = open(h, c.sid(), {}, held2.rid());
    REQUIRE(held2.answered());
    CHECK(texts(held2).empty());
    push(h, c.sid(), "\"b\"");
    written(h, c.sid(), s);
    CHECK(s.target->pieces.back() == "id: 1\ndata: \"b\"\n\n");
}

TEST_CASE("upgrade: a stale retry of a rid older than the stream's opening rewinds nothing") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    // The client long-polls after an earlier stream (position 0) and then opens a new one.
    auto& held = c.send_json({{"stream_ack", 0}});
    auto s = open(h, c.sid(), 0, held.rid());
    REQUIRE(held.answered());
    written(h, c.sid(), s);
    push(h, c.sid(), "\"a\"");
    written(h, c.sid(), s);
    // A copy of the held request, sent again by the network (or a slow retry): its cached
    // answer, and the stream keeps what it wrote.
    auto& retry = c.send_json({{"rid", held.rid()}, {"stream_ack", 0}});
    REQUIRE(retry.answered());
    CHECK(texts(retry).empty());
    CHECK_FALSE(s.target->ended);
    CHECK(c.state() == fsm_state::streaming);
    push(h, c.sid(), "\"b\"");
    CHECK(s.target->pieces.back() == "id: 2\ndata: \"b\"\n\n");
}

TEST_CASE("upgrade: a request sent before the stream opened but processed after it is answered "
          "empty and rewinds nothing") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto& held = c.poll();
    const request_id late = c.next_rid(); // sent (with a stream_ack) but not arrived yet
    auto s = open(h, c.sid(), 0, late);
    REQUIRE(held.answered());
    written(h, c.sid(), s);
    push(h, c.sid(), "\"a\"");
    written(h, c.sid(), s);
    auto& r = c.send_json({{"rid", late}, {"stream_ack", 0}});
    REQUIRE(r.answered());
    CHECK(texts(r).empty());
    CHECK_FALSE(s.target->ended);
    CHECK(c.state() == fsm_state::streaming);

    // The stream dies; a request sent before it opened still carries nothing newer than it.
    lose(h, c.sid(), s);
    push(h, c.sid(), "\"b\"");
    auto& again = c.resend(r); // the same rid again: its cached (empty) answer
    REQUIRE(again.answered());
    CHECK(texts(again).empty());
    // The fallback's first request: what the stream did not deliver (nothing: "a" arrived),
    // then "b".
    auto& back = c.send_json({{"stream_ack", 1}});
    CHECK(texts(back) == strings{"\"b\""});
}

TEST_CASE("upgrade: a stream its client gave up before it arrived is refused, the session goes "
          "on") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto& held = c.poll();
    const request_id fence = held.rid();
    // The probe never got through in time: the client long-polls again, saying where it stands.
    auto& fallback = c.send_json({{"stream_ack", 0}});
    CHECK(held.answered()); // hold 1: the newer request takes its place
    CHECK_FALSE(fallback.answered());
    auto stale = open(h, c.sid(), {}, fence);
    CHECK(stale.target->status == 204);
    CHECK_FALSE(c.closed());
    CHECK(c.state() == fsm_state::have_request);
    push(h, c.sid(), "\"x\"");
    CHECK(texts(fallback) == strings{"\"x\""});
}

TEST_CASE("upgrade: a stream_ack the window cannot serve ends the session (item-not-found)") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto s = open(h, c.sid(), {}, c.next_rid() - 1);
    written(h, c.sid(), s);
    push(h, c.sid(), "1");
    auto& ahead = c.send_json({{"stream_ack", 7}}); // beyond the last id written
    REQUIRE(ahead.answered());
    CHECK(ahead.status() == 404);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::item_not_found);
}

TEST_CASE("upgrade: a long-poll session that never streamed ignores stream_ack 0") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto& r = c.send_json({{"stream_ack", 0}});
    CHECK_FALSE(r.answered());
    push(h, c.sid(), "\"a\"");
    CHECK(texts(r) == strings{"\"a\""});
}

TEST_CASE("upgrade: a stream_ack on a streaming request only acknowledges: the stream goes on, "
          "the window keeps what followed") {
    quiet_app app;
    harness h{app};
    auto& c = h.connect();
    auto s = flowing(h, c, {"1", "2", "3"});
    auto& ack = c.send_json({{"streaming", true}, {"stream_ack", 2}});
    REQUIRE(ack.answered());
    CHECK(texts(ack).empty());
    CHECK_FALSE(s.target->ended);
    CHECK(c.state() == fsm_state::streaming);
    push(h, c.sid(), "4");
    CHECK(s.target->pieces.back() == "id: 4\ndata: 4\n\n");
    written(h, c.sid(), s);
    // An acknowledgement from before (a late one), or beyond what was written: no change.
    CHECK(c.send_json({{"streaming", true}, {"stream_ack", 1}}).answered());
    CHECK(c.send_json({{"streaming", true}, {"stream_ack", 9}}).answered());
    CHECK_FALSE(c.closed());

    SECTION("a reconnect from the acknowledged position replays what followed it") {
        auto next = open(h, c.sid(), 2, c.next_rid() - 1);
        CHECK(next.target->pieces == strings{opening + "id: 3\ndata: 3\n\nid: 4\ndata: 4\n\n"});
    }
    SECTION("a position before what the client acknowledged is an older request of it (a probe "
            "it gave up, delivered late): 204, the session and its stream go on") {
        auto late = open(h, c.sid(), 1, c.next_rid() - 1);
        CHECK(late.target->status == 204);
        CHECK_FALSE(c.closed());
        CHECK_FALSE(s.target->ended);
        push(h, c.sid(), "5");
        CHECK(s.target->pieces.back() == "id: 5\ndata: 5\n\n");
    }
}

TEST_CASE("stream: a reconnect from before what left the window unacknowledged (over "
          "--max-queue) cannot be served exactly: 204, and the session ends") {
    quiet_app app;
    engine_config config;
    config.max_queue = 2;
    harness h{app, config};
    auto& c = h.connect();
    auto s = flowing(h, c, {"1", "2", "3", "4"}); // written, never acknowledged: 3 and 4 kept
    lose(h, c.sid(), s);
    CHECK_FALSE(c.closed());
    SECTION("from 2: what followed it is all there") {
        auto next = open(h, c.sid(), 2, c.next_rid() - 1);
        CHECK(next.target->pieces == strings{opening + "id: 3\ndata: 3\n\nid: 4\ndata: 4\n\n"});
        CHECK_FALSE(c.closed());
    }
    SECTION("from 1: 2 is gone") {
        auto next = open(h, c.sid(), 1, c.next_rid() - 1);
        CHECK(next.target->status == 204);
        CHECK(c.closed());
        CHECK(h.close_reason_of(c.sid()) == close_reason::item_not_found);
    }
}
