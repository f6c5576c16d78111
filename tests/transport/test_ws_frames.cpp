// The socket-free RFC 6455 reader and the server's frame head (transport/ws_frames.hpp): every
// rule the reader enforces, with the close code it fails with; the same events whatever the
// pieces the bytes come in; lengths at and over the limit, and 64-bit ones near 2^64; and the
// one-event-at-a-time contract a paused connection relies on.
#include "transport/ws_frames.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace megaphone;

namespace {

constexpr std::uint8_t fin = 0x80;
constexpr std::uint8_t op_cont = 0x0, op_text = 0x1, op_binary = 0x2, op_close = 0x8, op_ping = 0x9,
                       op_pong = 0xA;

enum class length_form { shortest, sixteen, sixty_four };

/// A client frame: the first byte `b0` as given, masked with `key` unless `masked` is false.
std::string frame(std::uint8_t b0, std::string_view payload,
                  length_form form = length_form::shortest, bool masked = true,
                  std::array<std::uint8_t, 4> key = {0x37, 0xfa, 0x21, 0x3d}) {
    std::string f(1, static_cast<char>(b0));
    const std::uint8_t mask_bit = masked ? 0x80 : 0;
    const std::uint64_t n = payload.size();
    if (form == length_form::shortest && n < 126) {
        f += static_cast<char>(mask_bit | n);
    } else if (form != length_form::sixty_four && n < 65536) {
        f += static_cast<char>(mask_bit | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(mask_bit | 127);
        for (int i = 0; i < 8; ++i)
            f += static_cast<char>((n >> (56 - 8 * i)) & 0xff);
    }
    if (masked)
        for (auto k : key)
            f += static_cast<char>(k);
    for (std::size_t i = 0; i < payload.size(); ++i)
        f += static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ (masked ? key[i % 4] : 0));
    return f;
}

/// A masked frame head with a 64-bit length and no payload (the mask key follows).
std::string head64(std::uint8_t b0, std::uint64_t length) {
    std::string f(1, static_cast<char>(b0));
    f += static_cast<char>(0x80 | 127);
    for (int i = 0; i < 8; ++i)
        f += static_cast<char>((length >> (56 - 8 * i)) & 0xff);
    f += std::string("\x01\x02\x03\x04", 4);
    return f;
}

/// An event as text, for comparisons and readable failures.
std::string str(const ws_event& e) {
    std::string s{to_string(e.what)};
    if (e.what == ws_event::kind::close || e.what == ws_event::kind::failure)
        s += " " + std::to_string(static_cast<unsigned>(e.code));
    if (e.what != ws_event::kind::need_more && e.what != ws_event::kind::pong &&
        e.what != ws_event::kind::failure)
        s += " [" + e.payload + "]";
    return s;
}

/// Every event the reader has now, up to need_more.
void drain(ws_frame_reader& r, std::vector<std::string>& out) {
    for (;;) {
        const ws_event e = r.next();
        if (e.what == ws_event::kind::need_more)
            return;
        out.push_back(str(e));
    }
}

std::vector<std::string> read_all(std::string_view bytes, std::size_t max = 1024) {
    ws_frame_reader r{max};
    r.feed(bytes);
    std::vector<std::string> out;
    drain(r, out);
    return out;
}

using events = std::vector<std::string>;

/// The one failure reading `bytes` gives, as "failure N".
std::string failure_of(std::string_view bytes, std::size_t max = 1024) {
    const auto out = read_all(bytes, max);
    return out.empty() ? std::string("(no event)") : out.back();
}

} // namespace

TEST_CASE("websocket frames: a masked text frame is a text message", "[transport][websocket]") {
    CHECK(read_all(frame(fin | op_text, "hello")) == events{"text [hello]"});
    CHECK(read_all(frame(fin | op_text, "")) == events{"text []"});
}

