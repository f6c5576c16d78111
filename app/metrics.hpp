// The server's counters summed over its shards (fsm/metrics.hpp has the per-thread blocks), and
// their Prometheus text exposition (format 0.0.4) for GET /metrics.
#pragma once

#include "fsm/metrics.hpp"

#include <array>
#include <cstdint>
#include <string>

namespace megaphone {

struct metrics_snapshot {
    static constexpr std::size_t transports = static_cast<std::size_t>(transport_kind::count_);
    static constexpr std::size_t events = fsm_event_names.size();

    std::int64_t sessions[fsm_state_count]{}; // by machine state (closed: not kept)
    std::uint64_t transitions[fsm_state_count][events][fsm_state_count]{};
    std::int64_t held = 0;
    std::int64_t streams = 0;
    std::int64_t websockets = 0;
    std::uint64_t created[transports]{};
    std::uint64_t closed[close_reason_count]{};
    std::uint64_t requests[transports]{};
    std::uint64_t responses[transports][counted_statuses.size()]{};
    std::uint64_t messages_in = 0, messages_out = 0, bytes_in = 0, bytes_out = 0;
    std::uint64_t connections_moved = 0;
    std::uint64_t refusals[static_cast<std::size_t>(refusal::count_)]{};
    std::uint64_t latency_buckets[latency_histogram::bounds.size() + 1]{}; // not cumulative
    std::uint64_t latency_sum_ns = 0;

    /// Adds one thread's block (read with relaxed loads: any thread may call this).
    void add(const metrics_block& b) noexcept;
    /// Live sessions, all states.
    std::int64_t live_sessions() const noexcept;
    std::uint64_t transitions_total() const noexcept;
};

/// The snapshot in the Prometheus text format, version 0.0.4: HELP and TYPE lines, `megaphone_`
/// names, `_total` counters, the latency histogram with cumulative `_bucket{le=...}`.
std::string prometheus_text(const metrics_snapshot& s);

/// The Content-Type of prometheus_text().
inline constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

} // namespace megaphone
