// stream_sink: a session's streaming sink (an SSE response now, a WebSocket later), as the
// session's machine sees it: a sink that stays attached after a write (fsm/session_machine.hpp,
// states `streaming` and `writing`). The transport frames (transport/stream.hpp); this class
// keeps what makes a reconnect exact:
//
//  - every packet written gets the next id of the session's outgoing stream (1, 2, 3, ...);
//  - written packets stay in a replay window until the client acknowledges them by giving a
//    later position when it reconnects (SSE: Last-Event-ID), at most `keep` of them (the
//    session's max_queue); a reconnect replays exactly the packets after the client's position,
//    before anything new;
//  - a position the window cannot serve (older than its oldest packet, or beyond the last id
//    written) cannot be honoured exactly: attach() refuses it, and the session ends (its client
//    starts a new one and recovers its channels from their history).
//
// Made on a session's first stream only (long-poll sessions pay one pointer for it).
#pragma once

#include "fsm/events.hpp"
#include "fsm/packet.hpp"
#include "transport/exchange.hpp"
#include "transport/stream.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace megaphone {

class stream_sink {
public:
    explicit stream_sink(std::uint32_t keep) noexcept
        : keep_{keep} {}

    /// The stream `ex` of `transport` replaces the attached one (ended at once: the newest
    /// wins), from the client's position `last_id` (none: it has nothing of the stream yet).
    /// Packets up to it are acknowledged (dropped from the window). False when the position
    /// cannot be served exactly: nothing changed.
    bool attach(const stream_transport& transport, std::optional<std::uint64_t> last_id,
                exchange ex);
    /// One write (the machine's `respond(stream_sink, packets, data)`): the stream's opening
    /// (its head, the replay, then `packets`) the first time, then `packets`.
    void write(std::vector<packet> packets);
    /// The session ended: the stream gets its closing piece and ends.
    void end(close_reason why);
    /// Its connection is gone.
    void detach() noexcept {
        ex_ = {};
        attached_ = false;
    }

    bool attached() const noexcept { return attached_; }
    /// `ex` is the attached stream (not a replaced one).
    bool is(const exchange& ex) const noexcept { return attached_ && ex_.same_as(ex); }
    /// The id the next packet written gets; packets kept for replay.
    std::uint64_t next_id() const noexcept { return next_id_; }
    std::size_t kept() const noexcept { return sent_.size(); }

private:
    void record(const std::vector<packet>& packets);

    const stream_transport* transport_ = nullptr;
    exchange ex_;
    std::uint64_t next_id_ = 1;      // the id of the next packet written
    std::uint64_t resume_after_ = 0; // the attached stream's client has every id up to this
    std::vector<packet> sent_;       // written, not acknowledged: ids [next_id_ - size, next_id_)
    std::uint32_t keep_;
    bool attached_ = false;
    bool opened_ = false; // the attached stream's opening is written
};

} // namespace megaphone