TEST_CASE("websocket frames: 16- and 64-bit lengths, also where a shorter form would do",
          "[transport][websocket]") {
    const std::string a(126, 'a'), b(65535, 'b'), c(65536, 'c');
    CHECK(read_all(frame(fin | op_text, a), 100000) == events{"text [" + a + "]"});
    CHECK(read_all(frame(fin | op_text, b), 100000) == events{"text [" + b + "]"});
    CHECK(read_all(frame(fin | op_text, c), 100000) == events{"text [" + c + "]"});
    CHECK(read_all(frame(fin | op_text, "x", length_form::sixteen)) == events{"text [x]"});
    CHECK(read_all(frame(fin | op_text, "x", length_form::sixty_four)) == events{"text [x]"});
}

TEST_CASE("websocket frames: reserved bits and unmasked frames fail with 1002",
          "[transport][websocket]") {
    for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70})
        CHECK(failure_of(frame(static_cast<std::uint8_t>(fin | rsv | op_text), "x")) ==
              "failure 1002");
    CHECK(failure_of(frame(fin | op_text, "x", length_form::shortest, false)) == "failure 1002");
    // Known from the first two bytes: nothing more is awaited.
    CHECK(failure_of(std::string("\xc1\x85", 2)) == "failure 1002");
    CHECK(failure_of(std::string("\x81\x05", 2)) == "failure 1002");
}

TEST_CASE("websocket frames: control frames are final and at most 125 bytes",
          "[transport][websocket]") {
    const std::string p125(125, 'p'), p126(126, 'p');
    CHECK(read_all(frame(fin | op_ping, p125)) == events{"ping [" + p125 + "]"});
    CHECK(failure_of(frame(fin | op_ping, p126)) == "failure 1002");
    CHECK(failure_of(frame(op_ping, "x")) == "failure 1002");
    CHECK(failure_of(frame(op_pong, "")) == "failure 1002");
    CHECK(failure_of(frame(op_close, "")) == "failure 1002");
    CHECK(failure_of(frame(fin | op_close, p126)) == "failure 1002");
    // A long length form is refused on its head (the limit does not apply to control frames).
    CHECK(failure_of(head64(fin | op_ping, 0xffffffffffffffffULL), 1u << 20) == "failure 1002");
}

TEST_CASE("websocket frames: ping, pong and close", "[transport][websocket]") {
    CHECK(read_all(frame(fin | op_ping, "abc")) == events{"ping [abc]"});
    CHECK(read_all(frame(fin | op_pong, "abc")) == events{"pong"});
    CHECK(read_all(frame(fin | op_close, std::string("\x03\xe8", 2) + "bye")) ==
          events{"close 1000 [" + std::string("\x03\xe8", 2) + "bye]"});
    CHECK(read_all(frame(fin | op_close, std::string("\x0f\xa1", 2))) ==
          events{"close 4001 [" + std::string("\x0f\xa1", 2) + "]"});
    // No code (or half of one): 1000.
    CHECK(read_all(frame(fin | op_close, "")) == events{"close 1000 []"});
    CHECK(read_all(frame(fin | op_close, "\x03")) == events{"close 1000 [\x03]"});
}

TEST_CASE("websocket frames: opcodes RFC 6455 does not define fail with 1002",
          "[transport][websocket]") {
    for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
        INFO("opcode " << int(op));
        CHECK(failure_of(frame(static_cast<std::uint8_t>(fin | op), "x")) == "failure 1002");
    }
}

TEST_CASE("websocket frames: a binary message is yielded as binary", "[transport][websocket]") {
    CHECK(read_all(frame(fin | op_binary, "\xff\x00", length_form::shortest)) ==
          events{std::string("binary [\xff]")});
    CHECK(read_all(frame(op_binary, "a") + frame(fin | op_cont, "b")) == events{"binary [ab]"});
}

