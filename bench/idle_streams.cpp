// megaphone-idle-streams: memory per idle streaming session, as the memory scenario measures a
// held long-poll: the server's VmRSS with N sessions each holding its connection, minus its
// VmRSS before, over N. One transport per run:
//
//   megaphone-idle-streams --megaphone build/bin/megaphone --transport ws --n 19000
//
// --transport ws: a WebSocket per session (upgrade, the ready frame read); sse: GET
// /comet/events (the head and first comment read); long-poll: a held POST. The tool starts the
// server itself (--threads 1 by default, creation rate limit off, wait/inactivity long), makes
// N sessions over one keep-alive connection, then opens the N connections, waits until the
// server's /metrics shows them all attached (megaphone_streams, or megaphone_held_connections),
// lets it settle and reads VmRSS. It prints the sessions' share and the connections' share
// separately. Client and server are separate processes, each needs N descriptors or more.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "megaphone-idle-streams: %s\n", what.c_str());
    std::exit(1);
}

unsigned short free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        die("bind");
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

int connect_to(unsigned short port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die(std::string("socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void send_all(int fd, const std::string& bytes) {
    std::size_t at = 0;
    while (at < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
        if (n <= 0)
            die(std::string("send: ") + std::strerror(errno));
        at += static_cast<std::size_t>(n);
    }
}

/// Reads until `done(buffer)` holds, within 10 s.
template <class Done>
std::string read_until(int fd, Done done) {
    std::string buffer;
    char chunk[4096];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done(buffer)) {
        pollfd p{fd, POLLIN, 0};
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0)
            die("timed out reading: " + buffer.substr(0, 200));
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0)
            die("connection closed: " + buffer.substr(0, 200));
        buffer.append(chunk, static_cast<std::size_t>(n));
    }
    return buffer;
}

/// One whole HTTP answer with Content-Length; its body.
std::string read_answer(int fd) {
    std::string all = read_until(fd, [](const std::string& b) {
        const auto end = b.find("\r\n\r\n");
        if (end == std::string::npos)
            return false;
        const auto cl = b.find("Content-Length: ");
        if (cl == std::string::npos || cl > end)
            return true;
        return b.size() >= end + 4 + std::stoul(b.substr(cl + 16));
    });
    return all.substr(all.find("\r\n\r\n") + 4);
}

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
}

/// The value of an unlabelled gauge in the server's /metrics (internal door).
long gauge(unsigned short internal_port, const std::string& name) {
    const int fd = connect_to(internal_port);
    if (fd < 0)
        die("metrics: cannot connect");
    send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string body = read_answer(fd);
    ::close(fd);
    const auto at = body.find("\n" + name + " ");
    return at == std::string::npos ? -1
                                   : std::strtol(body.c_str() + at + name.size() + 2, nullptr, 10);
}

} // namespace

int main(int argc, char** argv) {
    std::string megaphone, transport = "ws", threads = "1";
    std::size_t n = 19000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--megaphone")
            megaphone = value();
        else if (a == "--transport")
            transport = value();
        else if (a == "--n")
            n = std::stoul(value());
        else if (a == "--threads")
            threads = value();
        else
            die("usage: megaphone-idle-streams --megaphone PATH [--transport ws|sse|long-poll] "
                "[--n N] [--threads T]");
    }
    if (megaphone.empty() || (transport != "ws" && transport != "sse" && transport != "long-poll"))
        die("--megaphone PATH and --transport ws|sse|long-poll");

    rlimit fds{};
    ::getrlimit(RLIMIT_NOFILE, &fds);
    fds.rlim_cur = fds.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &fds);
    if (fds.rlim_cur < n + 64)
        die("open-file limit " + std::to_string(fds.rlim_cur) + " is below N + 64");

    const unsigned short port = free_port(), internal = free_port();
    const pid_t pid = ::fork();
    if (pid == 0) {
        const std::string p = std::to_string(port), q = std::to_string(internal);
        ::execl(megaphone.c_str(), megaphone.c_str(), "--address", "127.0.0.1", "--port", p.c_str(),
                "--internal-port", q.c_str(), "--threads", threads.c_str(), "--creation-burst", "0",
                "--wait", "600", "--inactivity", "600", "--log-level", "warn",
                static_cast<char*>(nullptr));
        std::_Exit(127);
    }
    int control = -1;
    for (int i = 0; i < 200 && control < 0; ++i) {
        control = connect_to(port);
        if (control < 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (control < 0)
        die("the server did not start");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long rss0 = rss_kib(pid);

    // N sessions, one after the other on one keep-alive connection.
    std::vector<std::string> sids;
    sids.reserve(n);
    const std::string create = R"({"rid":1,"wait":600,"hold":1})";
    for (std::size_t i = 0; i < n; ++i) {
        send_all(control, "POST /comet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: " +
                              std::to_string(create.size()) + "\r\n\r\n" + create);
        const std::string body = read_answer(control);
        const auto at = body.find("\"sid\":\"");
        if (at == std::string::npos)
            die("no sid in " + body);
        sids.push_back(body.substr(at + 7, body.find('"', at + 7) - at - 7));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long rss_sessions = rss_kib(pid);

    // A connection per session, each left idle once the server has answered what it answers.
    std::vector<int> conns;
    conns.reserve(n);
    for (const std::string& sid : sids) {
        const int fd = connect_to(port);
        if (fd < 0)
            die(std::string("connect: ") + std::strerror(errno));
        if (transport == "ws") {
            send_all(fd, "GET /comet?sid=" + sid +
                             " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                             "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "
                             "megaphone\r\n\r\n");
            read_until(fd, [](const std::string& b) {
                return b.find("\"heartbeat\":") != std::string::npos && b.back() == '}';
            });
        } else if (transport == "sse") {
            send_all(fd, "GET /comet/events?sid=" + sid +
                             " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
            read_until(fd, [](const std::string& b) {
                return b.find("retry:") != std::string::npos && b.ends_with("\n\n");
            });
        } else {
            const std::string body = R"({"sid":")" + sid + R"(","rid":2})";
            send_all(fd, "POST /comet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
        }
        conns.push_back(fd);
    }
    const std::string attached =
        transport == "long-poll" ? "megaphone_held_connections" : "megaphone_streams";
    for (int i = 0; i < 600 && gauge(internal, attached) < static_cast<long>(n); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const long got = gauge(internal, attached);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const long rss_n = rss_kib(pid);

    std::printf("transport %s, %zu sessions, --threads %s: %s = %ld\n", transport.c_str(), n,
                threads.c_str(), attached.c_str(), got);
    std::printf("server VmRSS: %ld KiB at 0, %ld KiB with the sessions, %ld KiB with their "
                "connections\n",
                rss0, rss_sessions, rss_n);
    const double per = (rss_n - rss0) * 1024.0 / static_cast<double>(n);
    std::printf("per idle %s session: %.0f B in all (session %.0f B + connection %.0f B)\n",
                transport.c_str(), per, (rss_sessions - rss0) * 1024.0 / static_cast<double>(n),
                (rss_n - rss_sessions) * 1024.0 / static_cast<double>(n));

    ::kill(pid, SIGTERM);
    for (int fd : conns)
        ::close(fd);
    ::close(control);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return got == static_cast<long>(n) ? 0 : 1;
}
