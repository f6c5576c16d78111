// session_fsm: one Comet session's state machine, behind a small non-template facade.
//
// The machine itself (Boost.MSM, fsm/session_machine.hpp) is instantiated in exactly one
// translation unit; everyone else sees this class. It lives in-place (no heap allocation) in a
// buffer whose size session_machine.cpp checks at compile time.
//
// Not thread-safe: one session's events must come from one strand. Not re-entrant: see the
// contract in fsm/session_effects.hpp.
#pragma once

#include "fsm/events.hpp"
#include "fsm/session_effects.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace megaphone {

/// Per-session parameters the machine needs. `hold` and `polling` are negotiated at creation.
struct session_params {
    /// At most this many requests are held at once (BOSH `hold`). 0 makes a polling session.
    std::uint16_t hold = 1;
    /// A polling session (BOSH `wait` 0 or `hold` 0) answers every request at once.
    bool polling = false;
    /// Packets queued beyond this close the session with `queue_overflow`.
    std::uint32_t max_queue = 1000;
};

class session_fsm {
public:
    session_fsm(session_effects& effects, session_params params);
    ~session_fsm();
    session_fsm(const session_fsm&) = delete;
    session_fsm& operator=(const session_fsm&) = delete;

    /// Enters `waiting` (which arms the die timer). Call once, before any event.
    void start();

    void process(const request_arrived& e);
    void process(const packet_pushed& e);
    void process(const wait_expired& e);
    void process(const die_expired& e);
    void process(const connection_closed& e);
    void process(const terminate_session& e);
    void process(const stream_opened& e);
    void process(const stream_written& e);
    void process(const stream_rewound& e);

    fsm_state state() const noexcept;
    /// Held requests, oldest (lowest id) first.
    std::span<const request_id> held() const noexcept;
    /// A streaming sink is attached (states `streaming` and `writing`).
    bool streaming() const noexcept;
    /// Packets waiting for a request, oldest first.
    const std::vector<packet>& queued() const noexcept;
    const session_params& params() const noexcept;

    /// Size of the in-place machine, for memory accounting.
    static constexpr std::size_t storage_size = 104;

private:
    template <class Event>
    void dispatch(const Event& e);

    alignas(8) std::byte storage_[storage_size];
    bool busy_ = false;
};

/// The transition table as Graphviz dot (docs/fsm.dot is this text, committed).
std::string transition_table_dot();

/// The transition table as rows "start | event | next | action | guard", for docs and tests.
struct table_row {
    std::string start, event, next, action, guard;
};
std::vector<table_row> transition_table_rows();

} // namespace megaphone
