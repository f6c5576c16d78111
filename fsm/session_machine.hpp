// The session machine: Boost.MSM functor front-end. The transition table at the bottom is the
// single source of truth for how a session behaves; docs/fsm.dot is generated from it.
//
// Included only by fsm/session_machine.cpp. The MPL size limits it needs (the table has more
// than 20 rows) are set for the fsm library in fsm/CMakeLists.txt.
//
// A session's *sink* is what carries its packets to the client: a held long-poll, answered once
// (`have_request`), or a streaming sink (an SSE response; later a WebSocket), written to many
// times and attached until its connection closes (`streaming` while idle, `writing` while a
// write is in flight: one write at a time, packets pushed meanwhile queue up to `max_queue` and
// go in the next write). The newest sink wins: a stream attached while long-polls are held
// answers them empty; a request arriving while a stream is attached (the client's messages
// still come by POST) is answered empty at once, as is one whose client expects a stream
// (`expects_stream`: it is opening one), which leaves the queue to the stream. When the client
// gives its stream up and long-polls again, `stream_rewound` hands back what the stream wrote
// that never reached it: those packets go first, before anything queued since (docs/PROTOCOL.md,
// "Upgrade").
//
// Invariants the tests check after every event:
//  - at most `hold` requests are held, oldest (lowest id) answered first; none while streaming;
//  - the die timer is armed exactly while no sink is attached (entry of `waiting`/`have_packet`
//    arms it, entry of `have_request`/`streaming`/`writing` cancels it); wait timers only for
//    held long-polls;
//  - `have_packet` has a non-empty queue and no sink; `have_request` and `streaming` an empty
//    queue; `writing` a write in flight (its queue waits for the next);
//  - every pushed packet is answered exactly once, in order, or handed back at close (a packet
//    a rewind hands back counts as not yet answered: it is answered again, in its place).
#pragma once

#include "fsm/session_fsm.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/mpl/insert_range.hpp>
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

/// A streaming sink is attached and idle; nothing queued. No die timer, no wait timer.
struct streaming : msmf::state<> {
    static constexpr std::string_view name = "streaming";
    static constexpr std::string_view entry = "cancel die timer";
    template <class Event, class Fsm>
    void on_entry(const Event&, Fsm& fsm) {
        fsm.effects_->cancel_die_timer();
    }
};

/// A streaming sink is attached and writing; packets pushed meanwhile are queued for its next
/// write. No die timer, no wait timer.
struct writing : msmf::state<> {
    static constexpr std::string_view name = "writing";
    static constexpr std::string_view entry = "cancel die timer";
    template <class Event, class Fsm>
    void on_entry(const Event&, Fsm& fsm) {
        fsm.effects_->cancel_die_timer();
    }
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

/// The request must be answered at once: a polling session, or the event asks for it (a
/// creation, a pause, a request of a client that expects a stream).
struct answer_now {
    static constexpr std::string_view name = "answer now";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm& fsm, S&, T&) const {
        return e.answer_now || e.expects_stream || fsm.params_.polling || fsm.params_.hold == 0;
    }
};

/// The client has a stream, or is opening one: what is queued is for the stream, not for this
/// answer.
struct expects_stream {
    static constexpr std::string_view name = "client expects a stream";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm&, S&, T&) const {
        return e.expects_stream;
    }
};

struct expects_no_stream {
    static constexpr std::string_view name = "no stream expected";
    template <class Fsm, class S, class T>
    bool operator()(const request_arrived& e, Fsm&, S&, T&) const {
        return !e.expects_stream;
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

/// The event names the streaming sink.
struct is_stream {
    static constexpr std::string_view name = "it is the stream";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm&, S&, T&) const {
        return e.id == stream_sink_id;
    }
};

struct is_not_stream {
    static constexpr std::string_view name = "it is not the stream (stale)";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm&, S&, T&) const {
        return e.id != stream_sink_id;
    }
};

struct is_stream_nothing_queued {
    static constexpr std::string_view name = "it is the stream, nothing queued";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm& fsm, S&, T&) const {
        return e.id == stream_sink_id && fsm.queue_.empty();
    }
};

struct is_stream_packets_queued {
    static constexpr std::string_view name = "it is the stream, packets queued";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event& e, Fsm& fsm, S&, T&) const {
        return e.id == stream_sink_id && !fsm.queue_.empty();
    }
};

