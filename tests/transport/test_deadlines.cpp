// deadline_service (transport/deadlines.hpp): connection timeouts as intrusive lists with one
// ticking timer. Short real timeouts (tens of ms) on a private io_context; every wait is
// bounded by run_for and the assertions are on order and membership, and on elapsed time only as
// a lower bound (a deadline never fires before its time, which a slow machine cannot break).
#include "transport/deadlines.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <vector>

using namespace std::chrono_literals;
using megaphone::deadline;
using megaphone::deadline_service;
namespace net = boost::asio;

namespace {

struct timed : deadline {
    int name = 0;
    std::vector<int>* fired = nullptr;
    static void expire(deadline& d) {
        auto& t = static_cast<timed&>(d);
        t.fired->push_back(t.name);
    }
};

/// Runs `ioc` until `done()` or 5 s have passed.
template <class F>
void run_until(net::io_context& ioc, F done) {
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < end) {
        ioc.restart();
        ioc.run_for(5ms);
    }
}

} // namespace

TEST_CASE("deadlines: due ones expire in due order, across lengths, cancelled ones never") {
    net::io_context ioc;
    auto& svc = deadline_service::of(ioc);
    std::vector<int> fired;
    std::vector<std::unique_ptr<timed>> t;
    for (int i = 0; i < 6; ++i) {
        t.push_back(std::make_unique<timed>());
        t.back()->name = i;
        t.back()->fired = &fired;
    }
    svc.arm(*t[0], 90ms, &timed::expire);
    svc.arm(*t[1], 30ms, &timed::expire);
    svc.arm(*t[2], 30ms, &timed::expire);
    svc.arm(*t[3], 60ms, &timed::expire);
    svc.arm(*t[4], 30ms, &timed::expire);
    svc.arm(*t[5], 60ms, &timed::expire);
    CHECK(svc.armed() == 6);
    deadline_service::cancel(*t[2]);
    CHECK_FALSE(t[2]->armed());
    t[5].reset(); // destroyed while armed: it leaves its list
    CHECK(svc.armed() == 4);
    run_until(ioc, [&] { return fired.size() == 4; });
    CHECK(fired == std::vector<int>{1, 4, 3, 0});
    CHECK(svc.armed() == 0);
    for (int i = 0; i < 5; ++i)
        if (t[i])
            CHECK_FALSE(t[i]->armed());
}

TEST_CASE("deadlines: none fires before its time has passed on the steady clock") {
    // Due times come from the coarse clock (fsm/clock.hpp), a tick ahead of the steady clock;
    // what is due is judged by the kernel's last tick, never ahead: an expiry is never early.
    net::io_context ioc;
    auto& svc = deadline_service::of(ioc);
    struct stamped : deadline {
        std::chrono::steady_clock::time_point armed, fired;
        static void expire(deadline& d) {
            static_cast<stamped&>(d).fired = std::chrono::steady_clock::now();
        }
    };
    std::vector<std::unique_ptr<stamped>> d;
    for (int round = 0; round < 40; ++round) {
        // Armed at different phases of the kernel's tick and of the service's 5 ms tick.
        for (const auto after : {20ms, 21ms, 23ms}) {
            d.push_back(std::make_unique<stamped>());
            d.back()->armed = std::chrono::steady_clock::now();
            svc.arm(*d.back(), after, &stamped::expire);
        }
        ioc.restart();
        ioc.run_for(1ms + std::chrono::milliseconds(round % 7));
    }
    run_until(ioc, [&] { return svc.armed() == 0; });
    REQUIRE(svc.armed() == 0);
    for (std::size_t i = 0; i < d.size(); ++i) {
        INFO(i);
        const auto after = std::vector{20ms, 21ms, 23ms}[i % 3];
        CHECK(d[i]->fired - d[i]->armed >= after);
    }
}

TEST_CASE("deadlines: re-arming moves a deadline, an expiry may arm again") {
    net::io_context ioc;
    auto& svc = deadline_service::of(ioc);
    std::vector<int> fired;
    timed a, b;
    a.name = 1;
    b.name = 2;
    a.fired = b.fired = &fired;
    svc.arm(a, 20ms, &timed::expire);
    svc.arm(b, 40ms, &timed::expire);
    svc.arm(a, 10s, &timed::expire); // moved far out: b comes first
    run_until(ioc, [&] { return !fired.empty(); });
    CHECK(fired == std::vector<int>{2});
    CHECK(a.armed());
    CHECK(svc.armed() == 1);

    // An expiry that arms another deadline (never in the past) is served on a later tick.
    struct chain : deadline {
        deadline_service* svc = nullptr;
        timed* next = nullptr;
        static void expire(deadline& d) {
            auto& c = static_cast<chain&>(d);
            c.svc->arm(*c.next, 10ms, &timed::expire);
        }
    } c;
    c.svc = &svc;
    c.next = &b;
    fired.clear();
    svc.arm(c, 10ms, &chain::expire);
    run_until(ioc, [&] { return !fired.empty(); });
    CHECK(fired == std::vector<int>{2});
    deadline_service::cancel(a);
    CHECK(svc.armed() == 0);
}

TEST_CASE("deadlines: more lengths than lists still expire in order") {
    net::io_context ioc;
    auto& svc = deadline_service::of(ioc);
    std::vector<int> fired;
    std::vector<std::unique_ptr<timed>> t;
    // 12 lengths, armed longest first: past 8 lists they share the closest list, sorted.
    for (int i = 12; i >= 1; --i) {
        t.push_back(std::make_unique<timed>());
        t.back()->name = i;
        t.back()->fired = &fired;
        svc.arm(*t.back(), i * 15ms, &timed::expire);
    }
    run_until(ioc, [&] { return fired.size() == 12; });
    CHECK(fired == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
}

TEST_CASE("deadlines: an io_context destroyed with deadlines armed leaves their owners intact") {
    std::vector<int> fired;
    timed survivor; // outlives the io_context
    survivor.fired = &fired;
    {
        net::io_context ioc;
        deadline_service::of(ioc).arm(survivor, 10s, &timed::expire);
        CHECK(survivor.armed());
    }
    CHECK_FALSE(survivor.armed()); // unlinked at shutdown; its destructor touches nothing
    CHECK(fired.empty());
}
