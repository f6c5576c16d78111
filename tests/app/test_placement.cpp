// thread_placement (app/placement.hpp): which thread takes a new connection. Driven by a fake
// clock and fake load counters; the last case reads this machine's real ones.
#include "app/placement.hpp"

#include <catch2/catch.hpp>

#include <pthread.h>
#include <time.h>

using namespace megaphone;
using namespace std::chrono_literals;

namespace {

/// A fake machine of two threads: the test sets how much CPU each thread and the machine's
/// idle time gain per step of the clock, and counts the probe's reads.
struct fake_machine {
    std::chrono::nanoseconds now{1s};
    load_counters totals{{0ns, 0ns}, 0ns};
    int reads = 0;

    /// `ms` of wall time in which thread 0 runs `first` of a core, thread 1 `second`, and the
    /// machine is idle `idle` cores.
    void pass(std::chrono::milliseconds ms, double first, double second, double idle) {
        now += ms;
        totals.thread_cpu[0] += std::chrono::nanoseconds(std::int64_t(first * 1e6 * ms.count()));
        totals.thread_cpu[1] += std::chrono::nanoseconds(std::int64_t(second * 1e6 * ms.count()));
        totals.machine_idle += std::chrono::nanoseconds(std::int64_t(idle * 1e6 * ms.count()));
    }

    thread_placement placement(placement_policy policy, unsigned threads = 2) {
        placement_options o;
        o.policy = policy;
        return thread_placement{threads, o,
                                [this] {
                                    ++reads;
                                    return totals;
                                },
                                [this] { return now; }};
    }
};

std::vector<unsigned> picks(thread_placement& p, int n) {
    std::vector<unsigned> out;
    for (int i = 0; i < n; ++i)
        out.push_back(p.pick());
    return out;
}

} // namespace

TEST_CASE("placement: spread takes the threads in turn and never reads the load") {
    fake_machine m;
    auto p = m.placement(placement_policy::spread);
    CHECK(picks(p, 5) == std::vector<unsigned>{0, 1, 0, 1, 0});
    CHECK(m.reads == 0);
}

TEST_CASE("placement: with one thread, fill always answers it and never reads the load") {
    fake_machine m;
    auto p = m.placement(placement_policy::fill, 1);
    m.pass(200ms, 1.0, 0, 1.0);
    CHECK(picks(p, 3) == std::vector<unsigned>{0, 0, 0});
    CHECK(m.reads == 0);
}

TEST_CASE("placement: fill keeps every connection on the first thread while it has room") {
    fake_machine m;
    auto p = m.placement(placement_policy::fill);
    CHECK(picks(p, 4) == std::vector<unsigned>{0, 0, 0, 0});
    for (int i = 0; i < 10; ++i) {
        m.pass(150ms, 0.6, 0, 1.4); // busy, but under 0.75 of a core
        CHECK(p.pick() == 0);
    }
    CHECK_FALSE(p.spreading());
    CHECK(p.spreads() == 0);
}

TEST_CASE("placement: fill spreads while the first thread is busy and a core is spare, and "
          "stops when either ends") {
    fake_machine m;
    auto p = m.placement(placement_policy::fill);
    CHECK(p.pick() == 0); // the first sample only starts a window
    m.pass(150ms, 0.9, 0, 1.1);
    CHECK(picks(p, 4) == std::vector<unsigned>{0, 1, 0, 1});
    CHECK(p.spreading());
    CHECK(p.spreads() == 1);

    // Within the interval no new sample is read.
    const int reads = m.reads;
    m.pass(50ms, 0.9, 0, 1.0);
    CHECK(picks(p, 2) == std::vector<unsigned>{0, 1});
    CHECK(m.reads == reads);

    // Still spreading while the first thread stays over `calm` and the second thread uses the
    // spare core (nothing idle is left: the second thread took it).
    m.pass(100ms, 0.6, 0.9, 0.0);
    CHECK(picks(p, 2) == std::vector<unsigned>{0, 1});
    // The first thread calms down: back to it alone.
    m.pass(150ms, 0.3, 0.8, 0.9);
    CHECK(picks(p, 3) == std::vector<unsigned>{0, 0, 0});
    CHECK_FALSE(p.spreading());

    // Busy again, spare core again: a second spreading.
    m.pass(150ms, 0.95, 0.1, 0.9);
    CHECK(picks(p, 2) == std::vector<unsigned>{0, 1});
    CHECK(p.spreads() == 2);
    // Another process takes the other core (say, a load generator): the second thread gets
    // little of it and nothing is idle: back to the first thread, though it is still busy.
    m.pass(150ms, 0.95, 0.2, 0.1);
    CHECK(picks(p, 3) == std::vector<unsigned>{0, 0, 0});
}

TEST_CASE("placement: fill does not spread when the first thread is busy but no core is spare") {
    fake_machine m;
    auto p = m.placement(placement_policy::fill);
    p.pick();
    for (int i = 0; i < 5; ++i) {
        m.pass(150ms, 1.0, 0, 0.3);
        CHECK(p.pick() == 0);
    }
    CHECK(p.spreads() == 0);
}

TEST_CASE("placement: a sample older than `stale` starts a new window on the first thread") {
    fake_machine m;
    auto p = m.placement(placement_policy::fill);
    p.pick();
    m.pass(150ms, 1.0, 0, 1.0);
    CHECK(picks(p, 2) == std::vector<unsigned>{0, 1});
    // Minutes later, a burst: the past does not decide it.
    m.pass(std::chrono::minutes(3), 1.0, 0, 1.0);
    CHECK(picks(p, 3) == std::vector<unsigned>{0, 0, 0});
    CHECK_FALSE(p.spreading());
    // The burst itself, 150 ms later, does.
    m.pass(150ms, 1.0, 0, 1.0);
    CHECK(picks(p, 2) == std::vector<unsigned>{0, 1});
}

TEST_CASE("placement: read_system reads this thread's CPU clock and the machine's idle time") {
    clockid_t id{};
    REQUIRE(pthread_getcpuclockid(pthread_self(), &id) == 0);
    const auto before = thread_placement::read_system({static_cast<int>(id), -1});
    REQUIRE(before.thread_cpu.size() == 2);
    CHECK(before.thread_cpu[1] == 0ns); // not started: nothing
    CHECK(before.machine_idle > 0ns);   // since boot
    // Spin for 20 ms of this thread's CPU time.
    timespec start{}, now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    while ((now.tv_sec - start.tv_sec) * 1'000'000'000L + (now.tv_nsec - start.tv_nsec) <
           20'000'000L);
    const auto after = thread_placement::read_system({static_cast<int>(id), -1});
    CHECK(after.thread_cpu[0] - before.thread_cpu[0] >= 20ms);
    CHECK(after.machine_idle >= before.machine_idle);
}
