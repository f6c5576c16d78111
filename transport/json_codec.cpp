#include "transport/json_codec.hpp"

#include "transport/flat_json.hpp"

#include <cmath>
#include <limits>

namespace megaphone {

std::string_view condition(protocol_error e) noexcept {
    switch (e) {
    case protocol_error::item_not_found:
        return "item-not-found";
    case protocol_error::bad_request:
        return "bad-request";
    case protocol_error::too_large:
    case protocol_error::policy_violation:
    case protocol_error::rate_limited:
        return "policy-violation";
    case protocol_error::system_shutdown:
        return "system-shutdown";
    case protocol_error::not_authorized:
        return "not-authorized";
    }
    return "undefined-condition";
}

unsigned http_status(protocol_error e) noexcept {
    switch (e) {
    case protocol_error::item_not_found:
        return 404;
    case protocol_error::bad_request:
        return 400;
    case protocol_error::too_large:
        return 413;
    case protocol_error::policy_violation:
        return 403;
    case protocol_error::system_shutdown:
        return 503;
    case protocol_error::rate_limited:
        return 429;
    case protocol_error::not_authorized:
        return 401;
    }
    return 500;
}

std::string_view condition(close_reason r) noexcept {
    switch (r) {
    case close_reason::client_terminate:
    case close_reason::server_terminate:
    case close_reason::inactivity:
        return "";
    case close_reason::queue_overflow:
    case close_reason::policy_violation:
        return "policy-violation";
    case close_reason::item_not_found:
        return "item-not-found";
    case close_reason::bad_request:
        return "bad-request";
    case close_reason::system_shutdown:
        return "system-shutdown";
    case close_reason::internal_error:
        return "internal-server-error";
    case close_reason::host_unknown:
        return "host-unknown";
    case close_reason::not_authorized:
        return "not-authorized";
    }
    return "undefined-condition";
}

namespace {

/// Deepest nesting of arrays/objects in `text`, outside strings; stops counting past `limit`.
int nesting_depth(std::string_view text, int limit) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > deepest && (deepest = depth) > limit)
                return deepest;
        } else if (c == ']' || c == '}')
            --depth;
    }
    return deepest;
}

/// A non-negative integer field that fits a rid (at most 2^53 - 1, BOSH §14.1).
std::optional<std::uint64_t> unsigned_field(const nlohmann::json& value) {
    if (value.is_number_unsigned())
        return value.get<std::uint64_t>();
    if (value.is_number_integer() && value.get<std::int64_t>() >= 0)
        return static_cast<std::uint64_t>(value.get<std::int64_t>());
    if (value.is_number_float()) {
        const double d = value.get<double>();
        if (d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d)
            return static_cast<std::uint64_t>(d);
    }
    return std::nullopt;
}

constexpr std::uint64_t max_rid = (std::uint64_t{1} << 53) - 1;

std::string rid_prefix(request_id rid) {
    return "{\"rid\":" + std::to_string(rid);
}

/// "messages":[a,b] at most this many bytes (commas between the messages).
std::size_t messages_size(std::span<const packet> packets) {
    std::size_t size = 13;
    for (const packet& p : packets)
        size += p.size() + 1;
    return size;
}

void append_messages(packet::writer& out, std::span<const packet> packets) {
    out << "\"messages\":[";
    bool first = true;
    for (const packet& p : packets) {
        if (!first)
            out << ',';
        first = false;
        out << p.view();
    }
    out << ']';
}

/// Seconds as a JSON number: whole seconds stay integers.
nlohmann::json seconds(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0)
        return d.count() / 1000;
    return static_cast<double>(d.count()) / 1000.0;
}

/// The fast path for the common request shapes: a flat object of sid, rid, ack, type, wait,
/// hold, stream_ack, streaming and an empty (or absent) messages array, with plain ASCII strings
/// and plain integers. It either decodes the request exactly as the general path would, or gives up
/// (false) and leaves the body to the general path: anything unusual (escapes, non-ASCII, null,
/// floats, unknown or repeated keys, messages, errors of any kind) takes the general path, so both
/// accept and refuse the same bodies with the same results.
class fast_decoder {
public:
    explicit fast_decoder(std::string_view body)
        : in_{body} {}

