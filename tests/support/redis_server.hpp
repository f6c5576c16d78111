// A real redis-server for tests: on a free loopback port, in a fresh temporary directory
// (removed on destruction, with the server killed), with the means to make it fail the way Redis
// fails in production: killed, stopped, stalled (SIGSTOP), restarted with or without its data.
//
// Readiness is polled with a deadline (PING until +PONG), never slept for. The child gets
// PR_SET_PDEATHSIG, so a test binary that dies does not leave servers behind. Header-only and
// without hiredis: usable from any test binary (commands go through redis-cli).
#pragma once

#include "support/child_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace megaphone::test {

struct redis_server_options {
    bool appendonly = false; // with it, restart() keeps the data (even after kill())
};

class redis_server {
public:
    using options = redis_server_options;

    explicit redis_server(options o = {})
        : options_{o} {
        char tmpl[] = "/tmp/megaphone-redis-XXXXXX";
        if (!::mkdtemp(tmpl))
            throw std::runtime_error("redis_server: mkdtemp failed");
        dir_ = tmpl;
        // A port taken between our probe and redis's bind makes the start fail: try others.
        try {
            on_a_free_port([this](unsigned short port) {
                port_ = port;
                start();
            });
        } catch (...) {
            std::filesystem::remove_all(dir_);
            throw;
        }
    }

    ~redis_server() {
        kill();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    unsigned short port() const noexcept { return port_; }
    const std::string& dir() const noexcept { return dir_; }
    bool running() const noexcept { return pid_ > 0; }
    pid_t pid() const noexcept { return pid_; }
    std::string url(int db = 0) const {
        return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
    }

    /// SIGKILL, and waits for the process (also when it is paused).
    void kill() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        reap();
    }

    /// SIGTERM (a clean shutdown: the AOF is flushed), waits up to 5 s, then SIGKILL.
    void stop() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGTERM);
        ::kill(pid_, SIGCONT); // a paused server acts on SIGTERM once it runs
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        kill();
    }

    /// Starts again on the same port, in the same directory (stopping it first if it runs):
    /// with appendonly the data survives.
    void restart() {
        stop();
        start();
    }

    /// A restart that lost the data: killed, its directory emptied, started again.
    void restart_empty() {
        kill();
        for (const auto& entry : std::filesystem::directory_iterator(dir_))
            if (entry.path().filename() != "redis.log")
                std::filesystem::remove_all(entry.path());
        start();
    }

    /// SIGSTOP: a Redis that stalls (connections stay open, nothing is answered).
    void pause() {
        if (pid_ > 0)
            ::kill(pid_, SIGSTOP);
    }
    void resume() {
        if (pid_ > 0)
            ::kill(pid_, SIGCONT);
    }

    void flushall() { cli({"FLUSHALL"}); }

    /// Runs one command with redis-cli against this server: its output without the trailing
    /// newline (raw output: `1`, `OK`, the string itself; arrays one element a line).
    std::string cli(std::initializer_list<std::string> args) const {
        return run_cli(port_, std::vector<std::string>(args));
    }
    std::string cli(const std::vector<std::string>& args) const { return run_cli(port_, args); }

    static std::string run_cli(unsigned short port, const std::vector<std::string>& args) {
        std::vector<std::string> argv{"/usr/bin/redis-cli", "-h", "127.0.0.1", "-p",
                                      std::to_string(port)};
        argv.insert(argv.end(), args.begin(), args.end());
        int out[2];
        if (::pipe(out) != 0)
            throw std::runtime_error("redis_server: pipe failed");
        std::vector<char*> cargv = c_argv(argv);
        pid_t child = ::fork();
        if (child < 0)
            throw std::runtime_error("redis_server: fork failed");
        if (child == 0) {
            ::dup2(out[1], 1);
            ::close(out[0]);
            ::close(out[1]);
            ::execv(cargv[0], cargv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        std::string text;
        char buf[4096];
        for (;;) {
            auto n = ::read(out[0], buf, sizeof buf);
            if (n > 0)
                text.append(buf, static_cast<std::size_t>(n));
            else if (n == 0 || errno != EINTR)
                break;
        }
        ::close(out[0]);
        int status = 0;
        ::waitpid(child, &status, 0);
        if (!text.empty() && text.back() == '\n')
            text.pop_back();
        return text;
    }

    /// The server's log (to explain a failure).
    std::string log() const { return file_text(dir_ + "/redis.log"); }

private:
    static std::vector<char*> c_argv(std::vector<std::string>& args) {
        std::vector<char*> out;
        for (auto& a : args)
            out.push_back(a.data());
        out.push_back(nullptr);
        return out;
    }

    void start() {
        std::vector<std::string> args{"/usr/bin/redis-server",
                                      "--port",
                                      std::to_string(port_),
                                      "--bind",
                                      "127.0.0.1",
                                      "--protected-mode",
                                      "no",
                                      "--daemonize",
                                      "no",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      options_.appendonly ? "yes" : "no",
                                      "--dir",
                                      dir_,
                                      "--logfile",
                                      dir_ + "/redis.log"};
        pid_ = spawn_quiet(std::move(args));
        wait_ready();
    }

    void wait_ready() {
        if (megaphone::test::wait_ready(
                pid_, [this] { return pings(); }, std::chrono::seconds(5)))
            return;
        if (pid_ < 0)
            throw std::runtime_error("redis_server: redis-server exited:\n" + log());
        kill();
        throw std::runtime_error("redis_server: no PONG within 5 s:\n" + log());
    }

    /// One inline PING; true on +PONG (not while Redis loads its data: -LOADING).
    bool pings() const {
        int s = ::socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            return false;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port_);
        bool ok = false;
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::send(s, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
            pollfd p{s, POLLIN, 0};
            char buf[64];
            if (::poll(&p, 1, 200) == 1) {
                auto n = ::recv(s, buf, sizeof buf, 0);
                ok = n >= 7 && std::string_view(buf, 7) == "+PONG\r\n";
            }
        }
        ::close(s);
        return ok;
    }

    void reap() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    options options_;
    std::string dir_;
    unsigned short port_ = 0;
    pid_t pid_ = -1;
};

} // namespace megaphone::test
