#include "app/application.hpp"

#include "transport/json_codec.hpp"

namespace megaphone {

void broker::push(std::string_view sid, const nlohmann::json& value) {
    push(sid, json_codec::instance().encode(value));
}

void broker::publish(std::string_view channel, const nlohmann::json& value,
                     std::function<void(std::size_t)> done) {
    publish(channel, json_codec::instance().encode(value), std::move(done));
}

void broker::broadcast(const nlohmann::json& value) {
    broadcast(json_codec::instance().encode(value));
}

} // namespace megaphone
