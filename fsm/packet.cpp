#include "fsm/packet.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace megaphone {

packet packet::from(std::string_view bytes) {
    if (bytes.size() > std::numeric_limits<std::uint32_t>::max())
        throw std::length_error("packet larger than 4 GiB");
    void* memory = std::malloc(sizeof(rep) + bytes.size());
    if (!memory)
        throw std::bad_alloc();
    const auto born = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
    auto* r = new (memory) rep{{1}, static_cast<std::uint32_t>(bytes.size()), born};
    if (!bytes.empty())
        std::memcpy(reinterpret_cast<char*>(r + 1), bytes.data(), bytes.size());
    packet p;
    p.rep_ = r;
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
