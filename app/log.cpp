#include "app/log.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <memory>

namespace megaphone {

namespace {
constexpr std::array<std::string_view, 6> level_names{"trace", "debug", "info",
                                                      "warn",  "error", "off"};

spdlog::level::level_enum to_spdlog(log_level level) noexcept {
    return level == log_level::off
               ? spdlog::level::off
               : static_cast<spdlog::level::level_enum>(static_cast<int>(level));
}

std::shared_ptr<spdlog::logger> make_logger() {
    // Not registered with spdlog's registry: a library must not claim global names.
    auto l = std::make_shared<spdlog::logger>("megaphone",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    l->set_level(spdlog::level::warn);
    l->flush_on(spdlog::level::trace); // stderr: every line at once
    return l;
}
} // namespace

static_assert(static_cast<int>(log_level::trace) == spdlog::level::trace &&
              static_cast<int>(log_level::info) == spdlog::level::info &&
              static_cast<int>(log_level::warn) == spdlog::level::warn &&
              static_cast<int>(log_level::error) == spdlog::level::err);

std::optional<log_level> parse_log_level(std::string_view text) noexcept {
    for (std::size_t i = 0; i < level_names.size(); ++i)
        if (level_names[i] == text)
            return static_cast<log_level>(i);
    return std::nullopt;
}

std::string_view to_string(log_level level) noexcept {
    return level_names[static_cast<std::size_t>(level)];
}

spdlog::logger& logger() {
    static const std::shared_ptr<spdlog::logger> instance = make_logger();
    return *instance;
}

void set_log_level(log_level level) {
    logger().set_level(to_spdlog(level));
}

bool log_enabled(log_level level) noexcept {
    return logger().should_log(to_spdlog(level));
}

} // namespace megaphone
