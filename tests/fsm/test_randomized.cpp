// Random event sequences against the session machine, with the invariants of
// fsm/session_machine.hpp checked after every step: packets delivered exactly once and in push
// order (or still queued, or handed back at close; a packet written on a stream counts as
// delivered once the client has it, and a rewind hands back a random tail of what the stream
// wrote since the last one, which must then be delivered again, in its place), at most `hold`
// requests held, the die timer armed exactly while nothing is held and the session is open, a wait
// timer armed exactly for each held request, every request answered at most once and answered
// unless held or forgotten, and the state agreeing with what is held and queued. Every sequence has
// its own fixed seed, printed on failure, so a failure reproduces; MEGAPHONE_FSM_SEED=<seed> runs
// that sequence alone.
#include "recording_effects.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

using namespace megaphone;
using namespace megaphone::test;

namespace {

constexpr std::uint32_t first_seed = 20240601;
constexpr int sequences = 20000;
constexpr int max_steps = 80;

/// What the test knows independently of the machine.
struct model {
    session_params params;
    std::vector<std::string> accepted; // packets pushed while open, in push order
    std::vector<request_id> arrived;   // requests delivered while open
    std::set<request_id> forgotten;    // held requests whose connection closed
    request_id next_id = 1000;
    int next_packet = 0;
    bool in_flight = false;   // the attached stream is writing (a stream_written will come)
    std::string stream_error; // a write on the stream while one was in flight
    // What the client has, in order: long-poll answers' packets, and stream packets it has
    // for sure (a later long-poll answer or a rewind settles what the stream delivered).
    std::vector<std::string> received;
    std::vector<std::string> on_stream; // written on streams since the last settlement
    bool rewound = false;               // a rewind happened
};

/// The first broken invariant, or "".
std::string check_invariants(const session_fsm& fsm, const recording_effects& fx, const model& m) {
    std::ostringstream why;
    const fsm_state state = fsm.state();
    const std::set<request_id> held(fsm.held().begin(), fsm.held().end());
    const bool is_closed = state == fsm_state::closed;

    // Packets: received ++ on the stream ++ (queued | handed back) == accepted, each exactly
    // once, in order.
    std::vector<std::string> accounted = m.received;
    accounted.insert(accounted.end(), m.on_stream.begin(), m.on_stream.end());
    for (const packet& p : fsm.queued())
        accounted.emplace_back(p.view());
    if (fx.closed)
        for (const packet& p : fx.closed->undelivered)
            accounted.emplace_back(p.view());
    if (accounted != m.accepted)
        why << "packets: " << accounted.size() << " accounted for (delivered, queued, handed "
            << "back) do not match the " << m.accepted.size() << " pushed, in order\n";
    for (const auto& r : fx.responses)
        if (r.kind == answer_kind::closing && !r.packets.empty())
            why << "closing answer to " << r.id << " carries packets\n";

    // Held requests.
    const std::size_t may_hold = m.params.polling ? 0 : m.params.hold;
    if (held.size() > may_hold)
        why << held.size() << " held, hold is " << may_hold << '\n';
    if (held.size() != fsm.held().size() || !std::is_sorted(fsm.held().begin(), fsm.held().end()))
        why << "held ids not unique and in id order\n";

    // Timers: the die timer runs exactly while no sink (held request, stream) is attached.
    const bool streaming = state == fsm_state::streaming || state == fsm_state::writing;
    if (fx.die_armed != (held.empty() && !streaming && !is_closed))
        why << "die timer " << (fx.die_armed ? "armed" : "not armed") << " in " << to_string(state)
            << " with " << held.size() << " held\n";
    if (streaming != fsm.streaming())
        why << "streaming() disagrees with the state\n";
    if (!m.stream_error.empty())
        why << m.stream_error << '\n';
    if ((state == fsm_state::writing) != m.in_flight)
        why << (m.in_flight ? "a stream write in flight in " : "no stream write in flight in ")
            << to_string(state) << '\n';
    if (fx.armed_wait != held)
        why << "wait timers armed for " << fx.armed_wait.size() << " ids, " << held.size()
            << " held\n";
    if (fx.double_wait_arms)
        why << "a wait timer was armed twice\n";

    // Requests: answered at most once; otherwise held or forgotten.
    for (const auto& [id, count] : fx.answer_count) {
        if (id == stream_sink_id)
            continue; // written to many times (one write at a time: checked above)
        if (count > 1)
            why << "request " << id << " answered " << count << " times\n";
        if (std::find(m.arrived.begin(), m.arrived.end(), id) == m.arrived.end())
            why << "request " << id << " answered but never arrived while open\n";
    }
    for (request_id id : m.arrived) {
        const int fates =
            fx.times_answered(id) + (held.count(id) ? 1 : 0) + (m.forgotten.count(id) ? 1 : 0);
        if (fates != 1)
            why << "request " << id << ": answered " << fx.times_answered(id) << ", held "
                << held.count(id) << ", forgotten " << m.forgotten.count(id) << '\n';
    }

    // State against contents.
    const bool queue_empty = fsm.queued().empty();
    switch (state) {
    case fsm_state::waiting:
        if (!held.empty() || !queue_empty)
            why << "waiting with something held or queued\n";
        break;
    case fsm_state::have_request:
        if (held.empty() || !queue_empty)
            why << "have_request with nothing held or something queued\n";
        break;
    case fsm_state::have_packet:
        if (!held.empty() || queue_empty)
            why << "have_packet with something held or nothing queued\n";
        break;
    case fsm_state::closed:
        if (!held.empty() || !queue_empty)
            why << "closed with something held or queued\n";
        break;
    case fsm_state::streaming:
        if (!held.empty() || !queue_empty)
            why << "streaming with something held or queued\n";
        break;
    case fsm_state::writing:
        if (!held.empty())
            why << "writing with something held\n";
        break;
    }
    // A rewind hands back at most a window (max_queue, kept already) in front of the queue: it
    // may take the queue past max_queue, never past twice it (the next push then overflows).
    const std::size_t may_queue = m.params.max_queue * (m.rewound ? 2u : 1u);
    if (fsm.queued().size() > may_queue)
        why << fsm.queued().size() << " queued, max_queue is " << m.params.max_queue << '\n';
    if (fx.session_closed_calls != (is_closed ? 1 : 0))
        why << "session_closed called " << fx.session_closed_calls << " times in "
            << to_string(state) << '\n';
    return why.str();
}

/// A random event for the machine's current situation.
any_event random_event(std::mt19937& rng, const session_fsm& fsm, model& m) {
    auto chance = [&rng](int percent) {
        return std::uniform_int_distribution<int>(0, 99)(rng) < percent;
    };
    // An id that is held now, or (stale) one answered before or never seen.
    auto some_id = [&]() -> request_id {
        const auto held = fsm.held();
        if (!held.empty() && chance(60))
            return held[std::uniform_int_distribution<std::size_t>(0, held.size() - 1)(rng)];
        if (!m.arrived.empty() && chance(80))
            return m
                .arrived[std::uniform_int_distribution<std::size_t>(0, m.arrived.size() - 1)(rng)];
        return m.next_id + 500; // never used
    };
    const int roll = std::uniform_int_distribution<int>(0, 99)(rng);
    if (roll < 26)
        return request_arrived{m.next_id++, chance(15), chance(15)};
    if (roll < 54)
        return push("p" + std::to_string(m.next_packet++));
    if (roll < 64)
        return wait_exp(some_id());
    if (roll < 74)
        return conn_closed(chance(40) ? stream_sink_id : some_id());
    if (roll < 78)
        return open_stream();
    if (roll < 90) {
        // The session passes on only the attached stream's completions; elsewhere a stale one.
        if (fsm.state() != fsm_state::writing || m.in_flight)
            return written();
        return push("p" + std::to_string(m.next_packet++));
    }
    if (roll < 95)
        return die();
    if (roll < 97) {
        // The client gives its stream up, having received a random part of what streams wrote
        // since the last settlement; the rest is handed back (the session's sink would).
        // (The sink's window keeps at most max_queue: a position older than that ends the
        // session instead, app/stream_sink.hpp.)
        const std::size_t size = m.on_stream.size();
        const std::size_t got = std::uniform_int_distribution<std::size_t>(
            size > m.params.max_queue ? size - m.params.max_queue : 0, size)(rng);
        stream_rewound e;
        for (std::size_t i = got; i < m.on_stream.size(); ++i)
            e.packets.push_back(packet::from(m.on_stream[i]));
        return e;
    }
    constexpr std::array reasons = {close_reason::client_terminate, close_reason::server_terminate,
                                    close_reason::item_not_found,   close_reason::policy_violation,
                                    close_reason::bad_request,      close_reason::system_shutdown};
    return terminate(
        reasons[std::uniform_int_distribution<std::size_t>(0, reasons.size() - 1)(rng)]);
}

} // namespace

