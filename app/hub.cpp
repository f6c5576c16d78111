#include "app/hub.hpp"

#include "app/log.hpp"
#include "app/session.hpp"
#include "transport/flat_json.hpp"
#include "transport/json_codec.hpp"
#include "transport/static_files.hpp"

#include <boost/container/small_vector.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <chrono>

namespace megaphone {

namespace {
response json_answer(unsigned status, const nlohmann::json& body) {
    return {status, content_kind::json, packet::from(body.dump())};
}

/// {"epoch":"E","offset":K,"sessions":N} (no "sessions" when the bus does not know it); 503
/// {"error":...} when the bus could not take the message.
response publish_answer(const publish_result& r) {
    if (!r.ok)
        return json_answer(503, {{"error", r.error.empty() ? "publish failed" : r.error}});
    const std::string_view epoch = r.position.epoch;
    return {200, content_kind::json, packet::make(epoch.size() + 80, 0, [&](packet::writer& out) {
                out << "{\"epoch\":\"" << epoch << "\",\"offset\":" << r.position.offset;
                if (r.sessions)
                    out << ",\"sessions\":" << std::uint64_t{*r.sessions};
                out << '}';
            })};
}
} // namespace

hub::hub(server& srv) {
    if (auth::hook_options o = srv.options().clients.hook; !o.url.empty()) {
        // A backend that fails fails every question: one warning a second, not one each.
        o.on_failure = [last = std::chrono::steady_clock::time_point{},
                        quiet = std::uint64_t{0}](std::string_view why) mutable {
            const auto now = std::chrono::steady_clock::now();
            if (now - last < std::chrono::seconds(1)) {
                ++quiet;
                return;
            }
            logger().warn("--auth-url failed ({}): denied{}", why,
                          quiet ? fmt::format(" (and {} more since the last warning)", quiet)
                                : std::string());
            last = now;
            quiet = 0;
        };
        hook_ = std::make_unique<auth::auth_hook>(std::move(o));
    }
    srv.route(
        http::verb::post, "/publish/",
        [&srv](incoming& in, std::string_view rest) {
            const auto channel = percent_decode(rest);
            if (!channel || !valid_channel(*channel))
                return in.ex.reply(json_answer(400, {{"error", "bad channel name"}}));
            auto message = publish_packet(*channel, in.request.body());
            if (!message)
                return in.ex.reply(json_answer(400, {{"error", "body is not one JSON value"}}));
            // Answered in this turn on the in-process bus: the connection need not watch for
            // its client's leaving meanwhile.
            srv.publish_now(*channel, std::move(*message),
                            [ex = in.ex](publish_result r) { ex.reply(publish_answer(r)); });
        },
        route_access::publisher); // the internal door, or the public one with the publish key
}

hub::~hub() = default;

template <class Act>
void hub::when_allowed(session& s, std::string_view channel, auth::hook_action action, Act act) {
    if (!hook_) {
        const bool allowed = action == auth::hook_action::subscribe ? may_subscribe(s, channel)
                                                                    : may_publish(s, channel);
        if (allowed)
            return act(s);
        count_refusal(refusal::forbidden);
        return s.push(forbidden(channel)); // the session goes on
    }
    hook_->ask({std::string(s.id()), std::string(s.user()), std::string(channel), action},
               [&brk = s.broker(), sid = std::string(s.id()), name = std::string(channel),
                act = std::move(act)](auth::hook_verdict v) {
                   // From the hook's thread (or here, from its cache): back on the session's.
                   brk.with_session(sid, [v, name, act](session& s) mutable {
                       if (v == auth::hook_verdict::allow)
                           return act(s);
                       count_refusal(v == auth::hook_verdict::failed ? refusal::auth_hook_failed
                                                                     : refusal::forbidden);
                       s.push(forbidden(name));
                   });
               });
}

std::optional<packet> hub::publish_packet(std::string_view channel, std::string_view body) {
    if (auto simple = simple_envelope(channel, body))
        return simple;
    auto decoded = decode_json_request("{\"rid\":0,\"messages\":[" + std::string(body) + "]}");
    auto* req = std::get_if<client_request>(&decoded);
    if (!req || req->messages.size() != 1)
        return std::nullopt;
    return envelope_packet(channel, req->messages.front().json());
}

bool hub::valid_channel(std::string_view channel) noexcept {
    // 1 to 256 bytes of UTF-8 without control characters (a name goes into JSON answers).
    if (channel.empty() || channel.size() > 256)
        return false;
    for (std::size_t i = 0; i < channel.size();) {
        const auto c = static_cast<unsigned char>(channel[i]);
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            ++i;
            continue;
        }
        // A multi-byte sequence: its length, the smallest value it may encode (no overlong
        // forms), no surrogates, nothing above U+10FFFF.
        const std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (n == 0 || c > 0xf4 || i + n > channel.size())
            return false;
        std::uint32_t cp = c & (0x7f >> n);
        for (std::size_t k = 1; k < n; ++k) {
            const auto cc = static_cast<unsigned char>(channel[i + k]);
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return false;
        i += n;
    }
    return true;
}

nlohmann::json hub::envelope(std::string_view channel, const nlohmann::json& data) {
    return {{"channel", channel}, {"data", data}};
}

packet hub::envelope_packet(std::string_view channel, const nlohmann::json& data) {
    // The bytes of json_codec::encode(envelope(channel, data)), without building (and deep
    // copying `data` into) the envelope: keys in nlohmann's order, both values dumped by it.
    std::string out = "{\"channel\":";
    out += nlohmann::json(channel).dump();
    out += ",\"data\":";
    out += data.dump();
    out += '}';
    return packet::from(out);
}

std::optional<packet> hub::simple_envelope(std::string_view channel, std::string_view body) {
    // A flat object whose members are plain ASCII strings (no escapes) or plain integers: the
    // general path would parse it into exactly these members and dump them sorted by key, each
    // value byte for byte as written. Anything else (nesting, escapes, floats, duplicates...)
    // returns nullopt and takes the general path.
    struct member {
        std::string_view key;  // without quotes
        std::string_view text; // the value as written (strings with their quotes)
    };
    boost::container::small_vector<member, 8> members;
    flat_json_scanner in{body};
    const bool flat = in.object([&](std::string_view key) {
        member m{key, {}};
        if (in.peek() == '"') {
            if (!in.string(m.text))
                return false;
            m.text = {m.text.data() - 1, m.text.size() + 2}; // with its quotes
        } else {
            std::uint64_t ignored = 0;
            if (!in.integer(ignored, m.text))
                return false;
        }
        if (members.size() == 32)
            return false;
        members.push_back(m);
        return true;
    });
    if (!flat)
        return std::nullopt;
    std::sort(members.begin(), members.end(),
              [](const member& a, const member& b) { return a.key < b.key; });
    for (std::size_t i = 1; i < members.size(); ++i)
        if (members[i].key == members[i - 1].key)
            return std::nullopt; // the general path keeps the last: leave it to it

    // The channel as a JSON string: a valid name (UTF-8, no control characters) needs only its
    // quotes and backslashes escaped, as nlohmann's dump does; any other is dumped by it.
    std::string dumped;
    std::size_t channel_size = 2 * channel.size() + 2;
    if (!valid_channel(channel)) {
        dumped = nlohmann::json(channel).dump();
        channel_size = dumped.size();
    }
    std::size_t size = channel_size + 23; // {"channel":C,"data":{}}
    for (const member& m : members)
        size += m.key.size() + m.text.size() + 4;
    return packet::make(size, [&](packet::writer& out) {
        out << "{\"channel\":";
        if (!dumped.empty()) {
            out << std::string_view(dumped);
        } else {
            out << '"';
            for (const char c : channel) {
                if (c == '"' || c == '\\')
                    out << '\\';
                out << c;
            }
            out << '"';
        }
        out << ",\"data\":{";
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (i)
                out << ',';
            out << '"' << members[i].key << "\":" << members[i].text;
        }
        out << "}}";
    });
}

