#include "fsm/timer_queue.hpp"

namespace megaphone {

void timer_queue::arm(timer_node& t, time_point deadline) {
    cancel(t);
    t.deadline_ = deadline;
    timers_.insert(t);
}

void timer_queue::cancel(timer_node& t) noexcept {
    if (t.is_linked())
        timers_.erase(timers_.iterator_to(t));
}

std::optional<time_point> timer_queue::next_deadline() const noexcept {
    if (timers_.empty())
        return std::nullopt;
    return timers_.begin()->deadline_;
}

std::size_t timer_queue::expire(time_point now) {
    std::size_t fired = 0;
    while (!timers_.empty() && timers_.begin()->deadline_ <= now) {
        timer_node& t = *timers_.begin();
        timers_.erase(timers_.begin());
        ++fired;
        t.fn_(t.context_);
    }
    return fired;
}

} // namespace megaphone
