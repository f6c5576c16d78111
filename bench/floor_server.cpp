// megaphone-floor-server: the least a long-poll server can do, for the fan-out floor in bench/run.
//
// It speaks just enough of nchan's long-poll protocol for megaphone-loadgen --target nchan:
// GET /sub/{ch} is held; POST /pub/{ch} answers every held GET of the channel with the same
// canned bytes (built once per thread and message) and the publisher with {"subscribers":N};
// GET /pub/{ch} answers {"subscribers":N}. No sessions, ids, queues, timeouts or message store:
// per subscriber it reads a request line and writes one buffer. With the same threads and load
// generator as the real servers, its fan-out time is what this machine's kernel and load
// generator cost on their own: no server can reach the last subscriber sooner here.
//
// One epoll loop per thread (--threads), all accepting from one listening socket; a publish
// reaches the other threads through a mailbox and an eventfd. Stops on SIGTERM/SIGINT, or after
// --max-seconds (default 3600) by itself.
//
// For the million (bench/million --floor): --reuse-port lets many processes share the port, and
// --group N --index I makes process I of N relay each publish to the others (a datagram to each
// one's abstract Unix socket "megaphone-floor-PORT-J"), as nchan's workers share one. --window K
// paces a process's answers: at most K answered connections whose client has not sent its next
// request yet; the rest wait in order and go as those come back (0, the default: no pacing).
// --speculate 1 peeks once after each answer sent, as Asio's speculative read of the next
// request does (usually EAGAIN), to weigh what those reads cost.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "floor_process.hpp"

namespace {

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "megaphone-floor-server: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

std::atomic<std::int64_t> held_total{0};
std::atomic<std::uint64_t> message_seq{0};
std::atomic<std::uint64_t> conn_seq{0}; // tells a reused fd's new connection from the old

// The group of processes (--group, --index) and the pacing window (--window).
unsigned group_count = 1, group_index = 0, listen_port = 0;
int group_fd = -1;
std::size_t window = 0;
bool speculate = false; // --speculate 1: a recv (peek) after each answer sent, as Asio does

sockaddr_un group_address(unsigned index, socklen_t& len) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const int n = std::snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "megaphone-floor-%u-%u",
                                listen_port, index);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<unsigned>(n));
    return a;
}

struct conn {
    int fd = -1;
    std::uint64_t id = 0;
    std::string in, out;
    std::string channel; // of the held GET, empty when none is held
    bool unread = false; // --window: answered, its next request not in yet
};

struct worker {
    int ep = -1, wake = -1, listener = -1;
    std::unordered_map<int, std::unique_ptr<conn>> conns;
    std::unordered_map<std::string, std::vector<int>> held; // channel → fds with a held GET
    std::mutex mx;
    std::vector<std::pair<std::string, std::string>> inbox; // (channel, body) to deliver
    // --window: answers waiting for a slot, (fd, conn id, bytes), and the slots taken.
    std::deque<std::tuple<int, std::uint64_t, std::shared_ptr<const std::string>>> paced;
    std::size_t in_flight = 0;

    void post(std::string channel, std::string body) {
        {
            std::lock_guard lock{mx};
            inbox.emplace_back(std::move(channel), std::move(body));
        }
        const std::uint64_t one = 1;
        if (::write(wake, &one, sizeof one) < 0 && errno != EAGAIN)
            die("eventfd write");
    }
};

std::vector<std::unique_ptr<worker>> workers;

void want_output(worker& w, conn& c, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
    ev.data.fd = c.fd;
    ::epoll_ctl(w.ep, EPOLL_CTL_MOD, c.fd, &ev);
}

/// Writes what it can now; the rest waits for EPOLLOUT.
void send_bytes(worker& w, conn& c, std::string_view bytes) {
    if (c.out.empty()) {
        const ssize_t n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n == static_cast<ssize_t>(bytes.size())) {
            if (speculate) {
                // Asio's next read is tried at once, before the client can have answered:
                // usually EAGAIN. A peek: a pipelined request stays for the next event.
                char probe[512];
                const ssize_t r = ::recv(c.fd, probe, sizeof probe, MSG_PEEK);
                (void)r;
            }
            return;
        }
        const std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return; // gone: EPOLLRDHUP/EPOLLERR closes it
        c.out.assign(bytes.substr(sent));
        want_output(w, c, true);
        return;
    }
    c.out.append(bytes);
}

