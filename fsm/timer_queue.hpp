// timer_queue: many one-shot timers ordered by deadline, armed and cancelled in O(log n), with
// no allocation (the timer nodes are intrusive: they live inside their owners).
//
// One queue serves all sessions of a thread; the thread sleeps on a single OS timer set to
// next_deadline(). A million idle sessions therefore cost a million 40-byte nodes, not a million
// Asio timers. The queue knows no clock: its owner passes "now" to expire(), which is how tests
// drive time by hand.
#pragma once

#include "fsm/clock.hpp"

#include <boost/intrusive/set.hpp>

#include <cstddef>
#include <optional>

namespace megaphone {

class timer_queue;

/// One timer. Not copyable; it must outlive its arming (its destructor cancels it).
class timer_node : public boost::intrusive::set_base_hook<
                       boost::intrusive::optimize_size<true>,
                       boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
public:
    using callback = void (*)(void* context);

    timer_node(callback fn, void* context) noexcept
        : fn_{fn}
        , context_{context} {}
    timer_node(const timer_node&) = delete;
    timer_node& operator=(const timer_node&) = delete;

    bool armed() const noexcept { return is_linked(); }
    time_point deadline() const noexcept { return deadline_; }

private:
    friend class timer_queue;
    friend bool operator<(const timer_node& a, const timer_node& b) noexcept {
        return a.deadline_ < b.deadline_;
    }

    time_point deadline_{};
    callback fn_;
    void* context_;
};

class timer_queue {
public:
    timer_queue() = default;
    timer_queue(const timer_queue&) = delete;
    timer_queue& operator=(const timer_queue&) = delete;
    ~timer_queue() { timers_.clear(); }

    /// Arms `t` to fire at `deadline`, re-arming it if it was armed. Equal deadlines fire in
    /// the order they were armed.
    void arm(timer_node& t, time_point deadline);

    /// Disarms `t`; a no-op if it is not armed.
    void cancel(timer_node& t) noexcept;

    std::optional<time_point> next_deadline() const noexcept;
    /// O(n): for tests and diagnostics only.
    std::size_t size() const noexcept { return timers_.size(); }

    /// Fires, in deadline order, every timer whose deadline is <= now. Each timer is disarmed
    /// before its callback runs, so a callback may re-arm it or arm and cancel others.
    std::size_t expire(time_point now);

private:
    // auto_unlink nodes (a destroyed node leaves the set by itself) need a linear-time size.
    using set_type =
        boost::intrusive::multiset<timer_node, boost::intrusive::constant_time_size<false>>;
    set_type timers_;
};

} // namespace megaphone