TEST_CASE("websocket frames: a text message must be UTF-8 (1007), also across fragments",
          "[transport][websocket]") {
    CHECK(failure_of(frame(fin | op_text, "\xff")) == "failure 1007");
    CHECK(failure_of(frame(fin | op_text, "\xc3")) == "failure 1007");         // cut short
    CHECK(failure_of(frame(fin | op_text, "\xed\xa0\x80")) == "failure 1007"); // a surrogate
    // "é" split between two fragments is one valid message.
    CHECK(read_all(frame(op_text, "\xc3") + frame(fin | op_cont, "\xa9")) ==
          events{"text [\xc3\xa9]"});
}

TEST_CASE("websocket frames: a continuation without a start fails with 1002",
          "[transport][websocket]") {
    CHECK(failure_of(frame(fin | op_cont, "x")) == "failure 1002");
    CHECK(failure_of(frame(op_cont, "x")) == "failure 1002");
    // Nor after a message that ended.
    CHECK(read_all(frame(fin | op_text, "a") + frame(fin | op_cont, "b")) ==
          events{"text [a]", "failure 1002"});
}

TEST_CASE("websocket frames: a new data frame inside a fragmented message fails with 1002",
          "[transport][websocket]") {
    CHECK(failure_of(frame(op_text, "a") + frame(fin | op_text, "b")) == "failure 1002");
    CHECK(failure_of(frame(op_text, "a") + frame(op_binary, "b")) == "failure 1002");
    CHECK(failure_of(frame(op_binary, "a") + frame(fin | op_text, "b")) == "failure 1002");
}

TEST_CASE("websocket frames: control frames between fragments come first, the message after",
          "[transport][websocket]") {
    const std::string bytes = frame(op_text, "he") + frame(fin | op_ping, "p1") +
                              frame(op_cont, "ll") + frame(fin | op_pong, "") +
                              frame(fin | op_cont, "o");
    CHECK(read_all(bytes) == events{"ping [p1]", "pong", "text [hello]"});
    // A close between fragments: the client closes, the message is never whole.
    CHECK(read_all(frame(op_text, "he") + frame(fin | op_close, "")) == events{"close 1000 []"});
}

TEST_CASE("websocket frames: a message of max_message bytes passes, one more fails with 1009",
          "[transport][websocket]") {
    const std::size_t max = 300;
    const std::string at(max, 'm'), over(max + 1, 'm');
    CHECK(read_all(frame(fin | op_text, at), max) == events{"text [" + at + "]"});
    CHECK(failure_of(frame(fin | op_text, over), max) == "failure 1009");
    // In fragments: the sum counts.
    CHECK(read_all(frame(op_text, at.substr(0, 100)) + frame(fin | op_cont, at.substr(100)), max) ==
          events{"text [" + at + "]"});
    CHECK(failure_of(frame(op_text, at.substr(0, 100)) + frame(fin | op_cont, over.substr(100)),
                     max) == "failure 1009");
    // Every length form, at and over a small limit.
    for (auto form : {length_form::shortest, length_form::sixteen, length_form::sixty_four}) {
        CHECK(read_all(frame(fin | op_text, "12345", form), 5) == events{"text [12345]"});
        CHECK(failure_of(frame(fin | op_text, "123456", form), 5) == "failure 1009");
    }
    // A limit of 0: only empty messages.
    CHECK(read_all(frame(fin | op_text, ""), 0) == events{"text []"});
    CHECK(failure_of(frame(fin | op_text, "x"), 0) == "failure 1009");
}

TEST_CASE("websocket frames: a length over the limit fails on the head, before any payload",
          "[transport][websocket]") {
    ws_frame_reader r{1000};
    r.feed(head64(fin | op_text, 1001).substr(0, 10)); // the mask key not even there
    const ws_event e = r.next();
    CHECK(str(e) == "failure 1009");
    CHECK(r.failed());
    CHECK(r.buffered() == 0);
}

