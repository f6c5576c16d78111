#include "transport/ws_frames.hpp"

#include <boost/beast/websocket/detail/utf8_checker.hpp>

#include <utility>

namespace megaphone {

namespace {

/// Appends `n` bytes of `payload`, unmasked with the frame's 4-byte `key`.
void unmask_into(std::string& out, const char* payload, std::size_t n, const std::uint8_t* key) {
    const std::size_t base = out.size();
    out.resize(base + n);
    for (std::size_t i = 0; i < n; ++i)
        out[base + i] = static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ key[i % 4]);
}

} // namespace

ws_frame_head::ws_frame_head(ws_opcode op, std::uint64_t length) noexcept {
    bytes[0] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));
    if (length < 126) {
        bytes[1] = static_cast<std::uint8_t>(length);
        size = 2;
    } else if (length < 65536) {
        bytes[1] = 126;
        bytes[2] = static_cast<std::uint8_t>(length >> 8);
        bytes[3] = static_cast<std::uint8_t>(length);
        size = 4;
    } else {
        bytes[1] = 127;
        for (int i = 0; i < 8; ++i)
            bytes[2 + i] = static_cast<std::uint8_t>(length >> (56 - 8 * i));
        size = 10;
    }
}

std::string_view to_string(ws_event::kind k) noexcept {
    switch (k) {
    case ws_event::kind::need_more:
        return "need_more";
    case ws_event::kind::text:
        return "text";
    case ws_event::kind::binary:
        return "binary";
    case ws_event::kind::ping:
        return "ping";
    case ws_event::kind::pong:
        return "pong";
    case ws_event::kind::close:
        return "close";
    case ws_event::kind::failure:
        return "failure";
    }
    return "?";
}

void ws_frame_reader::feed(const char* data, std::size_t size) {
    if (failed_ || size == 0)
        return;
    if (at_ != 0) {
        partial_.erase(0, at_);
        at_ = 0;
    }
    partial_.append(data, size);
}

void ws_frame_reader::stop() noexcept {
    failed_ = true;
    std::string().swap(partial_);
    std::string().swap(message_);
    at_ = 0;
    message_op_ = 0;
}

ws_event ws_frame_reader::fail(ws_close code) {
    stop();
    ws_event e;
    e.what = ws_event::kind::failure;
    e.code = code;
    return e;
}

/// What is left once every whole frame was taken: the incomplete one, moved to the front (and
/// no buffer at all when nothing is left of a large one).
void ws_frame_reader::compact() {
    partial_.erase(0, at_);
    at_ = 0;
    if (partial_.empty() && partial_.capacity() > 256)
        std::string().swap(partial_);
}

ws_event ws_frame_reader::next() {
    if (failed_)
        return {};
    const auto* p = reinterpret_cast<const std::uint8_t*>(partial_.data());
    for (;;) {
        const std::size_t left = partial_.size() - at_;
        if (left < 2)
            break;
        const std::uint8_t b0 = p[at_], b1 = p[at_ + 1];
        const bool fin = (b0 & 0x80) != 0;
        const auto op = static_cast<ws_opcode>(b0 & 0x0f);
        // No extension was agreed (RSV bits), and a client masks every frame (5.1, 5.2).
        if ((b0 & 0x70) != 0 || (b1 & 0x80) == 0)
            return fail(ws_close::protocol_error);
        std::uint64_t length = b1 & 0x7f;
        std::size_t head = 2;
        if (length == 126) {
            if (left < 4)
                break;
            length = (std::uint64_t{p[at_ + 2]} << 8) | p[at_ + 3];
            head = 4;
        } else if (length == 127) {
            if (left < 10)
                break;
            length = 0;
            for (int i = 0; i < 8; ++i)
                length = (length << 8) | p[at_ + 2 + i];
            head = 10;
        }
        const bool control = (b0 & 0x08) != 0;
        if (control && (!fin || length > 125))
            return fail(ws_close::protocol_error);
        // A data message may not grow past max_message, whatever its frames; checked on the
        // head, so that no payload over the limit is ever awaited. (No sum: a 64-bit length
        // near 2^64 must not wrap it; message_ is never over the limit.)
        if (!control && (length > max_message_ || length > max_message_ - message_.size()))
            return fail(ws_close::too_big);
        // The rest of the frame may still be on its way (no sum here either).
        if (left - head < 4 || left - head - 4 < length)
            break;
        const std::uint8_t* key = p + at_ + head;
        const char* payload = partial_.data() + at_ + head + 4;
        const auto n = static_cast<std::size_t>(length);
        at_ += head + 4 + n;
        switch (op) {
        case ws_opcode::text:
        case ws_opcode::binary:
        case ws_opcode::continuation: {
            if ((op == ws_opcode::continuation) != (message_op_ != 0))
                return fail(ws_close::protocol_error); // a frame out of its message
            if (op != ws_opcode::continuation)
                message_op_ = static_cast<std::uint8_t>(op);
            unmask_into(message_, payload, n, key);
            if (!fin)
                continue; // the message goes on in a later frame
            ws_event e;
            e.payload.swap(message_);
            const auto message_op = static_cast<ws_opcode>(std::exchange(message_op_, 0));
            if (message_op == ws_opcode::binary) {
                e.what = ws_event::kind::binary;
                return e;
            }
            if (!boost::beast::websocket::detail::check_utf8(e.payload.data(), e.payload.size()))
                return fail(ws_close::bad_payload);
            e.what = ws_event::kind::text;
            return e;
        }
        case ws_opcode::ping: {
            ws_event e;
            e.what = ws_event::kind::ping;
            unmask_into(e.payload, payload, n, key);
            return e;
        }
        case ws_opcode::pong: {
            ws_event e;
            e.what = ws_event::kind::pong;
            return e;
        }
        case ws_opcode::close: {
            // Its code (or 1000 without one) is what the server sends back.
            ws_event e;
            e.what = ws_event::kind::close;
            unmask_into(e.payload, payload, n, key);
            if (e.payload.size() >= 2)
                e.code = static_cast<ws_close>((static_cast<std::uint8_t>(e.payload[0]) << 8) |
                                               static_cast<std::uint8_t>(e.payload[1]));
            return e;
        }
        default:
            return fail(ws_close::protocol_error); // an opcode RFC 6455 does not define
        }
    }
    compact();
    return {};
}

} // namespace megaphone
