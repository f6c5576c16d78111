// What the two floor servers (floor_server.cpp, asio_floor_server.cpp) share as processes: their
// common options, the open-file limit, and how they stop (SIGTERM/SIGINT, or --max-seconds).
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <string_view>

#include <pthread.h>
#include <unistd.h>

namespace megaphone::bench {

struct floor_options {
    unsigned port = 0, threads = 1;
    double max_seconds = 3600;

    /// Takes `--port`, `--threads` or `--max-seconds` with its value; false for anything else.
    bool take(std::string_view name, const char* value) {
        if (name == "--port")
            port = static_cast<unsigned>(std::strtoul(value, nullptr, 10));
        else if (name == "--threads")
            threads = static_cast<unsigned>(std::max(1ul, std::strtoul(value, nullptr, 10)));
        else if (name == "--max-seconds")
            max_seconds = std::strtod(value, nullptr);
        else
            return false;
        return true;
    }
};

/// Ignores SIGPIPE and raises the soft open-file limit to the hard one.
inline void prepare_process() {
    std::signal(SIGPIPE, SIG_IGN);
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/// The signals that stop a floor, blocked in the calling thread (call it before starting the
/// worker threads: they inherit the mask).
inline sigset_t block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    return set;
}

/// Waits for SIGTERM or SIGINT, or for `max_seconds` to pass.
inline void wait_for_stop(const sigset_t& set, double max_seconds) {
    ::alarm(static_cast<unsigned>(std::max(1.0, max_seconds)));
    int sig = 0;
    sigwait(&set, &sig);
}

} // namespace megaphone::bench
