// The session machine: Boost.MSM functor front-end. The transition table at the bottom is the
// single source of truth for how a session behaves; docs/fsm.dot is generated from it.
//
// Included only by fsm/session_machine.cpp. The MPL size limits it needs (the table has more
// than 20 rows) are set for the fsm library in fsm/CMakeLists.txt.
//
// Invariants the tests check after every event:
//  - at most `hold` requests are held, oldest (lowest id) answered first;
//  - the die timer is armed exactly while no request is held (entry of `waiting`/`have_packet`
//    arms it, entry of `have_request` cancels it);
//  - `have_packet` has a non-empty queue and no held request; `have_request` the reverse;
//  - every pushed packet is answered exactly once, in order, or handed back at close.
#pragma once

#include "fsm/session_fsm.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/msm/back/state_machine.hpp>
#include <boost/msm/front/functor_row.hpp>
#include <boost/msm/front/state_machine_def.hpp>

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

namespace megaphone::detail {

namespace msmf = boost::msm::front;
namespace mpl = boost::mpl;
using msmf::none;
using msmf::Row;

//--------------------------------------------------------------------------------------------------
// States

/// No request held, nothing queued. The die timer runs.
struct waiting : msmf::state<> {
    static constexpr std::string_view name = "waiting";
    static constexpr std::string_view entry = "arm die timer";
    template <class Event, class Fsm>
    void on_entry(const Event&, Fsm& fsm) {
        fsm.effects_->arm_die_timer();
    }
};

/// One or more requests held, nothing to send. Each held request has its wait timer.
struct have_request : msmf::state<> {
    static constexpr std::string_view name = "have_request";
    static constexpr std::string_view entry = "cancel die timer";
    template <class Event, class Fsm>
    void on_entry(const Event&, Fsm& fsm) {
        fsm.effects_->cancel_die_timer();
    }
};

/// Packets queued, no request to carry them. The die timer keeps running from `waiting`.
struct have_packet : msmf::state<> {
    static constexpr std::string_view name = "have_packet";
    static constexpr std::string_view entry = "";
};

/// The session has ended; every later event is ignored (its rows below say so). Not MSM's
/// terminate_state: with one, Boost 1.81's MSM rebuilds a function-local static flag table on
/// every event, a data race between shards that ThreadSanitizer reports.
struct closed : msmf::state<> {
    static constexpr std::string_view name = "closed";
    static constexpr std::string_view entry = "";
};

//--------------------------------------------------------------------------------------------------
// Guards (predicates; rows that share a start state and event have mutually exclusive guards)

/// The request must be answered at once: a polling session, or the event asks for it.
struct answer_now {
    static constexpr std::string_view name = "answer now";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        return e.answer_now || fsm.params_.polling || fsm.params_.hold == 0;
    }
};

struct may_hold {
    static constexpr std::string_view name = "may hold";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm& fsm, S& s, T& t) const {
        return !answer_now{}(e, fsm, s, t);
    }
};

/// Holding one more request would exceed `hold`.
struct hold_full {
    static constexpr std::string_view name = "may hold, hold full";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm& fsm, S& s, T& t) const {
        return may_hold{}(e, fsm, s, t) && fsm.held_.size() >= fsm.params_.hold;
    }
};

struct hold_not_full {
    static constexpr std::string_view name = "may hold, hold not full";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm& fsm, S& s, T& t) const {
        return may_hold{}(e, fsm, s, t) && fsm.held_.size() < fsm.params_.hold;
    }
};

struct one_held {
    static constexpr std::string_view name = "one held";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return fsm.held_.size() == 1;
    }
};

struct several_held {
    static constexpr std::string_view name = "several held";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return fsm.held_.size() > 1;
    }
};

/// The event names the only held request.
struct is_only_held {
    static constexpr std::string_view name = "it is the only one held";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm& fsm, S&, T&) const {
        return fsm.held_.size() == 1 && fsm.held_.front() == e.id;
    }
};

/// The event names a held request, and others are held too.
struct is_held_among_others {
    static constexpr std::string_view name = "it is held, others too";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm& fsm, S&, T&) const {
        return fsm.held_.size() > 1 && fsm.is_held(e.id);
    }
};

/// The event names a request that is not held (already answered): a stale timer or close.
struct is_not_held {
    static constexpr std::string_view name = "it is not held (stale)";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm& fsm, S&, T&) const {
        return !fsm.is_held(e.id);
    }
};