struct nothing_queued {
    static constexpr std::string_view name = "nothing queued";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return fsm.queue_.empty();
    }
};

struct packets_queued {
    static constexpr std::string_view name = "packets queued";
    template <class Event, class Fsm, class S, class T>
    bool operator()(const Event&, Fsm& fsm, S&, T&) const {
        return !fsm.queue_.empty();
    }
};

/// A rewind hands nothing back, and nothing is queued: no packet waits for a sink.
struct nothing_to_send {
    static constexpr std::string_view name = "nothing handed back or queued";
    template <class Fsm, class S, class T>
    bool operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        return e.packets.empty() && fsm.queue_.empty();
    }
};

struct something_to_send {
    static constexpr std::string_view name = "packets handed back or queued";
    template <class Fsm, class S, class T>
    bool operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        return !e.packets.empty() || !fsm.queue_.empty();
    }
};

struct nothing_rewound {
    static constexpr std::string_view name = "nothing handed back";
    template <class Fsm, class S, class T>
    bool operator()(const stream_rewound& e, Fsm&, S&, T&) const {
        return e.packets.empty();
    }
};

struct rewound_one_held {
    static constexpr std::string_view name = "packets handed back, one held";
    template <class Fsm, class S, class T>
    bool operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        return !e.packets.empty() && fsm.held_.size() == 1;
    }
};

struct rewound_several_held {
    static constexpr std::string_view name = "packets handed back, several held";
    template <class Fsm, class S, class T>
    bool operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        return !e.packets.empty() && fsm.held_.size() > 1;
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

/// The stream's first write (it opens the stream) or its next one: every queued packet.
struct write_queue_to_stream {
    static constexpr std::string_view name = "write all queued to the stream";
    template <class Event, class Fsm, class S, class T>
    void operator()(const Event&, Fsm& fsm, S&, T&) const {
        fsm.effects_->respond(stream_sink_id, std::exchange(fsm.queue_, {}), answer_kind::data);
    }
};

/// A stream replaces the held long-polls: each is answered empty, then the stream opens.
struct release_held_then_stream {
    static constexpr std::string_view name = "answer all held empty, open the stream";
    template <class Fsm, class S, class T>
    void operator()(const stream_opened& e, Fsm& fsm, S& s, T& t) const {
        while (!fsm.held_.empty())
            fsm.answer_oldest({});
        write_queue_to_stream{}(e, fsm, s, t);
    }
};

struct write_packet_to_stream {
    static constexpr std::string_view name = "write it to the stream";
    template <class Fsm, class S, class T>
    void operator()(const packet_pushed& e, Fsm& fsm, S&, T&) const {
        std::vector<packet> one;
        one.push_back(e.data);
        fsm.effects_->respond(stream_sink_id, std::move(one), answer_kind::data);
    }
};

/// The stream's connection closed: it is forgotten; queued data stays queued.
struct forget_stream {
    static constexpr std::string_view name = "forget the stream";
    template <class Event, class Fsm, class S, class T>
    void operator()(const Event&, Fsm&, S&, T&) const {}
};

/// The same, into `have_packet`: the die timer starts (it does not run while a sink is attached).
struct forget_stream_arm_die {
    static constexpr std::string_view name = "forget the stream, arm die timer";
    template <class Fsm, class S, class T>
    void operator()(const connection_closed&, Fsm& fsm, S&, T&) const {
        fsm.effects_->arm_die_timer();
    }
};

/// What the dead stream never delivered goes before what was queued since.
struct requeue_rewound {
    static constexpr std::string_view name = "put them back first in the queue";
    template <class Fsm, class S, class T>
    void operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        fsm.queue_.insert(fsm.queue_.begin(), e.packets.begin(), e.packets.end());
    }
};

/// The same, leaving a stream (its sink already let it go): the die timer starts, as in
/// `forget_stream_arm_die`.
struct forget_stream_requeue_rewound {
    static constexpr std::string_view name =
        "forget the stream, put them back first, arm die timer";
    template <class Fsm, class S, class T>
    void operator()(const stream_rewound& e, Fsm& fsm, S& s, T& t) const {
        requeue_rewound{}(e, fsm, s, t);
        fsm.effects_->arm_die_timer();
    }
};

