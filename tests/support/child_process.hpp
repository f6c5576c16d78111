// What the tests that run real services (redis-server, nginx) share: a free loopback port, and a
// child process started quietly (stdin/stdout/stderr on /dev/null) that dies with the test
// binary (PR_SET_PDEATHSIG), so nothing is left behind.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace megaphone::test {

/// A port free on 127.0.0.1 now (the caller retries if another process takes it first).
inline unsigned short free_loopback_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (s >= 0)
            ::close(s);
        throw std::runtime_error("no free loopback port");
    }
    ::close(s);
    return ntohs(a.sin_port);
}

/// The whole text of the file at `path` ("" when it cannot be read): a service's log, to
/// explain a failure.
inline std::string file_text(const std::string& path) {
    std::ifstream in{path};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Calls `start(port)` with free loopback ports until it returns (at most 5 tries: another
/// process may take a port between the probe and the bind); the last failure is thrown.
template <class F>
void on_a_free_port(F&& start) {
    for (int attempt = 0;; ++attempt) {
        try {
            start(free_loopback_port());
            return;
        } catch (const std::exception&) {
            if (attempt == 4)
                throw;
        }
    }
}

/// Starts `args` (args[0]: the program's path) with its standard streams on /dev/null; it gets
/// SIGKILL when the test binary dies. Its pid.
inline pid_t spawn_quiet(std::vector<std::string> args) {
    std::vector<char*> argv; // built before fork: the child only execs
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child < 0)
        throw std::runtime_error("fork failed");
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent)
            ::_exit(1);
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return child;
}

/// Polls `ready()` every 5 ms until it holds (true) or `timeout` passes (false). When child
/// `pid` exits meanwhile it is reaped, `pid` set to -1, and false returned at once.
template <class Ready>
bool wait_ready(pid_t& pid, Ready&& ready, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            return false;
        }
        if (ready())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5)); // the polling interval
    }
    return false;
}

} // namespace megaphone::test
