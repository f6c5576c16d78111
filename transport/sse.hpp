// Server-Sent Events (the WHATWG HTML "server-sent events" section): a session's stream at
// GET <mount>/events?sid=S (docs/PROTOCOL.md, "Server-Sent Events").
//
// The answer is `text/event-stream`, flushed at once with a comment, `retry:` and a `ready` event
// (`data: {"heartbeat": <ms>}`: the client knows the stream flows, not only that its head
// arrived); then each packet is one event, `id: <its position in the session's stream>` and its
// JSON on `data:` lines; a `ping` event (`data: {}`, no id) every `heartbeat` of idleness keeps
// proxies from closing the stream, and shows the client that it is still alive (an EventSource
// never surfaces comments, and drops events with empty data). The client's
// position comes back in the Last-Event-ID header (an EventSource sends it when it
// reconnects), or in the `lastEventId` query parameter on a first connect. An unknown or ended
// session gets 204, which makes an EventSource stop reconnecting.
#pragma once

#include "transport/stream.hpp"

#include <chrono>

namespace megaphone {

struct sse_options {
    /// A `ping` event is written on a stream that was idle this long: proxies and load balancers
    /// close connections idle for 60 s and more; 15 s stays well below (nchan, Mercure: 15-30 s).
    std::chrono::milliseconds heartbeat{std::chrono::seconds(15)};
    /// `retry:` (ms): how soon an EventSource reconnects after a lost stream; well within a
    /// session's inactivity (45 s), so the session is still there.
    std::chrono::milliseconds retry{std::chrono::seconds(2)};
};

class sse_transport final : public stream_transport {
public:
    explicit sse_transport(sse_options options = {});

    std::string_view name() const noexcept override { return "sse"; }
    /// GET <mount>/events.
    bool accepts(const http::request<http::string_body>& request,
                 std::string_view rest) const override;
    std::optional<stream_request>
    parse(const http::request<http::string_body>& request) const override;
    response refusal() const override;
    response opening(std::uint64_t first_id, std::span<const packet> packets) const override;
    packet events(std::uint64_t first_id, std::span<const packet> packets) const override;
    packet closing(close_reason why) const override;

    const sse_options& options() const noexcept { return options_; }

private:
    sse_options options_;
    packet headers_;   // the head's own fields
    packet heartbeat_; // the ping event, made once
    std::string prelude_;
};

/// The value of query parameter `name` in `target` (percent-decoded); nullopt when absent.
std::optional<std::string> query_parameter(std::string_view target, std::string_view name);

/// The query parameters every stream's opening request has: `sid` (required) and `rid` (the
/// fence, optional); nullopt when the sid is missing or the rid malformed.
std::optional<stream_request> stream_query(std::string_view target);

/// A Last-Event-ID: decimal digits, at most 2^53 - 1; nullopt otherwise.
std::optional<std::uint64_t> parse_event_id(std::string_view text) noexcept;

} // namespace megaphone