void answer(worker& w, conn& c, unsigned status, std::string_view reason, std::string_view body) {
    std::string r =
        "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n";
    r.append(body);
    send_bytes(w, c, r);
}

void unhold(worker& w, conn& c) {
    if (c.channel.empty())
        return;
    auto it = w.held.find(c.channel);
    if (it != w.held.end()) {
        auto& v = it->second;
        v.erase(std::remove(v.begin(), v.end(), c.fd), v.end());
    }
    c.channel.clear();
    --held_total;
}

void send_answer(worker& w, conn& c, const std::string& bytes) {
    if (window) {
        c.unread = true;
        ++w.in_flight;
    }
    send_bytes(w, c, bytes);
}

/// --window: a slot is free again (the client sent its next request, or left): the next
/// waiting answers go.
void came_back(worker& w, conn& c) {
    if (!c.unread)
        return;
    c.unread = false;
    --w.in_flight;
    while (w.in_flight < window && !w.paced.empty()) {
        auto [fd, id, bytes] = std::move(w.paced.front());
        w.paced.pop_front();
        auto it = w.conns.find(fd);
        if (it != w.conns.end() && it->second->id == id)
            send_answer(w, *it->second, *bytes);
    }
}

void close_conn(worker& w, int fd) {
    auto it = w.conns.find(fd);
    if (it == w.conns.end())
        return;
    unhold(w, *it->second);
    came_back(w, *it->second);
    ::close(fd);
    w.conns.erase(it);
}

void deliver(worker& w, const std::string& channel, const std::string& body) {
    auto it = w.held.find(channel);
    if (it == w.held.end() || it->second.empty())
        return;
    const std::uint64_t id = ++message_seq;
    // The same bytes for every subscriber of the channel: built once.
    const auto r = std::make_shared<const std::string>(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nLast-Modified: Thu, 01 Jan 1970 00:00:01 GMT\r\nEtag: " +
        std::to_string(id) + "\r\n\r\n" + body);
    std::vector<int> fds;
    fds.swap(it->second);
    for (int fd : fds) {
        auto c = w.conns.find(fd);
        if (c == w.conns.end())
            continue;
        c->second->channel.clear();
        --held_total;
        if (window && w.in_flight >= window)
            w.paced.emplace_back(fd, c->second->id, r);
        else
            send_answer(w, *c->second, *r);
    }
}

/// A publish reaches this process's other threads (by their mailboxes) and this one's holders.
void deliver_everywhere(worker& w, const std::string& channel, const std::string& body) {
    for (auto& other : workers)
        if (other.get() != &w)
            other->post(channel, body);
    deliver(w, channel, body);
}

/// A publish from this process reaches the others of its group.
void relay(const std::string& channel, const std::string& body) {
    if (group_fd < 0)
        return;
    const std::string msg = channel + "\n" + body;
    for (unsigned j = 0; j < group_count; ++j) {
        if (j == group_index)
            continue;
        socklen_t len = 0;
        const sockaddr_un a = group_address(j, len);
        ::sendto(group_fd, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&a), len);
    }
}

std::string_view header_value(std::string_view head, std::string_view name) {
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
        const std::size_t start = pos + 2;
        const std::size_t end = head.find("\r\n", start);
        const std::string_view line =
            head.substr(start, (end == std::string_view::npos ? head.size() : end) - start);
        if (line.size() > name.size() && line[name.size()] == ':' &&
            std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) ==
                       std::tolower(static_cast<unsigned char>(b));
            })) {
            std::string_view v = line.substr(name.size() + 1);
            while (!v.empty() && v.front() == ' ')
                v.remove_prefix(1);
            return v;
        }
        pos = end;
    }
    return {};
}