TEST_CASE("session machine: random event sequences keep every invariant", "[fsm][random]") {
    long steps = 0;
    // How often each state x event pair was exercised, so the run shows it reached them all.
    std::array<std::array<long, std::variant_size_v<any_event>>, 6> seen{};
    int overflows = 0;

    const char* only = std::getenv("MEGAPHONE_FSM_SEED");
    const int runs = only ? 1 : sequences;
    for (int n = 0; n < runs; ++n) {
        const std::uint32_t seed = only
                                       ? static_cast<std::uint32_t>(std::strtoul(only, nullptr, 10))
                                       : first_seed + static_cast<std::uint32_t>(n);
        INFO("seed " << seed << " (rerun alone with MEGAPHONE_FSM_SEED=" << seed << ")");
        std::mt19937 rng(seed);

        model m;
        m.params.hold = static_cast<std::uint16_t>(std::uniform_int_distribution<int>(0, 3)(rng));
        m.params.max_queue =
            static_cast<std::uint32_t>(std::uniform_int_distribution<int>(1, 5)(rng));
        m.params.polling = std::uniform_int_distribution<int>(0, 9)(rng) == 0;
        const int length = std::uniform_int_distribution<int>(1, max_steps)(rng);

        recording_effects fx;
        session_fsm fsm(fx, m.params);
        fsm.start();
        std::string history = "hold=" + std::to_string(m.params.hold) +
                              " max_queue=" + std::to_string(m.params.max_queue) +
                              (m.params.polling ? " polling" : "") + "; start";

        for (int step = 0; step < length; ++step) {
            const any_event e = random_event(rng, fsm, m);
            const fsm_state before = fsm.state();
            ++seen[static_cast<std::size_t>(before)][e.index()];
            history += "; " + describe(e);

            if (before != fsm_state::closed) {
                if (const auto* p = std::get_if<packet_pushed>(&e))
                    m.accepted.emplace_back(p->data.view());
                if (const auto* r = std::get_if<request_arrived>(&e))
                    m.arrived.push_back(r->id);
                if (const auto* c = std::get_if<connection_closed>(&e)) {
                    const auto held = fsm.held();
                    if (std::find(held.begin(), held.end(), c->id) != held.end())
                        m.forgotten.insert(c->id);
                }
            }

            // One write at a time on the stream: a stream write now needs none in flight (a new
            // stream starts with none: the old one's write is not its own).
            const bool open_now = before != fsm_state::closed;
            if (open_now && std::holds_alternative<stream_written>(e))
                m.in_flight = false;
            if (open_now && std::holds_alternative<stream_opened>(e))
                m.in_flight = false;
            if (const auto* c = std::get_if<connection_closed>(&e);
                open_now && c && c->id == stream_sink_id)
                m.in_flight = false;
            if (const auto* r = std::get_if<stream_rewound>(&e); open_now && r) {
                // The client has what came before the tail handed back; the stream is let go.
                m.received.insert(m.received.end(), m.on_stream.begin(),
                                  m.on_stream.end() -
                                      static_cast<std::ptrdiff_t>(r->packets.size()));
                m.on_stream.clear();
                m.in_flight = false;
                m.rewound = true;
            }
            const std::size_t responses_before = fx.responses.size();
            deliver(fsm, fx, e);
            ++steps;
            for (std::size_t r = responses_before; r < fx.responses.size(); ++r) {
                const auto& answer = fx.responses[r];
                if (answer.id != stream_sink_id) {
                    // A long-poll answer with packets: the client read the streams before it.
                    if (!answer.packets.empty()) {
                        m.received.insert(m.received.end(), m.on_stream.begin(), m.on_stream.end());
                        m.on_stream.clear();
                    }
                    for (const packet& p : answer.packets)
                        m.received.emplace_back(p.view());
                    continue;
                }
                if (answer.kind != answer_kind::data)
                    continue;
                for (const packet& p : answer.packets)
                    m.on_stream.emplace_back(p.view());
                if (m.in_flight)
                    m.stream_error = "a stream write while another was in flight";
                m.in_flight = true;
            }
            if (fsm.state() == fsm_state::closed)
                m.in_flight = false;
            if (fx.closed && fx.closed->why == close_reason::queue_overflow &&
                before != fsm_state::closed)
                ++overflows;

            const std::string broken = check_invariants(fsm, fx, m);
            if (!broken.empty()) {
                INFO("after step " << step << ": " << history << " -> " << to_string(fsm.state()));
                FAIL(broken);
            }
        }
    }

    if (only) {
        WARN("randomized: seed " << only << " alone, " << steps << " steps");
        return;
    }
    CHECK(steps > 10 * sequences);
    for (std::size_t s = 0; s < seen.size(); ++s)
        for (std::size_t e = 0; e < seen[s].size(); ++e) {
            INFO(to_string(static_cast<fsm_state>(s)) << " x event #" << e);
            CHECK(seen[s][e] > 0);
        }
    CHECK(overflows > 0);
    WARN("randomized: " << sequences << " sequences, " << steps << " steps (seeds " << first_seed
                        << " .. " << first_seed + sequences - 1 << "), " << overflows
                        << " queue overflows");
}
