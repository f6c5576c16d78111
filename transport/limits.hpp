// Every limit Megaphone enforces, named once. Each refusal goes through count_refusal(kind) on
// exactly one code path, so the counts below are the number of times each limit was hit (for
// metrics and diagnostics; process-wide, since any thread may refuse).
//
// The options, their defaults and what a client sees are listed in docs/PROTOCOL.md ("Limits").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace megaphone {

enum class limit_kind : std::uint8_t {
    body_size,       ///< --max-body: 413 policy-violation, connection closed
    header_size,     ///< request headers over 16 KiB: 413, connection closed
    request_timeout, ///< --read-timeout: a request not received whole in time: connection cut
    idle_timeout,    ///< --idle-timeout: an idle keep-alive connection is closed
    connections,     ///< --max-connections: 503 and closed at once
    accept_failed,   ///< accept() failed (EMFILE...): the listener pauses, then retries
    sessions,        ///< --max-sessions: the creation gets policy-violation
    creation_rate,   ///< --creation-rate/--creation-burst: the creation gets 429 policy-violation
    queue,           ///< --max-queue: the session ends with policy-violation (queue overflow)
    requests,        ///< more than `requests` (hold + 1) outstanding: 403 policy-violation
    polling,         ///< an empty poll sooner than --polling: 403 policy-violation
};
inline constexpr std::size_t limit_kind_count = 11;

/// A short stable name ("body_size", ...), e.g. for a metrics label.
std::string_view to_string(limit_kind k) noexcept;

/// Records one refusal by limit `k`. Thread-safe, lock-free.
void count_refusal(limit_kind k) noexcept;
/// How many refusals by limit `k` this process has recorded.
std::uint64_t refusals(limit_kind k) noexcept;

} // namespace megaphone
