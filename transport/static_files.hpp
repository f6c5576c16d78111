// Serves files from one directory, never from outside it.
#pragma once

#include "transport/exchange.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace megaphone {

class static_files {
public:
    /// `root` must exist; it is resolved once (symlinks included).
    explicit static_files(const std::filesystem::path& root);

    /// The answer to GET `target` (a request target, query string allowed): the file with its
    /// content type, or 404 for anything missing, a directory, or outside the root (`..`,
    /// encoded `..`, absolute paths, symlinks leading out). `/` serves index.html.
    response get(std::string_view target) const;

    const std::filesystem::path& root() const noexcept { return root_; }

private:
    std::filesystem::path root_;
};

/// Percent-decodes a URL path; nullopt when malformed or when it decodes to a NUL byte.
std::optional<std::string> percent_decode(std::string_view path);

} // namespace megaphone
