// megaphone-idle-sessions [N]: scenario 5, idle sessions without sockets. N sessions (default
// 1,000,000, at most 2,000,000) in one engine with a manual clock: memory per session (VmRSS and
// malloc'd bytes), sizeof(session), and the cost of the timers (create = arm a die timer each,
// one expire_timers() with nothing due, expiring all N die timers). Phase 2: N sessions each with
// a held poll (wait timer armed): bytes per held session. No HTTP: every answer goes to one
// shared target that discards it, so no per-session answer storage is counted. Times are CPU
// time of the process.
#include "app/application.hpp"
#include "app/engine.hpp"
#include "app/session.hpp"
#include "fsm/clock.hpp"
#include "transport/exchange.hpp"
#include "transport/json_codec.hpp"

#include <malloc.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace megaphone;

// Times are the process's CPU time (user + system, page faults included), not wall time: on a
// shared machine the wall clock also counts the turns of every other process.
struct clk {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<clk>;
    static constexpr bool is_steady = true;
    static time_point now() noexcept {
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return time_point{duration{static_cast<rep>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec}};
    }
};

struct discard_target final : exchange_target {
    void deliver(std::uint32_t, response r) override {
        ++answers;
        last_body = r.body.size();
    }
    std::size_t answers = 0;
    std::size_t last_body = 0;
};

struct trivial_app final : application {
    std::size_t closed = 0;
    void on_close(session&, close_reason) override { ++closed; }
};

struct null_broker final : broker {
    using broker::broadcast;
    using broker::publish;
    using broker::push;
    void push(std::string_view, packet) override {}
    void publish(std::string_view, packet, std::function<void(const publish_result&)>) override {}
    void broadcast(packet) override {}
    void subscribe(std::string_view, std::string_view) override {}
    void unsubscribe(std::string_view, std::string_view) override {}
    void close(std::string_view) override {}
    void with_session(std::string_view, std::function<void(session&)>) override {}
};

long rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
}

struct mem {
    long rss_kib;
    long long heap; // malloc'd bytes in use: uordblks (arena) + hblkhd (mmapped chunks)
};
mem sample() {
    const struct mallinfo2 mi = mallinfo2();
    return {rss_kib(), static_cast<long long>(mi.uordblks + mi.hblkhd)};
}

double secs(clk::time_point a, clk::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

} // namespace

