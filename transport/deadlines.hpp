// deadlines: the connection timeouts (idle, read, write) of one io_context, kept as intrusive
// lists with one ticking timer, instead of a timer object per connection.
//
// Every timeout of one length goes to the list of that length; since the clock only moves
// forward, appending keeps each list sorted, so arming and cancelling are a few pointer moves:
// no allocation, no lock, no handler posted. While any deadline is armed, the service's one
// timer ticks every 1/8 of the shortest timeout (between 5 ms and 1 s) and expires the heads
// that are due: a deadline fires at most one tick late. Due times are taken from coarse_now()
// (fsm/clock.hpp: a read per request armed, so the cheap clock) plus one more kernel tick, and
// compared with the steady clock: never early, and at most two kernel ticks (8 ms here) later
// still.
//
// Threading: a deadline is armed, cancelled and expired on its io_context's thread only (one
// thread per io_context, as the server runs them).
#pragma once

#include "transport/net.hpp"

#include <array>
#include <chrono>
#include <cstdint>

namespace megaphone {

class deadline_service;

/// One deadline; embed it in the object it times out. Not copyable; cancelled on destruction.
class deadline {
public:
    using clock = std::chrono::steady_clock;
    using expiry = void (*)(deadline&);

    deadline() = default;
    deadline(const deadline&) = delete;
    deadline& operator=(const deadline&) = delete;
    ~deadline();

    bool armed() const noexcept { return list_ != no_list; }

private:
    friend class deadline_service;
    static constexpr std::uint8_t no_list = 0xff;

    deadline* prev_ = nullptr;
    deadline* next_ = nullptr;
    deadline_service* service_ = nullptr;
    expiry expire_ = nullptr;
    clock::time_point at_{};
    std::uint8_t list_ = no_list;
};

class deadline_service final : public net::execution_context::service {
public:
    using key_type = deadline_service;
    using clock = deadline::clock;
    static net::execution_context::id id;

    explicit deadline_service(net::io_context& ioc);

    /// The service of `ioc` (made on first use).
    static deadline_service& of(net::io_context& ioc) {
        return net::use_service<deadline_service>(ioc);
    }

    /// (Re)arms `d` to call `expire(d)` once `after` has passed, unless cancelled or re-armed
    /// first.
    void arm(deadline& d, clock::duration after, deadline::expiry expire);
    /// Disarms `d` (nothing if it is not armed).
    static void cancel(deadline& d) noexcept;

    /// Deadlines armed now (tests).
    std::size_t armed() const noexcept { return count_; }

private:
    using timer_type =
        net::basic_waitable_timer<clock, net::wait_traits<clock>, net::io_context::executor_type>;
    struct list {
        clock::duration span{};
        deadline* head = nullptr;
        deadline* tail = nullptr;
    };

    void shutdown() override;
    void unlink(deadline& d) noexcept;
    void tick();
    void on_tick(const boost::system::error_code& ec);

    static constexpr std::size_t max_lists = 8; // distinct timeout lengths (3 in practice)
    std::array<list, max_lists> lists_{};
    std::size_t used_ = 0;
    std::size_t count_ = 0;
    clock::duration interval_ = std::chrono::seconds(1);
    timer_type timer_;
    bool ticking_ = false;
    bool stopped_ = false;
};

} // namespace megaphone
