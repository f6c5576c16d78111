#include "app/metrics.hpp"

#include "fsm/session_fsm.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace megaphone {

void metrics_snapshot::add(const metrics_block& b) noexcept {
    for (std::size_t f = 0; f < fsm_state_count; ++f) {
        sessions[f] += b.in_state[f].get();
        for (std::size_t e = 0; e < events; ++e)
            for (std::size_t t = 0; t < fsm_state_count; ++t)
                transitions[f][e][t] += b.transitions[f][e][t].get();
    }
    held += b.held.get();
    streams += b.streams.get();
    websockets += b.websockets.get();
    for (std::size_t t = 0; t < transports; ++t) {
        created[t] += b.sessions_created[t].get();
        requests[t] += b.requests[t].get();
        for (std::size_t c = 0; c < counted_statuses.size(); ++c)
            responses[t][c] += b.responses[t][c].get();
    }
    for (std::size_t r = 0; r < close_reason_count; ++r)
        closed[r] += b.sessions_closed[r].get();
    messages_in += b.messages_in.get();
    messages_out += b.messages_out.get();
    bytes_in += b.bytes_in.get();
    connections_moved += b.connections_moved.get();
    bytes_out += b.bytes_out.get();
    for (std::size_t r = 0; r < static_cast<std::size_t>(refusal::count_); ++r)
        refusals[r] += b.refusals[r].get();
    for (std::size_t i = 0; i < b.push_latency.buckets.size(); ++i)
        latency_buckets[i] += b.push_latency.buckets[i].get();
    latency_sum_ns += b.push_latency.sum_ns.get();
}

std::int64_t metrics_snapshot::live_sessions() const noexcept {
    std::int64_t n = 0;
    for (std::size_t f = 0; f < fsm_state_count; ++f)
        if (f != static_cast<std::size_t>(fsm_state::closed))
            n += std::max<std::int64_t>(0, sessions[f]);
    return n;
}

std::uint64_t metrics_snapshot::transitions_total() const noexcept {
    std::uint64_t n = 0;
    for (const auto& f : transitions)
        for (const auto& e : f)
            for (std::uint64_t c : e)
                n += c;
    return n;
}

namespace {

std::size_t state_index(std::string_view name) {
    for (std::size_t i = 0; i < fsm_state_count; ++i)
        if (to_string(static_cast<fsm_state>(i)) == name)
            return i;
    return fsm_state_count;
}

/// The (from, event, to) triples of the transition table: always exposed, even at 0.
const std::vector<std::array<std::size_t, 3>>& table_triples() {
    static const auto triples = [] {
        std::vector<std::array<std::size_t, 3>> out;
        for (const table_row& row : transition_table_rows()) {
            const std::size_t from = state_index(row.start);
            const std::size_t to = row.next == "(stay)" ? from : state_index(row.next);
            const auto e = std::find(fsm_event_names.begin(), fsm_event_names.end(), row.event);
            if (from == fsm_state_count || to == fsm_state_count || e == fsm_event_names.end())
                continue;
            const std::array<std::size_t, 3> t{
                from, static_cast<std::size_t>(e - fsm_event_names.begin()), to};
            if (std::find(out.begin(), out.end(), t) == out.end())
                out.push_back(t);
        }
        return out;
    }();
    return triples;
}

class writer {
public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    /// `labels` is the inside of the braces, already escaped ("" for none).
    template <class Number>
    void sample(std::string_view name, std::string_view labels, Number value) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        out_ += ' ';
        if constexpr (std::is_floating_point_v<Number>) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.9g", value);
            out_ += buf;
        } else {
            out_ += std::to_string(value);
        }
        out_ += '\n';
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

std::string label(std::string_view name, std::string_view value) {
    // Label values here are identifiers and numbers: nothing to escape.
    std::string s{name};
    s += "=\"";
    s += value;
    s += '"';
    return s;
}

std::string bound_text(double b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", b);
    return buf;
}

} // namespace

