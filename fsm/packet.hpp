// An immutable, reference-counted payload: one allocation holds the count, the size and the bytes.
//
// A packet is encoded once by whoever publishes it and then shared by every session that queues
// it, so a fan-out to N sessions costs N pointer copies, not N string copies. The handle is one
// pointer wide, which keeps session queues small.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace megaphone {

class packet {
public:
    packet() = default;

    /// Copies `bytes` into a new packet.
    static packet from(std::string_view bytes);

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
    /// latency histogram. 0 for an empty handle.
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
    void retain() noexcept {
        if (rep_)
            rep_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    void release() noexcept;

    rep* rep_ = nullptr;
};

} // namespace megaphone