/// Handles every complete request in c.in; false when the connection must close.
bool handle_input(worker& w, conn& c) {
    for (;;) {
        const std::size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos)
            return c.in.size() <= 16384;
        const std::string_view head(c.in.data(), end);
        std::size_t length = 0;
        if (const auto cl = header_value(head, "content-length"); !cl.empty())
            length = std::strtoul(std::string(cl).c_str(), nullptr, 10);
        if (length > 1 << 20)
            return false;
        if (c.in.size() < end + 4 + length)
            return true;
        const std::size_t sp1 = head.find(' ');
        const std::size_t sp2 = head.find(' ', sp1 + 1);
        if (sp1 == std::string_view::npos || sp2 == std::string_view::npos)
            return false;
        const std::string method(head.substr(0, sp1));
        const std::string target(head.substr(sp1 + 1, sp2 - sp1 - 1));
        std::string body = c.in.substr(end + 4, length);
        c.in.erase(0, end + 4 + length);

        if (method == "GET" && target.rfind("/sub/", 0) == 0 && c.channel.empty()) {
            c.channel = target.substr(5);
            w.held[c.channel].push_back(c.fd);
            ++held_total;
        } else if (method == "POST" && target.rfind("/pub/", 0) == 0) {
            const std::string channel = target.substr(5);
            const std::int64_t n = held_total.load();
            relay(channel, body);
            deliver_everywhere(w, channel, body);
            answer(w, c, n > 0 ? 201 : 202, n > 0 ? "Created" : "Accepted",
                   "{\"subscribers\":" + std::to_string(n) + "}");
        } else if (method == "GET" && target.rfind("/pub/", 0) == 0) {
            answer(w, c, 200, "OK", "{\"subscribers\":" + std::to_string(held_total.load()) + "}");
        } else {
            answer(w, c, 404, "Not Found", "{}");
        }
    }
}

