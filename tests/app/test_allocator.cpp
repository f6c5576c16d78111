// The allocator's per-thread cache (app/allocator.hpp): when a server executes itself again
// with it, and when it leaves the process alone. tests/app/allocator_tuned.sh checks the real
// binary's environment.
#include "app/allocator.hpp"

#include <catch2/catch.hpp>

#include <string>

using megaphone::allocator_cache_chunks;
using megaphone::allocator_tunables;

namespace {
const std::string tuned = "glibc.malloc.tcache_count=" + std::to_string(allocator_cache_chunks);
}

TEST_CASE("allocator: an environment without tunables gets the cache size") {
    CHECK(allocator_tunables(nullptr, nullptr, false) == tuned);
    CHECK(allocator_tunables("", nullptr, false) == tuned);
}

TEST_CASE("allocator: the operator's other tunables are kept, the cache size appended") {
    CHECK(allocator_tunables("glibc.malloc.arena_max=2", nullptr, false) ==
          "glibc.malloc.arena_max=2:" + tuned);
}

TEST_CASE("allocator: a cache size the operator set is left as it is") {
    CHECK_FALSE(allocator_tunables("glibc.malloc.tcache_count=9", nullptr, false));
    CHECK_FALSE(
        allocator_tunables("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0", nullptr, false));
}

TEST_CASE("allocator: MEGAPHONE_MALLOC set at all, or a set-user-ID start, leaves the process") {
    CHECK_FALSE(allocator_tunables(nullptr, "system", false)); // the opt-out
    CHECK_FALSE(allocator_tunables(nullptr, "tuned", false));  // executed with it already
    CHECK_FALSE(allocator_tunables(nullptr, "", false));
    CHECK_FALSE(allocator_tunables(nullptr, nullptr, true)); // glibc would ignore it: no loop
}
