#include "cluster/handover.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <system_error>
#include <vector>

namespace megaphone {

std::string handover_name(unsigned short port, std::string_view node) {
    std::string name = "megaphone/";
    name += std::to_string(port);
    name += '/';
    name += node;
    return name;
}

void handover_stats::write(std::string& out) const {
    out += "# HELP megaphone_connections_handed_over_total Client connections passed between "
           "processes of this machine (--reuse-port): out to the session's owner, in from "
           "another process.\n"
           "# TYPE megaphone_connections_handed_over_total counter\n";
    out += "megaphone_connections_handed_over_total{direction=\"out\"} " +
           std::to_string(sent.load()) + "\n";
    out += "megaphone_connections_handed_over_total{direction=\"in\"} " +
           std::to_string(adopted.load()) + "\n";
    out += "# HELP megaphone_handover_failures_total Hand-overs that failed (the owner's socket "
           "full or gone: the request was forwarded instead), and peers of another user turned "
           "away.\n"
           "# TYPE megaphone_handover_failures_total counter\n";
    out += "megaphone_handover_failures_total{reason=\"send\"} " + std::to_string(declined.load()) +
           "\n";
    out += "megaphone_handover_failures_total{reason=\"foreign_peer\"} " +
           std::to_string(refused.load()) + "\n";
}

namespace {

/// The address of an abstract Unix socket; `length` is the part of it that counts.
struct abstract_address {
    sockaddr_un addr{};
    socklen_t length = 0;

    explicit abstract_address(const std::string& name) {
        addr.sun_family = AF_UNIX;
        const std::size_t n = std::min(name.size(), sizeof addr.sun_path - 1);
        std::memcpy(addr.sun_path + 1, name.data(), n); // sun_path[0] stays '\0': abstract
        length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
    }
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&addr); }
};

/// A connected, non-blocking SEQPACKET socket to `name`, or -1.
int connect_to(const std::string& name) {
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    const abstract_address where{name};
    if (::connect(fd, where.get(), where.length) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

constexpr auto absent_for = std::chrono::seconds(1);
constexpr std::size_t max_remembered = 256;

} // namespace

//--------------------------------------------------------------------------------------------------
// handover_sender

struct handover_sender::peer {
    int fd = -1;
    std::chrono::steady_clock::time_point absent_until{};
    ~peer() {
        if (fd >= 0)
            ::close(fd);
    }
};

handover_sender::handover_sender(unsigned short port, std::shared_ptr<handover_stats> stats)
    : port_{port}
    , stats_{stats ? std::move(stats) : std::make_shared<handover_stats>()} {}

handover_sender::~handover_sender() = default;

std::shared_ptr<handover_sender::peer> handover_sender::peer_of(std::string_view node, bool fresh) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock{mutex_};
    std::string key{node};
    if (auto it = peers_.find(key); it != peers_.end() && !fresh) {
        if (it->second->fd >= 0)
            return it->second;
        if (now < it->second->absent_until)
            return nullptr;
    }
    auto p = std::make_shared<peer>();
    p->fd = connect_to(handover_name(port_, node));
    if (p->fd < 0)
        p->absent_until = now + absent_for;
    // Forged sids may name any number of nodes: the nodes found absent are forgotten in bulk
    // rather than piling up.
    if (peers_.size() >= max_remembered && peers_.find(key) == peers_.end())
        std::erase_if(peers_, [](const auto& entry) { return entry.second->fd < 0; });
    if (peers_.size() < max_remembered || peers_.count(key) != 0)
        peers_[std::move(key)] = p;
    return p->fd >= 0 ? p : nullptr;
}

