// string_map<T>: a hash map keyed by std::string and looked up by std::string_view, without a
// copy of the key.
//
// Its hash is deliberately not noexcept. libstdc++ keeps each node's hash code only when the
// hash is not "fast" or may throw; a noexcept hash of our own counts as fast, and then a lookup
// compares the whole key of every node on its bucket's chain (a cold read of the key's bytes when
// they live on the heap: names over 15 characters) and hashes the next node's key again to tell
// where the bucket ends. With the codes kept it compares codes first and never re-hashes.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace megaphone {

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { // not noexcept: see above
        return std::hash<std::string_view>{}(s);
    }
};

template <class T>
using string_map = std::unordered_map<std::string, T, string_hash, std::equal_to<>>;

#if defined(__GLIBCXX__)
static_assert(std::__cache_default<std::string, string_hash>::value,
              "string_map's nodes must keep their hash codes");
#endif

} // namespace megaphone
