// timer_queue driven by a manual_clock: timers fire in deadline order and FIFO among equal
// deadlines, only once due; cancel and re-arm; a callback may re-arm itself and arm or cancel
// others; a node destroyed while armed leaves the queue; next_deadline and size follow along.
// coarse_now (the server's clock): within one tick of the fine clock.
#include "fsm/clock.hpp"
#include "fsm/timer_queue.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace megaphone;
using namespace std::chrono_literals;

namespace {

/// A named timer that appends its name to a shared log when it fires, then runs `then`.
struct probe {
    std::string name;
    std::vector<std::string>* fired;
    std::function<void()> then;
    timer_node node{&probe::on_fire, this};

    probe(std::string n, std::vector<std::string>& log)
        : name{std::move(n)}
        , fired{&log} {}

    static void on_fire(void* context) {
        auto* self = static_cast<probe*>(context);
        self->fired->push_back(self->name);
        if (self->then)
            self->then();
    }
};

using names = std::vector<std::string>;

} // namespace

TEST_CASE("manual_clock starts at a non-zero time and moves only when told", "[timer]") {
    manual_clock clock;
    const time_point t0 = clock.now();
    CHECK(t0 != time_point{});
    CHECK(clock.now() == t0);
    clock.advance(5s);
    CHECK(clock.now() == t0 + 5s);
}

TEST_CASE("coarse_now: the kernel's last tick moved up by one tick, so never behind the fine clock",
          "[timer]") {
    timespec r{};
    REQUIRE(::clock_getres(CLOCK_MONOTONIC_COARSE, &r) == 0);
    const auto tick = std::chrono::seconds(r.tv_sec) + std::chrono::nanoseconds(r.tv_nsec);
    REQUIRE(tick > std::chrono::nanoseconds(0));
    for (int i = 0; i < 1000; ++i) {
        const auto before = std::chrono::steady_clock::now();
        const megaphone::time_point coarse = megaphone::coarse_now();
        const auto after = std::chrono::steady_clock::now();
        // At most one tick ahead of the fine clock read after it; behind the one read before it
        // only when a tick came late (a loaded virtual machine: allow 20 ticks).
        CHECK(coarse <= after + tick);
        CHECK(coarse >= before - 20 * tick);
    }
    const megaphone::coarse_clock_source source;
    const auto before = std::chrono::steady_clock::now();
    CHECK(source.now() <= std::chrono::steady_clock::now() + tick);
    CHECK(source.now() >= before - 20 * tick);
}

TEST_CASE("timer_queue fires timers in deadline order, only once due", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    probe a{"a", log}, b{"b", log}, c{"c", log};
    const time_point t0 = clock.now();
    q.arm(c.node, t0 + 3s);
    q.arm(a.node, t0 + 1s);
    q.arm(b.node, t0 + 2s);
    CHECK(q.size() == 3);
    CHECK(a.node.armed());
    CHECK(a.node.deadline() == t0 + 1s);

    CHECK(q.expire(clock.now()) == 0);
    CHECK(log.empty());

    clock.advance(999ms);
    CHECK(q.expire(clock.now()) == 0);

    clock.advance(1ms); // exactly at a's deadline: due
    CHECK(q.expire(clock.now()) == 1);
    CHECK(log == names{"a"});
    CHECK_FALSE(a.node.armed());

    clock.advance(10s);
    CHECK(q.expire(clock.now()) == 2);
    CHECK(log == names{"a", "b", "c"});
    CHECK(q.size() == 0);
    CHECK(q.expire(clock.now()) == 0);
}

TEST_CASE("timer_queue fires equal deadlines in the order they were armed", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    std::vector<std::unique_ptr<probe>> probes;
    const time_point due = clock.now() + 1s;
    for (int i = 0; i < 8; ++i) {
        probes.push_back(std::make_unique<probe>("t" + std::to_string(i), log));
        q.arm(probes.back()->node, due);
    }
    // Re-arming at the same deadline moves a timer to the back of its equals.
    q.arm(probes[2]->node, due);
    q.arm(probes[0]->node, due);
    CHECK(q.expire(due) == 8);
    CHECK(log == names{"t1", "t3", "t4", "t5", "t6", "t7", "t2", "t0"});
}

TEST_CASE("timer_queue cancel disarms, and cancelling an unarmed timer is a no-op", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    probe a{"a", log}, b{"b", log};
    const time_point t0 = clock.now();

    q.cancel(a.node); // never armed
    CHECK_FALSE(a.node.armed());

    q.arm(a.node, t0 + 1s);
    q.arm(b.node, t0 + 2s);
    q.cancel(a.node);
    CHECK_FALSE(a.node.armed());
    CHECK(q.size() == 1);
    q.cancel(a.node); // twice
    CHECK(q.size() == 1);

    CHECK(q.expire(t0 + 5s) == 1);
    CHECK(log == names{"b"});
    q.cancel(b.node); // after it fired
    CHECK(q.size() == 0);
}

