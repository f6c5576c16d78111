// What a session's machine asks of the world. The machine does no I/O: each action calls this
// interface, which the server (app/) implements with sockets and timers and the tests implement
// with a recorder.
//
// Contract: an implementation must not call back into the same machine from inside one of these
// calls (the machine runs to completion without an event queue, to keep sessions small). Work
// that would re-enter, such as an application callback that pushes, is deferred by the caller
// until the current event has been processed.
#pragma once

#include "fsm/events.hpp"
#include "fsm/packet.hpp"

#include <string_view>
#include <vector>

namespace megaphone {

/// `closed` stays at 3: the streaming states were added after it.
enum class fsm_state : std::uint8_t {
    waiting,
    have_request,
    have_packet,
    closed,
    streaming,
    writing
};
std::string_view to_string(fsm_state) noexcept;

/// How a request is answered.
enum class answer_kind : std::uint8_t {
    data,   ///< with the packets given (possibly none: an empty answer)
    closing ///< the session is ending: the transport writes its terminate body
};

class session_effects {
public:
    virtual ~session_effects() = default;

    /// Answer request `id` with `packets`, in order (empty: an empty answer). For the streaming
    /// sink (`id == stream_sink_id`) a `data` answer is one write on it, which stays attached (its
    /// first write also opens it, possibly with no packet), and the sink reports its end with
    /// `stream_written`; a `closing` answer ends it.
    virtual void respond(request_id id, std::vector<packet> packets, answer_kind kind) = 0;

    /// Start the wait timer of held request `id`; when it fires, post `wait_expired{id}`.
    virtual void arm_wait_timer(request_id id) = 0;
    /// Stop the wait timer of request `id` (a no-op if it already fired).
    virtual void cancel_wait_timer(request_id id) = 0;

    /// (Re)start the die timer: `inactivity` from now, then post `die_expired`.
    virtual void arm_die_timer() = 0;
    virtual void cancel_die_timer() = 0;

    /// The session has ended. `undelivered` holds the packets still queued, in order.
    virtual void session_closed(close_reason why, std::vector<packet> undelivered) = 0;

    /// An event arrived that the transition table has no row for. It is a bug in the table or
    /// in its caller: tests fail on it, the server logs and counts it.
    virtual void unexpected_event(fsm_state state, std::string_view event) = 0;
};

} // namespace megaphone
