#include "cluster/local_bus.hpp"

#include "fsm/clock.hpp"

#include <algorithm>

namespace megaphone {

local_bus::local_bus(bus_options options, std::function<time_point()> now)
    : options_{options}
    , now_{now ? std::move(now) : [] { return coarse_now(); }} {}

local_bus::~local_bus() = default;

void local_bus::start(bus_listener& to) {
    listener_ = &to;
}

void local_bus::stop() {
    // Every delivery happens inside publish(), under a stripe's lock: taking each lock once
    // waits for the ones under way; none starts afterwards.
    listener_ = nullptr;
    for (stripe& s : stripes_)
        std::lock_guard lock{s.mutex};
}

void local_bus::history_ring::pop_front() noexcept {
    items_[head_].stamped = packet{};
    head_ = wrap(head_ + 1);
    --size_;
}

void local_bus::history_ring::push_back(entry e, std::size_t limit) {
    while (size_ >= limit)
        pop_front();
    if (size_ == items_.size()) {
        // Full below the limit: the next larger array, oldest first (packets move, no copies).
        std::vector<entry> grown(std::min(limit, std::max<std::size_t>(2, items_.size() * 2)));
        for (std::size_t i = 0; i < size_; ++i)
            grown[i] = std::move(items_[wrap(head_ + i)]);
        items_ = std::move(grown);
        head_ = 0;
    }
    items_[wrap(head_ + size_)] = std::move(e);
    ++size_;
}

local_bus::stripe& local_bus::stripe_of(std::string_view channel) noexcept {
    return stripes_[std::hash<std::string_view>{}(channel) % stripe_count];
}

local_bus::channel_state& local_bus::state_of(stripe& s, std::string_view channel, time_point now) {
    auto it = s.channels.find(channel);
    if (it == s.channels.end()) {
        it = s.channels.emplace(std::string(channel), channel_state{}).first;
        it->second.epoch = new_epoch();
        it->second.last = now;
        schedule_check(s, it->first, it->second);
    }
    return it->second;
}

void local_bus::schedule_check(stripe& s, std::string_view channel, channel_state& c) {
    if (c.check_scheduled)
        return;
    const time_point from = c.history.empty() ? c.last : std::min(c.last, c.history.front().at);
    s.checks.emplace(from + options_.history_ttl, std::string(channel));
    c.check_scheduled = true;
}

void local_bus::expire(stripe& s, time_point now) {
    while (!s.checks.empty() && s.checks.top().first <= now) {
        const std::string name = s.checks.top().second;
        s.checks.pop();
        auto it = s.channels.find(name);
        if (it == s.channels.end())
            continue;
        channel_state& c = it->second;
        c.check_scheduled = false;
        while (!c.history.empty() && c.history.front().at + options_.history_ttl <= now)
            c.history.pop_front();
        if (c.history.empty() && c.last + options_.history_ttl <= now) {
            s.channels.erase(it); // its next message starts a new epoch
            continue;
        }
        schedule_check(s, name, c);
    }
}

void local_bus::publish(std::string_view channel, packet payload,
                        std::function<void(publish_result)> done) {
    stripe& s = stripe_of(channel);
    std::unique_lock lock{s.mutex};
    const time_point now = now_();
    expire(s, now);
    channel_state& c = state_of(s, channel, now);
    const std::uint64_t offset = ++c.offset;
    c.last = now;
    packet stamped = stamp(payload, c.epoch, offset);
    if (options_.history_size > 0) {
        c.history.push_back({offset, now, stamped}, options_.history_size);
    }
    schedule_check(s, channel, c);
    publish_result result{true, {c.epoch, offset}, std::size_t{0}, {}};
    // The publisher is answered here, on its own thread, once the deliveries are queued: no
    // hop and no wake-up for the answer.
    if (bus_listener* listener = listener_.load())
        result.sessions = listener->deliver(channel, stamped, offset);
    lock.unlock();
    if (done)
        done(std::move(result));
}

void local_bus::open(std::string_view) {}
void local_bus::close(std::string_view) {}

void local_bus::recover(std::string_view channel, const stream_position& since,
                        std::function<void(recovery)> done) {
    stripe& s = stripe_of(channel);
    std::lock_guard lock{s.mutex};
    const time_point now = now_();
    expire(s, now);
    // A channel nobody published to yet gets its position now, so that a cursor taken here
    // (epoch E, offset 0) recovers its first messages later.
    channel_state& c = state_of(s, channel, now);
    recovery r;
    r.position = {c.epoch, c.offset};
    if (since.epoch.empty()) {
        r.recovered = true; // only the position was asked for
    } else if (since.epoch == c.epoch && since.offset <= c.offset) {
        if (since.offset == c.offset) {
            r.recovered = true;
        } else if (!c.history.empty() && c.history.front().offset <= since.offset + 1) {
            r.recovered = true;
            for (std::size_t i = 0; i < c.history.size(); ++i)
                if (c.history[i].offset > since.offset)
                    r.messages.push_back(c.history[i].stamped);
        }
    }
    done(std::move(r));
}

std::size_t local_bus::channels() {
    std::size_t n = 0;
    for (stripe& s : stripes_) {
        std::lock_guard lock{s.mutex};
        n += s.channels.size();
    }
    return n;
}

void local_bus::write_metrics(std::string& out) const {
    // channels() only reads, under the stripes' locks (which a const method cannot take).
    const std::size_t n = const_cast<local_bus&>(*this).channels();
    out += "# HELP megaphone_bus_channels Channels with a position or history kept in memory.\n"
           "# TYPE megaphone_bus_channels gauge\n"
           "megaphone_bus_channels ";
    out += std::to_string(n);
    out += '\n';
}

} // namespace megaphone
