#include "app/application.hpp"

#include "app/session.hpp"
#include "transport/json_codec.hpp"

#include <algorithm>
#include <cctype>

namespace megaphone {

std::string_view connect_info::header(std::string_view name) const noexcept {
    const auto same = [name](std::string_view field) {
        return field.size() == name.size() &&
               std::equal(field.begin(), field.end(), name.begin(), [](char a, char b) {
                   return std::tolower(static_cast<unsigned char>(a)) ==
                          std::tolower(static_cast<unsigned char>(b));
               });
    };
    for (const auto& [field, value] : headers)
        if (same(field))
            return value;
    return {};
}

void broker::push(std::string_view sid, const nlohmann::json& value) {
    push(sid, json_codec::instance().encode(value));
}

void application::on_recover(session& s, std::string_view channel, const stream_position& since) {
    if (may_subscribe(s, channel))
        s.subscribe(channel, since);
    else
        s.push(nlohmann::json{{"error", "forbidden"}, {"channel", channel}});
}

bool application::may_subscribe(session& s, std::string_view channel) {
    return s.token_allows_subscribe(channel);
}

bool application::may_publish(session& s, std::string_view channel) {
    return s.token_allows_publish(channel);
}

void application::on_recovered(session& s, std::string_view channel, const recovery& r) {
    if (s.kind() != content_kind::json)
        return;
    s.push(nlohmann::json{{"channel", channel},
                          {"recovered", r.recovered},
                          {"epoch", r.position.epoch},
                          {"offset", r.position.offset}});
}

void broker::publish(std::string_view channel, const nlohmann::json& value,
                     std::function<void(const publish_result&)> done) {
    publish(channel, json_codec::instance().encode(value), std::move(done));
}

void broker::broadcast(const nlohmann::json& value) {
    broadcast(json_codec::instance().encode(value));
}

} // namespace megaphone