    bool decode(client_request& req) {
        unsigned seen = 0;
        const bool flat = in_.object([&](std::string_view key) {
            const unsigned bit = key_bit(key);
            if (bit == 0 || (seen & bit) != 0)
                return false;
            seen |= bit;
            return value(bit, req);
        });
        return flat && (seen & rid_bit) != 0;
    }

private:
    static constexpr unsigned sid_bit = 1, rid_bit = 2, ack_bit = 4, type_bit = 8, wait_bit = 16,
                              hold_bit = 32, messages_bit = 64, stream_ack_bit = 128,
                              streaming_bit = 256;

    static unsigned key_bit(std::string_view key) noexcept {
        if (key == "sid")
            return sid_bit;
        if (key == "rid")
            return rid_bit;
        if (key == "ack")
            return ack_bit;
        if (key == "type")
            return type_bit;
        if (key == "wait")
            return wait_bit;
        if (key == "hold")
            return hold_bit;
        if (key == "messages")
            return messages_bit;
        if (key == "stream_ack")
            return stream_ack_bit;
        if (key == "streaming")
            return streaming_bit;
        return 0;
    }

    bool value(unsigned bit, client_request& req) {
        std::uint64_t n = 0;
        std::string_view text;
        switch (bit) {
        case sid_bit:
            if (!in_.string(text) || text.empty())
                return false;
            req.sid.assign(text);
            return true;
        case rid_bit:
            if (!in_.integer(n))
                return false;
            req.rid = n;
            return true;
        case ack_bit:
            if (!in_.integer(n))
                return false;
            req.ack = n;
            return true;
        case type_bit:
            if (!in_.string(text) || text != "terminate")
                return false;
            req.terminate = true;
            return true;
        case wait_bit:
        case hold_bit:
            if (!in_.integer(n) || n > std::numeric_limits<std::uint32_t>::max())
                return false;
            (bit == wait_bit ? req.wait : req.hold) = static_cast<std::uint32_t>(n);
            return true;
        case stream_ack_bit:
            if (!in_.integer(n))
                return false;
            req.stream_ack = n;
            return true;
        case streaming_bit:
            return in_.boolean(req.streaming);
        case messages_bit:
            if (!in_.eat('['))
                return false;
            in_.skip_ws();
            return in_.eat(']');
        }
        return false;
    }

    flat_json_scanner in_;
};

} // namespace

std::optional<stream_position> decode_stream_position(const nlohmann::json& cursor) {
    if (!cursor.is_object())
        return std::nullopt;
    stream_position at;
    if (auto e = cursor.find("epoch"); e != cursor.end() && !e->is_null()) {
        if (!e->is_string() || e->get_ref<const std::string&>().size() > max_epoch_size)
            return std::nullopt;
        at.epoch = e->get<std::string>();
    }
    if (auto o = cursor.find("offset"); o != cursor.end() && !o->is_null()) {
        auto n = unsigned_field(*o);
        if (!n || *n > max_rid)
            return std::nullopt;
        at.offset = *n;
    }
    return at;
}

std::variant<client_request, protocol_error> decode_json_request(std::string_view body) {
    {
        client_request req;
        if (fast_decoder{body}.decode(req))
            return req;
    }
    return decode_json_request_general(body);
}

