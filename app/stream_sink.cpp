#include "app/stream_sink.hpp"

#include <algorithm>

namespace megaphone {

stream_sink::attach_result stream_sink::attach(const stream_transport& transport,
                                               std::optional<std::uint64_t> last_id,
                                               std::optional<request_id> fence, exchange ex) {
    // A request sent after this stream's opening already gave it up (its stream_ack rewound):
    // the client closed it, and it must not take the session's packets away from the long-poll.
    if (fence && *fence < rewound_by_)
        return attach_result::stale;
    const std::uint64_t have = last_id.value_or(0);
    // The client must not be ahead of the stream, and what follows its position must still be
    // here (or queued): otherwise a message would be lost or come twice.
    if (have >= next_id_ || have < dropped_)
        return attach_result::unservable;
    // Behind what the client has since acknowledged (or a later stream of it started from): a
    // request older than that, such as a probe it gave up that a proxy delivered late. It
    // must neither end the session nor take the attached stream's place.
    if (have < floor_)
        return attach_result::stale;
    // Everything up to its position arrived: acknowledged.
    const std::uint64_t oldest = next_id_ - sent_.size();
    if (have >= oldest)
        sent_.erase(sent_.begin(), sent_.begin() + static_cast<std::ptrdiff_t>(have + 1 - oldest));
    floor_ = have;
    if (attached_ && !ex_.same_as(ex))
        ex_.write({}, /*last=*/true); // the newest stream wins; the older one ends
    transport_ = &transport;
    ex_ = std::move(ex);
    fence_ = std::max(fence_, fence.value_or(0));
    attached_ = true;
    opened_ = false;
    return attach_result::attached;
}

std::optional<std::vector<packet>> stream_sink::rewind(std::uint64_t acked, request_id rid) {
    if (acked >= next_id_ || acked < floor_)
        return std::nullopt;
    if (attached_) {
        // The client has closed it (or lost it: a half-open connection, a proxy that buffers);
        // whatever it still carries would reach no one.
        if (opened_)
            ex_.write({}, /*last=*/true);
        else
            ex_.reply(transport_->refusal());
        ex_ = {};
        attached_ = false;
    }
    const std::uint64_t oldest = next_id_ - sent_.size();
    std::vector<packet> back;
    const std::uint64_t skip = acked >= oldest ? acked + 1 - oldest : 0;
    back.assign(sent_.begin() + static_cast<std::ptrdiff_t>(skip), sent_.end());
    sent_.clear();
    floor_ = acked;
    rewound_by_ = std::max(rewound_by_, rid);
    return back;
}

void stream_sink::acknowledge(std::uint64_t acked) noexcept {
    const std::uint64_t oldest = next_id_ - sent_.size();
    if (acked < floor_ || acked >= next_id_ || acked < oldest)
        return;
    sent_.erase(sent_.begin(), sent_.begin() + static_cast<std::ptrdiff_t>(acked + 1 - oldest));
    floor_ = acked;
}

void stream_sink::record(const std::vector<packet>& packets) {
    sent_.insert(sent_.end(), packets.begin(), packets.end());
    next_id_ += packets.size();
    if (sent_.size() > keep_) {
        sent_.erase(sent_.begin(),
                    sent_.begin() + static_cast<std::ptrdiff_t>(sent_.size() - keep_));
        dropped_ = std::max(dropped_, next_id_ - sent_.size() - 1);
        floor_ = std::max(floor_, dropped_);
    }
}

void stream_sink::write(std::vector<packet> packets) {
    if (!attached_)
        return;
    std::int64_t pushed_at = 0;
    for (const packet& p : packets)
        if (pushed_at == 0 || (p.born_ns() != 0 && p.born_ns() < pushed_at))
            pushed_at = p.born_ns();
    if (!opened_) {
        // The opening: what the client missed (the window keeps exactly the ids after its
        // position), then the new packets.
        opened_ = true;
        std::vector<packet> all(sent_.begin(), sent_.end());
        all.insert(all.end(), packets.begin(), packets.end());
        response r = transport_->opening(next_id_ - sent_.size(), all);
        record(packets);
        return ex_.reply(std::move(r));
    }
    packet body = transport_->events(next_id_, packets);
    record(packets);
    ex_.write(std::move(body), false, pushed_at);
}

void stream_sink::end(close_reason why) {
    if (!attached_)
        return;
    attached_ = false;
    if (opened_)
        ex_.write(transport_->closing(why), /*last=*/true);
    else
        ex_.reply(transport_->refusal());
    ex_ = {};
}

} // namespace megaphone
