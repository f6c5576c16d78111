#include "app/rate_limiter.hpp"

#include <algorithm>
#include <chrono>

namespace megaphone {

namespace {

/// The address's bytes (IPv4 as its 4 bytes, IPv6 as its 16): the bucket's key.
std::string key_of(const boost::asio::ip::address& a) {
    if (a.is_v4()) {
        const auto b = a.to_v4().to_bytes();
        return {b.begin(), b.end()};
    }
    const auto v6 = a.to_v6();
    if (v6.is_v4_mapped()) {
        const auto b = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_bytes();
        return {b.begin(), b.end()};
    }
    const auto b = v6.to_bytes();
    return {b.begin(), b.end()};
}

} // namespace

bool rate_limiter::allow(const boost::asio::ip::address& address, time_point now) {
    if (burst_ <= 0)
        return true;
    std::lock_guard lock{mutex_};
    if (buckets_.size() >= sweep_at_)
        forget_full(now);
    auto [it, fresh] = buckets_.try_emplace(key_of(address), bucket{burst_, now});
    bucket& b = it->second;
    if (!fresh && now > b.last) {
        const double elapsed = std::chrono::duration<double>(now - b.last).count();
        b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
        b.last = now;
    }
    if (b.tokens < 1)
        return false;
    b.tokens -= 1;
    return true;
}

void rate_limiter::forget_full(time_point now) {
    // A bucket that has refilled is the same as no bucket.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        const double elapsed = std::chrono::duration<double>(now - it->second.last).count();
        if (it->second.tokens + elapsed * rate_ >= burst_)
            it = buckets_.erase(it);
        else
            ++it;
    }
    // Sweep again when the map has doubled: amortized O(1) per call.
    sweep_at_ = std::max<std::size_t>(1024, 2 * buckets_.size());
}

std::size_t rate_limiter::tracked() const {
    std::lock_guard lock{mutex_};
    return buckets_.size();
}

} // namespace megaphone
