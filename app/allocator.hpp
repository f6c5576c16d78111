// The memory allocator's per-thread cache, sized for a server (issue 17).
//
// glibc's malloc keeps at most 7 freed chunks of each size per thread (its tcache). A server
// thread frees far more than that between two bursts of requests (each answer, parser, header
// field and packet is one chunk), and the rest go back to the shared arena: under its lock, with
// consolidation, and out of the cache again on the next request. A larger cache takes 5-6 % off
// the server's CPU per message (docs/PERFORMANCE.md, "The allocator's cache"). glibc reads the
// cache's size only from GLIBC_TUNABLES as the process starts, so a server's main() asks
// tune_allocator() first thing: the program executes itself again, once, with the setting added.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace megaphone {

/// Chunks of each size the tuned cache keeps per thread (glibc's default: 7). Most of the gain
/// is there at 64 already; more only keeps more freed memory per thread.
inline constexpr unsigned allocator_cache_chunks = 128;

/// The GLIBC_TUNABLES value to execute with, given the environment's (`tunables`, null: unset)
/// and MEGAPHONE_MALLOC (`choice`, null: unset); nullopt: leave the process as it is. It is
/// nullopt when the cache size is set already, when MEGAPHONE_MALLOC is set at all ("system":
/// the operator's opt-out; "tuned": this process was executed with the setting), and when
/// `secure` (a set-user-ID start, where glibc ignores the variable).
std::optional<std::string> allocator_tunables(const char* tunables, const char* choice,
                                              bool secure);

/// First thing in main(), before a thread or a file is opened: unless allocator_tunables() says
/// to leave it, executes this program again (/proc/self/exe: the same process id, arguments,
/// environment and open descriptors) with the tuned cache and MEGAPHONE_MALLOC=tuned. Returns
/// when nothing is to be done, when the program is not linked with glibc or runs under a
/// sanitizer (whose allocator replaces malloc), and when the execution fails (the default cache
/// then stays). Under a tool that runs the program on a loader of its own (valgrind), set
/// MEGAPHONE_MALLOC=system.
void tune_allocator(char** argv) noexcept;

} // namespace megaphone
