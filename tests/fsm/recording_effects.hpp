// recording_effects: a session_effects fake for the fsm tests. It records every call the machine
// makes (as structured data and as one line of text each, in order), keeps the facts derived from
// them (which wait timers are armed, whether the die timer is armed, how often each request was
// answered), and fails the running test on an event the transition table has no row for or on
// any effect after session_closed.
//
// Timers here are bookkeeping only: a test that delivers wait_expired or die_expired says first
// that the timer fired (deliver() below does), as the server's real timer disarms itself before
// it posts the event.
#pragma once

#include "fsm/session_fsm.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace megaphone::test {

inline std::string_view to_string(answer_kind k) {
    return k == answer_kind::data ? "data" : "closing";
}

/// "[a,b,c]": packets by their bytes.
inline std::string packets_text(const std::vector<packet>& packets) {
    std::string out = "[";
    for (std::size_t i = 0; i < packets.size(); ++i) {
        if (i)
            out += ',';
        out += packets[i].view();
    }
    out += ']';
    return out;
}

class recording_effects final : public session_effects {
public:
    struct response {
        request_id id;
        std::vector<packet> packets;
        answer_kind kind;
    };
    struct closure {
        close_reason why;
        std::vector<packet> undelivered;
    };

    //----------------------------------------------------------------------------------------------
    // What was called

    /// Every call in order, one line each: "respond 3 [a,b] data" ("respond stream [a] data":
    /// a write on the streaming sink), "arm_wait 3", "cancel_wait 3",
    /// "arm_die", "cancel_die", "session_closed queue_overflow [a,b,c]".
    std::vector<std::string> log;
    std::vector<response> responses;
    std::optional<closure> closed;
    int session_closed_calls = 0;

    //----------------------------------------------------------------------------------------------
    // Derived facts

    std::set<request_id> armed_wait;
    bool die_armed = false;
    /// How many times each request id was answered (any kind); "answered exactly once" is 1.
    std::map<request_id, int> answer_count;
    /// Arming a wait timer that is already armed: the machine held one id twice.
    int double_wait_arms = 0;

    /// Runs after each recorded call (not after unexpected_event), with the call's log line;
    /// the re-entrancy tests call back into the machine from here.
    std::function<void(std::string_view call)> on_call;

    int times_answered(request_id id) const {
        auto it = answer_count.find(id);
        return it == answer_count.end() ? 0 : it->second;
    }

    /// Every packet of every response, in response order.
    std::vector<std::string> delivered() const {
        std::vector<std::string> out;
        for (const response& r : responses)
            for (const packet& p : r.packets)
                out.emplace_back(p.view());
        return out;
    }

    /// The server's timers disarm themselves before posting their event.
    void wait_timer_fired(request_id id) { armed_wait.erase(id); }
    void die_timer_fired() { die_armed = false; }

    //----------------------------------------------------------------------------------------------
    // session_effects

    void respond(request_id id, std::vector<packet> packets, answer_kind kind) override {
        std::string line = "respond " +
                           (id == stream_sink_id ? std::string("stream") : std::to_string(id)) +
                           ' ' + packets_text(packets) + ' ' + std::string(to_string(kind));
        ++answer_count[id];
        responses.push_back({id, std::move(packets), kind});
        record(std::move(line));
    }

    void arm_wait_timer(request_id id) override {
        if (!armed_wait.insert(id).second)
            ++double_wait_arms;
        record("arm_wait " + std::to_string(id));
    }

    void cancel_wait_timer(request_id id) override {
        armed_wait.erase(id);
        record("cancel_wait " + std::to_string(id));
    }

    void arm_die_timer() override {
        die_armed = true;
        record("arm_die");
    }

    void cancel_die_timer() override {
        die_armed = false;
        record("cancel_die");
    }

    void session_closed(close_reason why, std::vector<packet> undelivered) override {
        std::string line = "session_closed " + std::string(megaphone::to_string(why)) + ' ' +
                           packets_text(undelivered);
        ++session_closed_calls;
        closed = closure{why, std::move(undelivered)};
        record(std::move(line));
    }

    void unexpected_event(fsm_state state, std::string_view event) override {
        FAIL("unexpected event: no row for " << megaphone::to_string(state) << " + " << event);
    }

private:
    void record(std::string line) {
        // `closed` is already set when the (first) session_closed call itself is recorded.
        if (session_closed_calls > 1 || (closed && !line.starts_with("session_closed")))
            FAIL("effect after session_closed: " << line);
        log.push_back(std::move(line));
        if (on_call)
            on_call(log.back());
    }
};

//--------------------------------------------------------------------------------------------------
// Events as values, so tables and random sequences can hold them.

using any_event =
    std::variant<request_arrived, packet_pushed, wait_expired, die_expired, connection_closed,
                 terminate_session, stream_opened, stream_written, stream_rewound>;

inline any_event req(request_id id) {
    return request_arrived{id, false};
}
inline any_event req_now(request_id id) {
    return request_arrived{id, true};
}
/// A request of a client that has (or opens) a stream: answered at once, empty.
inline any_event req_streaming(request_id id) {
    return request_arrived{id, false, true};
}
/// The stream was given up; `bytes`: what it had written that never reached the client.
inline any_event rewound(std::vector<std::string_view> bytes = {}) {
    stream_rewound e;
    for (std::string_view b : bytes)
        e.packets.push_back(packet::from(b));
    return e;
}
inline any_event push(std::string_view bytes) {
    return packet_pushed{packet::from(bytes)};
}
inline any_event wait_exp(request_id id) {
    return wait_expired{id};
}
inline any_event die() {
    return die_expired{};
}
inline any_event conn_closed(request_id id) {
    return connection_closed{id};
}
inline any_event terminate(close_reason why) {
    return terminate_session{why};
}
inline any_event open_stream() {
    return stream_opened{};
}
inline any_event written() {
    return stream_written{};
}
inline any_event stream_closed() {
    return connection_closed{stream_sink_id};
}

inline std::string describe(const any_event& e) {
    struct {
        std::string operator()(const request_arrived& e) const {
            return "request_arrived(" + std::to_string(e.id) + (e.answer_now ? ", now" : "") +
                   (e.expects_stream ? ", streaming)" : ")");
        }
        std::string operator()(const packet_pushed& e) const {
            return "packet_pushed(" + std::string(e.data.view()) + ")";
        }
        std::string operator()(const wait_expired& e) const {
            return "wait_expired(" + std::to_string(e.id) + ")";
        }
        std::string operator()(const die_expired&) const { return "die_expired"; }
        std::string operator()(const connection_closed& e) const {
            return "connection_closed(" +
                   (e.id == stream_sink_id ? std::string("stream") : std::to_string(e.id)) + ")";
        }
        std::string operator()(const stream_opened&) const { return "stream_opened"; }
        std::string operator()(const stream_written&) const { return "stream_written"; }
        std::string operator()(const stream_rewound& e) const {
            return "stream_rewound(" + packets_text(e.packets) + ")";
        }
        std::string operator()(const terminate_session& e) const {
            return "terminate_session(" + std::string(megaphone::to_string(e.reason)) + ")";
        }
    } visitor;
    return std::visit(visitor, e);
}

/// Delivers `e` as the server would: a timer event is preceded by its timer having fired.
inline void deliver(session_fsm& fsm, recording_effects& fx, const any_event& e) {
    if (const auto* w = std::get_if<wait_expired>(&e))
        fx.wait_timer_fired(w->id);
    if (std::holds_alternative<die_expired>(e))
        fx.die_timer_fired();
    std::visit([&fsm](const auto& event) { fsm.process(event); }, e);
}

} // namespace megaphone::test