std::string prometheus_text(const metrics_snapshot& s) {
    writer w;
    constexpr auto T = metrics_snapshot::transports;

    w.family("megaphone_sessions", "gauge", "Live sessions by session machine state.");
    for (std::size_t f = 0; f < fsm_state_count; ++f)
        if (f != static_cast<std::size_t>(fsm_state::closed))
            w.sample("megaphone_sessions", label("state", to_string(static_cast<fsm_state>(f))),
                     std::max<std::int64_t>(0, s.sessions[f]));

    w.family("megaphone_transitions_total", "counter",
             "Events processed by session machines, by state before, event and state after.");
    std::vector<std::array<std::size_t, 3>> shown = table_triples();
    for (std::size_t f = 0; f < fsm_state_count; ++f)
        for (std::size_t e = 0; e < metrics_snapshot::events; ++e)
            for (std::size_t t = 0; t < fsm_state_count; ++t)
                if (s.transitions[f][e][t] != 0 &&
                    std::find(shown.begin(), shown.end(), std::array{f, e, t}) == shown.end())
                    shown.push_back({f, e, t});
    for (const auto& [f, e, t] : shown)
        w.sample("megaphone_transitions_total",
                 label("from", to_string(static_cast<fsm_state>(f))) + "," +
                     label("event", fsm_event_names[e]) + "," +
                     label("to", to_string(static_cast<fsm_state>(t))),
                 s.transitions[f][e][t]);

    w.family("megaphone_held_connections", "gauge",
             "Requests held by sessions (long-polls waiting for data), one connection each.");
    w.sample("megaphone_held_connections", "", std::max<std::int64_t>(0, s.held));
    w.family("megaphone_streams", "gauge",
             "Streaming sinks (Server-Sent Events, WebSocket) attached to sessions, one connection "
             "each.");
    w.sample("megaphone_streams", "", std::max<std::int64_t>(0, s.streams));
    w.family("megaphone_websockets", "gauge",
             "WebSocket connections open (upgraded), whether their session's stream is attached "
             "or not; each attached one also counts in megaphone_streams.");
    w.sample("megaphone_websockets", "", std::max<std::int64_t>(0, s.websockets));

    w.family("megaphone_sessions_created_total", "counter", "Sessions created, by transport.");
    for (std::size_t t = 0; t < T; ++t)
        if (static_cast<transport_kind>(t) != transport_kind::other)
            w.sample("megaphone_sessions_created_total",
                     label("transport", to_string(static_cast<transport_kind>(t))), s.created[t]);

    w.family("megaphone_sessions_closed_total", "counter", "Sessions ended, by reason.");
    for (std::size_t r = 0; r < close_reason_count; ++r)
        w.sample("megaphone_sessions_closed_total",
                 label("reason", to_string(static_cast<close_reason>(r))), s.closed[r]);

    w.family("megaphone_requests_total", "counter",
             "HTTP requests, by transport (json, bosh; other: static files, routes, metrics).");
    for (std::size_t t = 0; t < T; ++t)
        w.sample("megaphone_requests_total",
                 label("transport", to_string(static_cast<transport_kind>(t))), s.requests[t]);

    w.family("megaphone_responses_total", "counter",
             "HTTP answers written, by transport (the answer's content type) and status code.");
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t c = 0; c < counted_statuses.size(); ++c)
            if (s.responses[t][c] != 0)
                w.sample("megaphone_responses_total",
                         label("transport", to_string(static_cast<transport_kind>(t))) + "," +
                             label("code", counted_statuses[c] ? std::to_string(counted_statuses[c])
                                                               : std::string("other")),
                         s.responses[t][c]);

    w.family("megaphone_messages_total", "counter",
             "Messages: in, from clients to applications; out, written in answers to clients.");
    w.sample("megaphone_messages_total", label("direction", "in"), s.messages_in);
    w.sample("megaphone_messages_total", label("direction", "out"), s.messages_out);

    w.family("megaphone_bytes_total", "counter", "HTTP bytes read (in) and written (out).");
    w.sample("megaphone_bytes_total", label("direction", "in"), s.bytes_in);
    w.sample("megaphone_bytes_total", label("direction", "out"), s.bytes_out);

    w.family("megaphone_connections_moved_total", "counter",
             "Connections moved to the thread of the session their request was for.");
    w.sample("megaphone_connections_moved_total", "", s.connections_moved);

    w.family("megaphone_refusals_total", "counter",
             "Requests refused or sessions ended by a limit, by limit.");
    for (std::size_t r = 0; r < static_cast<std::size_t>(refusal::count_); ++r)
        w.sample("megaphone_refusals_total", label("limit", to_string(static_cast<refusal>(r))),
                 s.refusals[r]);

    w.family("megaphone_push_latency_seconds", "histogram",
             "From a pushed message's creation (push, publish) to the end of the write of the "
             "answer carrying it; one observation per answer, from its oldest message.");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < latency_histogram::bounds.size(); ++i) {
        cumulative += s.latency_buckets[i];
        w.sample("megaphone_push_latency_seconds_bucket",
                 label("le", bound_text(latency_histogram::bounds[i])), cumulative);
    }
    cumulative += s.latency_buckets[latency_histogram::bounds.size()];
    w.sample("megaphone_push_latency_seconds_bucket", label("le", "+Inf"), cumulative);
    w.sample("megaphone_push_latency_seconds_sum", "", static_cast<double>(s.latency_sum_ns) / 1e9);
    w.sample("megaphone_push_latency_seconds_count", "", cumulative);
    return w.take();
}

} // namespace megaphone
