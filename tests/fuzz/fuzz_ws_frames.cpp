// libFuzzer target: the WebSocket frame reader (transport/ws_frames.hpp). The first input byte
// picks max_message, the second how the rest is cut into pieces; the rest is what a client
// sent. Checked: the events are the same whether the bytes come whole or in pieces (and taken
// all at once or one at a time); nothing follows a failure, even with more bytes fed; a message
// is at most max_message bytes and a text one is UTF-8; control payloads are at most 125
// bytes; what the reader holds between events is at most one incomplete frame; a server head
// for each message's length reads back as that length.
#include "transport/ws_frames.hpp"

#include <boost/beast/websocket/detail/utf8_checker.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using megaphone::ws_event;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_ws_frames: %s\n", what);
    std::abort();
}

constexpr std::array<std::size_t, 8> limits{0, 1, 5, 125, 126, 300, 65535, 65536};

struct seen {
    ws_event::kind what;
    megaphone::ws_close code;
    std::string payload;
    bool operator==(const seen&) const = default;
};

/// Checks one event against the rules; records it.
void check(const ws_event& e, std::size_t max, std::vector<seen>& out) {
    switch (e.what) {
    case ws_event::kind::need_more:
        fail("need_more recorded");
    case ws_event::kind::text:
        if (!boost::beast::websocket::detail::check_utf8(e.payload.data(), e.payload.size()))
            fail("a text message that is not UTF-8");
        [[fallthrough]];
    case ws_event::kind::binary: {
        if (e.payload.size() > max)
            fail("a message over max_message");
        // The server's head for this length reads back as it.
        const megaphone::ws_frame_head h{megaphone::ws_opcode::text, e.payload.size()};
        std::uint64_t n = h.bytes[1];
        if (h.size == 4)
            n = (std::uint64_t{h.bytes[2]} << 8) | h.bytes[3];
        else if (h.size == 10)
            for (int i = 0; i < 8; ++i)
                n = (i == 0 ? 0 : n << 8) | h.bytes[2 + i];
        if (n != e.payload.size() || h.bytes[0] != 0x81 || (h.bytes[1] & 0x80) != 0)
            fail("a server head does not read back");
        break;
    }
    case ws_event::kind::ping:
    case ws_event::kind::close:
        if (e.payload.size() > 125)
            fail("a control payload over 125 bytes");
        break;
    case ws_event::kind::pong:
        break;
    case ws_event::kind::failure:
        if (e.code != megaphone::ws_close::protocol_error &&
            e.code != megaphone::ws_close::bad_payload && e.code != megaphone::ws_close::too_big)
            fail("a failure with an unexpected close code");
        break;
    }
    out.push_back({e.what, e.code, e.payload});
}

/// Takes events until need_more (or only one when `one`); false once the reader failed.
void take(megaphone::ws_frame_reader& r, std::size_t max, std::vector<seen>& out, bool one,
          bool& failed) {
    for (;;) {
        const ws_event e = r.next();
        if (e.what == ws_event::kind::need_more) {
            // Between events, at most one incomplete frame: a 14-byte head and its payload.
            if (!failed && r.buffered() >= 14 + std::max<std::size_t>(max, 125))
                fail("more held than one incomplete frame");
            return;
        }
        if (failed)
            fail("an event after a failure");
        check(e, max, out);
        if (e.what == ws_event::kind::failure) {
            failed = true;
            if (!r.failed() || r.buffered() != 0)
                fail("a failed reader still holds bytes");
        }
        if (one)
            return;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const std::size_t max = limits[data[0] % limits.size()];
    std::uint32_t cut = data[1] | 1u;
    const std::string_view bytes{reinterpret_cast<const char*>(data + 2), size - 2};

    // Whole, every event taken at once.
    std::vector<seen> whole;
    bool whole_failed = false;
    {
        megaphone::ws_frame_reader r{max};
        r.feed(bytes);
        take(r, max, whole, false, whole_failed);
        // More bytes after a failure change nothing.
        if (whole_failed) {
            r.feed(bytes);
            take(r, max, whole, false, whole_failed);
        }
    }

    // In pieces of 1 to 16 bytes (a little generator seeded by the second byte), sometimes
    // taking only one event before the next piece (a paused connection).
    std::vector<seen> pieces;
    bool pieces_failed = false;
    {
        megaphone::ws_frame_reader r{max};
        std::size_t at = 0;
        while (at < bytes.size()) {
            cut ^= cut << 13;
            cut ^= cut >> 17;
            cut ^= cut << 5;
            const std::size_t n = std::min<std::size_t>(1 + cut % 16, bytes.size() - at);
            r.feed(bytes.substr(at, n));
            at += n;
            take(r, max, pieces, (cut & 0x100) != 0, pieces_failed);
        }
        take(r, max, pieces, false, pieces_failed);
    }

    if (whole != pieces)
        fail("the events differ between whole and pieces");
    return 0;
}