struct queue_has_room {
    static constexpr std::string_view name = "queue has room";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return fsm.queue_.size() < fsm.params_.max_queue;
    }
};

struct queue_full {
    static constexpr std::string_view name = "queue full";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return fsm.queue_.size() >= fsm.params_.max_queue;
    }
};

//--------------------------------------------------------------------------------------------------
// Actions (they only call session_effects; no I/O here)

struct hold_request {
    static constexpr std::string_view name = "hold it";
    template <class Fsm, class S, class T>
    void operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        fsm.hold(e.id);
    }
};

struct answer_empty_now {
    static constexpr std::string_view name = "answer it empty";
    template <class Fsm, class S, class T>
    void operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        fsm.effects_->respond(e.id, {}, answer_kind::data);
    }
};

/// `hold` is reached: the oldest held request is answered empty, then the new one is held.
struct release_oldest_then_hold {
    static constexpr std::string_view name = "answer oldest empty, hold it";
    template <class Fsm, class S, class T>
    void operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        fsm.answer_oldest({});
        fsm.hold(e.id);
    }
};

struct enqueue_packet {
    static constexpr std::string_view name = "queue it";
    template <class Fsm, class S, class T>
    void operator()(const packet_pushed& e, Fsm& fsm, S&, T&) const {
        fsm.queue_.push_back(e.data);
    }
};

struct answer_oldest_with_packet {
    static constexpr std::string_view name = "answer oldest with it";
    template <class Fsm, class S, class T>
    void operator()(const packet_pushed& e, Fsm& fsm, S&, T&) const {
        std::vector<packet> one;
        one.push_back(e.data);
        fsm.answer_oldest(std::move(one));
    }
};

struct answer_with_queue {
    static constexpr std::string_view name = "answer it with all queued";
    template <class Fsm, class S, class T>
    void operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        fsm.effects_->respond(e.id, std::exchange(fsm.queue_, {}), answer_kind::data);
    }
};

/// A held request's wait timer fired: it is answered empty.
struct answer_expired_empty {
    static constexpr std::string_view name = "answer it empty";
    template <class Fsm, class S, class T>
    void operator()(const wait_expired& e, Fsm& fsm, S&, T&) const {
        fsm.unhold(e.id);
        fsm.effects_->respond(e.id, {}, answer_kind::data);
    }
};

/// A held request's connection closed: it is dropped unanswered; queued data stays queued.
struct forget_request {
    static constexpr std::string_view name = "forget it";
    template <class Fsm, class S, class T>
    void operator()(const connection_closed& e, Fsm& fsm, S&, T&) const {
        fsm.unhold(e.id);
        fsm.effects_->cancel_wait_timer(e.id);
    }
};

struct close_inactive {
    static constexpr std::string_view name = "close: inactivity";
    template <class Event, class Fsm, class S, class T>
    void operator()(const Event&, Fsm& fsm, S&, T&) const {
        fsm.close(close_reason::inactivity);
    }
};

struct close_overflowing {
    static constexpr std::string_view name = "close: queue overflow";
    template <class Fsm, class S, class T>
    void operator()(const packet_pushed& e, Fsm& fsm, S&, T&) const {
        fsm.queue_.push_back(e.data); // handed back with the rest, not dropped
        fsm.close(close_reason::queue_overflow);
    }
};

/// Terminate: every held request is answered (as closing), then the session ends.
struct close_as_asked {
    static constexpr std::string_view name = "answer all held, close";
    template <class Fsm, class S, class T>
    void operator()(const terminate_session& e, Fsm& fsm, S&, T&) const {
        fsm.close(e.reason);
    }
};

//--------------------------------------------------------------------------------------------------
// The machine

struct session_machine_def : msmf::state_machine_def<session_machine_def> {
    // Run to completion without an event queue (a std::deque per session would cost more than
    // the rest of the session); see the re-entrancy contract in session_effects.hpp.
    typedef int no_message_queue;
    typedef int no_exception_thrown;

    session_machine_def(session_effects* effects, session_params params)
        : effects_{effects}
        , params_{params} {}

    using initial_state = waiting;