TEST_CASE("websocket frames: 64-bit lengths near 2^64 fail with 1009, never wrap",
          "[transport][websocket]") {
    for (std::uint64_t n : {0xffffffffffffffffULL, 0xfffffffffffffffeULL, 0xfffffffffffffffcULL,
                            0x8000000000000000ULL, 0x7fffffffffffffffULL, 0x100000000ULL}) {
        INFO("length " << n);
        CHECK(failure_of(head64(fin | op_text, n)) == "failure 1009");
        CHECK(failure_of(head64(op_binary, n)) == "failure 1009");
        // After part of a message: length + what was read would wrap to a small sum.
        CHECK(failure_of(frame(op_text, "abcd") + head64(fin | op_cont, n)) == "failure 1009");
    }
    // With a limit near 2^64 too: the message so far plus the length would wrap.
    for (std::uint64_t n : {0xffffffffffffffffULL, 0xfffffffffffffffeULL, 0xfffffffffffffffcULL}) {
        INFO("length " << n);
        CHECK(failure_of(frame(op_text, "abcd") + head64(fin | op_cont, n), SIZE_MAX - 2) ==
              "failure 1009");
    }
    // With the limit at its largest, a huge length is awaited, not refused nor wrapped.
    ws_frame_reader r{SIZE_MAX};
    r.feed(frame(op_text, "abcd") + head64(fin | op_cont, 0xfffffffffffffff0ULL) + "xyz");
    CHECK(str(r.next()) == "need_more");
    CHECK(!r.failed());
}

TEST_CASE("websocket frames: nothing is yielded after a failure, whatever is fed",
          "[transport][websocket]") {
    ws_frame_reader r{1024};
    r.feed(frame(fin | op_text, "x", length_form::shortest, false) + frame(fin | op_text, "y"));
    CHECK(str(r.next()) == "failure 1002");
    CHECK(str(r.next()) == "need_more");
    r.feed(frame(fin | op_text, "z"));
    CHECK(str(r.next()) == "need_more");
    CHECK(r.buffered() == 0);
    // stop(): the same, from the caller.
    ws_frame_reader s{1024};
    s.feed(frame(fin | op_text, "a") + frame(fin | op_text, "b"));
    CHECK(str(s.next()) == "text [a]");
    s.stop();
    CHECK(str(s.next()) == "need_more");
    CHECK(s.buffered() == 0);
}

TEST_CASE("websocket frames: one event at a time, the rest waits for the caller",
          "[transport][websocket]") {
    ws_frame_reader r{1024};
    r.feed(frame(fin | op_text, "1") + frame(fin | op_text, "2") + frame(op_text, "3"));
    CHECK(str(r.next()) == "text [1]");
    // The caller pauses here; more comes meanwhile; then it goes on where it stopped.
    r.feed(frame(fin | op_cont, "4") + frame(fin | op_ping, ""));
    CHECK(str(r.next()) == "text [2]");
    CHECK(str(r.next()) == "text [34]");
    CHECK(str(r.next()) == "ping []");
    CHECK(str(r.next()) == "need_more");
    CHECK(r.buffered() == 0);
    CHECK(!r.in_message());
}

TEST_CASE("websocket frames: an incomplete frame is kept, and nothing once it is taken",
          "[transport][websocket]") {
    ws_frame_reader r{100000};
    const std::string big = frame(fin | op_text, std::string(5000, 'x'));
    r.feed(big.substr(0, 3000));
    CHECK(str(r.next()) == "need_more");
    CHECK(r.buffered() == 3000);
    r.feed(big.substr(3000));
    CHECK(r.next().what == ws_event::kind::text);
    CHECK(str(r.next()) == "need_more");
    CHECK(r.buffered() == 0);
}

