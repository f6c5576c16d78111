// RFC 6455 framing, the server's side, without a socket: ws_frame_reader takes the bytes a
// client sent, in pieces of any size, and yields what they say one event at a time (a whole
// text or binary message, a ping's payload, a pong, a close with its code, or the protocol
// failure that ends the connection, with the close code to send); ws_frame_head is the head of
// a server frame.
//
// The reader's rules (section 5): no extension was agreed (RSV bits 0), every client frame is
// masked, a control frame is final and at most 125 bytes, a continuation belongs to a message
// and a new data message waits for the last one's FIN (control frames may come between the
// fragments), an opcode RFC 6455 does not define is refused, and a data message may not grow
// past max_message (checked on each frame's head, before its payload is awaited: the limit is
// also what the reader may hold), a text message must be UTF-8.
//
// Invariants: after a failure the reader yields nothing more (and holds no bytes); a message
// it yields is at most max_message bytes; it holds at most one incomplete frame (and the
// message so far), and no buffer at all once everything fed was taken.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace megaphone {

/// Close codes the server sends (RFC 6455 7.4; 4000-4999 are the application's).
enum class ws_close : std::uint16_t {
    normal = 1000,         ///< the session ended: after its terminate frame
    protocol_error = 1002, ///< a frame RFC 6455 forbids (unmasked, reserved bits, ...)
    unsupported = 1003,    ///< a binary frame: the protocol is JSON text
    bad_payload = 1007,    ///< a text message that is not UTF-8
    too_big = 1009,        ///< a message over max_message
    item_not_found = 4404, ///< no stream can open: an unknown or ended session, a BOSH
                           ///< session, another node's, no sid, a malformed lastEventId or one
                           ///< the replay window cannot serve
    replaced = 4409,       ///< a newer stream (SSE or WebSocket) of the session took over
};

/// RFC 6455 opcodes.
enum class ws_opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

/// The head of a server frame (never masked): FIN, the opcode, the length in 1, 3 or 9 bytes.
struct ws_frame_head {
    std::array<std::uint8_t, 10> bytes{};
    std::uint8_t size = 0;

    ws_frame_head() = default;
    ws_frame_head(ws_opcode op, std::uint64_t length) noexcept;

    std::string_view view() const noexcept {
        return {reinterpret_cast<const char*>(bytes.data()), size};
    }
};

/// One thing the client's frames said.
struct ws_event {
    enum class kind : std::uint8_t {
        need_more, ///< nothing whole yet: feed more bytes (also: always, after a failure)
        text,      ///< a whole text message, valid UTF-8, in `payload`
        binary,    ///< a whole binary message in `payload`
        ping,      ///< a ping; its payload (to send back in the pong) in `payload`
        pong,      ///< a pong (liveness only)
        close,     ///< the client closes: its code in `code` (1000 when it gave none), the
                   ///< whole close payload in `payload`
        failure,   ///< the client broke the protocol: close with `code`; nothing follows
    };
    kind what = kind::need_more;
    ws_close code = ws_close::normal;
    std::string payload;
};

std::string_view to_string(ws_event::kind k) noexcept;

/// The client's side of one connection, read: the bytes of an incomplete frame and the data
/// message so far. next() takes one frame at a time, so the caller may stop between any two
/// (a connection that waits for answers stops taking frames, and takes the rest later).
class ws_frame_reader {
public:
    explicit ws_frame_reader(std::size_t max_message) noexcept
        : max_message_{max_message} {}

    /// Bytes as they came from the socket (ignored after a failure).
    void feed(const char* data, std::size_t size);
    void feed(std::string_view bytes) { feed(bytes.data(), bytes.size()); }

    /// The next event: one frame taken out of what was fed (a data frame that does not end its
    /// message gives need_more once all of it is taken, as does an incomplete frame).
    ws_event next();

    /// Ends the reading (the connection closes for another reason): the bytes and the message
    /// so far are dropped and nothing more is yielded.
    void stop() noexcept;

    bool failed() const noexcept { return failed_; }
    /// Bytes fed and not yet taken.
    std::size_t buffered() const noexcept { return partial_.size() - at_; }
    /// Whether a fragmented data message is being read (its first frame taken, not its last).
    bool in_message() const noexcept { return message_op_ != 0; }
    std::size_t max_message() const noexcept { return max_message_; }

private:
    ws_event fail(ws_close code);
    void compact();

    std::string partial_; // fed, from at_ on not yet taken: at most an incomplete frame
    std::string message_; // a data message's payload so far; empty between messages
    std::size_t at_ = 0;
    std::size_t max_message_;
    std::uint8_t message_op_ = 0; // the opcode of the data message being read; 0: none
    bool failed_ = false;
};

} // namespace megaphone
