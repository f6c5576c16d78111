// handover: the processes of one machine pass client connections to each other (--reuse-port).
//
// N processes share the public port through SO_REUSEPORT and the kernel gives each new
// connection to any of them, so most requests land on a process that does not own their
// session. Instead of relaying such a request over HTTP (cluster/forwarder.hpp), the process
// passes the TCP connection itself to the owner, with the bytes it read from it: the owner reads
// the request from those bytes, answers, and keeps the connection, so the client's next requests
// on it go straight there. No second socket per request, no copy of the answer.
//
//   handover_receiver  listens on the abstract Unix socket "megaphone/<port>/<node id>" (Linux's
//                      abstract namespace: no file to create or clean up, gone with the process,
//                      reachable only from this machine's network namespace), SOCK_SEQPACKET: one
//                      message is one connection, its descriptor in SCM_RIGHTS and its bytes as
//                      the payload. It admits peer processes of this user only (SO_PEERCRED):
//                      anyone else gets the socket closed. Each connection received goes to the
//                      `adopt` callback (the server's public listener: same limits, counting).
//   handover_sender    connects to a node's socket on first use and keeps that connection (one
//                      per node, shared by all threads; a SEQPACKET send is atomic). A node with
//                      no socket here (on another machine, dead, not started) is remembered as
//                      absent for a second. Sends never block: a full socket means "not sent".
//
// When a send fails nothing has changed: the caller forwards the request over HTTP instead.
// Only plain HTTP connections move (TLS state stays in its process: those are forwarded).
#pragma once

#include "transport/net.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace megaphone {

/// Largest message (a request's bytes) passed along; a bigger one is forwarded instead.
inline constexpr std::size_t handover_max_bytes = 192 * 1024;

/// The abstract socket name of `node`'s receiver behind public port `port` (no leading NUL).
std::string handover_name(unsigned short port, std::string_view node);

/// Counters for /metrics (any thread).
struct handover_stats {
    std::atomic<std::uint64_t> sent{0};     ///< connections passed to another process
    std::atomic<std::uint64_t> adopted{0};  ///< connections taken from another process
    std::atomic<std::uint64_t> declined{0}; ///< sends that failed (the request was forwarded)
    std::atomic<std::uint64_t> refused{0};  ///< peers of another user turned away
    /// megaphone_connections_handed_over_total{direction=...} and friends (Prometheus text).
    void write(std::string& out) const;
};

class handover_sender {
public:
    handover_sender(unsigned short port, std::shared_ptr<handover_stats> stats);
    ~handover_sender();
    handover_sender(const handover_sender&) = delete;
    handover_sender& operator=(const handover_sender&) = delete;

    /// Passes TCP connection `fd` (still this process's: the caller closes its copy when this
    /// returns true) and `bytes` to `node`'s process on this machine. False: not sent (no such
    /// node here, its socket full or gone, `bytes` too large). Any thread; never blocks.
    bool send(std::string_view node, int fd, std::string_view bytes);

private:
    struct peer;
    std::shared_ptr<peer> peer_of(std::string_view node, bool fresh);

    const unsigned short port_;
    std::shared_ptr<handover_stats> stats_;
    std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<peer>> peers_;
};

class handover_receiver {
public:
    /// Takes connection `fd` (now this process's) and the `bytes` read from it already.
    using adopt_fn = std::function<void(int fd, std::string bytes)>;

    /// Listens at once on handover_name(port, node); throws std::system_error when it cannot
    /// (the name is taken: another process of this machine runs with the same node id).
    handover_receiver(net::io_context& ioc, unsigned short port, std::string_view node,
                      adopt_fn adopt, std::shared_ptr<handover_stats> stats);
    ~handover_receiver();
    handover_receiver(const handover_receiver&) = delete;
    handover_receiver& operator=(const handover_receiver&) = delete;

    /// Closes the listening socket and every peer connection; no adopt() afterwards. Any
    /// thread (the work runs on the io_context's; waits for it only if it is running).
    void stop();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace megaphone
