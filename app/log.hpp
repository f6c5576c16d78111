// log: Megaphone's logger (spdlog). One process-wide logger, "megaphone", writes to stderr;
// server::start() sets its level from server_options::log. Until a server starts it logs
// warnings and errors only, so unit tests stay quiet.
//
// Logging costs nothing measurable when a level is off: check log_enabled(level) before
// building anything that only the message needs (spdlog itself checks before formatting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace megaphone {

enum class log_level : std::uint8_t { trace, debug, info, warn, error, off };

/// "trace", "debug", "info", "warn", "error" or "off".
std::optional<log_level> parse_log_level(std::string_view text) noexcept;
std::string_view to_string(log_level level) noexcept;

struct log_options {
    /// Lines below this level are dropped.
    log_level level = log_level::info;
    /// One line per HTTP request goes to this file ("-": stdout); none when empty.
    std::string access_log;
};

/// The process-wide logger (include <spdlog/logger.h> to write to it).
spdlog::logger& logger();
/// Sets the process-wide logger's level.
void set_log_level(log_level level);
/// Whether a line at `level` would be written.
bool log_enabled(log_level level) noexcept;

} // namespace megaphone
