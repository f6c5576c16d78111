// Shared secrets (the publisher key, the admin token, the HS256 token secret): compared without
// leaking them through timing, and read from a file so they stay out of `ps` and shell history.
#pragma once

#include "auth/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace megaphone::auth {

/// True when `given` and `secret` are the same bytes. The time taken depends on the secret's
/// length only (fixed for a server), never on how many leading bytes match nor on what was
/// given. (The cluster key, the publish key, the metrics and admin tokens and HS256 signatures
/// are compared with it: `secret` is the configured or computed value.)
bool constant_time_equal(std::string_view given, std::string_view secret) noexcept;

/// Why read_secret_file() refused a file it could open (failures to open or read it are
/// reported with their system error: std::errc::no_such_file_or_directory...).
enum class secret_file_error : std::uint8_t {
    not_a_file = 1,    ///< a directory, a FIFO, a device: not a regular file
    too_large,         ///< over max_secret_file_size: not a secret, a wrong path
    empty,             ///< nothing left once the trailing newlines are trimmed
    loose_permissions, ///< others may read or write it, or its group may write it
};
const std::error_category& secret_file_category() noexcept;
std::error_code make_error_code(secret_file_error) noexcept;

/// A secret or key file is a few hundred bytes; anything larger is refused unread.
inline constexpr std::size_t max_secret_file_size = 64 * 1024;

/// The whole content of the file at `path`, without its trailing newlines ("\n" or "\r\n", any
/// number of them; nothing else is trimmed). Refused: not a regular file, larger than
/// max_secret_file_size, empty once trimmed, or any permission for others or write permission
/// for the group. Group read is allowed, for the usual `root:megaphone 0640`; 0600 and 0400 are
/// the tightest. The checks are made on the opened file, not on its name.
expected<std::string, std::error_code> read_secret_file(const std::filesystem::path& path);

} // namespace megaphone::auth

template <>
struct std::is_error_code_enum<megaphone::auth::secret_file_error> : std::true_type {};
