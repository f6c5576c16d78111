// An exchange is one HTTP request waiting for its answer. The session layer answers it, maybe
// much later and from another thread, through this handle; the connection that carries it is
// the exchange_target. The handle holds the target weakly: answering an exchange whose
// connection is gone is a silent no-op (the answer stays in the session's response cache, so a
// client that re-sends the rid still gets it).
#pragma once

#include "fsm/packet.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

namespace megaphone {

/// What the answer body is; the connection turns it into a Content-Type header.
enum class content_kind : std::uint8_t {
    json,
    xml,
    html,
    text,
    javascript,
    css,
    svg,
    png,
    binary,
    event_stream
};
std::string_view content_type(content_kind k) noexcept;

struct response {
    unsigned status = 200;
    content_kind kind = content_kind::json;
    packet body;
    /// Overrides the Content-Type of `kind` when set (BOSH's `content` attribute).
    packet content_type = {};
    /// When the oldest pushed message it carries was made (packet::born_ns); 0: none. The
    /// connection measures push latency from it once the answer is written.
    std::int64_t pushed_at_ns = 0;
    /// More header lines, each "Name: value\r\n" (WWW-Authenticate on a 401); usually none.
    packet headers = {};
    /// A streamed answer (SSE): its head has no Content-Length, no Cache-Control of its own
    /// (`headers` gives them) and `Connection: close` (the body ends with the connection), and
    /// the exchange stays open after `body` is written: exchange::write() adds to it, one piece
    /// at a time, until a last piece. `heartbeat` is written whenever nothing else was for
    /// `heartbeat_every` (0: never).
    bool stream = false;
    packet heartbeat = {};
    std::chrono::milliseconds heartbeat_every{0};
};

class exchange_target {
public:
    virtual ~exchange_target() = default;
    /// Delivers the answer of exchange `seq`. Thread-safe; stale `seq`s are ignored.
    virtual void deliver(std::uint32_t seq, response r) = 0;
    /// A streamed answer (response::stream) of exchange `seq` goes on with `body`; `last`: it
    /// ends after it (the connection closes). Thread-safe; stale `seq`s are ignored. Targets
    /// that never stream ignore it.
    virtual void write(std::uint32_t seq, packet body, bool last, std::int64_t pushed_at_ns) {
        (void)seq, (void)body, (void)last, (void)pushed_at_ns;
    }
};

class exchange {
public:
    exchange() = default;
    exchange(std::weak_ptr<exchange_target> target, std::uint32_t seq)
        : target_{std::move(target)}
        , seq_{seq} {}

    void reply(response r) const {
        if (auto t = target_.lock())
            t->deliver(seq_, std::move(r));
    }
    /// A streamed answer (response::stream) goes on: `body` is written after what was; `last`:
    /// then it ends. The writer of the exchange waits for each piece's on_written (incoming)
    /// before the next, except for a last piece.
    void write(packet body, bool last = false, std::int64_t pushed_at_ns = 0) const {
        if (auto t = target_.lock())
            t->write(seq_, std::move(body), last, pushed_at_ns);
    }
    /// False once the carrying connection is gone (it may still be closing: not a promise).
    bool alive() const noexcept { return !target_.expired(); }
    std::uint32_t seq() const noexcept { return seq_; }
    /// The same exchange: same connection, same request on it.
    bool same_as(const exchange& other) const noexcept {
        return seq_ == other.seq_ && !target_.owner_before(other.target_) &&
               !other.target_.owner_before(target_);
    }

private:
    std::weak_ptr<exchange_target> target_;
    std::uint32_t seq_ = 0;
};

} // namespace megaphone
