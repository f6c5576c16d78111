// The session machine, state by state and event by event: for every state (with one and with
// several requests held, with room in the queue and with the queue full) and every event (held
// and stale ids, answer_now, hold 0 and polling) the next state, the effects in the order they
// are made, and what is held and queued afterwards. Then the rules the table implies, checked
// on their own: the hold limit, id order, terminate, queue overflow, closed, and re-entrancy.
#include "recording_effects.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using namespace megaphone;
using namespace megaphone::test;

namespace {

session_params params(std::uint16_t hold, std::uint32_t max_queue = 5, bool polling = false) {
    session_params p;
    p.hold = hold;
    p.max_queue = max_queue;
    p.polling = polling;
    return p;
}

std::vector<std::string> queued_text(const session_fsm& fsm) {
    std::vector<std::string> out;
    for (const packet& p : fsm.queued())
        out.emplace_back(p.view());
    return out;
}

std::vector<request_id> held_ids(const session_fsm& fsm) {
    return {fsm.held().begin(), fsm.held().end()};
}

/// The facts that hold after every event, whatever the table says.
void check_timers(const session_fsm& fsm, const recording_effects& fx) {
    const std::set<request_id> held(fsm.held().begin(), fsm.held().end());
    CHECK(fx.armed_wait == held);
    CHECK(fx.die_armed == (held.empty() && !fsm.streaming() && fsm.state() != fsm_state::closed));
}

struct table_case {
    std::string name;
    session_params params;
    std::vector<any_event> setup;
    fsm_state from; // the state the setup reaches
    any_event event;
    fsm_state next;
    std::vector<std::string> effects;
    std::vector<request_id> held_after;
    std::vector<std::string> queued_after;
};

constexpr auto W = fsm_state::waiting;
constexpr auto R = fsm_state::have_request;
constexpr auto P = fsm_state::have_packet;
constexpr auto C = fsm_state::closed;
constexpr auto ST = fsm_state::streaming;
constexpr auto WR = fsm_state::writing;
using S = std::vector<std::string>;
using H = std::vector<request_id>;

const std::vector<table_case>& table_cases() {
    static const std::vector<table_case> cases = {
        // clang-format off
        //------------------------------------------------------------------------------------------
        // waiting
        {"waiting + request_arrived -> have_request, holds it",
         params(1), {}, W, req(1), R,
         S{"arm_wait 1", "cancel_die"}, H{1}, S{}},
        {"waiting + request_arrived(answer_now) -> waiting, answers it empty",
         params(1), {}, W, req_now(1), W,
         S{"respond 1 [] data", "arm_die"}, H{}, S{}},
        {"waiting + request_arrived, hold=0 -> waiting, answers it empty",
         params(0), {}, W, req(1), W,
         S{"respond 1 [] data", "arm_die"}, H{}, S{}},
        {"waiting + request_arrived, polling -> waiting, answers it empty",
         params(2, 5, true), {}, W, req(1), W,
         S{"respond 1 [] data", "arm_die"}, H{}, S{}},
        {"waiting + packet_pushed -> have_packet, queues it",
         params(1), {}, W, push("a"), P,
         S{}, H{}, S{"a"}},
        {"waiting + packet_pushed, max_queue=1 -> have_packet, queues it (queue now full)",
         params(1, 1), {}, W, push("a"), P,
         S{}, H{}, S{"a"}},
        {"waiting + wait_expired(stale) -> waiting, ignored",
         params(1), {req_now(1)}, W, wait_exp(1), W,
         S{}, H{}, S{}},
        {"waiting + connection_closed(stale) -> waiting, ignored",
         params(1), {req(1), wait_exp(1)}, W, conn_closed(1), W,
         S{}, H{}, S{}},
        {"waiting + die_expired -> closed, inactivity",
         params(1), {}, W, die(), C,
         S{"cancel_die", "session_closed inactivity []"}, H{}, S{}},
        {"waiting + terminate_session -> closed, as asked",
         params(1), {}, W, terminate(close_reason::client_terminate), C,
         S{"cancel_die", "session_closed client_terminate []"}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // have_request, one held
        {"have_request(1 held, hold=1) + request_arrived -> have_request, answers oldest empty, "
         "holds new",
         params(1), {req(1)}, R, req(2), R,
         S{"cancel_wait 1", "respond 1 [] data", "arm_wait 2"}, H{2}, S{}},
        {"have_request(1 held, hold=2) + request_arrived -> have_request, holds it too",
         params(2), {req(1)}, R, req(2), R,
         S{"arm_wait 2"}, H{1, 2}, S{}},
        {"have_request(1 held) + request_arrived(answer_now) -> have_request, answers it empty",
         params(1), {req(1)}, R, req_now(2), R,
         S{"respond 2 [] data"}, H{1}, S{}},
        {"have_request(1 held) + packet_pushed -> waiting, answers it with the packet",
         params(1), {req(1)}, R, push("a"), W,
         S{"cancel_wait 1", "respond 1 [a] data", "arm_die"}, H{}, S{}},
        {"have_request(1 held) + packet_pushed, max_queue=1 -> waiting, packet bypasses queue",
         params(1, 1), {req(1)}, R, push("a"), W,
         S{"cancel_wait 1", "respond 1 [a] data", "arm_die"}, H{}, S{}},
        {"have_request(1 held) + wait_expired(held) -> waiting, answers it empty",
         params(1), {req(1)}, R, wait_exp(1), W,
         S{"respond 1 [] data", "arm_die"}, H{}, S{}},
        {"have_request(1 held) + wait_expired(stale) -> have_request, ignored",
         params(1), {req(1), req(2)}, R, wait_exp(1), R,
         S{}, H{2}, S{}},
        {"have_request(1 held) + connection_closed(held) -> waiting, forgets it",
         params(1), {req(1)}, R, conn_closed(1), W,
         S{"cancel_wait 1", "arm_die"}, H{}, S{}},
        {"have_request(1 held) + connection_closed(stale) -> have_request, ignored",
         params(1), {req(1), req(2)}, R, conn_closed(1), R,
         S{}, H{2}, S{}},
        {"have_request(1 held) + die_expired -> have_request, ignored",
         params(1), {req(1)}, R, die(), R,
         S{}, H{1}, S{}},
        {"have_request(1 held) + terminate_session -> closed, answers it closing",
         params(1), {req(1)}, R, terminate(close_reason::server_terminate), C,
         S{"cancel_die", "cancel_wait 1", "respond 1 [] closing",
           "session_closed server_terminate []"}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // have_request, two held (hold=2: full)
        {"have_request(2 held, hold=2) + request_arrived -> have_request, answers oldest empty, "
         "holds new",
         params(2), {req(1), req(2)}, R, req(3), R,
         S{"cancel_wait 1", "respond 1 [] data", "arm_wait 3"}, H{2, 3}, S{}},
        {"have_request(2 held) + request_arrived(answer_now) -> have_request, answers it empty",
         params(2), {req(1), req(2)}, R, req_now(3), R,
         S{"respond 3 [] data"}, H{1, 2}, S{}},
        {"have_request(2 held) + packet_pushed -> have_request, answers oldest with the packet",
         params(2), {req(1), req(2)}, R, push("a"), R,
         S{"cancel_wait 1", "respond 1 [a] data"}, H{2}, S{}},
        {"have_request(2 held) + wait_expired(oldest) -> have_request, answers it empty",
         params(2), {req(1), req(2)}, R, wait_exp(1), R,
         S{"respond 1 [] data"}, H{2}, S{}},
        {"have_request(2 held) + wait_expired(newest) -> have_request, answers it empty",
         params(2), {req(1), req(2)}, R, wait_exp(2), R,
         S{"respond 2 [] data"}, H{1}, S{}},
        {"have_request(2 held) + wait_expired(stale) -> have_request, ignored",
         params(2), {req_now(1), req(2), req(3)}, R, wait_exp(1), R,
         S{}, H{2, 3}, S{}},
        {"have_request(2 held) + connection_closed(held) -> have_request, forgets it",
         params(2), {req(1), req(2)}, R, conn_closed(2), R,
         S{"cancel_wait 2"}, H{1}, S{}},
        {"have_request(2 held) + connection_closed(stale) -> have_request, ignored",
         params(2), {req_now(1), req(2), req(3)}, R, conn_closed(1), R,
         S{}, H{2, 3}, S{}},
        {"have_request(2 held) + die_expired -> have_request, ignored",
         params(2), {req(1), req(2)}, R, die(), R,
         S{}, H{1, 2}, S{}},
        {"have_request(2 held) + terminate_session -> closed, answers both closing in id order",
         params(2), {req(1), req(2)}, R, terminate(close_reason::system_shutdown), C,
         S{"cancel_die", "cancel_wait 1", "respond 1 [] closing", "cancel_wait 2",
           "respond 2 [] closing", "session_closed system_shutdown []"}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // have_request, hold=3
        {"have_request(2 held, hold=3) + request_arrived -> have_request, holds it too",
         params(3), {req(1), req(2)}, R, req(3), R,
         S{"arm_wait 3"}, H{1, 2, 3}, S{}},
        {"have_request(3 held, hold=3) + request_arrived -> have_request, answers oldest empty, "
         "holds new",
         params(3), {req(1), req(2), req(3)}, R, req(4), R,
         S{"cancel_wait 1", "respond 1 [] data", "arm_wait 4"}, H{2, 3, 4}, S{}},
        {"have_request(3 held) + packet_pushed -> have_request, answers oldest with the packet",
         params(3), {req(1), req(2), req(3)}, R, push("a"), R,
         S{"cancel_wait 1", "respond 1 [a] data"}, H{2, 3}, S{}},
        {"have_request(3 held) + wait_expired(middle) -> have_request, answers it empty",
         params(3), {req(1), req(2), req(3)}, R, wait_exp(2), R,
         S{"respond 2 [] data"}, H{1, 3}, S{}},
        {"have_request(3 held) + connection_closed(newest) -> have_request, forgets it",
         params(3), {req(1), req(2), req(3)}, R, conn_closed(3), R,
         S{"cancel_wait 3"}, H{1, 2}, S{}},
        {"have_request(3 held) + terminate_session -> closed, answers all closing in id order",
         params(3), {req(1), req(2), req(3)}, R, terminate(close_reason::policy_violation), C,
         S{"cancel_die", "cancel_wait 1", "respond 1 [] closing", "cancel_wait 2",
           "respond 2 [] closing", "cancel_wait 3", "respond 3 [] closing",
           "session_closed policy_violation []"}, H{}, S{}},
        {"have_request(ids 5 then 3 held) + packet_pushed -> have_request, answers lowest id",
         params(3), {req(5), req(3)}, R, push("a"), R,
         S{"cancel_wait 3", "respond 3 [a] data"}, H{5}, S{}},

        //------------------------------------------------------------------------------------------
        // have_packet
        {"have_packet + request_arrived -> waiting, answers it with the queue",
         params(1, 3), {push("a")}, P, req(1), W,
         S{"respond 1 [a] data", "arm_die"}, H{}, S{}},
        {"have_packet(3 queued) + request_arrived -> waiting, answers it with all, in order",
         params(1, 3), {push("a"), push("b"), push("c")}, P, req(1), W,
         S{"respond 1 [a,b,c] data", "arm_die"}, H{}, S{}},
        {"have_packet + request_arrived(answer_now) -> waiting, answers it with the queue",
         params(1, 3), {push("a")}, P, req_now(1), W,
         S{"respond 1 [a] data", "arm_die"}, H{}, S{}},
        {"have_packet + request_arrived, hold=0 -> waiting, answers it with the queue",
         params(0, 3), {push("a")}, P, req(1), W,
         S{"respond 1 [a] data", "arm_die"}, H{}, S{}},
        {"have_packet + packet_pushed(room) -> have_packet, queues it",
         params(1, 3), {push("a")}, P, push("b"), P,
         S{}, H{}, S{"a", "b"}},
        {"have_packet + packet_pushed(last room, max_queue=2) -> have_packet, queues it",
         params(1, 2), {push("a")}, P, push("b"), P,
         S{}, H{}, S{"a", "b"}},
        {"have_packet + packet_pushed(queue full, max_queue=2) -> closed, queue_overflow, hands "
         "back all",
         params(1, 2), {push("a"), push("b")}, P, push("c"), C,
         S{"cancel_die", "session_closed queue_overflow [a,b,c]"}, H{}, S{}},
        {"have_packet + packet_pushed(queue full, max_queue=1) -> closed, queue_overflow, hands "
         "back all",
         params(1, 1), {push("a")}, P, push("b"), C,
         S{"cancel_die", "session_closed queue_overflow [a,b]"}, H{}, S{}},
        {"have_packet + wait_expired(stale) -> have_packet, ignored",
         params(1, 3), {req_now(1), push("a")}, P, wait_exp(1), P,
         S{}, H{}, S{"a"}},
        {"have_packet + connection_closed(stale) -> have_packet, ignored",
         params(1, 3), {req_now(1), push("a")}, P, conn_closed(1), P,
         S{}, H{}, S{"a"}},
        {"have_packet + die_expired -> closed, inactivity, hands back the queue",
         params(1, 3), {push("a"), push("b")}, P, die(), C,
         S{"cancel_die", "session_closed inactivity [a,b]"}, H{}, S{}},
        {"have_packet + terminate_session -> closed, as asked, hands back the queue",
         params(1, 3), {push("a")}, P, terminate(close_reason::server_terminate), C,
         S{"cancel_die", "session_closed server_terminate [a]"}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // closed: every event is ignored
        {"closed + request_arrived -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, req(1), C,
         S{}, H{}, S{}},
        {"closed + request_arrived(answer_now) -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, req_now(1), C,
         S{}, H{}, S{}},
        {"closed + packet_pushed -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, push("a"), C,
         S{}, H{}, S{}},
        {"closed + wait_expired(formerly held) -> closed, ignored",
         params(1), {req(1), terminate(close_reason::client_terminate)}, C, wait_exp(1), C,
         S{}, H{}, S{}},
        {"closed + connection_closed(formerly held) -> closed, ignored",
         params(1), {req(1), terminate(close_reason::client_terminate)}, C, conn_closed(1), C,
         S{}, H{}, S{}},
        {"closed + die_expired -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, die(), C,
         S{}, H{}, S{}},
        {"closed + terminate_session -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C,
           terminate(close_reason::server_terminate), C,
         S{}, H{}, S{}},
        {"closed(by overflow) + request_arrived -> closed, ignored",
         params(1, 1), {push("a"), push("b")}, C, req(1), C,
         S{}, H{}, S{}},
        {"closed(by inactivity) + packet_pushed -> closed, ignored",
         params(1), {die()}, C, push("a"), C,
         S{}, H{}, S{}},
        {"closed + stream_opened -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, open_stream(), C,
         S{}, H{}, S{}},
        {"closed + stream_written -> closed, ignored",
         params(1), {open_stream(), terminate(close_reason::client_terminate)}, C, written(), C,
         S{}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // the streaming sink attaching to the long-poll states
        {"waiting + stream_opened -> writing, opens the stream (nothing to write)",
         params(1), {}, W, open_stream(), WR,
         S{"respond stream [] data", "cancel_die"}, H{}, S{}},
        {"waiting + stream_written(stale) -> waiting, ignored",
         params(1), {open_stream(), stream_closed()}, W, written(), W,
         S{}, H{}, S{}},
        {"have_request(1 held) + stream_opened -> writing, answers it empty, opens the stream",
         params(1), {req(1)}, R, open_stream(), WR,
         S{"cancel_wait 1", "respond 1 [] data", "respond stream [] data", "cancel_die"}, H{}, S{}},
        {"have_request(2 held) + stream_opened -> writing, answers both empty in id order, opens "
         "the stream",
         params(2), {req(1), req(2)}, R, open_stream(), WR,
         S{"cancel_wait 1", "respond 1 [] data", "cancel_wait 2", "respond 2 [] data",
           "respond stream [] data", "cancel_die"}, H{}, S{}},
        {"have_request(1 held) + stream_written(stale) -> have_request, ignored",
         params(1), {open_stream(), stream_closed(), req(1)}, R, written(), R,
         S{}, H{1}, S{}},
        {"have_packet + stream_opened -> writing, opens the stream with the queue",
         params(1, 3), {push("a"), push("b")}, P, open_stream(), WR,
         S{"respond stream [a,b] data", "cancel_die"}, H{}, S{}},
        {"have_packet + stream_written(stale) -> have_packet, ignored",
         params(1, 3), {open_stream(), stream_closed(), push("a")}, P, written(), P,
         S{}, H{}, S{"a"}},

        //------------------------------------------------------------------------------------------
        // streaming: a stream attached, idle
        {"streaming + request_arrived -> streaming, answers it empty (messages come by POST)",
         params(1), {open_stream(), written()}, ST, req(1), ST,
         S{"respond 1 [] data"}, H{}, S{}},
        {"streaming + request_arrived(answer_now) -> streaming, answers it empty",
         params(1), {open_stream(), written()}, ST, req_now(1), ST,
         S{"respond 1 [] data"}, H{}, S{}},
        {"streaming + packet_pushed -> writing, writes it to the stream",
         params(1), {open_stream(), written()}, ST, push("a"), WR,
         S{"respond stream [a] data", "cancel_die"}, H{}, S{}},
        {"streaming + wait_expired(stale) -> streaming, ignored",
         params(1), {req(1), open_stream(), written()}, ST, wait_exp(1), ST,
         S{}, H{}, S{}},
        {"streaming + die_expired(stale) -> streaming, ignored",
         params(1), {open_stream(), written()}, ST, die(), ST,
         S{}, H{}, S{}},
        {"streaming + connection_closed(the stream) -> waiting, forgets it",
         params(1), {open_stream(), written()}, ST, stream_closed(), W,
         S{"arm_die"}, H{}, S{}},
        {"streaming + connection_closed(stale request) -> streaming, ignored",
         params(1), {req(1), open_stream(), written()}, ST, conn_closed(1), ST,
         S{}, H{}, S{}},
        {"streaming + terminate_session -> closed, ends the stream",
         params(1), {open_stream(), written()}, ST, terminate(close_reason::client_terminate), C,
         S{"cancel_die", "respond stream [] closing", "session_closed client_terminate []"}, H{},
         S{}},
        {"streaming + stream_opened -> writing, opens the new stream (nothing to write)",
         params(1), {open_stream(), written()}, ST, open_stream(), WR,
         S{"respond stream [] data", "cancel_die"}, H{}, S{}},
        {"streaming + stream_written(stale) -> streaming, ignored",
         params(1), {open_stream(), written()}, ST, written(), ST,
         S{}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // writing: a stream attached, a write in flight
        {"writing + request_arrived -> writing, answers it empty",
         params(1), {open_stream()}, WR, req(1), WR,
         S{"respond 1 [] data"}, H{}, S{}},
        {"writing + packet_pushed(room) -> writing, queues it for the next write",
         params(1, 3), {open_stream()}, WR, push("a"), WR,
         S{}, H{}, S{"a"}},
        {"writing + packet_pushed(queue full, max_queue=1) -> closed, queue_overflow, ends the "
         "stream, hands back all",
         params(1, 1), {open_stream(), push("a")}, WR, push("b"), C,
         S{"cancel_die", "respond stream [] closing", "session_closed queue_overflow [a,b]"}, H{},
         S{}},
        {"writing + stream_written(nothing queued) -> streaming",
         params(1, 3), {open_stream()}, WR, written(), ST,
         S{"cancel_die"}, H{}, S{}},
        {"writing + stream_written(packets queued) -> writing, writes them all",
         params(1, 3), {open_stream(), push("a"), push("b")}, WR, written(), WR,
         S{"respond stream [a,b] data"}, H{}, S{}},
        {"writing + stream_opened -> writing, opens the new stream with the queue",
         params(1, 3), {open_stream(), push("a")}, WR, open_stream(), WR,
         S{"respond stream [a] data"}, H{}, S{}},
        {"writing + connection_closed(the stream, nothing queued) -> waiting, forgets it",
         params(1, 3), {open_stream()}, WR, stream_closed(), W,
         S{"arm_die"}, H{}, S{}},
        {"writing + connection_closed(the stream, packets queued) -> have_packet, forgets it, "
         "arms the die timer",
         params(1, 3), {open_stream(), push("a")}, WR, stream_closed(), P,
         S{"arm_die"}, H{}, S{"a"}},
        {"writing + connection_closed(stale request) -> writing, ignored",
         params(1, 3), {req(1), open_stream()}, WR, conn_closed(1), WR,
         S{}, H{}, S{}},
        {"writing + terminate_session -> closed, ends the stream, hands back the queue",
         params(1, 3), {open_stream(), push("a")}, WR, terminate(close_reason::server_terminate), C,
         S{"cancel_die", "respond stream [] closing", "session_closed server_terminate [a]"}, H{},
         S{}},
        {"writing + wait_expired(stale) -> writing, ignored",
         params(1, 3), {req(1), open_stream()}, WR, wait_exp(1), WR,
         S{}, H{}, S{}},
        {"writing + die_expired(stale) -> writing, ignored",
         params(1, 3), {open_stream()}, WR, die(), WR,
         S{}, H{}, S{}},

        //------------------------------------------------------------------------------------------
        // the upgrade: requests of a client that expects a stream, and a stream given up
        {"waiting + request_arrived(expects a stream) -> waiting, answers it empty",
         params(1), {}, W, req_streaming(1), W,
         S{"respond 1 [] data", "arm_die"}, H{}, S{}},
        {"have_request + request_arrived(expects a stream) -> have_request, answers it empty, "
         "keeps the held one",
         params(1), {req(1)}, R, req_streaming(2), R,
         S{"respond 2 [] data"}, H{1}, S{}},
        {"have_packet + request_arrived(expects a stream) -> have_packet, answers it empty, the "
         "queue stays for the stream",
         params(1, 3), {push("a")}, P, req_streaming(1), P,
         S{"respond 1 [] data"}, H{}, S{"a"}},
        {"waiting + stream_rewound(nothing) -> waiting, ignored",
         params(1), {}, W, rewound(), W,
         S{}, H{}, S{}},
        {"waiting + stream_rewound(packets) -> have_packet, queues them (the die timer runs on)",
         params(1, 3), {}, W, rewound({"a", "b"}), P,
         S{}, H{}, S{"a", "b"}},
        {"have_request + stream_rewound(nothing) -> have_request, ignored",
         params(1), {req(1)}, R, rewound(), R,
         S{}, H{1}, S{}},
        {"have_request(1 held) + stream_rewound(packets) -> waiting, answers it with them",
         params(1), {req(1)}, R, rewound({"a", "b"}), W,
         S{"cancel_wait 1", "respond 1 [a,b] data", "arm_die"}, H{}, S{}},
        {"have_request(2 held) + stream_rewound(packets) -> have_request, answers the oldest with "
         "them",
         params(2), {req(1), req(2)}, R, rewound({"a"}), R,
         S{"cancel_wait 1", "respond 1 [a] data"}, H{2}, S{}},
        {"have_packet + stream_rewound(packets) -> have_packet, puts them before the queue",
         params(1, 5), {push("c")}, P, rewound({"a", "b"}), P,
         S{}, H{}, S{"a", "b", "c"}},
        {"closed + stream_rewound -> closed, ignored",
         params(1), {terminate(close_reason::client_terminate)}, C, rewound({"a"}), C,
         S{}, H{}, S{}},
        {"streaming + stream_rewound(nothing) -> waiting, forgets the stream",
         params(1), {open_stream(), written()}, ST, rewound(), W,
         S{"arm_die"}, H{}, S{}},
        {"streaming + stream_rewound(packets) -> have_packet, forgets the stream, queues them, "
         "arms the die timer",
         params(1, 3), {open_stream(), written()}, ST, rewound({"a"}), P,
         S{"arm_die"}, H{}, S{"a"}},
        {"writing + stream_rewound(nothing, nothing queued) -> waiting, forgets the stream",
         params(1, 3), {open_stream()}, WR, rewound(), W,
         S{"arm_die"}, H{}, S{}},
        {"writing + stream_rewound(packets, packets queued) -> have_packet, the in-flight ones "
         "first, arms the die timer",
         params(1, 5), {open_stream(), push("c")}, WR, rewound({"a", "b"}), P,
         S{"arm_die"}, H{}, S{"a", "b", "c"}},
        // clang-format on
    };
    return cases;
}

} // namespace

TEST_CASE("session machine: every state x every event", "[fsm][table]") {
    for (const table_case& c : table_cases()) {
        DYNAMIC_SECTION(c.name) {
            recording_effects fx;
            session_fsm fsm(fx, c.params);
            fsm.start();
            for (const any_event& e : c.setup)
                deliver(fsm, fx, e);
            REQUIRE(fsm.state() == c.from);
            const int closed_before = fx.session_closed_calls;
            fx.log.clear();

            INFO("event: " << describe(c.event));
            deliver(fsm, fx, c.event);

            CHECK(to_string(fsm.state()) == to_string(c.next));
            CHECK(fx.log == c.effects);
            CHECK(held_ids(fsm) == c.held_after);
            CHECK(queued_text(fsm) == c.queued_after);
            check_timers(fsm, fx);
            CHECK(fx.session_closed_calls == (c.next == C ? 1 : 0));
            if (c.from == C)
                CHECK(fx.session_closed_calls == closed_before);
        }
    }
}

TEST_CASE("session machine: the table cases cover every state x event pair", "[fsm][table]") {
    std::set<std::pair<fsm_state, std::size_t>> covered;
    for (const table_case& c : table_cases())
        covered.insert({c.from, c.event.index()});
    for (fsm_state s : {W, R, P, C, ST, WR})
        for (std::size_t e = 0; e < std::variant_size_v<any_event>; ++e) {
            INFO(to_string(s) << " x event #" << e);
            CHECK(covered.count({s, e}) == 1);
        }
}

TEST_CASE("session machine: start enters waiting and arms the die timer", "[fsm]") {
    recording_effects fx;
    session_fsm fsm(fx, params(1));
    CHECK(fsm.state() == fsm_state::waiting);
    CHECK(fx.log.empty());
    fsm.start();
    CHECK(fsm.state() == fsm_state::waiting);
    CHECK(fx.log == S{"arm_die"});
    CHECK(fsm.held().empty());
    CHECK(fsm.queued().empty());
    CHECK(fsm.params().hold == 1);
}

TEST_CASE("session machine: hold=0 and polling sessions never hold", "[fsm]") {
    const auto [hold, polling] =
        GENERATE(table<std::uint16_t, bool>({{0, false}, {0, true}, {1, true}, {3, true}}));
    INFO("hold=" << hold << " polling=" << polling);
    recording_effects fx;
    session_fsm fsm(fx, params(hold, 5, polling));
    fsm.start();
    for (request_id id = 1; id <= 5; ++id) {
        deliver(fsm, fx, req(id));
        CHECK(fsm.state() == fsm_state::waiting);
        CHECK(fsm.held().empty());
        CHECK(fx.times_answered(id) == 1);
        CHECK(fx.responses.back().packets.empty());
        check_timers(fsm, fx);
    }
    // Data waits in the queue for the next poll.
    deliver(fsm, fx, push("a"));
    deliver(fsm, fx, push("b"));
    CHECK(fsm.state() == fsm_state::have_packet);
    deliver(fsm, fx, req(6));
    CHECK(fsm.state() == fsm_state::waiting);
    CHECK(fx.log.back() == "arm_die");
    CHECK(fx.log[fx.log.size() - 2] == "respond 6 [a,b] data");
    CHECK(fx.armed_wait.empty());
}

TEST_CASE("session machine: a request beyond hold answers the oldest held empty first", "[fsm]") {
    const std::uint16_t hold = GENERATE(1, 2, 3);
    INFO("hold=" << hold);
    recording_effects fx;
    session_fsm fsm(fx, params(hold));
    fsm.start();
    const request_id last = hold + 4;
    for (request_id id = 1; id <= last; ++id) {
        deliver(fsm, fx, req(id));
        CHECK(fsm.held().size() == std::min<std::size_t>(id, hold));
        check_timers(fsm, fx);
    }
    // Requests 1 .. last-hold were released in order, each answered empty exactly once.
    REQUIRE(fx.responses.size() == last - hold);
    for (std::size_t i = 0; i < fx.responses.size(); ++i) {
        CHECK(fx.responses[i].id == i + 1);
        CHECK(fx.responses[i].packets.empty());
        CHECK(fx.responses[i].kind == answer_kind::data);
        CHECK(fx.times_answered(i + 1) == 1);
    }
    H expected_held;
    for (request_id id = last - hold + 1; id <= last; ++id)
        expected_held.push_back(id);
    CHECK(held_ids(fsm) == expected_held);
}

TEST_CASE("session machine: held requests are answered in id order, oldest first", "[fsm]") {
    recording_effects fx;
    session_fsm fsm(fx, params(3));
    fsm.start();
    // Arrival order differs from id order: the lowest id is the oldest.
    deliver(fsm, fx, req(12));
    deliver(fsm, fx, req(10));
    deliver(fsm, fx, req(11));
    CHECK(held_ids(fsm) == H{10, 11, 12});
    deliver(fsm, fx, push("a"));
    deliver(fsm, fx, push("b"));
    deliver(fsm, fx, push("c"));
    REQUIRE(fx.responses.size() == 3);
    CHECK(fx.responses[0].id == 10);
    CHECK(fx.responses[1].id == 11);
    CHECK(fx.responses[2].id == 12);
    CHECK(fx.delivered() == S{"a", "b", "c"});
    CHECK(fsm.state() == fsm_state::waiting);
    check_timers(fsm, fx);
}

TEST_CASE("session machine: terminate answers every held request with answer_kind::closing",
          "[fsm]") {
    const close_reason why = GENERATE(
        close_reason::client_terminate, close_reason::server_terminate, close_reason::inactivity,
        close_reason::queue_overflow, close_reason::item_not_found, close_reason::policy_violation,
        close_reason::bad_request, close_reason::system_shutdown);
    const std::uint16_t held = GENERATE(0, 1, 2, 3);
    INFO(to_string(why) << ", " << held << " held");
    recording_effects fx;
    session_fsm fsm(fx, params(3));
    fsm.start();
    for (request_id id = 1; id <= held; ++id)
        deliver(fsm, fx, req(id));
    deliver(fsm, fx, terminate(why));

    CHECK(fsm.state() == fsm_state::closed);
    REQUIRE(fx.responses.size() == held);
    for (std::size_t i = 0; i < held; ++i) {
        CHECK(fx.responses[i].id == i + 1);
        CHECK(fx.responses[i].kind == answer_kind::closing);
        CHECK(fx.responses[i].packets.empty());
    }
    REQUIRE(fx.closed);
    CHECK(fx.closed->why == why);
    CHECK(fx.closed->undelivered.empty());
    CHECK(fx.session_closed_calls == 1);
    CHECK(fx.log.back().starts_with("session_closed"));
    CHECK(fx.armed_wait.empty());
    CHECK_FALSE(fx.die_armed);
}

TEST_CASE("session machine: queue overflow hands back every packet, the overflowing one too",
          "[fsm]") {
    const std::uint32_t max_queue = GENERATE(1u, 2u, 3u, 5u);
    INFO("max_queue=" << max_queue);
    recording_effects fx;
    session_fsm fsm(fx, params(1, max_queue));
    fsm.start();
    std::vector<packet> pushed;
    for (std::uint32_t i = 0; i <= max_queue; ++i) {
        CHECK(fsm.state() != fsm_state::closed);
        pushed.push_back(packet::from("p" + std::to_string(i)));
        fsm.process(packet_pushed{pushed.back()});
    }
    CHECK(fsm.state() == fsm_state::closed);
    REQUIRE(fx.closed);
    CHECK(fx.closed->why == close_reason::queue_overflow);
    REQUIRE(fx.closed->undelivered.size() == pushed.size());
    for (std::size_t i = 0; i < pushed.size(); ++i)
        CHECK(fx.closed->undelivered[i].same_as(pushed[i])); // handed back, not copied
    CHECK(fx.responses.empty());
    CHECK(fsm.queued().empty());
    CHECK_FALSE(fx.die_armed);
}

TEST_CASE("session machine: closed ignores everything", "[fsm]") {
    recording_effects fx;
    session_fsm fsm(fx, params(2, 2));
    fsm.start();
    deliver(fsm, fx, req(1));
    deliver(fsm, fx, push("a"));
    deliver(fsm, fx, push("b"));
    deliver(fsm, fx, terminate(close_reason::client_terminate));
    REQUIRE(fsm.state() == fsm_state::closed);
    const auto log = fx.log;
    const std::vector<any_event> events = {req(2),
                                           req_now(3),
                                           push("c"),
                                           push("d"),
                                           push("e"),
                                           wait_exp(1),
                                           wait_exp(2),
                                           die(),
                                           conn_closed(1),
                                           conn_closed(2),
                                           terminate(close_reason::server_terminate)};
    for (const any_event& e : events) {
        INFO(describe(e));
        deliver(fsm, fx, e);
        CHECK(fsm.state() == fsm_state::closed);
        CHECK(fsm.held().empty());
        CHECK(fsm.queued().empty());
    }
    CHECK(fx.log == log);
    CHECK(fx.session_closed_calls == 1);
}

TEST_CASE("session machine: re-entrancy from inside an effect throws std::logic_error", "[fsm]") {
    struct scenario {
        std::string effect;           // the effect that calls back in
        std::vector<any_event> setup; // before the hook is installed
        any_event event;              // the event whose effect re-enters
        fsm_state next;               // where that event still ends
    };
    const std::vector<scenario> scenarios = {
        {"respond", {}, req_now(1), fsm_state::waiting},
        {"arm_wait", {}, req(1), fsm_state::have_request},
        {"cancel_die", {}, req(1), fsm_state::have_request},
        {"cancel_wait", {req(1)}, conn_closed(1), fsm_state::waiting},
        {"arm_die", {req(1)}, wait_exp(1), fsm_state::waiting},
        {"session_closed",
         {push("a")},
         terminate(close_reason::client_terminate),
         fsm_state::closed},
    };
    for (const scenario& s : scenarios) {
        DYNAMIC_SECTION("from " << s.effect) {
            recording_effects fx;
            session_fsm fsm(fx, params(1));
            fsm.start();
            for (const any_event& e : s.setup)
                deliver(fsm, fx, e);
            int reentered = 0;
            fx.on_call = [&](std::string_view call) {
                if (!call.starts_with(s.effect) || reentered++)
                    return;
                CHECK_THROWS_AS(fsm.process(packet_pushed{packet::from("x")}), std::logic_error);
                CHECK_THROWS_WITH(fsm.process(die_expired{}),
                                  Catch::Contains("re-entrant") && Catch::Contains("die_expired"));
            };
            deliver(fsm, fx, s.event);
            CHECK(reentered == 1);
            // The outer event ran to completion, untouched by the refused inner ones.
            CHECK(fsm.state() == s.next);
            CHECK(std::none_of(fx.log.begin(), fx.log.end(), [](const std::string& line) {
                return line.find("[x]") != std::string::npos;
            }));
            check_timers(fsm, fx);
            // And the machine takes events again afterwards.
            fx.on_call = nullptr;
            if (s.next != fsm_state::closed) {
                deliver(fsm, fx, terminate(close_reason::server_terminate));
                CHECK(fsm.state() == fsm_state::closed);
                CHECK(fx.session_closed_calls == 1);
            }
        }
    }
}

TEST_CASE("session machine: re-entrancy from inside start() throws std::logic_error", "[fsm]") {
    recording_effects fx;
    session_fsm fsm(fx, params(1));
    int reentered = 0;
    fx.on_call = [&](std::string_view call) {
        if (call != "arm_die" || reentered++)
            return;
        CHECK_THROWS_AS(fsm.process(die_expired{}), std::logic_error);
    };
    fsm.start();
    CHECK(reentered == 1);
    CHECK(fsm.state() == fsm_state::waiting);
    CHECK(fx.session_closed_calls == 0);
    CHECK(fx.die_armed);
}