void hub::on_recover(session& s, std::string_view channel, const stream_position& since) {
    if (!valid_channel(channel))
        return s.push(nlohmann::json{{"error", "bad channel name"}}); // (not valid UTF-8, maybe)
    when_allowed(s, channel, auth::hook_action::subscribe,
                 [ch = std::string(channel), since](session& s) { s.subscribe(ch, since); });
}

nlohmann::json hub::forbidden(std::string_view channel) {
    return {{"error", "forbidden"}, {"channel", channel}};
}

void hub::on_message(session& s, const message& m) {
    const nlohmann::json& msg = m.json();
    auto text = [&msg](const char* key) -> const std::string* {
        auto it = msg.find(key);
        return it != msg.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
    };
    if (!msg.is_object()) {
        s.push(nlohmann::json{{"error", "a hub message is a JSON object"}});
        return;
    }
    if (const auto* ch = text("subscribe"); ch && valid_channel(*ch)) {
        std::optional<stream_position> since;
        if (auto cursor = msg.find("recover"); cursor != msg.end() && !cursor->is_null()) {
            since = decode_stream_position(*cursor);
            if (!since)
                return s.push(nlohmann::json{{"error", "bad recover cursor"}, {"channel", *ch}});
        }
        when_allowed(s, *ch, auth::hook_action::subscribe,
                     [name = *ch, since = std::move(since)](session& s) {
                         if (since)
                             s.subscribe(name, *since);
                         else
                             s.subscribe(name);
                     });
    } else if (const auto* ch = text("unsubscribe"); ch && valid_channel(*ch)) {
        s.unsubscribe(*ch);
    } else if (const auto* ch = text("publish"); ch && valid_channel(*ch)) {
        if (!s.take_publish_token())
            return s.push(nlohmann::json{{"error", "rate-limited"}, {"channel", *ch}});
        // A refused publish reaches nobody; the session goes on.
        when_allowed(
            s, *ch, auth::hook_action::publish,
            [name = *ch,
             p = envelope_packet(*ch, msg.value("data", nlohmann::json()))](session& s) {
                s.broker().publish(
                    name, p,
                    [&brk = s.broker(), sid = std::string(s.id()), name](const publish_result& r) {
                        // The bus could not take it (Redis unreachable): the sender is told,
                        // nobody got it. (From the bus's thread: through the broker.)
                        if (!r.ok)
                            brk.push(sid, nlohmann::json{{"error", "publish failed"},
                                                         {"channel", name},
                                                         {"reason", r.error}});
                    });
            });
    } else {
        s.push(nlohmann::json{{"error", "unknown hub message"}, {"message", msg}});
    }
}

} // namespace megaphone
