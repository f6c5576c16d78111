// An immutable, reference-counted payload: one allocation holds the count, the size and the bytes.
//
// A packet is encoded once by whoever publishes it and then shared by every session that queues
// it, so a fan-out to N sessions costs N pointer copies, not N string copies. The handle is one
// pointer wide, which keeps session queues small.
#pragma once

#include <atomic>
#include <cassert>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace megaphone {

class packet {
public:
    packet() = default;

    /// Copies `bytes` into a new packet.
    static packet from(std::string_view bytes);

    /// Appends to a packet under construction (see make()); the caller sized it.
    class writer {
    public:
        explicit writer(char* at) noexcept
            : at_{at} {}
        writer& operator<<(std::string_view s) noexcept {
            if (!s.empty())
                std::memcpy(at_, s.data(), s.size());
            at_ += s.size();
            return *this;
        }
        writer& operator<<(char c) noexcept {
            *at_++ = c;
            return *this;
        }
        /// Decimal digits: at most 20.
        writer& operator<<(std::uint64_t n) noexcept {
            at_ = std::to_chars(at_, at_ + 20, n).ptr;
            return *this;
        }
        char* position() const noexcept { return at_; }

    private:
        char* at_;
    };

    /// A packet written in place by `fill(writer&)`, which appends at most `capacity` bytes: one
    /// allocation and no intermediate string.
    template <class Fill>
    static packet make(std::size_t capacity, Fill&& fill) {
        return make(capacity, now_ns(), std::forward<Fill>(fill));
    }
    /// As make(), with its push time given instead of read from the clock: a message made from
    /// another keeps that one's (stamp()), an answer's body, which nobody times, takes 0.
    template <class Fill>
    static packet make(std::size_t capacity, std::int64_t born_ns, Fill&& fill) {
        packet p = allocate(capacity, born_ns);
        char* begin = p.bytes();
        writer w{begin};
        fill(w);
        const auto written = static_cast<std::size_t>(w.position() - begin);
        assert(written <= capacity);
        p.rep_->size = static_cast<std::uint32_t>(written);
        return p;
    }

    packet(const packet& other) noexcept
        : rep_{other.rep_} {
        retain();
    }
    packet(packet&& other) noexcept
        : rep_{std::exchange(other.rep_, nullptr)} {}
    packet& operator=(packet other) noexcept {
        std::swap(rep_, other.rep_);
        return *this;
    }
    ~packet() { release(); }

    std::string_view view() const noexcept {
        return rep_ ? std::string_view{data(), rep_->size} : std::string_view{};
    }
    std::size_t size() const noexcept { return rep_ ? rep_->size : 0; }
    bool empty() const noexcept { return size() == 0; }
    explicit operator bool() const noexcept { return rep_ != nullptr; }

    /// When the packet was made (steady clock, ns): a pushed message's push time, for the push
    /// latency histogram. 0 for an empty handle, and for a body made with a push time of 0.
    std::int64_t born_ns() const noexcept { return rep_ ? rep_->born_ns : 0; }

    /// True when both handles share one allocation (not a byte comparison).
    bool same_as(const packet& other) const noexcept { return rep_ == other.rep_; }
    friend bool operator==(const packet& a, const packet& b) noexcept {
        return a.view() == b.view();
    }

private:
    struct rep {
        std::atomic<std::uint32_t> refs;
        std::uint32_t size;
        std::int64_t born_ns;
    };
    const char* data() const noexcept { return reinterpret_cast<const char*>(rep_ + 1); }
    char* bytes() noexcept { return reinterpret_cast<char*>(rep_ + 1); }
    /// A packet with room for `capacity` bytes, its size set to `capacity`.
    static packet allocate(std::size_t capacity, std::int64_t born_ns);
    /// The steady clock in ns (born_ns).
    static std::int64_t now_ns() noexcept;
    void retain() noexcept {
        if (rep_)
            rep_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    void release() noexcept;

    rep* rep_ = nullptr;
};

} // namespace megaphone
