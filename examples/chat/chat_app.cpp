#include "examples/chat/chat_app.hpp"

#include "app/session.hpp"

#include <chrono>
#include <set>

namespace megaphone::examples {

namespace {

/// What the chat keeps per session (in session::data()).
struct member {
    std::string nick;
    std::set<std::string> rooms;
};

member& member_of(session& s) {
    if (!s.data().has_value())
        s.data() = member{};
    return std::any_cast<member&>(s.data());
}

const std::string* string_field(const nlohmann::json& msg, const char* key) {
    auto it = msg.find(key);
    return it != msg.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

bool valid_name(const std::string* name) {
    return name && !name->empty() && name->size() <= chat_app::max_name;
}

void forbidden(session& s, const std::string& channel) {
    s.push(nlohmann::json{{"error", "forbidden"}, {"channel", channel}});
}

void error(session& s, std::string text) {
    s.push(nlohmann::json{{"type", "error"}, {"text", std::move(text)}});
}

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

void chat_app::on_message(session& s, const message& m) {
    const nlohmann::json& msg = m.json();
    if (!msg.is_object())
        return error(s, "a chat message is a JSON object");
    if (const auto* room = string_field(msg, "join")) {
        const auto* nick = string_field(msg, "nick");
        // With a token, the user is the nick (the token vouches for it).
        const std::string user{s.user()};
        if (!user.empty())
            nick = &user;
        if (!valid_name(room) || !valid_name(nick))
            return error(s, "join needs a room and a nick of 1 to 64 characters");
        // Joining reads the room and announces the joiner in it: both rights are needed.
        if (!may_subscribe(s, channel_of(*room)) || !may_publish(s, channel_of(*room)))
            return forbidden(s, channel_of(*room));
        return join(s, *room, *nick);
    }
    if (const auto* text = string_field(msg, "say")) {
        const auto* room = string_field(msg, "room");
        if (!room || !member_of(s).rooms.contains(*room))
            return error(s, "join the room first");
        if (text->empty() || text->size() > max_text)
            return error(s, "a message has 1 to 2000 characters");
        if (!may_publish(s, channel_of(*room)))
            return forbidden(s, channel_of(*room));
        return say(s, *room, *text);
    }
    if (const auto* room = string_field(msg, "leave"))
        return leave(s, *room);
    error(s, "unknown chat message");
}

void chat_app::join(session& s, const std::string& room_name, const std::string& nick) {
    member& me = member_of(s);
    me.nick = nick;
    nlohmann::json history = nlohmann::json::array();
    {
        std::lock_guard lock{mutex_};
        for (const auto& m : rooms_[room_name].history)
            history.push_back(m);
    }
    // History first, then live messages (a message racing the join may come in both; the
    // client drops repeated ids).
    s.push(nlohmann::json{{"type", "history"}, {"room", room_name}, {"messages", history}});
    s.subscribe(channel_of(room_name));
    me.rooms.insert(room_name);
    s.broker().publish(channel_of(room_name),
                       nlohmann::json{{"type", "join"}, {"room", room_name}, {"nick", nick}});
}

void chat_app::say(session& s, const std::string& room_name, const std::string& text) {
    nlohmann::json msg;
    {
        // Numbering and publishing under one lock keeps ids in publish order.
        std::lock_guard lock{mutex_};
        room& r = rooms_[room_name];
        msg = {{"type", "message"}, {"room", room_name}, {"nick", member_of(s).nick},
               {"text", text},      {"id", r.next_id++}, {"time", now_ms()}};
        r.history.push_back(msg);
        if (r.history.size() > history_size)
            r.history.pop_front();
        s.broker().publish(channel_of(room_name), msg);
    }
}

void chat_app::leave(session& s, const std::string& room_name) {
    member& me = member_of(s);
    if (me.rooms.erase(room_name) == 0)
        return;
    s.unsubscribe(channel_of(room_name));
    s.broker().publish(channel_of(room_name),
                       nlohmann::json{{"type", "leave"}, {"room", room_name}, {"nick", me.nick}});
}

void chat_app::on_close(session& s, close_reason) {
    if (!s.data().has_value())
        return;
    const member& me = member_of(s);
    for (const auto& room_name : me.rooms)
        s.broker().publish(
            channel_of(room_name),
            nlohmann::json{{"type", "leave"}, {"room", room_name}, {"nick", me.nick}});
}

} // namespace megaphone::examples
