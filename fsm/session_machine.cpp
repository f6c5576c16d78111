// The one translation unit that instantiates the MSM back-end, and the facade over it.
#include "fsm/session_machine.hpp"

#include "fsm/metrics.hpp"

#include <boost/mpl/for_each.hpp>

#include <array>
#include <atomic>
#include <new>
#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace megaphone {

namespace {

using detail::session_machine;
using stt = session_machine::stt;

template <class State>
constexpr int state_id = boost::msm::back::get_state_id<stt, State>::value;

// The facade reports states by fsm_state; the MSM ids must line up with it.
static_assert(state_id<detail::waiting> == static_cast<int>(fsm_state::waiting));
static_assert(state_id<detail::have_request> == static_cast<int>(fsm_state::have_request));
static_assert(state_id<detail::have_packet> == static_cast<int>(fsm_state::have_packet));
static_assert(state_id<detail::closed> == static_cast<int>(fsm_state::closed));
static_assert(state_id<detail::streaming> == static_cast<int>(fsm_state::streaming));
static_assert(state_id<detail::writing> == static_cast<int>(fsm_state::writing));

static_assert(sizeof(session_machine) <= session_fsm::storage_size,
              "grow session_fsm::storage_size (and mind the per-session memory budget)");
static_assert(alignof(session_machine) <= 8);

// Each event's row in metrics_block::transitions; names must match fsm_event_names.
template <class Event>
constexpr std::size_t fsm_event_index = 0;
template <>
constexpr std::size_t fsm_event_index<packet_pushed> = 1;
template <>
constexpr std::size_t fsm_event_index<wait_expired> = 2;
template <>
constexpr std::size_t fsm_event_index<die_expired> = 3;
template <>
constexpr std::size_t fsm_event_index<connection_closed> = 4;
template <>
constexpr std::size_t fsm_event_index<terminate_session> = 5;
template <>
constexpr std::size_t fsm_event_index<stream_opened> = 6;
template <>
constexpr std::size_t fsm_event_index<stream_written> = 7;
template <>
constexpr std::size_t fsm_event_index<stream_rewound> = 8;
template <class Event>
constexpr bool event_named_right = fsm_event_names[fsm_event_index<Event>] == Event::name;
static_assert(event_named_right<request_arrived> && event_named_right<packet_pushed> &&
              event_named_right<wait_expired> && event_named_right<die_expired> &&
              event_named_right<connection_closed> && event_named_right<terminate_session> &&
              event_named_right<stream_opened> && event_named_right<stream_written> &&
              event_named_right<stream_rewound>);

session_machine& machine(std::byte* storage) {
    return *std::launder(reinterpret_cast<session_machine*>(storage));
}
const session_machine& machine(const std::byte* storage) {
    return *std::launder(reinterpret_cast<const session_machine*>(storage));
}

} // namespace

std::string_view to_string(fsm_state s) noexcept {
    switch (s) {
    case fsm_state::waiting:
        return "waiting";
    case fsm_state::have_request:
        return "have_request";
    case fsm_state::have_packet:
        return "have_packet";
    case fsm_state::closed:
        return "closed";
    case fsm_state::streaming:
        return "streaming";
    case fsm_state::writing:
        return "writing";
    }
    return "?";
}

std::string_view to_string(refusal r) noexcept {
    switch (r) {
    case refusal::body_too_large:
        return "body_too_large";
    case refusal::header_too_large:
        return "header_too_large";
    case refusal::too_many_sessions:
        return "too_many_sessions";
    case refusal::queue_overflow:
        return "queue_overflow";
    case refusal::rid_out_of_window:
        return "rid_out_of_window";
    case refusal::too_many_requests:
        return "too_many_requests";
    case refusal::polling_too_fast:
        return "polling_too_fast";
    case refusal::bad_key:
        return "bad_key";
    case refusal::creation_rate:
        return "creation_rate";
    case refusal::request_timeout:
        return "request_timeout";
    case refusal::idle_timeout:
        return "idle_timeout";
    case refusal::connections:
        return "connections";
    case refusal::accept_failed:
        return "accept_failed";
    case refusal::unauthorized:
        return "unauthorized";
    case refusal::publish_rate:
        return "publish_rate";
    case refusal::forbidden:
        return "forbidden";
    case refusal::auth_hook_failed:
        return "auth_hook_failed";
    case refusal::count_:
        break;
    }
    return "?";
}

