// Time for sessions comes from a clock object, so tests can move it by hand.
#pragma once

#include <chrono>

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

/// A clock that moves only when told to: for tests and for the app testing kit.
class manual_clock final : public clock_source {
public:
    time_point now() const noexcept override { return now_; }
    void advance(duration d) noexcept { now_ += d; }

private:
    time_point now_{std::chrono::hours(1)}; // not zero, so "unset" bugs show
};

} // namespace megaphone
