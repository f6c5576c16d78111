#pragma once
// placement: which I/O thread takes a new connection (and so the sessions it creates).
//
// `fill` (the default) is work-conserving: the first thread takes every new connection while it
// has room, and the others take a share (round robin over all threads) only while the first is
// busy *and* the machine has a core to spare. A second thread that shares one core with the
// first (or with a load generator) only splits its work into smaller wake-ups and adds the
// hops between threads (docs/PERFORMANCE.md, "Every core"); a second thread on a free core adds
// speed. `spread` is plain round robin from the first connection on (what tests use, to cross
// threads on every path).
//
// Spreading goes on while the first thread stays over `calm` and the other threads, with what
// is still idle, have at least `spare_keep` of a core: the core they took counts as spare.
//
// The load is sampled at most every `interval`, on the listener's thread, when a connection
// is placed: each thread's CPU time (its clock from pthread_getcpuclockid) and the machine's
// idle time (/proc/stat), as deltas over the time since the previous sample. A sample older
// than `stale` only starts a new window (the first thread again) rather than judge a burst by
// a quiet past.

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace megaphone {

enum class placement_policy { fill, spread };

/// Cumulative counters, as a probe reads them; a placement works on their deltas.
struct load_counters {
    std::vector<std::chrono::nanoseconds> thread_cpu{}; // per thread, CPU time used
    std::chrono::nanoseconds machine_idle{};            // all cores together, idle time
};

struct placement_options {
    placement_policy policy = placement_policy::fill;
    std::chrono::milliseconds interval{100}; // the shortest window of a sample
    std::chrono::milliseconds stale{1000};   // an older sample only starts a new window
    double busy = 0.75;      // the first thread's share of a core that makes it busy
    double calm = 0.5;       // spreading stops when it is back under this
    double spare_core = 0.5; // idle cores the machine needs to have for spreading to start
    double spare_keep = 0.5; // spreading stops when idle cores plus the other threads' use
                             // fall under this (they found no spare core)
};

class thread_placement {
public:
    using probe = std::function<load_counters()>;
    using clock = std::function<std::chrono::nanoseconds()>; // monotonic

    /// `threads` ≥ 1; `read` is only called with more than one thread under `fill`, at most
    /// once per `options.interval` of `now`.
    thread_placement(unsigned threads, placement_options options, probe read, clock now);

    /// The thread for the next connection. One thread at a time (the listeners' own).
    unsigned pick();

    /// Whether new connections are spread over every thread now (the first thread is busy
    /// and a core is spare).
    bool spreading() const noexcept { return spreading_; }
    /// How often spreading started (for tests and diagnostics).
    std::uint64_t spreads() const noexcept { return spreads_; }

    /// Reads this thread's CPU clock and the machine's idle time: the probe of a server.
    /// `clocks` are the threads' CPU clock ids (pthread_getcpuclockid), -1 for one unknown yet.
    static load_counters read_system(const std::vector<int>& clocks);

private:
    void sample();

    unsigned threads_;
    placement_options options_;
    probe read_;
    clock now_;
    std::chrono::nanoseconds last_time_{};
    load_counters last_{}; // the previous sample (empty before the first)
    bool spreading_ = false;
    std::uint64_t spreads_ = 0;
    unsigned next_ = 0;
};

} // namespace megaphone
