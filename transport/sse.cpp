#include "transport/sse.hpp"

#include "transport/protocol.hpp"
#include "transport/static_files.hpp"

#include <charconv>

namespace megaphone {

namespace {

constexpr std::uint64_t max_event_id = (std::uint64_t{1} << 53) - 1;

/// Bytes an event takes beyond its data: "id: " + 20 digits + "\n", the "data: " of each line
/// and its "\n", and the blank line that ends it.
std::size_t event_size(const packet& p) {
    std::size_t lines = 1;
    for (char c : p.view())
        if (c == '\n' || c == '\r')
            ++lines;
    return 4 + 20 + 1 + lines * 7 + p.size() + 1;
}

/// "id: N\ndata: ...\n\n": the packet's lines (a JSON text has none but inside whitespace;
/// still, any CR, LF or CRLF starts a new data line, which the client joins with "\n").
void write_event(packet::writer& w, std::uint64_t id, const packet& p) {
    w << std::string_view("id: ") << id << std::string_view("\ndata: ");
    const std::string_view data = p.view();
    for (std::size_t i = 0; i < data.size(); ++i) {
        const char c = data[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n')
                ++i;
            w << std::string_view("\ndata: ");
        } else {
            w << c;
        }
    }
    w << std::string_view("\n\n");
}

packet frame(std::string_view prelude, std::uint64_t first_id, std::span<const packet> packets) {
    std::size_t size = prelude.size();
    for (const packet& p : packets)
        size += event_size(p);
    return packet::make(size, [&](packet::writer& w) {
        w << prelude;
        std::uint64_t id = first_id;
        for (const packet& p : packets)
            write_event(w, id++, p);
    });
}

} // namespace

sse_transport::sse_transport(sse_options options)
    : options_{options}
    , headers_{packet::from("Cache-Control: no-cache\r\n"
                            "X-Accel-Buffering: no\r\n")}
    , heartbeat_{packet::from("event: ping\ndata: {}\n\n")}
    , prelude_{": megaphone\nretry: " + std::to_string(options.retry.count()) +
               "\n\nevent: ready\ndata: {\"heartbeat\":" +
               std::to_string(options.heartbeat.count()) + "}\n\n"} {}

bool sse_transport::accepts(const http::request<http::string_body>& request,
                            std::string_view rest) const {
    return rest == "/events" && request.method() == http::verb::get;
}

std::optional<stream_request> stream_query(std::string_view target) {
    stream_request r;
    auto sid = query_parameter(target, "sid");
    if (!sid || sid->empty())
        return std::nullopt;
    r.sid = std::move(*sid);
    if (auto rid = query_parameter(target, "rid"); rid && !rid->empty()) {
        r.rid = parse_event_id(*rid); // the same form: decimal, at most 2^53 - 1
        if (!r.rid)
            return std::nullopt;
    }
    return r;
}

std::optional<stream_request>
sse_transport::parse(const http::request<http::string_body>& request) const {
    auto parsed = stream_query(request.target());
    if (!parsed)
        return std::nullopt;
    stream_request& r = *parsed;
    // The header (an EventSource's reconnect) is the newest word; the query parameter serves a
    // first connect, which cannot set headers.
    if (auto header = request.find("Last-Event-ID"); header != request.end()) {
        if (!header->value().empty()) {
            r.last_id = parse_event_id(header->value());
            if (!r.last_id)
                return std::nullopt;
        }
    } else if (auto query = query_parameter(request.target(), "lastEventId"); query) {
        if (!query->empty()) {
            r.last_id = parse_event_id(*query);
            if (!r.last_id)
                return std::nullopt;
        }
    }
    return parsed;
}

response sse_transport::refusal() const {
    return {204, content_kind::text, {}};
}

response sse_transport::opening(std::uint64_t first_id, std::span<const packet> packets) const {
    response r;
    r.status = 200;
    r.kind = content_kind::event_stream;
    r.body = frame(prelude_, first_id, packets);
    r.headers = headers_;
    r.stream = true;
    r.heartbeat = heartbeat_;
    r.heartbeat_every = options_.heartbeat;
    for (const packet& p : packets)
        if (r.pushed_at_ns == 0 || (p.born_ns() != 0 && p.born_ns() < r.pushed_at_ns))
            r.pushed_at_ns = p.born_ns();
    return r;
}

packet sse_transport::events(std::uint64_t first_id, std::span<const packet> packets) const {
    return frame({}, first_id, packets);
}

packet sse_transport::closing(close_reason why) const {
    // No id: the client's position stays that of the last packet. An EventSource reconnects
    // after the close, gets 204 for the ended session and stops.
    const std::string_view c = condition(why);
    std::string text = "data: {\"type\":\"terminate\"";
    if (!c.empty()) {
        text += ",\"condition\":\"";
        text += c;
        text += '"';
    }
    text += "}\n\n";
    return packet::from(text);
}

std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
    const auto question = target.find('?');
    if (question == std::string_view::npos)
        return std::nullopt;
    std::string_view query = target.substr(question + 1);
    query = query.substr(0, query.find('#'));
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) != name)
            continue;
        if (eq == std::string_view::npos)
            return std::string();
        std::string value(pair.substr(eq + 1));
        for (char& c : value)
            if (c == '+')
                c = ' ';
        return percent_decode(value);
    }
    return std::nullopt;
}

std::optional<std::uint64_t> parse_event_id(std::string_view text) noexcept {
    std::uint64_t id = 0;
    if (text.empty() || text.size() > 16 || text.front() == '+' || text.front() == '-')
        return std::nullopt;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc{} || end != text.data() + text.size() || id > max_event_id)
        return std::nullopt;
    return id;
}

} // namespace megaphone
