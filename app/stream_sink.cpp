#include "app/stream_sink.hpp"

#include <algorithm>

namespace megaphone {

bool stream_sink::attach(const stream_transport& transport, std::optional<std::uint64_t> last_id,
                         exchange ex) {
    const std::uint64_t oldest = next_id_ - sent_.size(); // the first id still kept
    const std::uint64_t have = last_id.value_or(0);
    // The client must not be ahead of the stream, and what follows its position must still be
    // here: otherwise a message would be lost or come twice.
    if (have >= next_id_ || have + 1 < oldest)
        return false;
    // Everything up to its position arrived: acknowledged.
    const auto acked = static_cast<std::ptrdiff_t>(have + 1 - oldest);
    sent_.erase(sent_.begin(),
                sent_.begin() +
                    std::min<std::ptrdiff_t>(acked, static_cast<std::ptrdiff_t>(sent_.size())));
    if (attached_ && !ex_.same_as(ex))
        ex_.write({}, /*last=*/true); // the newest stream wins; the older one ends
    transport_ = &transport;
    ex_ = std::move(ex);
    resume_after_ = have;
    attached_ = true;
    opened_ = false;
    return true;
}

void stream_sink::record(const std::vector<packet>& packets) {
    sent_.insert(sent_.end(), packets.begin(), packets.end());
    next_id_ += packets.size();
    if (sent_.size() > keep_)
        sent_.erase(sent_.begin(),
                    sent_.begin() + static_cast<std::ptrdiff_t>(sent_.size() - keep_));
}

void stream_sink::write(std::vector<packet> packets) {
    if (!attached_)
        return;
    std::int64_t pushed_at = 0;
    for (const packet& p : packets)
        if (pushed_at == 0 || (p.born_ns() != 0 && p.born_ns() < pushed_at))
            pushed_at = p.born_ns();
    if (!opened_) {
        // The opening: what the client missed (ids after its position), then the new packets.
        opened_ = true;
        std::vector<packet> all(
            sent_.end() - static_cast<std::ptrdiff_t>(next_id_ - 1 - resume_after_), sent_.end());
        all.insert(all.end(), packets.begin(), packets.end());
        response r = transport_->opening(resume_after_ + 1, all);
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
