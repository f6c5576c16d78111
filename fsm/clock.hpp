// Time for sessions comes from a clock object, so tests can move it by hand.
#pragma once

#include <chrono>
#include <ctime>

namespace megaphone {

using time_point = std::chrono::steady_clock::time_point;
using duration = std::chrono::steady_clock::duration;

class clock_source {
public:
    virtual ~clock_source() = default;
    virtual time_point now() const noexcept = 0;
};

/// The real monotonic clock.
class steady_clock_source final : public clock_source {
public:
    time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

/// The resolution of CLOCK_MONOTONIC_COARSE: one kernel tick (4 ms here).
inline duration coarse_tick() noexcept {
    static const duration tick = [] {
        timespec r{};
        ::clock_getres(CLOCK_MONOTONIC_COARSE, &r);
        return std::chrono::duration_cast<duration>(std::chrono::seconds(r.tv_sec) +
                                                    std::chrono::nanoseconds(r.tv_nsec));
    }();
    return tick;
}

/// CLOCK_MONOTONIC_COARSE (the time of the kernel's last tick), moved up by one tick: at most
/// one tick ahead of steady_clock::now(), and not behind it while the ticks are on time (right
/// after an idle sleep the kernel's time can lag by a little more than a tick: 5.3 ms measured
/// here, so behind by up to 1.3 ms). Several times cheaper than steady_clock::now(), which reads
/// the TSC behind a fence: a dozen reads a message were 2-3 % of the server's CPU. For timeouts,
/// ages and rates, where a ms does not matter; never for latencies.
inline time_point coarse_now() noexcept {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return time_point{std::chrono::duration_cast<duration>(std::chrono::seconds(t.tv_sec) +
                                                           std::chrono::nanoseconds(t.tv_nsec)) +
                      coarse_tick()};
}

/// The server's clock for sessions: coarse_now().
class coarse_clock_source final : public clock_source {
public:
    time_point now() const noexcept override { return coarse_now(); }
};

/// A clock that moves only when told to: for tests and for the app testing kit.
class manual_clock final : public clock_source {
public:
    time_point now() const noexcept override { return now_; }
    void advance(duration d) noexcept { now_ += d; }

private:
    time_point now_{std::chrono::hours(1)}; // not zero, so "unset" bugs show
};

} // namespace megaphone
