// Stamps: every message published to a channel reaches its subscribers with its position in the
// channel (cluster/bus.hpp, stamp()): a JSON object message gains `"epoch":"E","offset":K,` right
// after its opening `{` (`{"epoch":"E","offset":K}` for an empty object). Messages pushed to one
// session (session::push, broadcast) carry no stamp.
//
// A test that compares what a subscriber got, byte for byte, compares it with the stamps removed
// (unstamped(), without_stamps()) and checks the stamps on their own (stamps_of(),
// publish_answer): epochs and offsets are random and per channel, the rest of the bytes are not.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone::test {

/// One stamp: a message's position in its channel.
struct stamped_position {
    std::string epoch;
    std::uint64_t offset = 0;
    friend bool operator==(const stamped_position&, const stamped_position&) = default;
    friend std::ostream& operator<<(std::ostream& out, const stamped_position& p) {
        return out << "{epoch " << p.epoch << ", offset " << p.offset << '}';
    }
};

namespace detail {

/// A JSON integer >= 0 (parsed, nlohmann makes it unsigned; built in a test, maybe signed).
inline bool is_whole(const nlohmann::json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
}

/// A stamp found in a body: its value, its length from the `{` to the offset's last digit, and
/// whether a `,` follows (removed with it).
struct found_stamp {
    stamped_position value;
    std::size_t length = 0;
    bool comma = false;
};

/// The stamp that starts at `text[at]`, or nullopt when `text[at]` does not start a well-formed
/// one: `{"epoch":"E","offset":K` with E one or more characters that need no JSON escaping and K
/// one or more digits, followed by `,` or, for an object with nothing else, by `}` (after white
/// space, maybe).
inline std::optional<found_stamp> stamp_at(std::string_view text, std::size_t at) {
    constexpr std::string_view head = "{\"epoch\":\"";
    constexpr std::string_view middle = "\",\"offset\":";
    if (text.substr(at, head.size()) != head)
        return std::nullopt;
    std::size_t i = at + head.size();
    const std::size_t epoch_begin = i;
    while (i < text.size() && text[i] != '"' && text[i] != '\\' &&
           static_cast<unsigned char>(text[i]) >= 0x20)
        ++i;
    if (i == epoch_begin || text.substr(i, middle.size()) != middle)
        return std::nullopt;
    found_stamp out;
    out.value.epoch = std::string(text.substr(epoch_begin, i - epoch_begin));
    i += middle.size();
    const std::size_t digits = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        const auto digit = static_cast<std::uint64_t>(text[i] - '0');
        if (out.value.offset > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
            return std::nullopt; // not a 64-bit offset
        out.value.offset = out.value.offset * 10 + digit;
        ++i;
    }
    if (i == digits || i == text.size())
        return std::nullopt;
    out.length = i - at;
    out.comma = text[i] == ',';
    if (!out.comma) {
        while (i < text.size() &&
               (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t'))
            ++i;
        if (i == text.size() || text[i] != '}')
            return std::nullopt;
    }
    return out;
}

} // namespace detail

/// `body` with every stamp removed: each `{"epoch":"E","offset":K,` becomes `{`, and each
/// `{"epoch":"E","offset":K}` becomes `{}`. Only well-formed stamps right after a `{` are
/// removed: a stamp in the wrong place, or ill-formed, stays and shows in a comparison.
inline std::string unstamped(std::string_view body) {
    std::string out;
    out.reserve(body.size());
    std::size_t i = 0;
    while (i < body.size()) {
        if (body[i] == '{') {
            if (const auto s = detail::stamp_at(body, i)) {
                out += '{';
                i += s->length + (s->comma ? 1 : 0);
                continue;
            }
        }
        out += body[i++];
    }
    return out;
}

/// The stamps in `body` (as unstamped() finds them), in order.
inline std::vector<stamped_position> stamps_of(std::string_view body) {
    std::vector<stamped_position> out;
    for (std::size_t i = 0; i < body.size(); ++i)
        if (body[i] == '{')
            if (auto s = detail::stamp_at(body, i))
                out.push_back(std::move(s->value));
    return out;
}

/// `value`, a parsed answer, without the stamps of its messages: the keys "epoch" (a string) and
/// "offset" (an integer >= 0) are removed from each object of value["messages"] when value
/// is an object with a "messages" array, from each object element when value is an array, and
/// from value itself otherwise (a single message, or the answer of POST /publish/{channel}). A
/// message whose "epoch" or "offset" is of another type keeps both, and so shows in a comparison.
inline nlohmann::json without_stamps(nlohmann::json value) {
    auto strip = [](nlohmann::json& m) {
        if (!m.is_object())
            return;
        const auto epoch = m.find("epoch");
        const auto offset = m.find("offset");
        if (epoch == m.end() || offset == m.end() || !epoch->is_string() ||
            !detail::is_whole(*offset))
            return;
        m.erase("epoch");
        m.erase("offset");
    };
    if (value.is_object() && value.contains("messages") && value["messages"].is_array())
        for (auto& m : value["messages"])
            strip(m);
    else if (value.is_array())
        for (auto& m : value)
            strip(m);
    else
        strip(value);
    return value;
}

/// The stamp of one parsed message (or of the answer of POST /publish/{channel}); nullopt when
/// it has none, or an ill-typed or empty one.
inline std::optional<stamped_position> stamp_of(const nlohmann::json& message) {
    if (!message.is_object())
        return std::nullopt;
    const auto epoch = message.find("epoch");
    const auto offset = message.find("offset");
    if (epoch == message.end() || offset == message.end() || !epoch->is_string() ||
        !detail::is_whole(*offset) || epoch->get_ref<const std::string&>().empty())
        return std::nullopt;
    return stamped_position{epoch->get<std::string>(), offset->get<std::uint64_t>()};
}

/// The answer of POST /publish/{channel}: `{"epoch":"E","offset":K,"sessions":N}`.
struct publish_answer {
    stamped_position position;
    std::size_t sessions = 0;
};

/// Reads a publish answer; nullopt unless it is exactly {"epoch": non-empty string, "offset":
/// integer >= 1, "sessions": integer}.
inline std::optional<publish_answer> read_publish_answer(const nlohmann::json& answer) {
    const auto at = stamp_of(answer);
    if (!at || at->offset == 0 || answer.size() != 3 || !answer.contains("sessions") ||
        !detail::is_whole(answer.at("sessions")))
        return std::nullopt;
    return publish_answer{*at, answer.at("sessions").get<std::size_t>()};
}

} // namespace megaphone::test
