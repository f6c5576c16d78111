#include "app/hub.hpp"

#include "app/session.hpp"
#include "transport/json_codec.hpp"
#include "transport/static_files.hpp"

namespace megaphone {

namespace {
response json_answer(unsigned status, const nlohmann::json& body) {
    return {status, content_kind::json, packet::from(body.dump())};
}
} // namespace

hub::hub(server& srv) {
    srv.route(http::verb::post, "/publish/", [&srv](incoming& in, std::string_view rest) {
        const auto channel = percent_decode(rest);
        if (!channel || !valid_channel(*channel))
            return in.ex.reply(json_answer(400, {{"error", "bad channel name"}}));
        auto decoded = decode_json_request("{\"rid\":0,\"messages\":[" + in.request.body() + "]}");
        auto* req = std::get_if<client_request>(&decoded);
        if (!req || req->messages.size() != 1)
            return in.ex.reply(json_answer(400, {{"error", "body is not one JSON value"}}));
        srv.publish(*channel, envelope_packet(*channel, req->messages.front().json()),
                    [ex = in.ex](std::size_t reached) {
                        ex.reply({200, content_kind::json,
                                  packet::from("{\"sessions\":" + std::to_string(reached) + "}")});
                    });
    });
}

bool hub::valid_channel(std::string_view channel) noexcept {
    return !channel.empty() && channel.size() <= 256;
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
    if (const auto* ch = text("subscribe"); ch && valid_channel(*ch))
        s.subscribe(*ch);
    else if (const auto* ch = text("unsubscribe"); ch && valid_channel(*ch))
        s.unsubscribe(*ch);
    else if (const auto* ch = text("publish"); ch && valid_channel(*ch))
        s.broker().publish(*ch, envelope_packet(*ch, msg.value("data", nlohmann::json())));
    else
        s.push(nlohmann::json{{"error", "unknown hub message"}, {"message", msg}});
}

} // namespace megaphone
