// local_bus: the bus of one process (no Redis): positions and a bounded history per channel in
// memory, delivery straight to the listener. A restart starts new epochs.
//
// Channels are spread over stripes, each with its own mutex, so publishers on different threads
// rarely wait for each other. A channel's position is given, its history appended and its
// delivery handed to the listener under its stripe's lock: the listener sees each channel's
// messages in offset order. The listener must not call back into the bus from deliver() (the
// server only posts to its threads there).
//
// A channel's state (position, history) lives while it has history younger than history_ttl;
// expired entries are dropped as later publishes pass by (amortized, no timer), and a channel
// whose history is gone is forgotten: its next message starts a new epoch.
#pragma once

#include "cluster/bus.hpp"
#include "fsm/string_map.hpp"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace megaphone {

class local_bus final : public bus {
public:
    /// `now` tells the time for the history's ttl (coarse_now() by default; tests pass theirs).
    explicit local_bus(bus_options options = {},
                       std::function<std::chrono::steady_clock::time_point()> now = {});
    ~local_bus() override;

    void start(bus_listener& to) override;
    void stop() override;
    void publish(std::string_view channel, packet payload,
                 std::function<void(publish_result)> done) override;
    void open(std::string_view channel) override;
    void close(std::string_view channel) override;
    void recover(std::string_view channel, const stream_position& since,
                 std::function<void(recovery)> done) override;

    /// Channels with state now (for tests and diagnostics).
    std::size_t channels();
    /// megaphone_bus_channels: channels().
    void write_metrics(std::string& out) const override;

private:
    using time_point = std::chrono::steady_clock::time_point;
    struct entry {
        std::uint64_t offset;
        time_point at;
        packet stamped;
    };
    /// A channel's history, oldest first, in one array: it grows up to the history's size and
    /// then wraps, a publish taking the oldest entry's place. A deque touched two blocks a
    /// publish (its back and its front) and took 576 B for a channel's first message.
    class history_ring {
    public:
        bool empty() const noexcept { return size_ == 0; }
        std::size_t size() const noexcept { return size_; }
        /// The i-th oldest entry (i < size()).
        const entry& operator[](std::size_t i) const noexcept { return items_[wrap(head_ + i)]; }
        const entry& front() const noexcept { return items_[head_]; }
        void pop_front() noexcept;
        /// Appends `e`, dropping the oldest entries beyond `limit` (≥ 1).
        void push_back(entry e, std::size_t limit);

    private:
        std::size_t wrap(std::size_t i) const noexcept {
            return i < items_.size() ? i : i - items_.size();
        }
        std::vector<entry> items_; // its size: the capacity; head_..head_+size_ hold entries
        std::size_t head_ = 0, size_ = 0;
    };
    struct channel_state {
        std::string epoch;
        std::uint64_t offset = 0;
        time_point last{}; // of its latest publish, or of its creation
        history_ring history;
        bool check_scheduled = false;
    };
    struct stripe {
        std::mutex mutex;
        string_map<channel_state> channels;
        /// When each channel's history is next checked for expiry (one check per channel,
        /// earliest first; see expire()).
        std::priority_queue<std::pair<time_point, std::string>,
                            std::vector<std::pair<time_point, std::string>>, std::greater<>>
            checks;
    };
    static constexpr std::size_t stripe_count = 16;

    stripe& stripe_of(std::string_view channel) noexcept;
    /// The channel's state, made (with a new epoch) when it has none. Under the stripe's lock.
    channel_state& state_of(stripe& s, std::string_view channel, time_point now);
    /// Drops history older than the ttl from channels whose check is due, and forgets channels
    /// with no history left and no publish within the ttl (under the lock).
    void expire(stripe& s, time_point now);
    void schedule_check(stripe& s, std::string_view channel, channel_state& c);

    bus_options options_;
    std::function<time_point()> now_;
    std::atomic<bus_listener*> listener_{nullptr};
    std::array<stripe, stripe_count> stripes_;
};

} // namespace megaphone