std::variant<client_request, protocol_error> decode_json_request_general(std::string_view body) {
    if (nesting_depth(body, json_max_depth) > json_max_depth)
        return protocol_error::bad_request;
    // JSON text never holds a raw NUL, and nlohmann's parser takes one for the end of input:
    // without this, `{"rid":1}\0anything` would be accepted.
    if (body.find('\0') != std::string_view::npos)
        return protocol_error::bad_request;
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object())
        return protocol_error::bad_request;

    client_request req;
    auto field = [&doc](const char* name) -> const nlohmann::json* {
        auto it = doc.find(name);
        return it == doc.end() || it->is_null() ? nullptr : &*it;
    };

    const auto* rid = field("rid");
    if (!rid)
        return protocol_error::bad_request;
    auto rid_value = unsigned_field(*rid);
    if (!rid_value || *rid_value > max_rid)
        return protocol_error::bad_request;
    req.rid = *rid_value;

    if (const auto* sid = field("sid")) {
        if (!sid->is_string() || sid->get_ref<const std::string&>().empty())
            return protocol_error::bad_request;
        req.sid = sid->get<std::string>();
    }
    if (const auto* ack = field("ack")) {
        auto v = unsigned_field(*ack);
        if (!v || *v > max_rid)
            return protocol_error::bad_request;
        req.ack = *v;
    }
    if (const auto* ack = field("stream_ack")) {
        auto v = unsigned_field(*ack);
        if (!v || *v > max_rid)
            return protocol_error::bad_request;
        req.stream_ack = *v;
    }
    if (const auto* streaming = field("streaming")) {
        if (!streaming->is_boolean())
            return protocol_error::bad_request;
        req.streaming = streaming->get<bool>();
    }
    if (const auto* type = field("type")) {
        if (!type->is_string())
            return protocol_error::bad_request;
        if (*type == "terminate")
            req.terminate = true;
        else
            return protocol_error::bad_request;
    }
    for (const char* name : {"wait", "hold"}) {
        if (const auto* v = field(name)) {
            auto n = unsigned_field(*v);
            if (!n || *n > std::numeric_limits<std::uint32_t>::max())
                return protocol_error::bad_request;
            (name[0] == 'w' ? req.wait : req.hold) = static_cast<std::uint32_t>(*n);
        }
    }
    if (const auto* token = field("token")) {
        // Checked by the session layer (app/access.hpp); here only its type.
        if (!token->is_string())
            return protocol_error::bad_request;
        req.token = token->get<std::string>();
    }
    if (const auto* recover = field("recover")) {
        // {"<channel>": {"epoch": "E", "offset": K}, ...}: creation only; every cursor whole.
        if (!recover->is_object() || !req.sid.empty() || recover->size() > max_recover_channels)
            return protocol_error::bad_request;
        for (const auto& [channel, cursor] : recover->items()) {
            auto position = decode_stream_position(cursor);
            if (!position || channel.empty())
                return protocol_error::bad_request;
            req.recover.emplace_back(channel, std::move(*position));
        }
    }
    if (auto messages = doc.find("messages"); messages != doc.end() && !messages->is_null()) {
        if (!messages->is_array())
            return protocol_error::bad_request;
        req.messages.reserve(messages->size());
        for (auto& m : *messages)
            req.messages.emplace_back(std::move(m));
    }
    return req;
}

packet json_codec::created(const session_info& info, request_id rid,
                           std::span<const packet> packets) const {
    nlohmann::json head = {
        {"sid", info.sid},
        {"wait", seconds(info.wait)},
        {"hold", info.hold},
        {"requests", info.requests},
        {"inactivity", seconds(info.inactivity)},
        {"polling", seconds(info.polling)},
        {"rid", rid},
    };
    std::string text = head.dump();
    text.pop_back(); // reopen the object to append the messages without re-encoding them
    return packet::make(text.size() + messages_size(packets) + 2, [&](packet::writer& out) {
        out << std::string_view(text) << ',';
        append_messages(out, packets);
        out << '}';
    });
}

packet json_codec::data(request_id rid, std::span<const packet> packets) const {
    // {"rid":N,"messages":[...]}: at most 29 bytes around the messages array. An answer's body:
    // no push time of its own (the messages have theirs).
    return packet::make(29 + messages_size(packets), 0, [&](packet::writer& out) {
        out << "{\"rid\":" << std::uint64_t{rid} << ',';
        append_messages(out, packets);
        out << '}';
    });
}

packet json_codec::closing(request_id rid, close_reason why) const {
    std::string out = rid_prefix(rid) + ",\"type\":\"terminate\"";
    if (auto c = condition(why); !c.empty())
        out += ",\"condition\":\"" + std::string(c) + "\"";
    out += '}';
    return packet::from(out);
}

packet json_codec::terminated(request_id rid) const {
    return packet::from(rid_prefix(rid) + ",\"type\":\"terminate\"}");
}

packet json_codec::replaced(request_id rid) const {
    return packet::from(rid_prefix(rid) + ",\"type\":\"error\",\"condition\":\"replaced\"}");
}

packet json_codec::error(protocol_error e) const {
    return packet::from("{\"type\":\"terminate\",\"condition\":\"" + std::string(condition(e)) +
                        "\"}");
}

packet json_codec::encode(const nlohmann::json& value) const {
    return packet::from(value.dump());
}

const json_codec& json_codec::instance() {
    static const json_codec codec;
    return codec;
}

} // namespace megaphone