bool handover_sender::send(std::string_view node, int fd, std::string_view bytes) {
    if (bytes.empty() || bytes.size() > handover_max_bytes)
        return false;
    bool failed = false; // a send to the node's socket was tried and failed
    for (int attempt = 0; attempt < 2; ++attempt) {
        const auto p = peer_of(node, attempt > 0);
        if (!p)
            break; // no such node on this machine (any more): forwarded
        iovec payload{const_cast<char*>(bytes.data()), bytes.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &payload;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
        const ssize_t n = ::sendmsg(p->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == static_cast<ssize_t>(bytes.size())) {
            stats_->sent.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
        failed = true;
        // A full socket (the owner is slow) or a message too large: forwarded this time.
        if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EMSGSIZE ||
            errno == ENOBUFS)
            break;
        // The owner's end is gone (EPIPE, ECONNRESET...): one fresh connection is tried, which
        // finds the process restarted or marks the node absent.
    }
    if (failed)
        stats_->declined.fetch_add(1, std::memory_order_relaxed);
    return false;
}

//--------------------------------------------------------------------------------------------------
// handover_receiver

struct handover_receiver::impl : std::enable_shared_from_this<impl> {
    // Asio has no SOCK_SEQPACKET protocol of its own: the sockets are plain descriptors whose
    // readiness Asio waits for; accept4() and recvmsg() are called directly.
    using descriptor = net::posix::stream_descriptor;

    impl(net::io_context& c, adopt_fn a, std::shared_ptr<handover_stats> s)
        : ioc{c}
        , listening{c}
        , backoff{c}
        , adopt{std::move(a)}
        , stats{s ? std::move(s) : std::make_shared<handover_stats>()}
        , buffer(handover_max_bytes + 1) {}

    net::io_context& ioc;
    descriptor listening;
    net::steady_timer backoff;
    adopt_fn adopt;
    std::shared_ptr<handover_stats> stats;
    std::vector<char> buffer; // one message at a time, on the io_context's thread
    std::vector<std::shared_ptr<descriptor>> peers;
    bool stopped = false;

    void listen(const std::string& name) {
        const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            throw std::system_error(errno, std::generic_category(), "hand-over socket");
        const abstract_address where{name};
        if (::bind(fd, where.get(), where.length) != 0 || ::listen(fd, 512) != 0) {
            const int error = errno;
            ::close(fd);
            throw std::system_error(error, std::generic_category(),
                                    "hand-over socket @" + name +
                                        (error == EADDRINUSE
                                             ? " (another process of this machine has this node "
                                               "id on this port: give each its own --node-id)"
                                             : ""));
        }
        listening.assign(fd);
    }

    void accept() {
        listening.async_wait(
            descriptor::wait_read,
            [self = shared_from_this()](boost::system::error_code ec) { self->on_acceptable(ec); });
    }

    void on_acceptable(boost::system::error_code ec) {
        if (stopped || ec)
            return;
        for (;;) {
            const int fd = ::accept4(listening.native_handle(), nullptr, nullptr,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                    errno == ECONNABORTED)
                    break;
                // Out of descriptors, say: pause rather than spin.
                backoff.expires_after(std::chrono::milliseconds(50));
                backoff.async_wait([self = shared_from_this()](boost::system::error_code wec) {
                    if (!wec && !self->stopped)
                        self->accept();
                });
                return;
            }
            // Only this user's processes may hand connections in.
            ucred peer{};
            socklen_t length = sizeof peer;
            if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
                peer.uid != ::geteuid()) {
                stats->refused.fetch_add(1, std::memory_order_relaxed);
                ::close(fd);
                continue;
            }
            auto p = std::make_shared<descriptor>(ioc, fd);
            peers.push_back(p);
            wait(p);
        }
        accept();
    }

    void wait(const std::shared_ptr<descriptor>& p) {
        p->async_wait(descriptor::wait_read,
                      [self = shared_from_this(), p](boost::system::error_code ec) {
                          self->on_readable(p, ec);
                      });
    }

    void drop(const std::shared_ptr<descriptor>& p) {
        boost::system::error_code ignored;
        p->close(ignored);
        std::erase(peers, p);
    }

    void on_readable(const std::shared_ptr<descriptor>& p, boost::system::error_code ec) {
        if (stopped)
            return;
        if (ec)
            return drop(p);
        // A bounded batch per wake-up: other work on this thread gets its turn.
        for (int i = 0; i < 64; ++i) {
            iovec payload{buffer.data(), buffer.size()};
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
            msghdr msg{};
            msg.msg_iov = &payload;
            msg.msg_iovlen = 1;
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            const ssize_t n = ::recvmsg(p->native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                break;
            if (n <= 0)
                return drop(p); // the sender went away (or failed)
            std::vector<int> fds;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t k = 0; k < count; ++k) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
                    fds.push_back(fd);
                }
            }
            // One descriptor and the whole message, or nothing is taken.
            const bool whole = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0;
            if (!whole || fds.size() != 1) {
                for (int fd : fds)
                    ::close(fd);
                continue;
            }
            stats->adopted.fetch_add(1, std::memory_order_relaxed);
            adopt(fds.front(), std::string(buffer.data(), static_cast<std::size_t>(n)));
        }
        wait(p);
    }

    void close_all() {
        stopped = true;
        boost::system::error_code ignored;
        listening.close(ignored);
        backoff.cancel();
        for (auto& p : peers)
            p->close(ignored);
        peers.clear();
    }
};

handover_receiver::handover_receiver(net::io_context& ioc, unsigned short port,
                                     std::string_view node, adopt_fn adopt,
                                     std::shared_ptr<handover_stats> stats)
    : impl_{std::make_shared<impl>(ioc, std::move(adopt), std::move(stats))} {
    impl_->listen(handover_name(port, node));
    impl_->accept();
}

handover_receiver::~handover_receiver() {
    stop();
}

void handover_receiver::stop() {
    auto s = impl_;
    if (s->ioc.get_executor().running_in_this_thread() || s->ioc.stopped()) {
        s->close_all();
        return;
    }
    net::post(s->ioc, [s] { s->close_all(); });
}

} // namespace megaphone