/// A long-poll is held (an older one than the request that told of the rewind): it carries them.
struct answer_oldest_with_rewound {
    static constexpr std::string_view name = "answer oldest with them";
    template <class Fsm, class S, class T>
    void operator()(const stream_rewound& e, Fsm& fsm, S&, T&) const {
        fsm.answer_oldest(e.packets);
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

/// The same while a stream is attached: its pending packets are handed back with the rest.
struct close_stream_overflowing {
    static constexpr std::string_view name = "end the stream, close: queue overflow";
    template <class Fsm, class S, class T>
    void operator()(const packet_pushed& e, Fsm& fsm, S&, T&) const {
        fsm.queue_.push_back(e.data);
        fsm.close(close_reason::queue_overflow, /*stream=*/true);
    }
};

/// Terminate while a stream is attached: the stream is ended (as closing), then the session.
struct close_stream_as_asked {
    static constexpr std::string_view name = "end the stream, close";
    template <class Fsm, class S, class T>
    void operator()(const terminate_session& e, Fsm& fsm, S&, T&) const {
        fsm.close(e.reason, /*stream=*/true);
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
    // More rows than one mpl::vector holds (50): two parts, joined below (each at most 50).
    using long_poll_rows = mpl::vector<
    //    Start          Event               Next           Action                          Guard
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    Row < waiting      , request_arrived   , have_request , hold_request                  , may_hold                 >,
    Row < waiting      , request_arrived   , waiting      , answer_empty_now              , answer_now               >,
    Row < waiting      , packet_pushed     , have_packet  , enqueue_packet                , none                     >,
    Row < waiting      , die_expired       , closed       , close_inactive                , none                     >,
    Row < waiting      , terminate_session , closed       , close_as_asked                , none                     >,
    Row < waiting      , wait_expired      , none         , none                          , none                     >,
    Row < waiting      , connection_closed , none         , none                          , none                     >,
    Row < waiting      , stream_opened     , writing      , write_queue_to_stream         , none                     >,
    Row < waiting      , stream_written    , none         , none                          , none                     >,
    Row < waiting      , stream_rewound    , none         , none                          , nothing_to_send          >,
    Row < waiting      , stream_rewound    , have_packet  , requeue_rewound               , something_to_send        >,
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    Row < have_request , request_arrived   , none         , hold_request                  , hold_not_full            >,
    Row < have_request , request_arrived   , none         , release_oldest_then_hold      , hold_full                >,
    Row < have_request , request_arrived   , none         , answer_empty_now              , answer_now               >,
    Row < have_request , packet_pushed     , waiting      , answer_oldest_with_packet     , one_held                 >,
    Row < have_request , packet_pushed     , none         , answer_oldest_with_packet     , several_held             >,
    Row < have_request , wait_expired      , waiting      , answer_expired_empty          , is_only_held             >,
    Row < have_request , wait_expired      , none         , answer_expired_empty          , is_held_among_others     >,
    Row < have_request , wait_expired      , none         , none                          , is_not_held              >,
    Row < have_request , connection_closed , waiting      , forget_request                , is_only_held             >,
    Row < have_request , connection_closed , none         , forget_request                , is_held_among_others     >,
    Row < have_request , connection_closed , none         , none                          , is_not_held              >,
    Row < have_request , terminate_session , closed       , close_as_asked                , none                     >,
    Row < have_request , die_expired       , none         , none                          , none                     >,
    Row < have_request , stream_opened     , writing      , release_held_then_stream      , none                     >,
    Row < have_request , stream_written    , none         , none                          , none                     >,
    Row < have_request , stream_rewound    , none         , none                          , nothing_rewound          >,
    Row < have_request , stream_rewound    , waiting      , answer_oldest_with_rewound    , rewound_one_held         >,
    Row < have_request , stream_rewound    , none         , answer_oldest_with_rewound    , rewound_several_held     >,
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    Row < have_packet  , request_arrived   , waiting      , answer_with_queue             , expects_no_stream        >,
    Row < have_packet  , request_arrived   , none         , answer_empty_now              , expects_stream           >,
    Row < have_packet  , packet_pushed     , none         , enqueue_packet                , queue_has_room           >,
    Row < have_packet  , packet_pushed     , closed       , close_overflowing             , queue_full               >,
    Row < have_packet  , die_expired       , closed       , close_inactive                , none                     >,
    Row < have_packet  , terminate_session , closed       , close_as_asked                , none                     >,
    Row < have_packet  , wait_expired      , none         , none                          , none                     >,
    Row < have_packet  , connection_closed , none         , none                          , none                     >,
    Row < have_packet  , stream_opened     , writing      , write_queue_to_stream         , none                     >,
    Row < have_packet  , stream_written    , none         , none                          , none                     >,
    Row < have_packet  , stream_rewound    , none         , requeue_rewound               , none                     >,
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    Row < closed       , request_arrived   , none         , none                          , none                     >,
    Row < closed       , packet_pushed     , none         , none                          , none                     >,
    Row < closed       , wait_expired      , none         , none                          , none                     >,
    Row < closed       , die_expired       , none         , none                          , none                     >,
    Row < closed       , connection_closed , none         , none                          , none                     >,
    Row < closed       , terminate_session , none         , none                          , none                     >,
    Row < closed       , stream_opened     , none         , none                          , none                     >,
    Row < closed       , stream_written    , none         , none                          , none                     >,
    Row < closed       , stream_rewound    , none         , none                          , none                     >
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    >;
    using stream_rows = mpl::vector<
    Row < streaming    , request_arrived   , none         , answer_empty_now              , none                     >,
    Row < streaming    , packet_pushed     , writing      , write_packet_to_stream        , none                     >,
    Row < streaming    , stream_opened     , writing      , write_queue_to_stream         , none                     >,
    Row < streaming    , connection_closed , waiting      , forget_stream                 , is_stream                >,
    Row < streaming    , connection_closed , none         , none                          , is_not_stream            >,
    Row < streaming    , terminate_session , closed       , close_stream_as_asked         , none                     >,
    Row < streaming    , wait_expired      , none         , none                          , none                     >,
    Row < streaming    , die_expired       , none         , none                          , none                     >,
    Row < streaming    , stream_written    , none         , none                          , none                     >,
    Row < streaming    , stream_rewound    , waiting      , forget_stream                 , nothing_to_send          >,
    Row < streaming    , stream_rewound    , have_packet  , forget_stream_requeue_rewound , something_to_send        >,
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    Row < writing      , request_arrived   , none         , answer_empty_now              , none                     >,
    Row < writing      , packet_pushed     , none         , enqueue_packet                , queue_has_room           >,
    Row < writing      , packet_pushed     , closed       , close_stream_overflowing      , queue_full               >,
    Row < writing      , stream_written    , streaming    , none                          , nothing_queued           >,
    Row < writing      , stream_written    , none         , write_queue_to_stream         , packets_queued           >,
    Row < writing      , stream_opened     , none         , write_queue_to_stream         , none                     >,
    Row < writing      , connection_closed , waiting      , forget_stream                 , is_stream_nothing_queued >,
    Row < writing      , connection_closed , have_packet  , forget_stream_arm_die         , is_stream_packets_queued >,
    Row < writing      , connection_closed , none         , none                          , is_not_stream            >,
    Row < writing      , terminate_session , closed       , close_stream_as_asked         , none                     >,
    Row < writing      , wait_expired      , none         , none                          , none                     >,
    Row < writing      , die_expired       , none         , none                          , none                     >,
    Row < writing      , stream_rewound    , waiting      , forget_stream                 , nothing_to_send          >,
    Row < writing      , stream_rewound    , have_packet  , forget_stream_requeue_rewound , something_to_send        >
    //  +--------------+-------------------+--------------+-------------------------------+--------------------------+
    >;
    struct transition_table
        : mpl::insert_range<long_poll_rows, mpl::end<long_poll_rows>::type, stream_rows>::type {};
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

    /// Ends the session; `stream`: a streaming sink is attached, and is ended too.
    void close(close_reason why, bool stream = false) {
        effects_->cancel_die_timer();
        for (request_id id : held_) {
            effects_->cancel_wait_timer(id);
            effects_->respond(id, {}, answer_kind::closing);
        }
        held_.clear();
        if (stream)
            effects_->respond(stream_sink_id, {}, answer_kind::closing);
        effects_->session_closed(why, std::exchange(queue_, {}));
    }

    session_effects* effects_;
    boost::container::small_vector<request_id, 1> held_;
    std::vector<packet> queue_;
    session_params params_;
};

using session_machine = boost::msm::back::state_machine<session_machine_def>;

} // namespace megaphone::detail
