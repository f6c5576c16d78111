// chat: rooms, nicknames, join/leave notices, the last 50 messages of a room on join.
//
// Client -> server: {"join": ROOM, "nick": NICK}, {"say": TEXT, "room": ROOM}, {"leave": ROOM}.
// Server -> client: {"type":"history","room","messages":[...]} to a joiner;
// {"type":"join"|"leave","room","nick"} and {"type":"message","room","nick","text","id","time"}
// to everyone in the room; {"type":"error","text"} for a mistake. Message ids count up per room.
//
// Each room is a channel ("chat:" + room), so delivery is the engine's fan-out. The history is
// shared by all threads, under a mutex.
//
// Who may do what is the server's session rules' (docs/PROTOCOL.md, "Tokens"): joining a room
// asks may_subscribe and may_publish (the join notice) for its channel, saying something
// may_publish; a refusal is pushed as
// {"error":"forbidden","channel":"chat:ROOM"} (megaphone.js's 'forbidden' event). A session with a
// token speaks as its user (the token's `sub`), whatever nick its join names; the demo server
// mints such tokens at /demo/token and lets sessions without one publish nowhere.
#pragma once

#include "app/application.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace megaphone::examples {

class chat_app final : public application {
public:
    static constexpr std::size_t history_size = 50;
    static constexpr std::size_t max_name = 64;
    static constexpr std::size_t max_text = 2000;

    void on_message(session& s, const message& m) override;
    void on_close(session& s, close_reason why) override;

    /// The channel that carries a room.
    static std::string channel_of(std::string_view room) { return "chat:" + std::string(room); }

private:
    struct room {
        std::deque<nlohmann::json> history;
        std::uint64_t next_id = 1;
    };
    void join(session& s, const std::string& room, const std::string& nick);
    void say(session& s, const std::string& room, const std::string& text);
    void leave(session& s, const std::string& room);

    std::mutex mutex_;
    std::map<std::string, room, std::less<>> rooms_;
};

} // namespace megaphone::examples
