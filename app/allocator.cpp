#include "app/allocator.hpp"

#include <cstdlib>
#include <cstring>

#include <sys/auxv.h>
#include <unistd.h>

namespace megaphone {

std::optional<std::string> allocator_tunables(const char* tunables, const char* choice,
                                              bool secure) {
    if (secure || choice)
        return std::nullopt;
    if (tunables && std::strstr(tunables, "glibc.malloc.tcache_count="))
        return std::nullopt;
    std::string value = "glibc.malloc.tcache_count=" + std::to_string(allocator_cache_chunks);
    if (tunables && *tunables)
        value = std::string(tunables) + ":" + value;
    return value;
}

void tune_allocator(char** argv) noexcept {
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    try {
        const auto value =
            allocator_tunables(std::getenv("GLIBC_TUNABLES"), std::getenv("MEGAPHONE_MALLOC"),
                               ::getauxval(AT_SECURE) != 0);
        if (!value || !argv || !argv[0])
            return;
        const char* before = std::getenv("GLIBC_TUNABLES");
        const std::string saved = before ? before : "";
        if (::setenv("GLIBC_TUNABLES", value->c_str(), 1) != 0 ||
            ::setenv("MEGAPHONE_MALLOC", "tuned", 1) != 0)
            return;
        ::execv("/proc/self/exe", argv);
        // Not executed (no /proc, say): the environment as it was, and the default cache.
        if (before)
            ::setenv("GLIBC_TUNABLES", saved.c_str(), 1);
        else
            ::unsetenv("GLIBC_TUNABLES");
        ::unsetenv("MEGAPHONE_MALLOC");
    } catch (...) {
        // Out of memory for a few bytes at start: go on with the default cache.
    }
#else
    (void)argv;
#endif
}

} // namespace megaphone
