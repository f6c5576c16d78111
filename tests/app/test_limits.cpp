// Limits that need no sockets: the per-address creation bucket (manual time), and the session
// id generator (statistics over 1,000,000 ids: no repeats, every bit and every character
// uniform).
#include "app/engine.hpp"
#include "app/rate_limiter.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

using megaphone::rate_limiter;
using megaphone::time_point;
using namespace std::chrono_literals;
namespace ip = boost::asio::ip;

TEST_CASE("rate limiter: a burst per address, then the rate, other addresses are separate") {
    rate_limiter limit{/*rate=*/2, /*burst=*/3};
    const auto a = ip::make_address("192.0.2.1");
    const auto b = ip::make_address("2001:db8::1");
    time_point t{1h};
    for (int i = 0; i < 3; ++i)
        CHECK(limit.allow(a, t));
    CHECK_FALSE(limit.allow(a, t));
    CHECK(limit.allow(b, t)); // its own bucket
    t += 499ms;
    CHECK_FALSE(limit.allow(a, t)); // 0.998 tokens
    t += 1ms;
    CHECK(limit.allow(a, t)); // one token every 500 ms
    CHECK_FALSE(limit.allow(a, t));
    t += 1h; // refills to the burst, no more
    for (int i = 0; i < 3; ++i)
        CHECK(limit.allow(a, t));
    CHECK_FALSE(limit.allow(a, t));
    // An IPv4-mapped IPv6 address is the IPv4 address.
    CHECK_FALSE(limit.allow(ip::make_address("::ffff:192.0.2.1"), t));
}

TEST_CASE("rate limiter: burst 0 is no limit, refilled buckets are forgotten") {
    rate_limiter none{1, 0};
    for (int i = 0; i < 10'000; ++i)
        REQUIRE(none.allow(ip::make_address("192.0.2.1"), time_point{1h}));
    CHECK(none.tracked() == 0);

    rate_limiter limit{100, 10};
    time_point t{1h};
    for (std::uint32_t i = 0; i < 1000; ++i)
        limit.allow(ip::address_v4{0x0a000000u + i}, t);
    CHECK(limit.tracked() == 1000);
    t += 1s; // those are full again
    for (std::uint32_t i = 0; i < 25; ++i)
        limit.allow(ip::address_v4{0x0b000000u + i}, t);
    // The sweep at 1,024 addresses dropped the 1,000 refilled ones, kept the 25 recent ones.
    CHECK(limit.tracked() == 25);
}

namespace {

/// The value (0..63) of a base64url character.
int sextet(char c) {
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    return static_cast<int>(alphabet.find(c));
}

} // namespace

TEST_CASE("session ids: 1,000,000 ids: no repeat, every bit and character uniform") {
    constexpr std::size_t n = 1'000'000;
    constexpr std::size_t chars = 22; // 128 bits: 21 characters of 6 bits, one of 2
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ids;
    ids.reserve(n);
    std::array<std::uint32_t, 128> ones{};
    std::vector<std::array<std::uint32_t, 64>> per_char(chars);
    bool well_formed = true; // checked once: a million REQUIREs would be slow
    for (std::size_t i = 0; i < n; ++i) {
        const std::string token = megaphone::random_token(16); // what make_sid() appends
        if (token.size() != chars) {
            well_formed = false;
            break;
        }
        std::uint64_t hi = 0, lo = 0;
        for (std::size_t c = 0; c < chars; ++c) {
            const int v = sextet(token[c]);
            if (v < 0) {
                well_formed = false;
                continue;
            }
            ++per_char[c][static_cast<std::size_t>(v)];
            const int width = c + 1 < chars ? 6 : 2;
            const int value = c + 1 < chars ? v : v >> 4; // the last character's low bits are 0
            if (c + 1 == chars && (v & 15) != 0)
                well_formed = false;
            hi = (hi << width) | (lo >> (64 - width));
            lo = (lo << width) | static_cast<std::uint64_t>(value);
        }
        for (int b = 0; b < 64; ++b) {
            ones[static_cast<std::size_t>(b)] += static_cast<std::uint32_t>((lo >> b) & 1);
            ones[static_cast<std::size_t>(64 + b)] += static_cast<std::uint32_t>((hi >> b) & 1);
        }
        ids.emplace_back(hi, lo);
    }
    REQUIRE(well_formed);
    REQUIRE(ids.size() == n);

    // No two equal.
    std::sort(ids.begin(), ids.end());
    CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());

    // Each bit is 1 in half the ids, within 6 standard deviations (sqrt(n/4) = 500).
    const double sigma_bit = std::sqrt(n * 0.25);
    for (std::size_t b = 0; b < 128; ++b) {
        INFO("bit " << b << ": " << ones[b] << " ones");
        CHECK(std::abs(static_cast<double>(ones[b]) - n * 0.5) < 6 * sigma_bit);
    }

    // Each position, the first (the prefix) included, uses its 64 characters evenly; the last
    // one carries 2 bits: 4 characters.
    for (std::size_t c = 0; c < chars; ++c) {
        const double values = c + 1 < chars ? 64 : 4;
        const double p = 1 / values;
        const double expected = n * p;
        const double sigma = std::sqrt(n * p * (1 - p));
        std::size_t used = 0;
        for (std::size_t v = 0; v < 64; ++v) {
            const auto count = per_char[c][v];
            if (count == 0)
                continue;
            ++used;
            INFO("position " << c << " character " << v << ": " << count);
            CHECK(std::abs(static_cast<double>(count) - expected) < 6 * sigma);
        }
        CHECK(used == static_cast<std::size_t>(values));
    }
}