TEST_CASE("websocket frames: the same events whatever pieces the bytes come in",
          "[transport][websocket]") {
    // Every kind of frame, every length form, fragments with control frames between them.
    const std::string bytes =
        frame(fin | op_text, "{\"rid\":1}") + frame(fin | op_ping, "ping!") +
        frame(op_text, "fr", length_form::sixteen) + frame(fin | op_pong, "x") +
        frame(op_cont, "ag", length_form::sixty_four) + frame(fin | op_ping, "") +
        frame(fin | op_cont, "ment\xc3\xa9") + frame(fin | op_text, std::string(200, 'l')) +
        frame(fin | op_binary, "bin") + frame(fin | op_text, "") +
        frame(fin | op_close, std::string("\x03\xe9", 2));
    const events whole = read_all(bytes);
    REQUIRE(whole.size() == 9);
    CHECK(whole.back() == "close 1001 [" + std::string("\x03\xe9", 2) + "]");

    SECTION("one byte at a time") {
        ws_frame_reader r{1024};
        events out;
        for (char c : bytes) {
            r.feed(&c, 1);
            drain(r, out);
        }
        CHECK(out == whole);
        CHECK(r.buffered() == 0);
    }
    SECTION("split in two at every byte boundary") {
        for (std::size_t at = 0; at <= bytes.size(); ++at) {
            ws_frame_reader r{1024};
            events out;
            r.feed(std::string_view(bytes).substr(0, at));
            drain(r, out);
            r.feed(std::string_view(bytes).substr(at));
            drain(r, out);
            INFO("split at " << at);
            CHECK(out == whole);
        }
    }
    SECTION("random chunks, taking one event at a time between feeds") {
        std::mt19937 rng{20261203};
        for (int round = 0; round < 200; ++round) {
            ws_frame_reader r{1024};
            events out;
            std::size_t at = 0;
            while (at < bytes.size()) {
                const std::size_t n = std::uniform_int_distribution<std::size_t>(1, 40)(rng);
                r.feed(std::string_view(bytes).substr(at, n));
                at += std::min(n, bytes.size() - at);
                // Sometimes take one event only (a paused caller), sometimes all.
                if (rng() % 2) {
                    const ws_event e = r.next();
                    if (e.what != ws_event::kind::need_more)
                        out.push_back(str(e));
                } else {
                    drain(r, out);
                }
            }
            drain(r, out);
            INFO("round " << round);
            CHECK(out == whole);
        }
    }
}

TEST_CASE("websocket frames: a failure is found at the same byte whatever the pieces",
          "[transport][websocket]") {
    const std::string bytes = frame(fin | op_text, "ok") + frame(op_text, "a") +
                              frame(fin | op_text, "b") + frame(fin | op_text, "never");
    const events whole = read_all(bytes);
    CHECK(whole == events{"text [ok]", "failure 1002"});
    ws_frame_reader r{1024};
    events out;
    for (char c : bytes) {
        r.feed(&c, 1);
        drain(r, out);
    }
    CHECK(out == whole);
}

TEST_CASE("websocket frames: a server frame's head has FIN, the opcode and the shortest length",
          "[transport][websocket]") {
    using bytes = std::vector<std::uint8_t>;
    auto head = [](ws_opcode op, std::uint64_t n) {
        const ws_frame_head h{op, n};
        return bytes(h.bytes.begin(), h.bytes.begin() + h.size);
    };
    CHECK(head(ws_opcode::text, 0) == bytes{0x81, 0});
    CHECK(head(ws_opcode::text, 125) == bytes{0x81, 125});
    CHECK(head(ws_opcode::close, 2) == bytes{0x88, 2});
    CHECK(head(ws_opcode::pong, 5) == bytes{0x8A, 5});
    CHECK(head(ws_opcode::ping, 0) == bytes{0x89, 0});
    CHECK(head(ws_opcode::text, 126) == bytes{0x81, 126, 0, 126});
    CHECK(head(ws_opcode::text, 65535) == bytes{0x81, 126, 0xff, 0xff});
    CHECK(head(ws_opcode::text, 65536) == bytes{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0});
    CHECK(head(ws_opcode::binary, 0x0102030405060708ULL) ==
          bytes{0x82, 127, 1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(ws_frame_head{ws_opcode::text, 3}.view() == std::string_view("\x81\x03", 2));
}