TEST_CASE("timer_queue re-arm replaces the deadline and fires once", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    probe a{"a", log}, b{"b", log};
    const time_point t0 = clock.now();

    q.arm(a.node, t0 + 5s);
    q.arm(b.node, t0 + 3s);
    q.arm(a.node, t0 + 1s); // earlier
    CHECK(q.size() == 2);
    CHECK(a.node.deadline() == t0 + 1s);
    CHECK(q.next_deadline() == t0 + 1s);
    CHECK(q.expire(t0 + 1s) == 1);
    CHECK(log == names{"a"});

    q.arm(b.node, t0 + 10s); // later
    CHECK(q.expire(t0 + 9s) == 0);
    CHECK(q.expire(t0 + 10s) == 1);
    CHECK(log == names{"a", "b"});

    // A fired timer can be armed again.
    q.arm(a.node, t0 + 11s);
    CHECK(q.expire(t0 + 20s) == 1);
    CHECK(log == names{"a", "b", "a"});
}

TEST_CASE("timer_queue callbacks may re-arm themselves and arm or cancel others", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    probe a{"a", log}, b{"b", log}, c{"c", log}, d{"d", log};
    const time_point t0 = clock.now();

    SECTION("a periodic timer re-arms itself for later: once per expire") {
        a.then = [&] {
            CHECK_FALSE(a.node.armed()); // disarmed before its callback runs
            q.arm(a.node, a.node.deadline() + 1s);
        };
        q.arm(a.node, t0 + 1s);
        CHECK(q.expire(t0 + 1s) == 1);
        CHECK(a.node.armed());
        CHECK(a.node.deadline() == t0 + 2s);
        CHECK(q.expire(t0 + 3s) == 2); // t0+2s, then t0+3s: each period that is due
        CHECK(log == names{"a", "a", "a"});
        CHECK(q.next_deadline() == t0 + 4s);
    }

    SECTION("a callback cancels another timer that is due too") {
        a.then = [&] { q.cancel(b.node); };
        q.arm(a.node, t0 + 1s);
        q.arm(b.node, t0 + 1s);
        q.arm(c.node, t0 + 2s);
        CHECK(q.expire(t0 + 2s) == 2);
        CHECK(log == names{"a", "c"});
        CHECK_FALSE(b.node.armed());
    }

    SECTION("a callback arms another timer: fires in the same expire when due, else later") {
        a.then = [&] {
            q.arm(b.node, t0 + 1s); // due now
            q.arm(c.node, t0 + 5s); // not yet
        };
        q.arm(a.node, t0 + 1s);
        q.arm(d.node, t0 + 2s);
        CHECK(q.expire(t0 + 2s) == 3);
        CHECK(log == names{"a", "b", "d"});
        CHECK(c.node.armed());
        CHECK(q.next_deadline() == t0 + 5s);
    }

    SECTION("a callback re-arms another timer that was due for later") {
        a.then = [&] { q.arm(b.node, t0 + 10s); };
        q.arm(a.node, t0 + 1s);
        q.arm(b.node, t0 + 1s);
        CHECK(q.expire(t0 + 1s) == 1);
        CHECK(log == names{"a"});
        CHECK(b.node.deadline() == t0 + 10s);
        CHECK(q.expire(t0 + 10s) == 1);
        CHECK(log == names{"a", "b"});
    }
}

TEST_CASE("timer_queue: a node destroyed while armed leaves the queue", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    const time_point t0 = clock.now();
    probe keep{"keep", log};
    q.arm(keep.node, t0 + 2s);
    {
        probe gone{"gone", log};
        q.arm(gone.node, t0 + 1s);
        CHECK(q.size() == 2);
        CHECK(q.next_deadline() == t0 + 1s);
    }
    CHECK(q.size() == 1);
    CHECK(q.next_deadline() == t0 + 2s);
    CHECK(q.expire(t0 + 5s) == 1);
    CHECK(log == names{"keep"});
}

TEST_CASE("timer_queue: a node outlives its queue", "[timer]") {
    names log;
    probe a{"a", log};
    {
        timer_queue q;
        q.arm(a.node, manual_clock{}.now());
        CHECK(a.node.armed());
    }
    CHECK_FALSE(a.node.armed());
}

TEST_CASE("timer_queue next_deadline is the earliest armed deadline", "[timer]") {
    manual_clock clock;
    timer_queue q;
    names log;
    probe a{"a", log}, b{"b", log}, c{"c", log};
    const time_point t0 = clock.now();

    CHECK(q.next_deadline() == std::nullopt);
    q.arm(b.node, t0 + 2s);
    CHECK(q.next_deadline() == t0 + 2s);
    q.arm(c.node, t0 + 3s);
    CHECK(q.next_deadline() == t0 + 2s);
    q.arm(a.node, t0 + 1s);
    CHECK(q.next_deadline() == t0 + 1s);
    q.cancel(a.node);
    CHECK(q.next_deadline() == t0 + 2s);
    q.arm(c.node, t0 + 500ms);
    CHECK(q.next_deadline() == t0 + 500ms);
    q.expire(t0 + 2s);
    CHECK(q.next_deadline() == std::nullopt);
    CHECK(log == names{"c", "b"});
}

TEST_CASE("timer_queue passes each timer its own context", "[timer]") {
    timer_queue q;
    int hits[2] = {0, 0};
    auto bump = [](void* context) { ++*static_cast<int*>(context); };
    timer_node x{bump, &hits[0]}, y{bump, &hits[1]};
    const time_point t = manual_clock{}.now();
    q.arm(x, t);
    q.arm(y, t);
    q.arm(y, t);
    CHECK(q.expire(t) == 2);
    CHECK(hits[0] == 1);
    CHECK(hits[1] == 1);
}