void run(worker& w, const std::atomic<bool>& stop) {
    epoll_event events[256];
    while (!stop.load(std::memory_order_relaxed)) {
        const int n = ::epoll_wait(w.ep, events, 256, 200);
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            const std::uint32_t ev = events[i].events;
            if (fd == w.listener) {
                for (;;) {
                    const int cfd = ::accept4(w.listener, nullptr, nullptr, SOCK_NONBLOCK);
                    if (cfd < 0)
                        break;
                    const int one = 1;
                    ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    epoll_event cev{};
                    cev.events = EPOLLIN | EPOLLRDHUP;
                    cev.data.fd = cfd;
                    if (::epoll_ctl(w.ep, EPOLL_CTL_ADD, cfd, &cev) != 0) {
                        ::close(cfd);
                        continue;
                    }
                    auto c = std::make_unique<conn>();
                    c->fd = cfd;
                    c->id = ++conn_seq;
                    w.conns.emplace(cfd, std::move(c));
                }
                continue;
            }
            if (fd == group_fd) {
                // Publishes relayed by the other processes of the group.
                char msg[70000];
                for (;;) {
                    const ssize_t r = ::recv(group_fd, msg, sizeof msg, 0);
                    if (r <= 0)
                        break;
                    const std::string_view m(msg, static_cast<std::size_t>(r));
                    const std::size_t nl = m.find('\n');
                    if (nl == std::string_view::npos)
                        continue;
                    deliver_everywhere(w, std::string(m.substr(0, nl)),
                                       std::string(m.substr(nl + 1)));
                }
                continue;
            }
            if (fd == w.wake) {
                std::uint64_t count = 0;
                if (::read(w.wake, &count, sizeof count) < 0 && errno != EAGAIN)
                    die("eventfd read");
                std::vector<std::pair<std::string, std::string>> mail;
                {
                    std::lock_guard lock{w.mx};
                    mail.swap(w.inbox);
                }
                for (const auto& [channel, body] : mail)
                    deliver(w, channel, body);
                continue;
            }
            auto it = w.conns.find(fd);
            if (it == w.conns.end())
                continue;
            conn& c = *it->second;
            bool gone = (ev & (EPOLLERR | EPOLLHUP)) != 0;
            if (!gone && (ev & EPOLLOUT) && !c.out.empty()) {
                const ssize_t s = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
                if (s > 0)
                    c.out.erase(0, static_cast<std::size_t>(s));
                else if (errno != EAGAIN && errno != EWOULDBLOCK)
                    gone = true;
                if (c.out.empty())
                    want_output(w, c, false);
            }
            if (!gone && (ev & (EPOLLIN | EPOLLRDHUP))) {
                char buf[16384];
                for (;;) {
                    const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
                    if (r > 0) {
                        came_back(w, c);
                        c.in.append(buf, static_cast<std::size_t>(r));
                        if (static_cast<std::size_t>(r) < sizeof buf)
                            break;
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                        gone = true;
                    break;
                }
                if (!gone && !handle_input(w, c))
                    gone = true;
            }
            if (gone)
                close_conn(w, fd);
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    megaphone::bench::floor_options o;
    bool reuse_port = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view a = argv[i];
        if (o.take(a, argv[i + 1]))
            continue;
        if (a == "--reuse-port")
            reuse_port = std::string_view(argv[i + 1]) == "1";
        else if (a == "--group")
            group_count =
                static_cast<unsigned>(std::max(1ul, std::strtoul(argv[i + 1], nullptr, 10)));
        else if (a == "--index")
            group_index = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10));
        else if (a == "--window")
            window = std::strtoul(argv[i + 1], nullptr, 10);
        else if (a == "--speculate")
            speculate = std::string_view(argv[i + 1]) == "1";
        else {
            std::fprintf(stderr, "usage: megaphone-floor-server [--port N] [--threads T] "
                                 "[--max-seconds S] [--reuse-port 0|1] [--group N --index I] "
                                 "[--window K] [--speculate 0|1]\n");
            return 2;
        }
    }
    if (group_index >= group_count) {
        std::fprintf(stderr, "megaphone-floor-server: --index must be below --group\n");
        return 2;
    }
    megaphone::bench::prepare_process();
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0)
        die("socket");
    const int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port)
        ::setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        die("bind");
    if (::listen(lfd, 4096) != 0)
        die("listen");
    socklen_t len = sizeof addr;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
    listen_port = ntohs(addr.sin_port);
    if (group_count > 1) {
        group_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        socklen_t glen = 0;
        const sockaddr_un ga = group_address(group_index, glen);
        if (group_fd < 0 || ::bind(group_fd, reinterpret_cast<const sockaddr*>(&ga), glen) != 0)
            die("group socket");
    }

    for (unsigned i = 0; i < o.threads; ++i) {
        auto w = std::make_unique<worker>();
        w->ep = ::epoll_create1(0);
        w->wake = ::eventfd(0, EFD_NONBLOCK);
        w->listener = lfd;
        if (w->ep < 0 || w->wake < 0)
            die("epoll/eventfd");
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.fd = lfd;
        if (::epoll_ctl(w->ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
            die("epoll_ctl listener");
        epoll_event wev{};
        wev.events = EPOLLIN;
        wev.data.fd = w->wake;
        ::epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &wev);
        if (group_fd >= 0 && i == 0) {
            epoll_event gev{};
            gev.events = EPOLLIN;
            gev.data.fd = group_fd;
            ::epoll_ctl(w->ep, EPOLL_CTL_ADD, group_fd, &gev);
        }
        workers.push_back(std::move(w));
    }

    const sigset_t set = megaphone::bench::block_stop_signals(); // (the threads inherit it)
    std::atomic<bool> stop{false};
    std::vector<std::thread> pool;
    for (auto& w : workers)
        pool.emplace_back([&w, &stop] { run(*w, stop); });
    std::printf("listening on http://127.0.0.1:%u\n", ntohs(addr.sin_port));
    std::fflush(stdout);
    megaphone::bench::wait_for_stop(set, o.max_seconds);
    stop = true;
    for (auto& t : pool)
        t.join();
    return 0;
}
