#include "transport/deadlines.hpp"

#include "fsm/clock.hpp"

#include <algorithm>

namespace megaphone {

net::execution_context::id deadline_service::id;

deadline::~deadline() {
    deadline_service::cancel(*this);
}

deadline_service::deadline_service(net::io_context& ioc)
    : net::execution_context::service{ioc}
    , timer_{ioc.get_executor()} {}

void deadline_service::arm(deadline& d, clock::duration after, deadline::expiry expire) {
    if (stopped_)
        return;
    if (d.armed())
        unlink(d);
    // The list of this length; a new length gets a list (past max_lists, the closest one, where
    // the sorted insertion below walks a little).
    std::size_t i = 0;
    while (i < used_ && lists_[i].span != after)
        ++i;
    if (i == used_) {
        if (used_ < max_lists) {
            lists_[used_++].span = after;
            const auto shortest = std::min_element(
                lists_.begin(), lists_.begin() + static_cast<std::ptrdiff_t>(used_),
                [](const list& a, const list& b) { return a.span < b.span; });
            interval_ = std::clamp<clock::duration>(
                shortest->span / 8, std::chrono::milliseconds(5), std::chrono::seconds(1));
        } else {
            i = 0;
            for (std::size_t j = 1; j < used_; ++j)
                if ((lists_[j].span > after ? lists_[j].span - after : after - lists_[j].span) <
                    (lists_[i].span > after ? lists_[i].span - after : after - lists_[i].span))
                    i = j;
        }
    }
    list& l = lists_[i];
    d.service_ = this;
    d.expire_ = expire;
    // The cheap clock (a read for every request), one more tick on: right after an idle sleep
    // the kernel's coarse time can lag the steady clock by more than a tick (5.3 ms measured
    // here, against 4 ms ticks), and a deadline must not fire early.
    d.at_ = coarse_now() + coarse_tick() + after;
    d.list_ = static_cast<std::uint8_t>(i);
    // Sorted by due time: behind the last one due no later (the tail, for a list of one length).
    deadline* before = l.tail;
    while (before && before->at_ > d.at_)
        before = before->prev_;
    d.prev_ = before;
    d.next_ = before ? before->next_ : l.head;
    (d.next_ ? d.next_->prev_ : l.tail) = &d;
    (before ? before->next_ : l.head) = &d;
    ++count_;
    tick();
}

void deadline_service::cancel(deadline& d) noexcept {
    if (d.armed() && d.service_)
        d.service_->unlink(d);
}

void deadline_service::unlink(deadline& d) noexcept {
    list& l = lists_[d.list_];
    (d.prev_ ? d.prev_->next_ : l.head) = d.next_;
    (d.next_ ? d.next_->prev_ : l.tail) = d.prev_;
    d.prev_ = d.next_ = nullptr;
    d.list_ = deadline::no_list;
    --count_;
}

void deadline_service::tick() {
    if (ticking_ || stopped_ || count_ == 0)
        return;
    ticking_ = true;
    timer_.expires_after(interval_);
    timer_.async_wait([this](const boost::system::error_code& ec) { on_tick(ec); });
}

void deadline_service::on_tick(const boost::system::error_code& ec) {
    ticking_ = false;
    if (ec || stopped_)
        return;
    // The steady clock (one read a tick): a deadline fires once its due time has passed on it
    // (a websocket's heartbeat compares that clock when it fires).
    const auto now = clock::now();
    // Due ones in due order over all lists. An expiry may arm or cancel other deadlines (never
    // into the past): the heads are looked at afresh each time.
    for (;;) {
        list* first = nullptr;
        for (std::size_t i = 0; i < used_; ++i)
            if (lists_[i].head && lists_[i].head->at_ <= now &&
                (!first || lists_[i].head->at_ < first->head->at_))
                first = &lists_[i];
        if (!first)
            break;
        deadline& d = *first->head;
        unlink(d);
        d.expire_(d);
    }
    tick();
}

void deadline_service::shutdown() {
    // The io_context is going away: owners destroyed from here on find their deadline unlinked.
    stopped_ = true;
    for (std::size_t i = 0; i < used_; ++i)
        while (lists_[i].head)
            unlink(*lists_[i].head);
    timer_.cancel();
}

} // namespace megaphone
