// A session's streaming sink (app/stream_sink.hpp, fsm states `streaming` and `writing`) driven
// through the engine with the testing kit's manual clock: the die timer stops while a stream is
// attached and starts when it closes; one write at a time, pushes meanwhile in the next; ids
// continue across writes and streams; a reconnect replays exactly what followed its position;
// --max-queue ends a session whose reader never finishes a write.
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

test_stream open(harness& h, const std::string& sid, std::optional<std::uint64_t> last = {}) {
    test_stream s;
    h.engine().open_stream(stream_request{sid, last}, sse, s.ex);
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

const std::string opening = ": megaphone\nretry: 2000\n\n";

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
    // A position already acknowledged (1 < 4, dropped) cannot be served: 204, the session ends.
    auto stale = open(h, c.sid(), 1);
    CHECK(stale.target->status == 204);
    CHECK(c.closed());
    CHECK(h.close_reason_of(c.sid()) == close_reason::item_not_found);
    CHECK(third.target->ended);
    CHECK(third.target->pieces.back() ==
          "data: {\"type\":\"terminate\",\"condition\":\"item-not-found\"}\n\n");
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
