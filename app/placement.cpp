#include "app/placement.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <stdexcept>
#include <string_view>

namespace megaphone {

thread_placement::thread_placement(unsigned threads, placement_options options, probe read,
                                   clock now)
    : threads_{threads}
    , options_{options}
    , read_{std::move(read)}
    , now_{std::move(now)} {
    if (threads_ == 0)
        throw std::invalid_argument("thread_placement: at least one thread");
}

unsigned thread_placement::pick() {
    if (threads_ == 1)
        return 0;
    if (options_.policy == placement_policy::fill)
        sample();
    if (options_.policy == placement_policy::spread || spreading_)
        return next_++ % threads_;
    return 0;
}

void thread_placement::sample() {
    const auto now = now_();
    const auto window = now - last_time_;
    const bool have_last = last_.thread_cpu.size() == threads_; // a sample to compare with
    if (have_last && window < options_.interval)
        return;
    auto counters = read_();
    if (!have_last || window > options_.stale || counters.thread_cpu.size() != threads_) {
        // A new window: judged at the next sample, on the first thread meanwhile.
        spreading_ = false;
    } else {
        const double seconds = std::chrono::duration<double>(window).count();
        auto share = [&](std::chrono::nanoseconds later, std::chrono::nanoseconds earlier) {
            return std::chrono::duration<double>(later - earlier).count() / seconds;
        };
        const double first = share(counters.thread_cpu[0], last_.thread_cpu[0]);
        const double idle = share(counters.machine_idle, last_.machine_idle);
        double others = 0; // what the other threads got: a core they use is no longer idle
        for (unsigned i = 1; i < threads_; ++i)
            others += share(counters.thread_cpu[i], last_.thread_cpu[i]);
        const bool was = spreading_;
        spreading_ = was ? first >= options_.calm && idle + others >= options_.spare_keep
                         : first >= options_.busy && idle >= options_.spare_core;
        if (spreading_ && !was)
            ++spreads_;
    }
    last_ = std::move(counters);
    last_time_ = now;
}

namespace {

/// The machine's idle and iowait time from the first line of /proc/stat ("cpu  user nice
/// system idle iowait ..."), in clock ticks; 0 when unreadable.
std::uint64_t idle_ticks() {
    const int fd = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buffer[256];
    const auto n = ::read(fd, buffer, sizeof buffer);
    ::close(fd);
    if (n <= 0)
        return 0;
    std::string_view line{buffer, static_cast<std::size_t>(n)};
    line = line.substr(0, line.find('\n'));
    if (!line.starts_with("cpu "))
        return 0;
    line.remove_prefix(4);
    std::uint64_t fields[5] = {};
    for (auto& field : fields) {
        while (!line.empty() && line.front() == ' ')
            line.remove_prefix(1);
        auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), field);
        if (ec != std::errc{})
            return 0;
        line.remove_prefix(static_cast<std::size_t>(end - line.data()));
    }
    return fields[3] + fields[4];
}

} // namespace

load_counters thread_placement::read_system(const std::vector<int>& clocks) {
    load_counters c;
    c.thread_cpu.reserve(clocks.size());
    for (int id : clocks) {
        timespec ts{};
        if (id == -1 || ::clock_gettime(static_cast<clockid_t>(id), &ts) != 0)
            c.thread_cpu.emplace_back(0);
        else
            c.thread_cpu.emplace_back(std::chrono::seconds(ts.tv_sec) +
                                      std::chrono::nanoseconds(ts.tv_nsec));
    }
    static const long tick_rate = ::sysconf(_SC_CLK_TCK);
    const std::uint64_t per_second = tick_rate > 0 ? std::uint64_t(tick_rate) : 100;
    c.machine_idle = std::chrono::nanoseconds(idle_ticks() * (1'000'000'000 / per_second));
    return c;
}

} // namespace megaphone