namespace {
std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(refusal::count_)>
    process_refusals{};
} // namespace

void count_refusal(refusal r) noexcept {
    if (metrics_block* m = current_metrics)
        m->refusals[static_cast<std::size_t>(r)].add();
    process_refusals[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t refusals(refusal r) noexcept {
    return process_refusals[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
}

std::string_view to_string(transport_kind t) noexcept {
    switch (t) {
    case transport_kind::json:
        return "json";
    case transport_kind::bosh:
        return "bosh";
    case transport_kind::other:
    case transport_kind::count_:
        break;
    }
    return "other";
}

std::string_view to_string(close_reason r) noexcept {
    switch (r) {
    case close_reason::client_terminate:
        return "client_terminate";
    case close_reason::server_terminate:
        return "server_terminate";
    case close_reason::inactivity:
        return "inactivity";
    case close_reason::queue_overflow:
        return "queue_overflow";
    case close_reason::item_not_found:
        return "item_not_found";
    case close_reason::policy_violation:
        return "policy_violation";
    case close_reason::bad_request:
        return "bad_request";
    case close_reason::system_shutdown:
        return "system_shutdown";
    case close_reason::internal_error:
        return "internal_error";
    case close_reason::host_unknown:
        return "host_unknown";
    case close_reason::not_authorized:
        return "not_authorized";
    }
    return "?";
}

//--------------------------------------------------------------------------------------------------
// Facade

session_fsm::session_fsm(session_effects& effects, session_params params) {
    new (storage_) session_machine(&effects, params);
}

session_fsm::~session_fsm() {
    machine(storage_).~session_machine();
}

void session_fsm::start() {
    // Entering `waiting` runs an effect (arm the die timer): the same guard as for events.
    if (busy_)
        throw std::logic_error("session_fsm: re-entrant start");
    busy_ = true;
    machine(storage_).start();
    busy_ = false;
    if (metrics_block* m = current_metrics)
        m->in_state[static_cast<std::size_t>(fsm_state::waiting)].add();
}

template <class Event>
void session_fsm::dispatch(const Event& e) {
    // Run-to-completion without a queue: an effect that calls back in is a bug of the caller.
    if (busy_)
        throw std::logic_error("session_fsm: re-entrant event " + std::string(Event::name));
    busy_ = true;
    session_machine& sm = machine(storage_);
    const auto from = static_cast<std::size_t>(sm.current_state()[0]);
    const auto held_before = sm.held_.size();
    sm.process_event(e);
    busy_ = false;
    // Counted here, seeing the state before and after: no hook in the table, no allocation.
    if (metrics_block* m = current_metrics) {
        const auto to = static_cast<std::size_t>(sm.current_state()[0]);
        m->transitions[from][fsm_event_index<Event>][to].add();
        if (from != to) {
            m->in_state[from].add(-1);
            m->in_state[to].add(1);
        }
        m->held.add(static_cast<std::int64_t>(sm.held_.size()) -
                    static_cast<std::int64_t>(held_before));
        auto streams = [](std::size_t state) {
            return state == static_cast<std::size_t>(fsm_state::streaming) ||
                   state == static_cast<std::size_t>(fsm_state::writing);
        };
        if (streams(from) != streams(to))
            m->streams.add(streams(to) ? 1 : -1);
    }
}

void session_fsm::process(const request_arrived& e) {
    dispatch(e);
}
void session_fsm::process(const packet_pushed& e) {
    dispatch(e);
}
void session_fsm::process(const wait_expired& e) {
    dispatch(e);
}
void session_fsm::process(const die_expired& e) {
    dispatch(e);
}
void session_fsm::process(const connection_closed& e) {
    dispatch(e);
}
void session_fsm::process(const terminate_session& e) {
    dispatch(e);
}
void session_fsm::process(const stream_opened& e) {
    dispatch(e);
}
void session_fsm::process(const stream_written& e) {
    dispatch(e);
}
void session_fsm::process(const stream_rewound& e) {
    dispatch(e);
}

bool session_fsm::streaming() const noexcept {
    const fsm_state s = state();
    return s == fsm_state::streaming || s == fsm_state::writing;
}

fsm_state session_fsm::state() const noexcept {
    return static_cast<fsm_state>(machine(storage_).current_state()[0]);
}

std::span<const request_id> session_fsm::held() const noexcept {
    const auto& held = machine(storage_).held_;
    return {held.data(), held.size()};
}

const std::vector<packet>& session_fsm::queued() const noexcept {
    return machine(storage_).queue_;
}

const session_params& session_fsm::params() const noexcept {
    return machine(storage_).params_;
}

//--------------------------------------------------------------------------------------------------
// The table, read back from the MSM type for the diagram

namespace {

template <class T>
constexpr std::string_view name_of() {
    if constexpr (std::is_same_v<T, boost::msm::front::none>)
        return "";
    else
        return T::name;
}

template <class RowType>
struct row_traits;

template <class S, class E, class T, class A, class G>
struct row_traits<boost::msm::front::Row<S, E, T, A, G>> {
    static table_row get() {
        // An internal row (Next `none`) stays in its state without exit or entry.
        return {std::string(name_of<S>()), std::string(name_of<E>()),
                std::is_same_v<T, boost::msm::front::none> ? std::string("(stay)")
                                                           : std::string(name_of<T>()),
                std::string(name_of<A>()), std::string(name_of<G>())};
    }
};

template <class T>
struct type_tag {};

} // namespace

std::vector<table_row> transition_table_rows() {
    std::vector<table_row> rows;
    boost::mpl::for_each<detail::session_machine_def::transition_table, type_tag<boost::mpl::_1>>(
        [&rows]<class Row>(type_tag<Row>) { rows.push_back(row_traits<Row>::get()); });
    return rows;
}

std::string transition_table_dot() {
    std::ostringstream out;
    out << "// Generated from fsm/session_machine.hpp by `megaphone-fsm-dot`; do not edit.\n"
        << "digraph session {\n"
        << "  rankdir=LR;\n"
        << "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
        << "  edge [fontname=\"Helvetica\", fontsize=10];\n"
        << "  start [shape=point];\n"
        << "  start -> waiting;\n";
    auto state_line = [&out](std::string_view name, std::string_view entry) {
        out << "  " << name << " [label=\"" << name;
        if (!entry.empty())
            out << "\\nentry / " << entry;
        out << "\"";
        if (name == "closed")
            out << ", shape=doublecircle";
        out << "];\n";
    };
    state_line(detail::waiting::name, detail::waiting::entry);
    state_line(detail::have_request::name, detail::have_request::entry);
    state_line(detail::have_packet::name, detail::have_packet::entry);
    state_line(detail::streaming::name, detail::streaming::entry);
    state_line(detail::writing::name, detail::writing::entry);
    state_line(detail::closed::name, detail::closed::entry);
    // Rows between the same two states (and of the same kind) share one edge whose label stacks
    // them: dot cannot lay out several labelled self-loops on one node legibly.
    struct edge {
        std::string from, to, label;
        bool internal;
    };
    std::vector<edge> edges;
    for (const table_row& row : transition_table_rows()) {
        // Rows that only ignore a stale event are listed in the table, not drawn.
        if (row.next == "(stay)" && row.action.empty())
            continue;
        const bool internal = row.next == "(stay)";
        const std::string& to = internal ? row.start : row.next;
        std::string label = row.event;
        if (!row.guard.empty())
            label += "\\n[" + row.guard + "]";
        if (!row.action.empty())
            label += "\\n/ " + row.action;
        auto same = [&](const edge& e) {
            return e.from == row.start && e.to == to && e.internal == internal;
        };
        if (auto it = std::find_if(edges.begin(), edges.end(), same); it != edges.end())
            it->label += "\\n\\n" + label;
        else
            edges.push_back({row.start, to, std::move(label), internal});
    }
    for (const edge& e : edges) {
        out << "  " << e.from << " -> " << e.to << " [label=\"" << e.label << "\"";
        if (e.internal)
            out << ", style=dashed";
        out << "];\n";
    }
    out << "}\n";
    return out.str();
}

} // namespace megaphone
