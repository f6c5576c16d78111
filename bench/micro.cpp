// megaphone-micro: Google Benchmark microbenchmarks of the session layer's hot paths: one state
// machine transition pair, the JSON codec (decode a request, encode an answer), a request held
// then answered through an engine, and the timer queue (arm+cancel, arm+expire) with 0 or 1M
// timers armed.
#include "app/application.hpp"
#include "app/engine.hpp"
#include "app/session.hpp"
#include "fsm/clock.hpp"
#include "fsm/session_fsm.hpp"
#include "fsm/timer_queue.hpp"
#include "transport/exchange.hpp"
#include "transport/json_codec.hpp"

#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace megaphone;

struct noop_effects final : session_effects {
    void respond(request_id, std::vector<packet> packets, answer_kind) override {
        benchmark::DoNotOptimize(packets.data());
    }
    void arm_wait_timer(request_id) override {}
    void cancel_wait_timer(request_id) override {}
    void arm_die_timer() override {}
    void cancel_die_timer() override {}
    void session_closed(close_reason, std::vector<packet>) override {}
    void unexpected_event(fsm_state, std::string_view) override {
        throw std::logic_error("unexpected event");
    }
};

// request_arrived (waiting -> have_request), packet_pushed (have_request -> waiting).
void BM_fsm_transition(benchmark::State& state) {
    noop_effects fx;
    session_fsm fsm{fx, session_params{}};
    fsm.start();
    const packet p = packet::from(R"({"channel":"news","data":1})");
    request_id id = 1000;
    for (auto _ : state) {
        fsm.process(request_arrived{id++});
        fsm.process(packet_pushed{p});
    }
    if (fsm.state() != fsm_state::waiting)
        state.SkipWithError("not back in waiting");
    state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_fsm_transition);

void BM_json_decode(benchmark::State& state) {
    const std::string body = R"({"sid":"n0-0AbCdEfGhIjKlMnOpQrStUv","rid":1001,"ack":1000,)"
                             R"("messages":[{"publish":"news","data":{"text":"hello world"}}]})";
    for (auto _ : state) {
        auto r = decode_json_request(body);
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(BM_json_decode);

void BM_json_encode(benchmark::State& state) {
    std::vector<packet> packets;
    for (int i = 0; i < state.range(0); ++i)
        packets.push_back(packet::from(R"({"channel":"news","data":{"text":"hello world","n":)" +
                                       std::to_string(i) + "}}"));
    const json_codec& codec = json_codec::instance();
    for (auto _ : state) {
        packet out = codec.data(1001, packets);
        benchmark::DoNotOptimize(out);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_json_encode)->Arg(1)->Arg(10);

struct counting_target final : exchange_target {
    void deliver(std::uint32_t, response r) override {
        ++answers;
        benchmark::DoNotOptimize(r.body);
    }
    std::size_t answers = 0;
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

// Hub-like: {"subscribe": ch} subscribes the session (what the hub does with it).
struct hub_like final : application {
    void on_message(session& s, const message& m) override {
        if (m.json().contains("subscribe"))
            s.subscribe(m.json().at("subscribe").get<std::string>());
    }
};

// A poll held by the session, then answered by a push (arg 0: engine.push to the sid) or by a
// publish to a channel the session is subscribed to (arg 1: engine.publish), per iteration.
void BM_request_path(benchmark::State& state) {
    engine_config config;
    manual_clock clock;
    null_broker brk;
    hub_like app;
    auto target = std::make_shared<counting_target>();
    const json_codec& codec = json_codec::instance();
    engine eng{config, clock, brk, 0};

    client_request creation;
    creation.rid = 1000;
    creation.messages.emplace_back(nlohmann::json{{"subscribe", "news"}});
    eng.create(std::move(creation), app, codec, exchange{target, 0});
    std::string sid;
    eng.for_each([&](const session& s) { sid = std::string(s.id()); });
    const packet p = packet::from(R"({"channel":"news","data":{"text":"hello world"}})");
    const bool via_publish = state.range(0) == 1;

    request_id rid = 1001;
    std::uint32_t seq = 1;
    const std::size_t before = target->answers;
    for (auto _ : state) {
        client_request req;
        req.sid = sid;
        req.rid = rid++;
        eng.request(std::move(req), codec, exchange{target, seq++});
        if (via_publish)
            eng.publish("news", p);
        else
            eng.push(sid, p);
    }
    if (target->answers - before != static_cast<std::size_t>(state.iterations()))
        state.SkipWithError("a poll was not answered by the push");
    state.SetLabel(via_publish ? "publish" : "push");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_request_path)->Arg(0)->Arg(1);

// A queue with `n` timers armed at spread-out deadlines (1 ms apart, up to ~17 min ahead).
struct filled_queue {
    explicit filled_queue(std::size_t n) {
        nodes.reserve(n);
        std::uint64_t x = 88172645463325252ull; // xorshift: deadlines in random arrival order
        for (std::size_t i = 0; i < n; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            nodes.push_back(std::make_unique<timer_node>(&noop, nullptr));
            q.arm(*nodes.back(), base + std::chrono::milliseconds(1 + x % 1'000'000));
        }
    }
    static void noop(void*) {}
    const time_point base = manual_clock{}.now();
    timer_queue q;
    std::vector<std::unique_ptr<timer_node>> nodes;
};

// Built once per size and shared by the runs of a benchmark (Google Benchmark calls a benchmark
// several times while it sizes the iteration count; filling 1M timers each time took longer than
// the measurement). Each benchmark leaves the queue as it found it.
filled_queue& shared_queue(std::size_t n) {
    static std::map<std::size_t, std::unique_ptr<filled_queue>> queues;
    auto& q = queues[n];
    if (!q)
        q = std::make_unique<filled_queue>(n);
    return *q;
}

void BM_timer_arm_cancel(benchmark::State& state) {
    filled_queue& fq = shared_queue(static_cast<std::size_t>(state.range(0)));
    timer_node t{&filled_queue::noop, nullptr};
    std::uint64_t k = 0;
    for (auto _ : state) {
        fq.q.arm(t, fq.base + std::chrono::milliseconds(1 + (k++ * 7919) % 1'000'000));
        fq.q.cancel(t);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_timer_arm_cancel)->Arg(0)->Arg(1'000'000);

// Arm one timer due now, expire(now): it fires, the n others stay armed.
void BM_timer_arm_expire(benchmark::State& state) {
    filled_queue& fq = shared_queue(static_cast<std::size_t>(state.range(0)));
    std::size_t fired = 0;
    timer_node t{[](void* c) { ++*static_cast<std::size_t*>(c); }, &fired};
    for (auto _ : state) {
        fq.q.arm(t, fq.base);
        fq.q.expire(fq.base);
    }
    if (fired != static_cast<std::size_t>(state.iterations()))
        state.SkipWithError("timer did not fire");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_timer_arm_expire)->Arg(0)->Arg(1'000'000);

} // namespace

BENCHMARK_MAIN();
