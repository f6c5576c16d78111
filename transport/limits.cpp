#include "transport/limits.hpp"

#include <atomic>

namespace megaphone {

namespace {
std::array<std::atomic<std::uint64_t>, limit_kind_count> counts{};
} // namespace

std::string_view to_string(limit_kind k) noexcept {
    switch (k) {
    case limit_kind::body_size:
        return "body_size";
    case limit_kind::header_size:
        return "header_size";
    case limit_kind::request_timeout:
        return "request_timeout";
    case limit_kind::idle_timeout:
        return "idle_timeout";
    case limit_kind::connections:
        return "connections";
    case limit_kind::accept_failed:
        return "accept_failed";
    case limit_kind::sessions:
        return "sessions";
    case limit_kind::creation_rate:
        return "creation_rate";
    case limit_kind::queue:
        return "queue";
    case limit_kind::requests:
        return "requests";
    case limit_kind::polling:
        return "polling";
    }
    return "unknown";
}

void count_refusal(limit_kind k) noexcept {
    counts[static_cast<std::size_t>(k)].fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t refusals(limit_kind k) noexcept {
    return counts[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
}

} // namespace megaphone
