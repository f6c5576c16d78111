// rate_limiter: a token bucket per client address, for session creations. Each address may
// create `burst` sessions at once, then `rate` per second; the buckets of all I/O threads are
// shared (one mutex, held for a hash lookup). Buckets that have refilled are forgotten, so memory
// follows the number of addresses that created sessions recently.
#pragma once

#include "fsm/clock.hpp"

#include <boost/asio/ip/address.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace megaphone {

class rate_limiter {
public:
    /// `burst` 0: no limit.
    rate_limiter(double rate, std::uint32_t burst) noexcept
        : rate_{rate}
        , burst_{static_cast<double>(burst)} {}

    /// Takes one token from `address`'s bucket; false when it is empty (refuse the creation).
    bool allow(const boost::asio::ip::address& address, time_point now);

    /// Addresses tracked now (for tests).
    std::size_t tracked() const;

private:
    struct bucket {
        double tokens;
        time_point last;
    };
    void forget_full(time_point now);

    double rate_;
    double burst_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, bucket> buckets_;
    std::size_t sweep_at_ = 1024;
};

} // namespace megaphone
