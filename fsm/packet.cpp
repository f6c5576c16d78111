#include "fsm/packet.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace megaphone {

std::int64_t packet::now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

packet packet::allocate(std::size_t capacity, std::int64_t born_ns) {
    if (capacity > std::numeric_limits<std::uint32_t>::max())
        throw std::length_error("packet larger than 4 GiB");
    void* memory = std::malloc(sizeof(rep) + capacity);
    if (!memory)
        throw std::bad_alloc();
    packet p;
    p.rep_ = new (memory) rep{{1}, static_cast<std::uint32_t>(capacity), born_ns};
    return p;
}

packet packet::from(std::string_view bytes) {
    packet p = allocate(bytes.size(), now_ns());
    if (!bytes.empty())
        std::memcpy(p.bytes(), bytes.data(), bytes.size());
    return p;
}

void packet::release() noexcept {
    // The last owner frees; acquire/release orders the bytes' reads before the free.
    if (rep_ && rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        rep_->~rep();
        std::free(rep_);
    }
    rep_ = nullptr;
}

} // namespace megaphone