    // clang-format off
    struct transition_table : mpl::vector<
    //    Start          Event               Next           Action                     Guard
    //  +--------------+-------------------+--------------+--------------------------+----------------------+
    Row < waiting      , request_arrived   , have_request , hold_request             , may_hold             >,
    Row < waiting      , request_arrived   , waiting      , answer_empty_now         , answer_now           >,
    Row < waiting      , packet_pushed     , have_packet  , enqueue_packet           , none                 >,
    Row < waiting      , die_expired       , closed       , close_inactive           , none                 >,
    Row < waiting      , terminate_session , closed       , close_as_asked           , none                 >,
    Row < waiting      , wait_expired      , none         , none                     , none                 >,
    Row < waiting      , connection_closed , none         , none                     , none                 >,
    //  +--------------+-------------------+--------------+--------------------------+----------------------+
    Row < have_request , request_arrived   , none         , hold_request             , hold_not_full        >,
    Row < have_request , request_arrived   , none         , release_oldest_then_hold , hold_full            >,
    Row < have_request , request_arrived   , none         , answer_empty_now         , answer_now           >,
    Row < have_request , packet_pushed     , waiting      , answer_oldest_with_packet, one_held             >,
    Row < have_request , packet_pushed     , none         , answer_oldest_with_packet, several_held         >,
    Row < have_request , wait_expired      , waiting      , answer_expired_empty     , is_only_held         >,
    Row < have_request , wait_expired      , none         , answer_expired_empty     , is_held_among_others >,
    Row < have_request , wait_expired      , none         , none                     , is_not_held          >,
    Row < have_request , connection_closed , waiting      , forget_request           , is_only_held         >,
    Row < have_request , connection_closed , none         , forget_request           , is_held_among_others >,
    Row < have_request , connection_closed , none         , none                     , is_not_held          >,
    Row < have_request , terminate_session , closed       , close_as_asked           , none                 >,
    Row < have_request , die_expired       , none         , none                     , none                 >,
    //  +--------------+-------------------+--------------+--------------------------+----------------------+
    Row < have_packet  , request_arrived   , waiting      , answer_with_queue        , none                 >,
    Row < have_packet  , packet_pushed     , none         , enqueue_packet           , queue_has_room       >,
    Row < have_packet  , packet_pushed     , closed       , close_overflowing        , queue_full           >,
    Row < have_packet  , die_expired       , closed       , close_inactive           , none                 >,
    Row < have_packet  , terminate_session , closed       , close_as_asked           , none                 >,
    Row < have_packet  , wait_expired      , none         , none                     , none                 >,
    Row < have_packet  , connection_closed , none         , none                     , none                 >,
    //  +--------------+-------------------+--------------+--------------------------+----------------------+
    Row < closed       , request_arrived   , none         , none                     , none                 >,
    Row < closed       , packet_pushed     , none         , none                     , none                 >,
    Row < closed       , wait_expired      , none         , none                     , none                 >,
    Row < closed       , die_expired       , none         , none                     , none                 >,
    Row < closed       , connection_closed , none         , none                     , none                 >,
    Row < closed       , terminate_session , none         , none                     , none                 >
    //  +--------------+-------------------+--------------+--------------------------+----------------------+
    > {};
    // clang-format on

    /// An event with no row: loud, never silent (MSM's default asserts or does nothing).
    template <class Fsm, class Event>
    void no_transition(const Event&, Fsm& fsm, int state) {
        fsm.effects_->unexpected_event(static_cast<fsm_state>(state), Event::name);
    }

    //----------------------------------------------------------------------------------------------
    // Data and helpers used by the actions

    bool is_held(request_id id) const {
        return std::find(held_.begin(), held_.end(), id) != held_.end();
    }

    /// Holds `id` in rid order and starts its wait timer.
    void hold(request_id id) {
        held_.insert(std::upper_bound(held_.begin(), held_.end(), id), id);
        effects_->arm_wait_timer(id);
    }

    void unhold(request_id id) { held_.erase(std::find(held_.begin(), held_.end(), id)); }

    void answer_oldest(std::vector<packet> packets) {
        const request_id oldest = held_.front();
        held_.erase(held_.begin());
        effects_->cancel_wait_timer(oldest);
        effects_->respond(oldest, std::move(packets), answer_kind::data);
    }

    void close(close_reason why) {
        effects_->cancel_die_timer();
        for (request_id id : held_) {
            effects_->cancel_wait_timer(id);
            effects_->respond(id, {}, answer_kind::closing);
        }
        held_.clear();
        effects_->session_closed(why, std::exchange(queue_, {}));
    }

    session_effects* effects_;
    boost::container::small_vector<request_id, 1> held_;
    std::vector<packet> queue_;
    session_params params_;
};

using session_machine = boost::msm::back::state_machine<session_machine_def>;

} // namespace megaphone::detail
