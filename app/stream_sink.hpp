// stream_sink: a session's streaming sink (an SSE response now, a WebSocket later), as the
// session's machine sees it: a sink that stays attached after a write (fsm/session_machine.hpp,
// states `streaming` and `writing`). The transport frames (transport/stream.hpp); this class
// keeps what makes a reconnect exact:
//
//  - every packet written gets the next id of the session's outgoing stream (1, 2, 3, ...);
//  - written packets stay in a replay window until the client acknowledges them, by giving a
//    later position when it reconnects (SSE: Last-Event-ID) or in a request that keeps the
//    stream (`streaming` with `stream_ack`: acknowledge()), at most `keep` of them (the
//    session's max_queue); a reconnect replays exactly the packets after the client's position,
//    before anything new;
//  - a position the window cannot serve (older than its oldest packet, or beyond the last id
//    written) cannot be honoured exactly: attach() refuses it, and the session ends (its client
//    starts a new one and recovers its channels from their history);
//  - a client that gives up on its stream and long-polls again says where it stands
//    (`stream_ack`): rewind() lets the stream go and hands back what followed that position,
//    which the session queues first for the long-poll (the window keeps nothing any more, and
//    every position from there on stays valid: what was handed back will be written again,
//    with new ids, if it goes on a stream at all);
//  - the rid fence: a stream opens with the rid of the client's latest request. Requests up to
//    it were sent before the stream opened, so their `stream_ack` is older than the stream's
//    own position and must not rewind it (fence()); and a stream whose fence is older than a
//    request that rewound was given up by its client before it arrived (a stale opening:
//    refused, the session untouched).
//
// Made on a session's first stream (or first `stream_ack`) only: long-poll sessions pay one
// pointer for it.
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

    enum class attach_result : std::uint8_t {
        attached,   ///< the stream replaced the attached one (ended at once: the newest wins)
        unservable, ///< the position cannot be served exactly: nothing changed
        stale,      ///< its client gave it up before it arrived (its fence is older than a
                    ///< rewind, or its position older than what the client acknowledged
                    ///< since): nothing changed
    };
    /// The stream `ex` of `transport`, from the client's position `last_id` (none: it has
    /// nothing of the stream yet), opened after the client's request `fence` (none: no fence).
    /// Packets up to its position are acknowledged (dropped from the window).
    attach_result attach(const stream_transport& transport, std::optional<std::uint64_t> last_id,
                         std::optional<request_id> fence, exchange ex);
    /// The client of request `rid` gave its stream up, having every packet up to `acked`: the
    /// attached stream (if any) is ended and forgotten, the packets after `acked` are handed
    /// back in order and leave the window. nullopt when `acked` cannot be served exactly
    /// (nothing changed). Call only for `rid` > fence().
    std::optional<std::vector<packet>> rewind(std::uint64_t acked, request_id rid);
    /// The client, keeping its stream, has every packet up to `acked` (`stream_ack` on a request
    /// with `streaming`): they leave the window, so that a busy stream keeps only what it wrote
    /// since. A position outside the window (older than its oldest, beyond the last id written)
    /// changes nothing.
    void acknowledge(std::uint64_t acked) noexcept;
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
    /// The rid of the client's latest request when its latest stream opened (0: none): requests
    /// up to it were sent before that stream.
    request_id fence() const noexcept { return fence_; }

private:
    void record(const std::vector<packet>& packets);

    const stream_transport* transport_ = nullptr;
    exchange ex_;
    std::uint64_t next_id_ = 1; // the id of the next packet written
    std::uint64_t floor_ = 0;   // the oldest position served exactly: the client has every id
                                // up to it, or what it lacks of them is queued (rewound)
    std::uint64_t dropped_ = 0; // ids up to it left the window unacknowledged (over keep_)
    std::vector<packet> sent_;  // written, not acknowledged: ids [next_id_ - size, next_id_)
    request_id fence_ = 0;      // see fence()
    request_id rewound_by_ = 0; // the rid of the latest request that rewound
    std::uint32_t keep_;
    bool attached_ = false;
    bool opened_ = false; // the attached stream's opening is written
};

} // namespace megaphone
