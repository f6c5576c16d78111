// Counters behind GET /metrics and the /admin dashboard: one block per I/O thread (per shard),
// written only by that thread, summed by whoever reads them (app/metrics.cpp).
//
// The hot path pays a thread-local pointer load and a plain add per event: a `counter` has one
// writer, so its increment is a relaxed load and store (no lock prefix, no fence, no allocation),
// and readers on other threads see some recent value. A thread without a block (a test's own
// thread, the testing kit) counts nothing.
//
// Layers below app/ (the session machine, the HTTP connection) count through `current_metrics`;
// the server points it at its shard's block when the shard's thread starts.
#pragma once

#include "fsm/events.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace megaphone {

/// A monotonic count with a single writer (the thread that owns its block).
class counter {
public:
    void add(std::uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

/// A level that goes up and down, with a single writer (a session never leaves its shard, so
/// each block's levels stay consistent; readers sum the blocks).
class gauge {
public:
    void add(std::int64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> v_{0};
};

/// Every limit Megaphone enforces, named once: each refusal goes through count_refusal() on
/// exactly one code path, so the counts are the number of times each limit was hit. Add a limit
/// here and in to_string(refusal), then call count_refusal() where it refuses. The options,
/// their defaults and what a client sees are listed in docs/PROTOCOL.md ("Limits").
enum class refusal : std::uint8_t {
    body_too_large,    ///< request body over --max-body: 413 policy-violation, closed
    header_too_large,  ///< request header over 16 KiB: 413, connection closed
    too_many_sessions, ///< creation over --max-sessions: policy-violation
    queue_overflow,    ///< a session queued more than --max-queue packets: it ends
    rid_out_of_window, ///< a rid outside the session's window (item-not-found)
    too_many_requests, ///< more requests outstanding than hold + 1 (policy-violation)
    polling_too_fast,  ///< empty polls closer than --polling (policy-violation)
    bad_key,           ///< BOSH key sequencing failed (item-not-found)
    creation_rate,     ///< --creation-rate/--creation-burst: 429 policy-violation
    request_timeout,   ///< --read-timeout: a request not received whole in time: cut off
    idle_timeout,      ///< --idle-timeout: an idle keep-alive connection is closed
    connections,       ///< --max-connections: 503 and closed at once
    accept_failed,     ///< accept() failed (EMFILE...): the listener pauses, then retries
    unauthorized,      ///< a key-guarded route (/publish, /metrics) without the right key: 401
    publish_rate,      ///< --client-publish-rate: a session's hub publish over its bucket
    forbidden,         ///< a hub subscribe or publish the rules or --auth-url refused
    auth_hook_failed,  ///< --auth-url gave no 200/403 in time: the subscribe/publish is denied
    count_
};
std::string_view to_string(refusal) noexcept;

/// The transport a request or answer belongs to.
enum class transport_kind : std::uint8_t { json, bosh, other, count_ };
std::string_view to_string(transport_kind) noexcept;

/// HTTP status codes counted one by one; any other status counts as "other".
inline constexpr std::array<unsigned, 10> counted_statuses{200, 204, 400, 403, 404,
                                                           405, 413, 500, 503, 0};
constexpr std::size_t status_index(unsigned status) noexcept {
    for (std::size_t i = 0; i + 1 < counted_statuses.size(); ++i)
        if (counted_statuses[i] == status)
            return i;
    return counted_statuses.size() - 1;
}

/// The session machine's events, in the order of `fsm_event_index` (fsm/session_machine.cpp).
inline constexpr std::array<std::string_view, 9> fsm_event_names{
    "request_arrived",   "packet_pushed", "wait_expired",   "die_expired",   "connection_closed",
    "terminate_session", "stream_opened", "stream_written", "stream_rewound"};
inline constexpr std::size_t fsm_state_count = 6; // fsm_state: waiting .. writing
inline constexpr std::size_t close_reason_count =
    static_cast<std::size_t>(close_reason::not_authorized) + 1;

/// Push latency: from the creation of a pushed message (push, publish) to the end of the write of
/// the answer that carries it, per answer, measured from its oldest message.
struct latency_histogram {
    /// Upper bounds, in seconds (Prometheus `le`); a last, implicit bucket is +Inf.
    static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    void observe_ns(std::uint64_t ns) noexcept {
        std::size_t i = 0;
        while (i < bounds.size() && static_cast<double>(ns) > bounds[i] * 1e9)
            ++i;
        buckets[i].add();
        sum_ns.add(ns);
    }
    std::array<counter, bounds.size() + 1> buckets; // not cumulative; the last is +Inf
    counter sum_ns;
};

struct metrics_block {
    // The session machine (counted by session_fsm, fsm/session_machine.cpp).
    counter transitions[fsm_state_count][fsm_event_names.size()][fsm_state_count];
    gauge in_state[fsm_state_count];
    gauge held;    // requests held by sessions: each keeps one connection open
    gauge streams; // streaming sinks attached to sessions (SSE): one connection each
    // WebSocket connections open (transport/websocket.cpp), their stream attached or not.
    gauge websockets;
    // Sessions (app/engine.cpp, app/session.cpp).
    counter sessions_created[static_cast<std::size_t>(transport_kind::count_)];
    counter sessions_closed[close_reason_count];
    counter messages_in;  // client messages delivered to applications
    counter messages_out; // messages written in answers
    // HTTP (app/server.cpp counts requests by route, transport/http_connection.cpp the rest).
    counter requests[static_cast<std::size_t>(transport_kind::count_)];
    counter connections_moved; // to the thread of their session (server_options::move_connections)
    counter responses[static_cast<std::size_t>(transport_kind::count_)][counted_statuses.size()];
    counter bytes_in;
    counter bytes_out;
    counter refusals[static_cast<std::size_t>(refusal::count_)];
    latency_histogram push_latency;
};

/// This thread's block; null on threads that are not a server's I/O thread.
inline constinit thread_local metrics_block* current_metrics = nullptr;

/// Records one refusal: in this thread's block (a server's /metrics sums its shards), and
/// process-wide (refusals()), so that one on any other thread is counted too. Lock-free.
void count_refusal(refusal r) noexcept;
/// How many refusals by `r` every server of this process has recorded.
std::uint64_t refusals(refusal r) noexcept;

} // namespace megaphone