int main(int argc, char** argv) {
    std::size_t n = 1'000'000;
    if (argc > 1)
        n = std::strtoull(argv[1], nullptr, 10);
    if (n == 0 || n > 2'000'000) {
        std::fprintf(stderr, "usage: %s [N]  (1 <= N <= 2000000, default 1000000)\n", argv[0]);
        return 2;
    }

    engine_config config; // defaults: inactivity 45 s, max_wait 60 s
    manual_clock clock;
    null_broker brk;
    trivial_app app;
    auto target = std::make_shared<discard_target>();
    const std::weak_ptr<exchange_target> weak = target;
    const json_codec& codec = json_codec::instance();

    engine eng{config, clock, brk, 0};

    // ---- phase 1: N idle sessions, each with a die timer armed ----
    malloc_trim(0);
    const mem m0 = sample();
    const auto t0 = clk::now();
    for (std::size_t i = 0; i < n; ++i) {
        client_request req;
        req.rid = 1000;
        eng.create(std::move(req), app, codec, exchange{weak, static_cast<std::uint32_t>(i)});
    }
    const auto t1 = clk::now();
    const mem m1 = sample();
    if (eng.size() != n) {
        std::fprintf(stderr, "expected %zu sessions, have %zu\n", n, eng.size());
        return 1;
    }
    const std::size_t armed = eng.timers().size();
    const std::size_t creation_answer = target->last_body; // cached by each session

    // The share of creation that is the sid (getrandom + base64), for comparison.
    const auto r0 = clk::now();
    constexpr int tokens = 200'000;
    for (int i = 0; i < tokens; ++i) {
        auto tok = random_token(16);
        asm volatile("" : : "r"(tok.data()) : "memory");
    }
    const double token_ns = secs(r0, clk::now()) * 1e9 / tokens;

    // One expire_timers() with nothing due, and the average of many.
    const auto c0 = clk::now();
    eng.expire_timers();
    const auto c1 = clk::now();
    constexpr int checks = 1'000'000;
    for (int i = 0; i < checks; ++i)
        eng.expire_timers();
    const auto c2 = clk::now();
    if (eng.size() != n)
        return 1;

    // Past inactivity: every die timer fires, every session closes and is reaped.
    clock.advance(config.inactivity + std::chrono::seconds(1));
    const auto e0 = clk::now();
    eng.expire_timers();
    const auto e1 = clk::now();
    if (eng.size() != 0 || app.closed != n) {
        std::fprintf(stderr, "expiry left %zu sessions (%zu closed)\n", eng.size(), app.closed);
        return 1;
    }
    const mem m2 = sample();
    malloc_trim(0);
    const mem m2t = sample();

    // ---- phase 2: N sessions, each holding a poll (wait timer armed, die timer cancelled) ----
    const mem p0 = sample();
    const auto h0 = clk::now();
    for (std::size_t i = 0; i < n; ++i) {
        client_request req;
        req.rid = 1000;
        eng.create(std::move(req), app, codec, exchange{weak, static_cast<std::uint32_t>(i)});
    }
    const auto h1 = clk::now();
    const mem p1 = sample(); // N idle sessions again
    std::vector<std::string> sids;
    sids.reserve(n);
    eng.for_each([&](const session& s) { sids.emplace_back(s.id()); });
    const mem p2 = sample(); // + the benchmark's own copies of the sids (not counted below)
    const std::size_t answers_before = target->answers;
    const auto h2 = clk::now();
    for (std::size_t i = 0; i < n; ++i) {
        client_request req;
        req.sid = sids[i];
        req.rid = 1001;
        eng.request(std::move(req), codec, exchange{weak, static_cast<std::uint32_t>(i)});
    }
    const auto h3 = clk::now();
    const mem p3 = sample();
    std::size_t held = 0;
    eng.for_each([&](const session& s) { held += s.held(); });
    if (held != n || target->answers != answers_before) {
        std::fprintf(stderr, "expected %zu held polls, have %zu\n", n, held);
        return 1;
    }
    // The wait timers (60 s) fire: N empty answers, die timers re-armed.
    clock.advance(config.max_wait + std::chrono::seconds(1));
    const auto w0 = clk::now();
    eng.expire_timers();
    const auto w1 = clk::now();
    const std::size_t wait_answers = target->answers - answers_before;
    eng.shutdown();
    eng.expire_timers();

    const double dn = static_cast<double>(n);
    const double idle_heap = static_cast<double>(m1.heap - m0.heap) / dn;
    const double idle_rss = static_cast<double>(m1.rss_kib - m0.rss_kib) * 1024.0 / dn;
    const double held_heap_total =
        static_cast<double>((p1.heap - p0.heap) + (p3.heap - p2.heap)) / dn;
    const double held_heap_delta = static_cast<double>(p3.heap - p2.heap) / dn;
    const double held_rss_delta = static_cast<double>(p3.rss_kib - p2.rss_kib) * 1024.0 / dn;
    const double create_ns = secs(t0, t1) * 1e9 / dn;
    const double check_one_ns = secs(c0, c1) * 1e9;
    const double check_avg_ns = secs(c1, c2) * 1e9 / checks;
    const double expire_s = secs(e0, e1);
    const double poll_ns = secs(h2, h3) * 1e9 / dn;
    const double wait_expire_s = secs(w0, w1);

    std::printf("{\"n\":%zu,\"sizeof_session\":%zu,\"sizeof_timer_node\":%zu,\"fsm_storage\":%zu,"
                "\"timers_armed\":%zu,\"creation_answer_bytes\":%zu,\"random_token_ns\":%.1f,"
                "\"idle_heap_bytes_per_session\":%.1f,\"idle_rss_bytes_per_session\":%.1f,"
                "\"rss_kib_before\":%ld,\"rss_kib_idle\":%ld,\"heap_bytes_before\":%lld,"
                "\"heap_bytes_idle\":%lld,"
                "\"create_s\":%.4f,\"create_ns_per_session\":%.1f,"
                "\"expire_nothing_due_first_ns\":%.1f,\"expire_nothing_due_avg_ns\":%.2f,"
                "\"expire_all_die_s\":%.4f,\"expire_die_ns_per_session\":%.1f,"
                "\"after_gone_rss_kib\":%ld,\"after_gone_heap_bytes\":%lld,"
                "\"after_gone_trim_rss_kib\":%ld,"
                "\"held_create_s\":%.4f,\"held_poll_s\":%.4f,\"held_poll_ns_per_session\":%.1f,"
                "\"held_heap_bytes_per_session\":%.1f,\"held_extra_heap_bytes_per_session\":%.1f,"
                "\"held_extra_rss_bytes_per_session\":%.1f,\"held_rss_kib\":%ld,"
                "\"expire_all_wait_s\":%.4f,\"wait_answers\":%zu}\n",
                n, sizeof(session), sizeof(timer_node), session_fsm::storage_size, armed,
                creation_answer, token_ns, idle_heap, idle_rss, m0.rss_kib, m1.rss_kib, m0.heap,
                m1.heap, secs(t0, t1), create_ns, check_one_ns, check_avg_ns, expire_s,
                expire_s * 1e9 / dn, m2.rss_kib, m2.heap, m2t.rss_kib, secs(h0, h1), secs(h2, h3),
                poll_ns, held_heap_total, held_heap_delta, held_rss_delta, p3.rss_kib,
                wait_expire_s, wait_answers);

    std::printf("\nidle sessions, N = %zu (engine_config defaults, manual clock; times are "
                "process CPU time)\n",
                n);
    std::printf("  %-52s %12zu B\n", "sizeof(megaphone::session)", sizeof(session));
    std::printf("  %-52s %12zu B\n", "sizeof(timer_node)", sizeof(timer_node));
    std::printf("  %-52s %12.1f B\n", "idle: malloc'd bytes per session", idle_heap);
    std::printf("  %-52s %12.1f B\n", "idle: VmRSS bytes per session", idle_rss);
    std::printf("  %-52s %9ld KiB -> %ld KiB\n", "VmRSS before -> with N idle", m0.rss_kib,
                m1.rss_kib);
    std::printf("  %-52s %12.3f s  (%.0f ns/session)\n", "create N (sid, session, die timer)",
                secs(t0, t1), create_ns);
    std::printf("  %-52s %12.0f ns\n", "  of which: sid = random_token(16) (getrandom)", token_ns);
    std::printf("  %-52s %12zu B\n", "creation answer body (cached per session)", creation_answer);
    std::printf("  %-52s %12.1f ns (first), %.2f ns avg of %d\n", "expire_timers(), nothing due",
                check_one_ns, check_avg_ns, checks);
    std::printf("  %-52s %12.3f s  (%.0f ns/session)\n",
                "advance 46 s, expire N die timers (close+reap)", expire_s, expire_s * 1e9 / dn);
    std::printf("  %-52s %9ld KiB, heap %lld B; after malloc_trim %ld KiB\n",
                "after all gone: VmRSS", m2.rss_kib, m2.heap, m2t.rss_kib);
    std::printf("  %-52s %12.3f s  (%.0f ns/session)\n", "held: N polls (wait timer armed)",
                secs(h2, h3), poll_ns);
    std::printf("  %-52s %12.1f B\n", "held: malloc'd bytes per held session (total)",
                held_heap_total);
    std::printf("  %-52s %12.1f B\n", "held: extra malloc'd bytes of the held poll",
                held_heap_delta);
    std::printf("  %-52s %12.1f B\n", "held: extra VmRSS bytes of the held poll", held_rss_delta);
    std::printf("  %-52s %12.3f s  (%zu empty answers)\n", "advance 61 s, expire N wait timers",
                wait_expire_s, wait_answers);
    return 0;
}
