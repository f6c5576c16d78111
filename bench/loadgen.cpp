// megaphone-loadgen: a load generator for Megaphone and for nginx+nchan, driven by bench/run.
//
// One thread and raw epoll: non-blocking sockets, requests built once and patched in place, a
// minimal HTTP/1.1 response parser (Content-Length, chunked, or read until close). Several
// processes can share one run: they meet in a small shared-memory file (--sync) where the leader
// (the process with the publishers) sets the phases and everyone counts what it received. Every
// loop is bounded by counts and deadlines; the process always stops by itself.
//
// Results are one JSON line on stdout; progress goes to stderr once a second.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using i64 = std::int64_t;
using u64 = std::uint64_t;
using u32 = std::uint32_t;

constexpr i64 ms_ns = 1'000'000;
constexpr i64 s_ns = 1'000'000'000;

i64 now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<i64>(ts.tv_sec) * s_ns + ts.tv_nsec;
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "megaphone-loadgen: %s\n", what.c_str());
    std::exit(2);
}

//--------------------------------------------------------------------------------------------------
// Options

enum class target_kind { megaphone, nchan };
enum class mode_kind { hold, fanout, throughput, rate, empty };
// How a subscriber receives: long-polls (one answer per request), or one stream per subscriber:
// Server-Sent Events (an EventSource's GET) or a WebSocket (RFC 6455, text frames).
enum class transport_kind { long_poll, sse, ws };

struct options {
    target_kind target = target_kind::megaphone;
    mode_kind mode = mode_kind::hold;
    transport_kind transport = transport_kind::long_poll;
    std::string host = "127.0.0.1";
    unsigned port = 0;
    unsigned publish_port = 0; // 0: --port
    std::string publish_key;   // megaphone: sent as Authorization: Bearer KEY on every publish
    double settle = -1;        // < 0: the target's default
    u32 connections = 100;
    u32 first = 0;
    u32 total = 0;
    bool one_channel = false;
    std::string prefix;
    u32 publishes = 20;
    double duration = 10;
    u64 count = 0;
    double rate = 1000;
    int publishers = -1;
    bool leader = true;
    std::size_t size = 100;
    std::vector<std::string> sources;
    std::string sync;
    double wait = 60;
    u32 ramp = 256;
    double setup_timeout = 120;
    double publish_timeout = 10;
    double drain = 5;
    std::string path;
    bool fresh_connections = false; // empty: every request on a new connection
    bool poll_connection = false;   // empty: create on one connection, poll on a second
    std::string label;
    std::vector<int> quiet_pids;
    double quiet_timeout = 3;
    bool gate = false;         // fanout leader: publish only once the driver opens the gate
    double gate_timeout = 120; // ... or after this long (an error)
};

void print_help() {
    std::printf(
        "megaphone-loadgen: load generator for Megaphone (JSON transport) and nginx+nchan.\n\n"
        "Usage: megaphone-loadgen --target megaphone|nchan --port N --mode MODE [options]\n\n"
        "Transports (--transport, modes hold, fanout, throughput and rate):\n"
        "  long-poll   megaphone: a session polled with POST /comet; nchan: GET /sub/CH with\n"
        "              If-Modified-Since/If-None-Match [the default]\n"
        "  sse         Server-Sent Events, one stream per subscriber. megaphone: the session is\n"
        "              created by POST /comet, then GET /comet/events?sid=S on the same\n"
        "              connection; nchan: GET /es/CH (nchan_subscriber eventsource). Each\n"
        "              data: line is parsed for messages; Megaphone's id: must go up by one\n"
        "  ws          WebSocket (RFC 6455): megaphone: POST /comet (Connection: close), then\n"
        "              GET /comet?sid=S on a new connection (as a browser opens one) with\n"
        "              Upgrade: websocket and Sec-WebSocket-Protocol: megaphone (101, then\n"
        "              {\"type\":\"ready\"}, {\"id\":N,\"messages\":[...]}\n"
        "              batches); nchan: GET /ws/CH (nchan_subscriber websocket: one text frame\n"
        "              per message). The handshake's Sec-WebSocket-Accept is checked; server\n"
        "              frames must be unmasked; pings are answered with masked pongs, a close\n"
        "              with a masked close. An upgrade answered with anything but 101 gives the\n"
        "              subscriber up at once (counted in ws_refused). Megaphone's streams are\n"
        "              acknowledged as web/megaphone.js does, at most once a second while\n"
        "              batches come: a frame {\"rid\":R,\"stream_ack\":N,\"streaming\":true}\n"
        "              (its answer counted in ws_control; counted in ws_acks). SSE streams\n"
        "              are not (an EventSource has no way to): the server keeps up to\n"
        "              --max-queue of their messages\n\n"
        "Modes:\n"
        "  hold        open C subscribers and keep a long-poll held for --duration seconds\n"
        "  fanout      C subscribers on one channel; --publishes P one after another, each once\n"
        "              every subscriber got the previous one; time from send to the last receipt\n"
        "  throughput  C subscribers on own channels; --publishers connections publish as fast as\n"
        "              they are answered for --duration; delivered msg/s and latency\n"
        "  rate        as throughput at a fixed total --rate R msg/s; latency p50/p99/p99.9\n"
        "  empty       C connections in a request loop for --duration (megaphone: polls of a\n"
        "              polling session, answered at once; or GET --path on either target)\n\n"
        "Options (defaults in brackets):\n"
        "  --target T          megaphone or nchan [megaphone]\n"
        "  --host ADDR         server address, loopback (127.0.0.0/8) only [127.0.0.1]\n"
        "  --port N            server port (required)\n"
        "  --publish-port N    publishers connect to this port instead (another node of a\n"
        "                      cluster: subscribers on --port, publishes on N) [--port]\n"
        "  --publish-key KEY   megaphone: send Authorization: Bearer KEY with every publish\n"
        "                      (a server with --publish-key serves POST /publish on its\n"
        "                      public port only so; without one, point --publish-port at\n"
        "                      its internal door) [none]\n"
        "  --mode M            hold, fanout, throughput, rate, empty [hold]\n"
        "  --transport T       long-poll, sse or ws (see above) [long-poll]\n"
        "  --connections C     subscribers (or request loops) of this process [100]\n"
        "  --first I           global index of this process's first subscriber [0]\n"
        "  --total N           subscribers over all processes of the run [C]\n"
        "  --one-channel       hold: every subscriber on one channel (fanout always is)\n"
        "  --prefix P          channel name prefix [random]\n"
        "  --publishes P       fanout: number of publishes [20]\n"
        "  --duration D        seconds of hold / publishing / request loop [10]\n"
        "  --count N           upper bound on publishes (throughput, rate) or requests (empty)\n"
        "  --rate R            rate: total messages per second [1000]\n"
        "  --publishers N      publish connections (the pipeline bound) [fanout 1, throughput\n"
        "                      16, rate 32]; 0 on the followers of a multi-process run\n"
        "  --follower          not the leader: no publishers, follows the phases in --sync\n"
        "  --size BYTES        message size, the same bytes for both targets [100]\n"
        "  --source A[,B...]   loopback source addresses to bind, taken in turn by the\n"
        "                      connections; when ports run out one after the other\n"
        "                      (127.0.0.2, 127.0.0.3, ... after the list)\n"
        "  --sync FILE         shared-memory file of a multi-process run [private]\n"
        "  --wait S            megaphone: the session's wait [60]\n"
        "  --ramp N            subscriber setups in flight at once [256]\n"
        "  --setup-timeout S   give up waiting for every subscriber after S seconds [120]\n"
        "  --publish-timeout S fanout: give up on one publish after S seconds [10]\n"
        "  --quiet-pids P,P    fanout: before each publish wait until these server processes\n"
        "                      are idle (< 1 ms of CPU over 20 ms; all threads), so every\n"
        "                      subscriber's next poll is held again, at most --quiet-timeout\n"
        "                      seconds [3]\n"
        "  --drain S           throughput/rate: wait for stragglers after publishing [5]\n"
        "  --settle S          wait S seconds once every subscriber is ready before the\n"
        "                      window starts (a cluster's subscriptions travel to other\n"
        "                      nodes); not nchan's fanout, which asks nchan instead\n"
        "                      [nchan 0.3, megaphone 0]\n"
        "  --path P            empty: plain GET of P instead of megaphone polls\n"
        "  --fresh-connections empty: every request on a new TCP connection, the session's\n"
        "                      creation too, each sent with Connection: close (the server\n"
        "                      closes after its answer): clients whose connections a kernel\n"
        "                      or balancer spreads at random; latency includes the connect\n"
        "  --poll-connection   megaphone (empty, hold, fanout): the session is created on a\n"
        "                      connection of its own (Connection: close), then polled on a\n"
        "                      second one kept alive (it may reach another process than the\n"
        "                      creation: --reuse-port hands it over to the session's owner)\n"
        "  --gate              fanout leader: once every subscriber is ready, wait until the\n"
        "                      driver sets the gate word of --sync (byte 64, non-zero) before\n"
        "                      the first publish (bench/million measures memory meanwhile)\n"
        "  --gate-timeout S    give up waiting for the gate after S seconds (an error) [120]\n"
        "  --label L           name in progress lines [target]\n");
}

double parse_number(std::string_view opt, std::string_view text) {
    double v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || v < 0 || !std::isfinite(v))
        die(std::string(opt) + " takes a non-negative number, not '" + std::string(text) + "'");
    return v;
}

u64 parse_whole(std::string_view opt, std::string_view text, u64 max) {
    const double v = parse_number(opt, text);
    if (v != std::floor(v) || v > static_cast<double>(max))
        die(std::string(opt) + " takes a whole number up to " + std::to_string(max));
    return static_cast<u64>(v);
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const auto p = s.find(sep);
        out.emplace_back(s.substr(0, p));
        if (p == std::string_view::npos)
            break;
        s.remove_prefix(p + 1);
    }
    return out;
}

options parse_options(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            print_help();
            std::exit(0);
        }
        if (a == "--one-channel") {
            o.one_channel = true;
            continue;
        }
        if (a == "--follower") {
            o.leader = false;
            continue;
        }
        if (a == "--fresh-connections") {
            o.fresh_connections = true;
            continue;
        }
        if (a == "--poll-connection") {
            o.poll_connection = true;
            continue;
        }
        if (a == "--gate") {
            o.gate = true;
            continue;
        }
        if (i + 1 >= argc)
            die("unknown option or missing value: " + std::string(a) + " (see --help)");
        const std::string_view v = argv[++i];
        if (a == "--target") {
            if (v == "megaphone")
                o.target = target_kind::megaphone;
            else if (v == "nchan")
                o.target = target_kind::nchan;
            else
                die("--target is megaphone or nchan");
        } else if (a == "--mode") {
            if (v == "hold")
                o.mode = mode_kind::hold;
            else if (v == "fanout")
                o.mode = mode_kind::fanout;
            else if (v == "throughput")
                o.mode = mode_kind::throughput;
            else if (v == "rate")
                o.mode = mode_kind::rate;
            else if (v == "empty")
                o.mode = mode_kind::empty;
            else
                die("--mode is hold, fanout, throughput, rate or empty");
        } else if (a == "--transport") {
            if (v == "long-poll" || v == "longpoll")
                o.transport = transport_kind::long_poll;
            else if (v == "sse")
                o.transport = transport_kind::sse;
            else if (v == "ws")
                o.transport = transport_kind::ws;
            else
                die("--transport is long-poll, sse or ws");
        } else if (a == "--host")
            o.host = v;
        else if (a == "--port")
            o.port = static_cast<unsigned>(parse_whole(a, v, 65535));
        else if (a == "--publish-port")
            o.publish_port = static_cast<unsigned>(parse_whole(a, v, 65535));
        else if (a == "--publish-key") {
            if (v.empty() || v.find_first_of("\r\n") != std::string_view::npos)
                die("--publish-key takes a non-empty key on one line");
            o.publish_key = v;
        } else if (a == "--settle")
            o.settle = parse_number(a, v);
        else if (a == "--connections")
            o.connections = static_cast<u32>(parse_whole(a, v, 1'000'000));
        else if (a == "--first")
            o.first = static_cast<u32>(parse_whole(a, v, 100'000'000));
        else if (a == "--total")
            o.total = static_cast<u32>(parse_whole(a, v, 100'000'000));
        else if (a == "--prefix")
            o.prefix = v;
        else if (a == "--publishes")
            o.publishes = static_cast<u32>(parse_whole(a, v, 1'000'000));
        else if (a == "--duration")
            o.duration = parse_number(a, v);
        else if (a == "--count")
            o.count = parse_whole(a, v, u64{1} << 50);
        else if (a == "--rate")
            o.rate = parse_number(a, v);
        else if (a == "--publishers")
            o.publishers = static_cast<int>(parse_whole(a, v, 10'000));
        else if (a == "--size")
            o.size = static_cast<std::size_t>(parse_whole(a, v, 1 << 20));
        else if (a == "--source")
            for (auto& s : split(v, ','))
                o.sources.push_back(s);
        else if (a == "--sync")
            o.sync = v;
        else if (a == "--wait")
            o.wait = parse_number(a, v);
        else if (a == "--ramp")
            o.ramp = static_cast<u32>(std::max<u64>(1, parse_whole(a, v, 1'000'000)));
        else if (a == "--setup-timeout")
            o.setup_timeout = parse_number(a, v);
        else if (a == "--publish-timeout")
            o.publish_timeout = parse_number(a, v);
        else if (a == "--drain")
            o.drain = parse_number(a, v);
        else if (a == "--path")
            o.path = v;
        else if (a == "--label")
            o.label = v;
        else if (a == "--quiet-pids") {
            std::string_view rest = v;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                const std::string_view one = rest.substr(0, comma);
                o.quiet_pids.push_back(static_cast<int>(parse_whole(a, one, 1u << 30)));
                rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
            }
        } else if (a == "--quiet-timeout")
            o.quiet_timeout = parse_number(a, v);
        else if (a == "--gate-timeout")
            o.gate_timeout = parse_number(a, v);
        else
            die("unknown option " + std::string(a) + " (see --help)");
    }
    if (o.port == 0)
        die("--port is required (see --help)");
    if (o.total == 0)
        o.total = o.connections;
    if (o.publish_port == 0)
        o.publish_port = o.port;
    if (!o.publish_key.empty() && o.target != target_kind::megaphone)
        die("--publish-key is for --target megaphone");
    if (o.publishers < 0)
        o.publishers = !o.leader                         ? 0
                       : o.mode == mode_kind::fanout     ? 1
                       : o.mode == mode_kind::throughput ? 16
                       : o.mode == mode_kind::rate       ? 32
                                                         : 0;
    if (o.leader && o.publishers == 0 &&
        (o.mode == mode_kind::fanout || o.mode == mode_kind::throughput ||
         o.mode == mode_kind::rate))
        die("the leader of this mode needs --publishers 1 or more");
    if (o.mode == mode_kind::fanout)
        o.one_channel = true;
    if (o.mode == mode_kind::rate && o.rate <= 0)
        die("--rate must be positive");
    if (o.path.empty() && o.mode == mode_kind::empty && o.target == target_kind::nchan)
        o.path = "/empty";
    if (!o.path.empty() && o.path.front() != '/')
        die("--path starts with /");
    if (o.fresh_connections && o.mode != mode_kind::empty)
        die("--fresh-connections is an option of --mode empty");
    if (o.poll_connection && o.mode != mode_kind::empty && o.mode != mode_kind::hold &&
        o.mode != mode_kind::fanout)
        die("--poll-connection is an option of --mode empty, hold and fanout");
    if (o.transport != transport_kind::long_poll && o.mode == mode_kind::empty)
        die("--transport sse|ws is for --mode hold, fanout, throughput and rate");
    if (o.gate && o.mode != mode_kind::fanout)
        die("--gate is an option of --mode fanout");
    if (o.fresh_connections && o.poll_connection)
        die("--fresh-connections or --poll-connection, not both");
    if (o.poll_connection && (o.target != target_kind::megaphone || !o.path.empty()))
        die("--poll-connection polls a Megaphone session (no --path, --target megaphone)");
    if (o.prefix.empty()) {
        std::random_device rd;
        o.prefix = "lg" + std::to_string(rd() % 1'000'000'000u);
    }
    for (char ch : o.prefix)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
            die("--prefix takes letters, digits, '-', '_' and '.'");
    if (o.label.empty())
        o.label = o.target == target_kind::megaphone ? "megaphone" : "nchan";
    return o;
}

//--------------------------------------------------------------------------------------------------
// Latency histogram: log-linear, 64 steps per power of two (under 1.6% error), microseconds.

class histogram {
public:
    void add(u64 us) noexcept {
        ++counts_[index(us)];
        ++n_;
        max_ = std::max(max_, us);
    }
    u64 size() const noexcept { return n_; }
    double max_ms() const noexcept { return static_cast<double>(max_) / 1000.0; }

    double percentile_ms(double p) const noexcept {
        if (n_ == 0)
            return 0;
        const u64 rank = std::max<u64>(1, static_cast<u64>(std::ceil(p * static_cast<double>(n_))));
        u64 seen = 0;
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank)
                return static_cast<double>(std::min(value(i), max_)) / 1000.0;
        }
        return max_ms();
    }

    /// [[microseconds, count], ...] for the buckets in use: processes are merged by bench/run.
    std::string json() const {
        std::string s = "[";
        for (std::size_t i = 0; i < counts_.size(); ++i)
            if (counts_[i]) {
                if (s.size() > 1)
                    s += ',';
                s += '[' + std::to_string(value(i)) + ',' + std::to_string(counts_[i]) + ']';
            }
        return s + ']';
    }

private:
    static constexpr std::size_t sub = 64;
    static std::size_t index(u64 v) noexcept {
        if (v < sub)
            return static_cast<std::size_t>(v);
        const int shift = 63 - __builtin_clzll(v) - 6;
        return sub + static_cast<std::size_t>(shift) * sub +
               static_cast<std::size_t>((v >> shift) - sub);
    }
    static u64 value(std::size_t i) noexcept {
        if (i < sub)
            return i;
        const std::size_t shift = (i - sub) / sub;
        const u64 mantissa = (i - sub) % sub + sub;
        return (mantissa << shift) + ((u64{1} << shift) >> 1);
    }
    std::array<u64, sub + 58 * sub> counts_{};
    u64 n_ = 0;
    u64 max_ = 0;
};

//--------------------------------------------------------------------------------------------------
// Shared state of a run: a file mapped by every process (bench/run reads the head too).

enum phase_kind : u64 { phase_setup = 0, phase_running = 1, phase_draining = 2, phase_done = 3 };

struct shared_head { // byte offsets are read by bench/run: keep them
    u64 ready;       // 0: subscribers (or loops) with their long-poll on the wire
    u64 phase;       // 8: phase_kind
    i64 start_ns;    // 16: CLOCK_MONOTONIC when the measured window began
    i64 end_ns;      // 24: ... and ended
    u64 published;   // 32: publishes answered 2xx
    u64 delivered;   // 40: messages received, all processes
    u64 errors;      // 48
    u64 failed;      // 56: subscribers given up on (they will never be ready)
    u64 gate;        // 64: --gate: the driver sets it non-zero to let the first publish go
    u64 pad[23];     // to 256 bytes
};
static_assert(sizeof(shared_head) == 256);

struct shared_slot { // one per fanout publish
    i64 send_ns;
    u64 received;
    i64 last_ns;
    u64 reached;
};

template <class T>
std::atomic_ref<T> at(T& v) noexcept {
    return std::atomic_ref<T>(v);
}

class shared_state {
public:
    shared_state(const std::string& path, u32 slots) {
        const std::size_t need = sizeof(shared_head) + std::size_t{slots} * sizeof(shared_slot);
        void* p = nullptr;
        if (path.empty()) {
            p = ::mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        } else {
            const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0)
                die("--sync " + path + ": " + std::strerror(errno));
            struct stat st {};
            if (::fstat(fd, &st) != 0 || (static_cast<std::size_t>(st.st_size) < need &&
                                          ::ftruncate(fd, static_cast<off_t>(need)) != 0))
                die("--sync " + path + ": " + std::strerror(errno));
            p = ::mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            ::close(fd);
        }
        if (p == MAP_FAILED)
            die(std::string("mmap: ") + std::strerror(errno));
        head_ = static_cast<shared_head*>(p);
        slots_ = reinterpret_cast<shared_slot*>(static_cast<char*>(p) + sizeof(shared_head));
    }
    shared_head& head() noexcept { return *head_; }
    shared_slot& slot(u32 i) noexcept { return slots_[i]; }

private:
    shared_head* head_ = nullptr;
    shared_slot* slots_ = nullptr;
};

void atomic_max(i64& target, i64 v) noexcept {
    auto a = at(target);
    i64 cur = a.load(std::memory_order_relaxed);
    while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

//--------------------------------------------------------------------------------------------------
// HTTP/1.1 response parser: works on a connection's receive buffer, resumable.

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

struct span {
    u32 pos = 0;
    u32 len = 0;
    std::string_view in(const std::string& s) const noexcept {
        return std::string_view(s).substr(pos, len);
    }
};

struct response {
    unsigned status = 0;
    std::string_view body;
    std::string_view etag;
    std::string_view last_modified;
    bool close = false;
};

class response_parser {
public:
    enum class result { more, done, bad };

    void reset() noexcept {
        scanned_ = head_len_ = 0;
        status_ = 0;
        close_ = false;
        etag_ = last_modified_ = span{};
        chunk_state_ = chunk_size;
        chunk_left_ = 0;
        body_.clear();
    }

    /// Parses `in` (and, at `eof`, the end of a close-delimited body). On `done`, `r` views into
    /// `in` or this parser, and `used()` is how many bytes of `in` the response took.
    result parse(const std::string& in, bool eof, response& r) {
        if (head_len_ == 0) {
            const std::size_t from = scanned_ > 3 ? scanned_ - 3 : 0;
            const auto end = in.find("\r\n\r\n", from);
            if (end == std::string::npos) {
                scanned_ = in.size();
                return in.size() > 65536 ? result::bad : result::more;
            }
            head_len_ = end + 4;
            if (!parse_head(std::string_view(in).substr(0, end + 2)))
                return result::bad;
            pos_ = head_len_;
        }
        switch (framing_) {
        case framing::length:
            if (in.size() - head_len_ < content_length_)
                return result::more;
            used_ = head_len_ + content_length_;
            r.body = std::string_view(in).substr(head_len_, content_length_);
            break;
        case framing::until_close:
            if (!eof)
                return result::more;
            used_ = in.size();
            r.body = std::string_view(in).substr(head_len_);
            break;
        case framing::chunked: {
            const result c = parse_chunks(in);
            if (c != result::done)
                return c;
            used_ = pos_;
            r.body = body_;
            break;
        }
        }
        r.status = status_;
        r.close = close_;
        r.etag = etag_.in(in);
        r.last_modified = last_modified_.in(in);
        return result::done;
    }

    std::size_t used() const noexcept { return used_; }

private:
    enum class framing { length, chunked, until_close };
    enum chunk_state_kind { chunk_size, chunk_data, chunk_crlf, chunk_trailer };

    bool parse_head(std::string_view head) {
        // Status line: HTTP/1.x SSS reason
        const auto eol = head.find("\r\n");
        const std::string_view line = head.substr(0, eol);
        if (line.size() < 12 || !line.starts_with("HTTP/1."))
            return false;
        unsigned status = 0;
        if (std::from_chars(line.data() + 9, line.data() + 12, status).ec != std::errc{})
            return false;
        status_ = status;
        close_ = line[7] == '0'; // HTTP/1.0 closes unless it says keep-alive
        bool have_length = false, chunked = false;
        content_length_ = 0;
        std::size_t p = eol + 2;
        while (p < head.size()) {
            const auto e = head.find("\r\n", p);
            const std::string_view h = head.substr(p, e - p);
            const auto colon = h.find(':');
            if (colon != std::string_view::npos) {
                const std::string_view name = h.substr(0, colon);
                const std::string_view value = trim(h.substr(colon + 1));
                const span where{static_cast<u32>(value.data() - head.data()),
                                 static_cast<u32>(value.size())};
                if (iequals(name, "content-length")) {
                    if (std::from_chars(value.data(), value.data() + value.size(), content_length_)
                            .ec != std::errc{})
                        return false;
                    have_length = true;
                } else if (iequals(name, "transfer-encoding"))
                    chunked = value.find("chunked") != std::string_view::npos;
                else if (iequals(name, "connection"))
                    close_ = iequals(value, "close");
                else if (iequals(name, "etag"))
                    etag_ = where;
                else if (iequals(name, "last-modified"))
                    last_modified_ = where;
            }
            if (e == std::string_view::npos)
                break;
            p = e + 2;
        }
        if (chunked)
            framing_ = framing::chunked;
        else if (have_length || status_ / 100 == 1 || status_ == 204 || status_ == 304)
            framing_ = framing::length;
        else
            framing_ = framing::until_close;
        return true;
    }

    result parse_chunks(const std::string& in) {
        for (;;) {
            switch (chunk_state_) {
            case chunk_size: {
                const auto e = in.find("\r\n", pos_);
                if (e == std::string::npos)
                    return in.size() - pos_ > 1024 ? result::bad : result::more;
                std::size_t n = 0;
                auto [ptr, ec] = std::from_chars(in.data() + pos_, in.data() + e, n, 16);
                if (ec != std::errc{} || (ptr != in.data() + e && *ptr != ';' && *ptr != ' '))
                    return result::bad;
                pos_ = e + 2;
                chunk_left_ = n;
                chunk_state_ = n == 0 ? chunk_trailer : chunk_data;
                break;
            }
            case chunk_data: {
                const std::size_t take = std::min(chunk_left_, in.size() - pos_);
                body_.append(in, pos_, take);
                pos_ += take;
                chunk_left_ -= take;
                if (chunk_left_ > 0)
                    return result::more;
                chunk_state_ = chunk_crlf;
                break;
            }
            case chunk_crlf:
                if (in.size() - pos_ < 2)
                    return result::more;
                if (in.compare(pos_, 2, "\r\n") != 0)
                    return result::bad;
                pos_ += 2;
                chunk_state_ = chunk_size;
                break;
            case chunk_trailer: {
                const auto e = in.find("\r\n", pos_);
                if (e == std::string::npos)
                    return result::more;
                const bool last = e == pos_;
                pos_ = e + 2;
                if (last)
                    return result::done;
                break;
            }
            }
        }
    }

    std::size_t scanned_ = 0;
    std::size_t head_len_ = 0;
    std::size_t pos_ = 0;
    std::size_t used_ = 0;
    unsigned status_ = 0;
    bool close_ = false;
    framing framing_ = framing::length;
    std::size_t content_length_ = 0;
    span etag_, last_modified_;
    chunk_state_kind chunk_state_ = chunk_size;
    std::size_t chunk_left_ = 0;
    std::string body_;
};

//--------------------------------------------------------------------------------------------------
// Small text helpers for the answers we read

/// The string value of "key":"..." in a JSON text (no escapes needed for what we read).
std::string_view json_string(std::string_view body, std::string_view key) {
    const std::string pat = "\"" + std::string(key) + "\"";
    auto p = body.find(pat);
    if (p == std::string_view::npos)
        return {};
    p = body.find('"', body.find(':', p + pat.size()) + 1);
    if (p == std::string_view::npos)
        return {};
    const auto e = body.find('"', p + 1);
    return e == std::string_view::npos ? std::string_view{} : body.substr(p + 1, e - p - 1);
}

/// The number after "key": in a JSON text, or -1.
i64 json_number(std::string_view body, std::string_view key) {
    const std::string pat = "\"" + std::string(key) + "\"";
    auto p = body.find(pat);
    if (p == std::string_view::npos)
        return -1;
    p = body.find(':', p + pat.size());
    if (p == std::string_view::npos)
        return -1;
    ++p;
    while (p < body.size() && body[p] == ' ')
        ++p;
    i64 v = -1;
    std::from_chars(body.data() + p, body.data() + body.size(), v);
    return v;
}

void put_digits(char* at, u64 v, int width) noexcept {
    for (int i = width - 1; i >= 0; --i) {
        at[i] = static_cast<char>('0' + v % 10);
        v /= 10;
    }
}

//--------------------------------------------------------------------------------------------------
// WebSocket handshake (RFC 6455 §4): Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).

std::array<std::uint8_t, 20> sha1(std::string_view text) {
    std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    std::string m(text);
    const u64 bits = u64{text.size()} * 8;
    m += '\x80';
    while (m.size() % 64 != 56)
        m += '\0';
    for (int i = 7; i >= 0; --i)
        m += static_cast<char>((bits >> (i * 8)) & 0xff);
    auto rol = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
    for (std::size_t blk = 0; blk < m.size(); blk += 64) {
        std::uint32_t w[80];
        for (int i = 0; i < 16; ++i)
            w[i] = static_cast<std::uint32_t>(static_cast<std::uint8_t>(m[blk + 4 * i])) << 24 |
                   static_cast<std::uint32_t>(static_cast<std::uint8_t>(m[blk + 4 * i + 1])) << 16 |
                   static_cast<std::uint32_t>(static_cast<std::uint8_t>(m[blk + 4 * i + 2])) << 8 |
                   static_cast<std::uint32_t>(static_cast<std::uint8_t>(m[blk + 4 * i + 3]));
        for (int i = 16; i < 80; ++i)
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; ++i) {
            std::uint32_t f = 0, k = 0;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDC;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6;
            }
            const std::uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    std::array<std::uint8_t, 20> out{};
    for (int i = 0; i < 20; ++i)
        out[static_cast<std::size_t>(i)] =
            static_cast<std::uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
    return out;
}

std::string base64(const std::uint8_t* p, std::size_t n) {
    static constexpr char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < n; i += 3) {
        const u32 v = u32{p[i]} << 16 | (i + 1 < n ? u32{p[i + 1]} << 8 : 0) |
                      (i + 2 < n ? u32{p[i + 2]} : 0);
        out += abc[(v >> 18) & 63];
        out += abc[(v >> 12) & 63];
        out += i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out += i + 2 < n ? abc[v & 63] : '=';
    }
    return out;
}

std::string websocket_accept(std::string_view key) {
    const auto d = sha1(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    return base64(d.data(), d.size());
}

//--------------------------------------------------------------------------------------------------
// The message: {"t":"<19 digits: send time, ns>","s":"<10 digits: seq>","p":"xxx..."}. Strings,
// so the fixed-width digits may have leading zeros; Megaphone re-serializes the object (its keys
// come out sorted) and nchan passes it verbatim, so receivers look for the markers, not offsets.

constexpr std::string_view t_marker = "\"t\":\"";
constexpr std::string_view s_marker = "\"s\":\"";
constexpr int t_width = 19;
constexpr int s_width = 10;

struct message_template {
    std::string text;
    std::size_t t_pos = 0;
    std::size_t s_pos = 0;

    explicit message_template(std::size_t size) {
        text = "{";
        text += t_marker;
        t_pos = text.size();
        text += std::string(t_width, '0') + "\",";
        text += s_marker;
        s_pos = text.size();
        text += std::string(s_width, '0') + "\",\"p\":\"";
        const std::size_t rest = text.size() + 2;
        text += std::string(size > rest ? size - rest : 0, 'x');
        text += "\"}";
    }
};

//--------------------------------------------------------------------------------------------------
// Connections

enum class role : std::uint8_t { subscriber, publisher, plain };
// opening: a stream's request (SSE GET or WebSocket upgrade) is out, its answer's head not in yet;
// streaming: the stream is open, every byte that comes is events or frames.
enum class stage : std::uint8_t { idle, creating, polling, opening, streaming };

struct conn {
    int fd = -1;
    role kind = role::subscriber;
    stage st = stage::idle;
    bool connecting = false;
    bool busy = false;      // a request is being sent or awaits its answer
    bool out_armed = false; // EPOLLOUT registered
    bool ready = false;     // counted in the shared `ready`
    bool dead = false;      // gave up after repeated failures
    bool info = false;      // publisher: the outstanding request asks nchan for channel info
    bool reconnect_queued = false;
    bool frag_open = false; // ws: a fragmented message is being received
    std::uint8_t failures = 0;
    u32 id = 0;    // index in loadgen::conns_
    u32 gen = 0;   // incremented by every new socket
    u32 index = 0; // subscriber: global index (its channel); publisher: its number
    std::size_t out_off = 0;
    std::size_t rid_pos = 0; // megaphone: where the rid's digits sit in `out`
    u64 rid = 0;
    u64 seq = 0;
    u64 last_id = 0;  // megaphone streams: the last event id (SSE) or batch id (ws) received
    u64 acked_id = 0; // megaphone ws: the last id sent in a stream_ack
    i64 acked_ns = 0; // ... and when
    i64 sent_ns = 0;
    std::string out;
    std::string in;
    std::string sid;
    std::string last_modified;
    std::string etag;
    std::string frag; // ws: the fragments of a message so far
    std::string ctl;  // ws: client frames not yet taken by the socket (pongs, close)
    response_parser parser;
};

constexpr int rid_width = 13;
constexpr u64 rid_limit = 10'000'000'000'000; // 10^13: rids keep 13 digits

//--------------------------------------------------------------------------------------------------
// The load generator

class loadgen {
public:
    explicit loadgen(options o)
        : o_{std::move(o)}
        , shared_{o_.sync, o_.mode == mode_kind::fanout ? o_.publishes : 0}
        , msg_{o_.size} {
        if (::inet_pton(AF_INET, o_.host.c_str(), &server_.sin_addr) != 1)
            die("--host takes an IPv4 address: " + o_.host);
        if ((ntohl(server_.sin_addr.s_addr) >> 24) != 127)
            die("--host must be a loopback address (127.0.0.0/8): " + o_.host);
        server_.sin_family = AF_INET;
        server_.sin_port = htons(static_cast<std::uint16_t>(o_.port));
        pub_server_ = server_;
        pub_server_.sin_port = htons(static_cast<std::uint16_t>(o_.publish_port));
        sources_.push_back(0); // 0: let the kernel pick (127.0.0.1 for a loopback target)
        if (!o_.sources.empty())
            sources_.clear();
        for (const auto& s : o_.sources) {
            in_addr a{};
            if (::inet_pton(AF_INET, s.c_str(), &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
                die("--source takes loopback IPv4 addresses (127.0.0.0/8): " + s);
            sources_.push_back(a.s_addr);
        }
        spread_ = sources_.size();
        host_header_ = "Host: " + o_.host + ":" + std::to_string(o_.port) + "\r\n";
        pub_host_header_ = "Host: " + o_.host + ":" + std::to_string(o_.publish_port) + "\r\n";
        std::random_device rd;
        rng_.seed(rd());
        if (o_.transport == transport_kind::ws) {
            std::array<std::uint8_t, 16> nonce{};
            for (auto& b : nonce)
                b = static_cast<std::uint8_t>(rng_());
            ws_key_ = base64(nonce.data(), nonce.size()); // one per process: a load generator
            ws_accept_ = websocket_accept(ws_key_);
        }

        const u32 subs = o_.connections;
        const u32 pubs = static_cast<u32>(o_.publishers);
        conns_.resize(std::size_t{subs} + pubs);
        for (u32 i = 0; i < conns_.size(); ++i) {
            conn& c = conns_[i];
            c.id = i;
            if (i < subs) {
                c.kind = o_.mode == mode_kind::empty ? role::plain : role::subscriber;
                c.index = o_.first + i;
            } else {
                c.kind = role::publisher;
                c.index = i - subs;
            }
        }
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0)
            die(std::string("epoll_create1: ") + std::strerror(errno));
        if (o_.publishers > 0) {
            const char* ctype = "Content-Type: application/json\r\n";
            pub_head_ = o_.target == target_kind::megaphone ? "POST /publish/" : "POST /pub/";
            pub_tail_ =
                std::string(" HTTP/1.1\r\n") + pub_host_header_ + ctype +
                (o_.target == target_kind::nchan ? "Accept: application/json\r\n" : "") +
                (o_.publish_key.empty() ? std::string()
                                        : "Authorization: Bearer " + o_.publish_key + "\r\n") +
                "Content-Length: " + std::to_string(msg_.text.size()) + "\r\n\r\n";
        }
    }

    int run() {
        t0_ = now_ns();
        const double bound =
            o_.setup_timeout + o_.duration + o_.drain + 30 +
            (o_.mode == mode_kind::fanout
                 ? o_.publish_timeout * static_cast<double>(o_.publishes) +
                       (o_.gate ? o_.gate_timeout : 0) +
                       (o_.quiet_pids.empty() ? 0 : o_.quiet_timeout * o_.publishes)
                 : 0);
        hard_deadline_ = t0_ + static_cast<i64>(bound * s_ns);
        setup_deadline_ = t0_ + static_cast<i64>(o_.setup_timeout * s_ns);
        next_progress_ = t0_ + s_ns;
        for (conn& c : conns_)
            if (c.kind == role::publisher) {
                free_pubs_.push_back(c.id);
                open_conn(c); // connected now: the first publish does not pay the handshake
            }

        std::array<epoll_event, 512> events{};
        while (!finished_) {
            i64 now = now_ns();
            tick(now);
            if (finished_)
                break;
            now = now_ns();
            const i64 wake = std::max<i64>(0, next_wakeup(now) - now);
            timespec ts{static_cast<time_t>(wake / s_ns), static_cast<long>(wake % s_ns)};
            const int n =
                ::epoll_pwait2(ep_, events.data(), static_cast<int>(events.size()), &ts, nullptr);
            if (n < 0 && errno != EINTR)
                die(std::string("epoll_pwait2: ") + std::strerror(errno));
            for (int i = 0; i < n; ++i)
                on_event(conns_[events[i].data.u32], events[i].events);
        }
        report();
        return 0;
    }

private:
    shared_head& head() noexcept { return shared_.head(); }
    u64 shared_phase() noexcept { return at(head().phase).load(std::memory_order_acquire); }

    //----------------------------------------------------------------------------------------------
    // Errors: counted by kind, with the exact text of the first few of each

    void error(const std::string& what) {
        ++errors_[what];
        ++error_total_;
        at(head().errors).fetch_add(1, std::memory_order_relaxed);
        if (errors_[what] <= 3)
            std::fprintf(stderr, "[%s] error: %s\n", o_.label.c_str(), what.c_str());
    }

    //----------------------------------------------------------------------------------------------
    // Sockets

    void set_events(conn& c, bool out) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0u);
        ev.data.u32 = c.id;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.out_armed = out;
    }

    bool next_source() {
        if (source_ + 1 < sources_.size()) {
            ++source_;
        } else {
            u32 last = sources_.back() ? ntohl(sources_.back()) : 0x7f000001u;
            if ((last & 0xffu) >= 254 || sources_.size() >= 64)
                return false;
            sources_.push_back(htonl(last + 1));
            ++source_;
        }
        in_addr a{sources_[source_]};
        std::fprintf(stderr, "[%s] local ports ran short: now connecting from %s\n",
                     o_.label.c_str(), ::inet_ntoa(a));
        return true;
    }

    /// Starts connecting `c`; a request in `c.out` (when busy) goes out once connected.
    void open_conn(conn& c) {
        for (int attempt = 0; attempt < 64; ++attempt) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                return connect_failed(c, std::string("socket: ") + std::strerror(errno));
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            // Several --source addresses: connections take them in turn, so that no address's
            // ports wrap around while the server still has TIME_WAITs of their earlier
            // connections (a SYN on such a 4-tuple stalls for a second or more).
            const std::size_t src = spread_ > 1 ? rr_++ % spread_ : source_;
            if (sources_[src] != 0) {
                ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                sockaddr_in local{};
                local.sin_family = AF_INET;
                local.sin_addr.s_addr = sources_[src];
                if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
                    const int e = errno;
                    ::close(fd);
                    if (e == EADDRINUSE || e == EADDRNOTAVAIL) {
                        spread_ = 0; // ports ran short: one address after the other from now
                        if (next_source())
                            continue;
                    }
                    return connect_failed(c, std::string("bind: ") + std::strerror(e));
                }
            }
            // Publishers may go to another node of a cluster (--publish-port).
            const sockaddr_in& to = c.kind == role::publisher ? pub_server_ : server_;
            const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
            if (r != 0 && errno != EINPROGRESS) {
                const int e = errno;
                ::close(fd);
                if (e == EADDRNOTAVAIL && ((spread_ = 0), next_source()))
                    continue;
                return connect_failed(c, std::string("connect: ") + std::strerror(e));
            }
            c.fd = fd;
            ++c.gen;
            c.connecting = true;
            c.in.clear();
            c.parser.reset();
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
            ev.data.u32 = c.id;
            ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
            c.out_armed = true;
            ++open_;
            ++connects_;
            return;
        }
        connect_failed(c, "connect: no loopback source address left");
    }

    void close_conn(conn& c) {
        if (c.fd < 0)
            return;
        ::epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
        c.connecting = false;
        c.out_armed = false;
        c.in.clear();
        c.parser.reset();
        c.ctl.clear();
        c.frag.clear();
        c.frag_open = false;
        --open_;
        if (c.st == stage::streaming)
            build_stream(c); // a retry opens it again (Megaphone SSE: from Last-Event-ID)
    }

    void connect_failed(conn& c, const std::string& why) {
        error(why);
        retry_later(c);
    }

    /// After a failure: try again with backoff (the request in `out` is sent again), or give up.
    void retry_later(conn& c) {
        close_conn(c);
        if (++c.failures > 5 || stopping_) {
            give_up(c);
            return;
        }
        if (!c.reconnect_queued) {
            c.reconnect_queued = true;
            retries_.push_back({now_ns() + (i64{100} << (c.failures - 1)) * ms_ns, c.id});
        }
    }

    void give_up(conn& c) {
        close_conn(c);
        if (c.dead)
            return;
        c.dead = true;
        c.busy = false;
        ++dead_;
        if (!c.ready && c.kind != role::publisher) {
            if (in_setup_ > 0)
                --in_setup_; // its setup slot goes to the next subscriber
            at(head().failed).fetch_add(1, std::memory_order_acq_rel);
        }
        if (c.kind == role::publisher)
            error("publisher connection given up");
    }

    /// The connection broke: an outstanding request is an error, an idle one just reconnects later.
    void lost(conn& c, const char* why) {
        if (c.busy && !(c.kind == role::publisher && stopping_)) {
            if (c.kind == role::publisher) {
                error(std::string("publish lost: ") + why);
                c.busy = false;
                free_pubs_.push_back(c.id);
                close_conn(c);
                return;
            }
            error(std::string("connection lost with a request outstanding: ") + why);
            ++reconnects_;
            retry_later(c);
            return;
        }
        close_conn(c);
    }

    void send(conn& c) {
        c.busy = true;
        c.out_off = 0;
        c.sent_ns = now_ns();
        if (c.fd < 0)
            return open_conn(c);
        if (!c.connecting)
            write_out(c);
    }

    void write_out(conn& c) {
        while (c.out_off < c.out.size()) {
            const ssize_t n =
                ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c.out_off += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c.out_armed)
                    set_events(c, true);
                return;
            }
            return lost(c, n < 0 ? std::strerror(errno) : "send");
        }
        if (c.out_armed)
            set_events(c, false);
        on_written(c);
    }

    void on_event(conn& c, u32 ev) {
        if (c.fd < 0)
            return;
        if (c.connecting) {
            if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0)
                return connect_failed(c, std::string("connect: ") + std::strerror(err));
            c.connecting = false;
            on_connected(c);
            if (c.fd < 0)
                return;
        } else if ((ev & EPOLLOUT) && c.busy && c.out_off < c.out.size()) {
            write_out(c);
            if (c.fd < 0)
                return;
        } else if ((ev & EPOLLOUT) && !c.ctl.empty()) {
            flush_ctl(c);
            if (c.fd < 0)
                return;
        }
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            on_readable(c);
    }

    void on_connected(conn& c) {
        if (c.busy)
            return write_out(c);
        if (c.out_armed)
            set_events(c, false);
        if (c.kind == role::plain && !o_.path.empty())
            mark_ready(c); // a plain GET loop is ready once connected
    }

    void on_readable(conn& c) {
        static char buf[65536];
        for (;;) {
            const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
                c.in.append(buf, static_cast<std::size_t>(n));
                if (!drain(c, false))
                    return;
                if (static_cast<std::size_t>(n) < sizeof buf)
                    return;
                continue;
            }
            if (n == 0) {
                if (drain(c, true) && c.fd >= 0)
                    lost(c, "closed by the server");
                return;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lost(c, std::strerror(errno));
            return;
        }
    }

    /// Handles every complete response in `c.in`; false when the connection went meanwhile.
    bool drain(conn& c, bool eof) {
        while (!c.in.empty() && c.fd >= 0) {
            if (c.st == stage::streaming)
                return o_.transport == transport_kind::ws ? ws_data(c) : sse_data(c);
            if (c.st == stage::opening && c.kind == role::subscriber) {
                const opened o = open_stream(c);
                if (o == opened::more)
                    return true;
                if (o == opened::gone)
                    return false;
                if (o == opened::stream)
                    continue;
                // opened::plain: not a stream; the answer is read as any other.
            }
            response r;
            const auto res = c.parser.parse(c.in, eof, r);
            if (res == response_parser::result::more)
                return true;
            if (res == response_parser::result::bad) {
                error("unparsable HTTP response");
                lost(c, "unparsable response");
                return false;
            }
            const u32 gen = c.gen;
            const std::size_t used = c.parser.used();
            const bool was_busy = c.busy;
            c.busy = false;
            if (r.close || eof) {
                // The server closes after this answer: copy it, drop the socket (the next send
                // reconnects), then handle it.
                const std::string body(r.body), etag(r.etag), modified(r.last_modified);
                const response owned{r.status, body, etag, modified, true};
                close_conn(c);
                if (was_busy)
                    on_response(c, owned);
                return false;
            }
            if (was_busy)
                on_response(c, r);
            else
                error("an answer nobody asked for");
            if (c.gen != gen || c.fd < 0)
                return false;
            c.in.erase(0, used);
            c.parser.reset();
        }
        return c.fd >= 0;
    }

    //----------------------------------------------------------------------------------------------
    // Requests

    std::string channel(u32 index) const {
        return o_.one_channel ? o_.prefix + "-all" : o_.prefix + "-" + std::to_string(index);
    }

    /// `close`: one request on this connection (Connection: close, the server closes it).
    std::string comet_post(const std::string& body, bool close = false) const {
        return "POST /comet HTTP/1.1\r\n" + host_header_ + (close ? "Connection: close\r\n" : "") +
               "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\n\r\n" + body;
    }

    /// The session is created on a connection of its own (Connection: close), its polls or stream
    /// on a second: --poll-connection, and always before a Megaphone WebSocket, which a browser
    /// opens on a new connection (and the server may upgrade only a connection's first request).
    bool own_creation() const noexcept {
        return o_.poll_connection ||
               (o_.target == target_kind::megaphone && o_.transport == transport_kind::ws);
    }

    u64 fresh_rid() { return 1'000'000'000'000 + rng_() % 4'000'000'000'000; }

    void build_create(conn& c) {
        c.rid = fresh_rid();
        c.last_id = 0; // a new session's stream starts at id 1
        c.acked_id = 0;
        std::string body = "{\"rid\":" + std::to_string(c.rid);
        if (c.kind == role::plain)
            body += ",\"wait\":0,\"hold\":0}"; // a polling session: every poll answered at once
        else
            body += ",\"wait\":" + std::to_string(static_cast<long>(o_.wait)) +
                    ",\"hold\":1,\"messages\":[{\"subscribe\":\"" + channel(c.index) + "\"}]}";
        // --fresh-connections, --poll-connection: the creation has a connection of its own.
        c.out = comet_post(body, (c.kind == role::plain && o_.fresh_connections) || own_creation());
        c.st = stage::creating;
    }

    /// A poll as web/megaphone.js sends it: it acknowledges every answer so far (ack = rid - 1:
    /// one request at a time), so the server may drop the answers it keeps for a replay.
    void build_poll(conn& c) {
        ++c.rid;
        std::string body = "{\"sid\":\"" + c.sid + "\",\"ack\":" + std::to_string(c.rid - 1) +
                           ",\"rid\":" + std::to_string(c.rid) + "}";
        c.out = comet_post(body, c.kind == role::plain && o_.fresh_connections);
        c.rid_pos = c.out.size() - 1 - rid_width;
        c.st = stage::polling;
    }

    /// Writes rid and ack = rid - 1 into the poll's bytes (13 digits each: the length stays).
    static void put_rid(conn& c) {
        constexpr std::size_t rid_key = std::string_view(",\"rid\":").size();
        put_digits(c.out.data() + c.rid_pos, c.rid, rid_width);
        put_digits(c.out.data() + c.rid_pos - rid_key - rid_width, c.rid - 1, rid_width);
    }

    /// The next poll: the same bytes with rid + 1.
    void next_poll(conn& c) {
        if (++c.rid >= rid_limit) {
            --c.rid;
            return build_poll(c);
        }
        put_rid(c);
    }

    void build_nchan_get(conn& c) {
        c.out = "GET /sub/" + channel(c.index) + " HTTP/1.1\r\n" + host_header_;
        if (!c.last_modified.empty())
            c.out += "If-Modified-Since: " + c.last_modified + "\r\n";
        if (!c.etag.empty())
            c.out += "If-None-Match: " + c.etag + "\r\n";
        c.out += "\r\n";
        c.st = stage::polling;
    }

    void start_subscriber(conn& c) {
        ++in_setup_;
        if (c.kind == role::plain) {
            if (!o_.path.empty()) {
                c.out = "GET " + o_.path + " HTTP/1.1\r\n" + host_header_ +
                        (o_.fresh_connections ? "Connection: close\r\n" : "") + "\r\n";
                if (o_.fresh_connections) {
                    mark_ready(c); // every request connects anew, the first one too
                    return;
                }
                return open_conn(c);
            }
            build_create(c);
            return send(c);
        }
        if (o_.target == target_kind::megaphone)
            build_create(c);
        else if (o_.transport == transport_kind::long_poll)
            build_nchan_get(c);
        else
            build_stream(c);
        send(c);
    }

    void mark_ready(conn& c) {
        if (c.ready)
            return;
        c.ready = true;
        ++ready_;
        if (in_setup_ > 0)
            --in_setup_;
        at(head().ready).fetch_add(1, std::memory_order_acq_rel);
    }

    void on_written(conn& c) {
        if (c.kind == role::subscriber && c.st == stage::polling)
            mark_ready(c); // the long-poll is on the wire
    }

    //----------------------------------------------------------------------------------------------
    // Streams: Server-Sent Events and WebSocket

    /// The stream's request: Megaphone's on the session (its sid), nchan's on the channel.
    void build_stream(conn& c) {
        const bool ws = o_.transport == transport_kind::ws;
        const bool mp = o_.target == target_kind::megaphone;
        c.out = "GET ";
        if (mp)
            c.out += (ws ? "/comet?sid=" : "/comet/events?sid=") + c.sid;
        else
            c.out += (ws ? "/ws/" : "/es/") + channel(c.index);
        c.out += " HTTP/1.1\r\n" + host_header_;
        if (ws) {
            c.out += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + ws_key_ +
                     "\r\nSec-WebSocket-Version: 13\r\n";
            if (mp)
                c.out += "Sec-WebSocket-Protocol: megaphone\r\n";
        } else {
            c.out += "Accept: text/event-stream\r\nCache-Control: no-cache\r\n";
            if (mp && c.last_id > 0) // a reconnect resumes after the last event it has
                c.out += "Last-Event-ID: " + std::to_string(c.last_id) + "\r\n";
        }
        c.out += "\r\n";
        c.st = stage::opening;
    }

    enum class opened { more, stream, plain, gone };

    /// The head of a stream's answer: SSE 200 text/event-stream, or WebSocket 101 with the right
    /// Sec-WebSocket-Accept (and protocol). `plain` when it is another answer (read as one).
    opened open_stream(conn& c) {
        const auto end = c.in.find("\r\n\r\n");
        if (end == std::string::npos)
            return c.in.size() > 65536 ? opened::plain : opened::more;
        const std::string_view head(c.in.data(), end + 2);
        const auto eol = head.find("\r\n");
        const std::string_view line = head.substr(0, eol);
        unsigned status = 0;
        if (line.size() < 12 || !line.starts_with("HTTP/1.") ||
            std::from_chars(line.data() + 9, line.data() + 12, status).ec != std::errc{})
            return opened::plain; // the parser says it is bad
        const bool ws = o_.transport == transport_kind::ws;
        if (status != (ws ? 101u : 200u))
            return opened::plain;
        std::string_view type, upgrade, accept, protocol, encoding;
        for (std::size_t p = eol + 2; p < head.size();) {
            const auto e = head.find("\r\n", p);
            const std::string_view h = head.substr(p, e - p);
            p = e == std::string_view::npos ? head.size() : e + 2;
            const auto colon = h.find(':');
            if (colon == std::string_view::npos)
                continue;
            const std::string_view name = h.substr(0, colon), value = trim(h.substr(colon + 1));
            if (iequals(name, "content-type"))
                type = value;
            else if (iequals(name, "upgrade"))
                upgrade = value;
            else if (iequals(name, "sec-websocket-accept"))
                accept = value;
            else if (iequals(name, "sec-websocket-protocol"))
                protocol = value;
            else if (iequals(name, "transfer-encoding"))
                encoding = value;
        }
        std::string bad;
        if (ws) {
            if (!iequals(upgrade, "websocket"))
                bad = "websocket: 101 without Upgrade: websocket";
            else if (accept != ws_accept_)
                bad = "websocket: wrong Sec-WebSocket-Accept";
            else if (o_.target == target_kind::megaphone && protocol != "megaphone")
                bad = "websocket: the server did not take Sec-WebSocket-Protocol megaphone";
        } else if (!type.starts_with("text/event-stream")) {
            bad = "event stream: 200 with Content-Type " + std::string(type.substr(0, 60));
        } else if (!encoding.empty()) {
            bad = "event stream: Transfer-Encoding " + std::string(encoding) + " (not read here)";
        }
        if (!bad.empty()) {
            error(bad);
            give_up(c);
            return opened::gone;
        }
        c.in.erase(0, end + 4);
        c.parser.reset();
        c.st = stage::streaming;
        c.failures = 0;
        ++stream_opens_;
        mark_ready(c); // its stream is open: what is published from now on reaches it
        return opened::stream;
    }

    /// A stream's request answered with something else than a stream.
    void stream_refused(conn& c, const response& r) {
        const std::string what =
            std::to_string(r.status) + " " + std::string(r.body.substr(0, 100));
        if (o_.transport == transport_kind::ws) {
            ++ws_refused_; // no WebSocket here: not worth retrying
            error("websocket upgrade answered " + what);
            return give_up(c);
        }
        if (o_.target == target_kind::megaphone && r.status == 204) {
            // The session is unknown or ended: an EventSource stops; the client starts anew.
            error("event stream answered 204: the session is gone");
            ++recreated_;
            if (++c.failures > 5)
                return give_up(c);
            build_create(c);
            if (!stopping_)
                send(c);
            return;
        }
        error("event stream answered " + what);
        give_up(c);
    }

    /// Megaphone ended the session while its stream was open: say so, start a new one.
    bool session_ended(conn& c, std::string_view text) {
        error("stream: the session ended: " + std::string(text.substr(0, 120)));
        ++recreated_;
        c.st = stage::idle;
        close_conn(c);
        if (++c.failures > 5) {
            give_up(c);
            return false;
        }
        build_create(c);
        if (!stopping_)
            send(c);
        return false;
    }

    /// Server-Sent Events: every complete line in `c.in`. False when the connection went.
    bool sse_data(conn& c) {
        const i64 now = now_ns();
        const bool mp = o_.target == target_kind::megaphone;
        std::size_t p = 0;
        for (;;) {
            const auto e = c.in.find('\n', p);
            if (e == std::string::npos)
                break;
            std::string_view line(c.in.data() + p, e - p);
            p = e + 1;
            if (!line.empty() && line.back() == '\r')
                line.remove_suffix(1);
            if (line.starts_with("data:")) {
                ++events_;
                if (mp && line.find("\"type\":\"terminate\"") != std::string_view::npos)
                    return session_ended(c, line);
                count_messages(c, line, now);
            } else if (mp && line.starts_with("id:")) {
                // Megaphone numbers a session's stream 1, 2, 3, ...: one more each event.
                const std::string_view v = trim(line.substr(3));
                u64 id = 0;
                std::from_chars(v.data(), v.data() + v.size(), id);
                if (id != c.last_id + 1)
                    error("event stream: id " + std::to_string(id) + " after " +
                          std::to_string(c.last_id));
                c.last_id = id;
            }
        }
        c.in.erase(0, p);
        if (c.in.size() > (1u << 20)) {
            error("event stream: a line over 1 MiB");
            lost(c, "unreadable event stream");
            return false;
        }
        return true;
    }

    /// WebSocket frames (RFC 6455 §5): every complete frame in `c.in`. False when it went.
    bool ws_data(conn& c) {
        std::size_t p = 0;
        for (;;) {
            const std::size_t avail = c.in.size() - p;
            if (avail < 2)
                break;
            const auto b0 = static_cast<std::uint8_t>(c.in[p]);
            const auto b1 = static_cast<std::uint8_t>(c.in[p + 1]);
            const char* bad = (b1 & 0x80)   ? "websocket: a masked frame from the server"
                              : (b0 & 0x70) ? "websocket: RSV bits set (no extension agreed)"
                                            : nullptr;
            u64 len = b1 & 0x7fu;
            std::size_t hdr = 2;
            if (len == 126) {
                if (avail < 4)
                    break;
                len = u64{static_cast<std::uint8_t>(c.in[p + 2])} << 8 |
                      static_cast<std::uint8_t>(c.in[p + 3]);
                hdr = 4;
            } else if (len == 127) {
                if (avail < 10)
                    break;
                len = 0;
                for (int i = 0; i < 8; ++i)
                    len = len << 8 | static_cast<std::uint8_t>(c.in[p + 2 + i]);
                hdr = 10;
            }
            if (!bad && len > (16u << 20))
                bad = "websocket: a frame over 16 MiB";
            const int op = b0 & 0x0f;
            if (!bad && op >= 8 && (len > 125 || !(b0 & 0x80)))
                bad = "websocket: a control frame fragmented or over 125 bytes";
            if (bad) {
                error(bad);
                lost(c, "bad websocket frame");
                return false;
            }
            if (avail < hdr + len)
                break;
            const std::string_view pl(c.in.data() + p + hdr, len);
            const bool fin = b0 & 0x80;
            p += hdr + len;
            ++frames_;
            switch (op) {
            case 0x1:
            case 0x2:
                if (c.frag_open)
                    error("websocket: a new message before the last one's final fragment");
                if (fin) {
                    c.frag_open = false;
                    if (!ws_message(c, pl))
                        return false;
                } else {
                    c.frag.assign(pl);
                    c.frag_open = true;
                }
                break;
            case 0x0:
                if (!c.frag_open) {
                    error("websocket: a continuation frame with no message begun");
                    break;
                }
                c.frag.append(pl);
                if (fin) {
                    const std::string m = std::move(c.frag);
                    c.frag.clear();
                    c.frag_open = false;
                    if (!ws_message(c, m))
                        return false;
                }
                break;
            case 0x8: // close: answer with a close (its status code echoed), then the TCP end
                ws_send(c, 0x8, pl.substr(0, std::min<std::size_t>(2, pl.size())));
                ++ws_closes_;
                if (stopping_) {
                    close_conn(c);
                    return false;
                }
                error("websocket: closed by the server");
                lost(c, "websocket close");
                return false;
            case 0x9:
                ++pings_;
                ws_send(c, 0xA, pl);
                if (c.fd < 0)
                    return false;
                break;
            case 0xA:
                break;
            default:
                error("websocket: unknown opcode " + std::to_string(op));
                lost(c, "bad websocket frame");
                return false;
            }
        }
        c.in.erase(0, p);
        return c.fd >= 0;
    }

    /// One whole message (text frame): Megaphone's batch or control, or nchan's message.
    bool ws_message(conn& c, std::string_view m) {
        const i64 now = now_ns();
        if (o_.target == target_kind::megaphone) {
            if (m.find("\"type\":\"terminate\"") != std::string_view::npos)
                return session_ended(c, m);
            if (m.find("\"messages\"") == std::string_view::npos ||
                (json_number(m, "id") < 0 && json_number(m, "rid") >= 0)) {
                ++ws_control_; // {"type":"ready",...}, {"type":"ping"}, a stream_ack's answer
                return true;
            }
            // {"id":<last id>,"messages":[...]}: ids go up, batch after batch.
            const i64 id = json_number(m, "id");
            if (id >= 0) {
                if (static_cast<u64>(id) <= c.last_id && c.last_id > 0)
                    error("websocket: batch id " + std::to_string(id) + " after " +
                          std::to_string(c.last_id));
                c.last_id = static_cast<u64>(id);
            }
            count_messages(c, m, now);
            stream_ack(c, now);
            return true;
        }
        count_messages(c, m, now);
        return true;
    }

    /// Megaphone's WebSocket: acknowledges the batches received, at most once a second, as
    /// web/megaphone.js does (the server then lets go of what it kept for a replay).
    void stream_ack(conn& c, i64 now) {
        if (c.last_id <= c.acked_id || now - c.acked_ns < 1'000'000'000 || c.rid + 1 >= rid_limit)
            return;
        c.acked_id = c.last_id;
        c.acked_ns = now;
        ++c.rid;
        ++ws_acks_;
        ws_send(c, 0x1,
                "{\"rid\":" + std::to_string(c.rid) +
                    ",\"stream_ack\":" + std::to_string(c.last_id) + ",\"streaming\":true}");
    }

    /// Sends a client frame (RFC 6455 §5.3: masked with a fresh key).
    void ws_send(conn& c, int op, std::string_view payload) {
        std::string f;
        f += static_cast<char>(0x80 | op);
        if (payload.size() < 126) {
            f += static_cast<char>(0x80 | payload.size());
        } else if (payload.size() < 65536) {
            f += static_cast<char>(0x80 | 126);
            f += static_cast<char>(payload.size() >> 8);
            f += static_cast<char>(payload.size() & 0xff);
        } else {
            f += static_cast<char>(0x80 | 127);
            for (int i = 7; i >= 0; --i)
                f += static_cast<char>((u64{payload.size()} >> (8 * i)) & 0xff);
        }
        const u32 key = static_cast<u32>(rng_());
        char mask[4];
        std::memcpy(mask, &key, 4);
        f.append(mask, 4);
        for (std::size_t i = 0; i < payload.size(); ++i)
            f += static_cast<char>(payload[i] ^ mask[i % 4]);
        c.ctl += f;
        flush_ctl(c);
    }

    void flush_ctl(conn& c) {
        while (!c.ctl.empty()) {
            const ssize_t n = ::send(c.fd, c.ctl.data(), c.ctl.size(), MSG_NOSIGNAL);
            if (n > 0) {
                c.ctl.erase(0, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c.out_armed)
                    set_events(c, true);
                return;
            }
            return lost(c, n < 0 ? std::strerror(errno) : "send");
        }
        if (c.out_armed)
            set_events(c, false);
    }

    //----------------------------------------------------------------------------------------------
    // Answers

    void on_response(conn& c, const response& r) {
        switch (c.kind) {
        case role::subscriber:
            return o_.target == target_kind::megaphone ? megaphone_answer(c, r)
                                                       : nchan_answer(c, r);
        case role::publisher:
            return publish_answer(c, r);
        case role::plain:
            return plain_answer(c, r);
        }
    }

    void megaphone_answer(conn& c, const response& r) {
        const i64 now = now_ns();
        if (c.st == stage::opening)
            return stream_refused(c, r);
        if (c.st == stage::creating) {
            const auto sid = json_string(r.body, "sid");
            if (r.status != 200 || sid.empty()) {
                error("session create answered " + std::to_string(r.status) + " " +
                      std::string(r.body.substr(0, 120)));
                return retry_later(c);
            }
            c.failures = 0;
            c.sid = sid;
            count_messages(c, r.body, now);
            if (o_.transport == transport_kind::long_poll)
                build_poll(c);
            else
                build_stream(c); // on the same connection (--poll-connection: a second one)
            if (own_creation())
                close_conn(c); // (closed already when the server closed first) polls connect
            if (!stopping_)
                send(c);
            return;
        }
        if (r.status == 200 && r.body.find("\"type\":\"terminate\"") == std::string_view::npos) {
            c.failures = 0;
            ++answers_;
            count_messages(c, r.body, now);
            if (stopping_)
                return;
            next_poll(c);
            return send(c);
        }
        // The session is gone (terminate, item-not-found, ...): say so and open a new one.
        error("poll answered " + std::to_string(r.status) + " " +
              std::string(r.body.substr(0, 120)));
        ++recreated_;
        if (++c.failures > 5)
            return give_up(c);
        build_create(c);
        if (!stopping_)
            send(c);
    }

    void nchan_answer(conn& c, const response& r) {
        const i64 now = now_ns();
        if (c.st == stage::opening)
            return stream_refused(c, r);
        if (r.status == 200) {
            c.failures = 0;
            ++answers_;
            count_messages(c, r.body, now);
            c.last_modified = r.last_modified;
            c.etag = r.etag;
            build_nchan_get(c);
        } else if (r.status == 304 || r.status == 408) {
            ++answers_; // nothing new, or nchan_subscriber_timeout: poll again as before
        } else {
            error("subscriber answered " + std::to_string(r.status));
            if (++c.failures > 5)
                return give_up(c);
        }
        if (!stopping_)
            send(c);
    }

    /// Finds each message's send time and sequence number in an answer body.
    void count_messages(conn& c, std::string_view body, i64 now) {
        std::size_t tp = 0, sp = 0;
        for (;;) {
            tp = body.find(t_marker, tp);
            if (tp == std::string_view::npos)
                return;
            sp = body.find(s_marker, sp);
            if (sp == std::string_view::npos)
                return;
            tp += t_marker.size();
            sp += s_marker.size();
            u64 t = 0, s = 0;
            std::from_chars(body.data() + tp, body.data() + std::min(body.size(), tp + t_width), t);
            std::from_chars(body.data() + sp, body.data() + std::min(body.size(), sp + s_width), s);
            on_message(c, static_cast<i64>(t), s, now);
        }
    }

    void on_message(conn& c, i64 sent, u64 seq, i64 now) {
        ++received_;
        at(head().delivered).fetch_add(1, std::memory_order_relaxed);
        if (o_.mode == mode_kind::fanout) {
            // Every subscriber gets every publish exactly once, in order: c.seq is the next
            // one it should see.
            if (seq == c.seq) {
                ++c.seq;
            } else if (seq < c.seq) {
                ++duplicates_;
                error("fanout: a message received twice");
            } else {
                skipped_ += seq - c.seq;
                error("fanout: a message skipped");
                c.seq = seq + 1;
            }
            if (seq < o_.publishes) {
                shared_slot& sl = shared_.slot(static_cast<u32>(seq));
                atomic_max(sl.last_ns, now);
                at(sl.received).fetch_add(1, std::memory_order_acq_rel);
            }
            return;
        }
        if (now >= sent)
            latency_.add(static_cast<u64>(now - sent) / 1000);
        if (shared_phase() == phase_running)
            ++received_window_;
    }

    void publish_answer(conn& c, const response& r) {
        if (c.info) {
            c.info = false;
            info_pending_ = false;
            info_subscribers_ = r.status == 200 ? json_number(r.body, "subscribers") : 0;
            free_pubs_.push_back(c.id);
            return;
        }
        const i64 now = now_ns();
        ++publish_answers_;
        if (r.status / 100 != 2) {
            error("publish answered " + std::to_string(r.status) + " " +
                  std::string(r.body.substr(0, 120)));
        } else {
            c.failures = 0;
            at(head().published).fetch_add(1, std::memory_order_relaxed);
            const i64 reached = json_number(
                r.body, o_.target == target_kind::megaphone ? "sessions" : "subscribers");
            if (o_.mode == mode_kind::fanout && c.seq < o_.publishes)
                at(shared_.slot(static_cast<u32>(c.seq)).reached)
                    .store(static_cast<u64>(std::max<i64>(0, reached)));
        }
        publish_rtt_.add(static_cast<u64>(now - c.sent_ns) / 1000);
        free_pubs_.push_back(c.id);
    }

    void plain_answer(conn& c, const response& r) {
        const i64 now = now_ns();
        if (c.st == stage::creating) { // megaphone polling session
            const auto sid = json_string(r.body, "sid");
            if (r.status != 200 || sid.empty()) {
                error("session create answered " + std::to_string(r.status) + " " +
                      std::string(r.body.substr(0, 120)));
                return retry_later(c);
            }
            c.failures = 0;
            c.sid = sid;
            build_poll(c);
            --c.rid; // the first poll gets next_poll()'s increment
            put_rid(c);
            if (o_.fresh_connections || o_.poll_connection)
                close_conn(c); // (closed already when the server closed first) the polls connect
            mark_ready(c);
            if (looping_)
                loop_next(c);
            return;
        }
        if (shared_phase() == phase_running && c.sent_ns >= window_start_) {
            ++requests_window_;
            ++statuses_[r.status];
            latency_.add(static_cast<u64>(now - c.sent_ns) / 1000);
        }
        if (o_.path.empty() &&
            (r.status != 200 || r.body.find("\"type\":\"terminate\"") != std::string_view::npos)) {
            error("poll answered " + std::to_string(r.status) + " " +
                  std::string(r.body.substr(0, 120)));
            if (++c.failures > 5)
                return give_up(c);
            build_create(c);
            return send(c);
        }
        c.failures = 0;
        if (o_.fresh_connections)
            close_conn(c); // (closed already when the server closed first) the next connects
        if (looping_)
            loop_next(c);
    }

    void loop_next(conn& c) {
        if (stopping_ || c.dead || (o_.count && issued_ >= o_.count))
            return;
        ++issued_;
        if (o_.path.empty())
            next_poll(c);
        send(c);
    }

    //----------------------------------------------------------------------------------------------
    // Publishing

    conn* free_publisher() {
        while (!free_pubs_.empty()) {
            conn& c = conns_[free_pubs_.back()];
            free_pubs_.pop_back();
            if (!c.dead)
                return &c;
        }
        return nullptr;
    }

    /// Publishes message `seq` to the channel of subscriber `index`, stamped `stamp`
    /// (CLOCK_MONOTONIC).
    void publish(conn& c, u32 index, u64 seq, i64 stamp) {
        c.out = pub_head_;
        c.out += channel(index);
        c.out += pub_tail_;
        const std::size_t base = c.out.size();
        c.out += msg_.text;
        put_digits(c.out.data() + base + msg_.t_pos, static_cast<u64>(stamp), t_width);
        put_digits(c.out.data() + base + msg_.s_pos, seq, s_width);
        c.seq = seq;
        ++sent_;
        send(c);
    }

    void request_info(conn& c) {
        c.out = "GET /pub/" + channel(0) + " HTTP/1.1\r\n" + pub_host_header_ +
                "Accept: application/json\r\n\r\n";
        c.info = true;
        info_pending_ = true;
        send(c);
    }

    //----------------------------------------------------------------------------------------------
    // Phases

    void tick(i64 now) {
        if (!retries_.empty()) {
            auto due = std::partition(retries_.begin(), retries_.end(),
                                      [now](const auto& r) { return r.first > now; });
            std::vector<std::pair<i64, u32>> run(due, retries_.end());
            retries_.erase(due, retries_.end());
            for (auto& [when, id] : run) {
                conn& c = conns_[id];
                c.reconnect_queued = false;
                if (c.dead || stopping_)
                    continue;
                if (c.busy)
                    send(c); // the request that failed, again
                else if (c.kind == role::publisher || (c.kind == role::plain && !o_.path.empty()))
                    open_conn(c);
                else
                    resend_setup(c);
            }
        }
        while (started_ < o_.connections && in_setup_ < o_.ramp && !stopping_)
            start_subscriber(conns_[started_++]);

        if (now >= next_progress_) {
            progress(now);
            next_progress_ += s_ns;
        }
        if (now >= hard_deadline_) {
            error("hard deadline reached: stopping");
            finish(now);
            return;
        }
        if (o_.leader)
            lead(now);
        else
            follow(now);
    }

    void resend_setup(conn& c) {
        if (o_.target == target_kind::megaphone || c.kind == role::plain)
            build_create(c);
        else if (o_.transport == transport_kind::long_poll)
            build_nchan_get(c);
        else
            build_stream(c);
        send(c);
    }

    void follow(i64 now) {
        const u64 ph = shared_phase();
        if (ph == phase_running && !looping_ && o_.mode == mode_kind::empty)
            start_loops(now);
        if (ph == phase_done)
            finish(now);
    }

    void lead(i64 now) {
        auto& h = head();
        switch (lphase_) {
        case lead_setup: {
            const u64 ready = at(h.ready).load(std::memory_order_acquire);
            const bool all = ready + at(h.failed).load(std::memory_order_acquire) >= o_.total;
            if (!all && now < setup_deadline_)
                return;
            if (ready < o_.total)
                error(std::string(all ? "setup: some subscribers failed: " : "setup timeout: ") +
                      std::to_string(ready) + " of " + std::to_string(o_.total) + " ready");
            expected_ = ready;
            setup_s_ = static_cast<double>(now - t0_) / s_ns;
            if (ready == 0 && o_.mode == mode_kind::fanout) {
                error("setup: no subscriber ready: nothing to publish to");
                return finish(now); // (a fan-out to nobody would time nothing)
            }
            // nchan registers a subscriber some time after its GET is on the wire: for one
            // channel ask it (its count is per worker process, so at most for a second),
            // otherwise give it a moment.
            if (o_.target == target_kind::nchan && o_.mode == mode_kind::fanout) {
                lphase_ = lead_verify;
                verify_deadline_ = now + s_ns;
            } else {
                lphase_ = lead_settle;
                const double settle = o_.settle >= 0                    ? o_.settle
                                      : o_.target == target_kind::nchan ? 0.3
                                                                        : 0.0;
                settle_until_ = now + static_cast<i64>(settle * s_ns);
            }
            return;
        }
        case lead_verify:
            if (info_subscribers_ >= static_cast<i64>(expected_) || now >= verify_deadline_) {
                if (info_subscribers_ < static_cast<i64>(expected_))
                    std::fprintf(stderr,
                                 "[%s] nchan's channel info counts %lld of %llu "
                                 "subscribers (one worker's view): publishing anyway\n",
                                 o_.label.c_str(), static_cast<long long>(info_subscribers_),
                                 static_cast<unsigned long long>(expected_));
                lphase_ = lead_settle;
                settle_until_ = now;
                return;
            }
            if (!info_pending_ && now >= next_info_)
                if (conn* p = free_publisher()) {
                    request_info(*p);
                    next_info_ = now + 50 * ms_ns;
                }
            return;
        case lead_settle:
            if (now < settle_until_ || info_pending_)
                return;
            if (o_.gate && at(h.gate).load(std::memory_order_acquire) == 0) {
                if (gate_deadline_ == 0)
                    gate_deadline_ = now + static_cast<i64>(o_.gate_timeout * s_ns);
                if (now < gate_deadline_)
                    return;
                error("the gate was not opened in time: publishing anyway");
            }
            begin_running(now);
            return;
        case lead_running:
            return run_mode(now);
        case lead_draining:
            if (now >= drain_deadline_ ||
                (at(h.delivered).load() >= at(h.published).load() && busy_publishers() == 0))
                finish(now);
            return;
        case lead_done:
            return;
        }
    }

    void begin_running(i64 now) {
        window_start_ = now;
        at(head().start_ns).store(now);
        at(head().phase).store(phase_running, std::memory_order_release);
        lphase_ = lead_running;
        run_end_ = now + static_cast<i64>(o_.duration * s_ns);
        next_due_ = now;
        if (o_.mode == mode_kind::empty)
            start_loops(now);
    }

    void start_loops(i64 now) {
        looping_ = true;
        window_start_ = now;
        for (u32 i = 0; i < started_; ++i)
            if (conn& c = conns_[i]; c.ready && !c.busy && !c.dead)
                loop_next(c);
    }

    std::size_t busy_publishers() const {
        std::size_t n = 0;
        for (const conn& c : conns_)
            n += c.kind == role::publisher && c.busy;
        return n;
    }

    void run_mode(i64 now) {
        switch (o_.mode) {
        case mode_kind::hold:
        case mode_kind::empty:
            if (now >= run_end_ || (o_.count && issued_ >= o_.count && busy_loops() == 0))
                finish(now);
            return;
        case mode_kind::fanout:
            return run_fanout(now);
        case mode_kind::throughput:
            if (now >= run_end_ || (o_.count && sent_ >= o_.count))
                return start_draining(now);
            while (conn* p = free_publisher())
                publish(*p, next_channel(), sent_, now_ns());
            return;
        case mode_kind::rate: {
            if (next_due_ >= run_end_ || (o_.count && sent_ >= o_.count))
                return start_draining(now);
            const i64 step = static_cast<i64>(s_ns / o_.rate);
            while (next_due_ <= now && next_due_ < run_end_ && (!o_.count || sent_ < o_.count)) {
                conn* p = free_publisher();
                if (!p)
                    break; // every publisher busy: the backlog shows up as latency and lag
                max_lag_ns_ = std::max(max_lag_ns_, now - next_due_);
                if (now - next_due_ > ms_ns)
                    ++late_;
                // Stamped with the time it was due, so a backlog counts against the latency.
                publish(*p, next_channel(), sent_, next_due_);
                next_due_ += step;
            }
            return;
        }
        }
    }

    std::size_t busy_loops() const {
        std::size_t n = 0;
        for (u32 i = 0; i < started_; ++i)
            n += conns_[i].busy;
        return n;
    }

    u32 next_channel() { return static_cast<u32>(channel_rr_++ % o_.total); }

    void run_fanout(i64 now) {
        if (fanout_i_ < fanout_sent_) { // waiting for publish fanout_i_
            shared_slot& sl = shared_.slot(fanout_i_);
            const u64 got = at(sl.received).load(std::memory_order_acquire);
            const i64 sent = at(sl.send_ns).load();
            if (got >= expected_) {
                fanout_ms_.push_back(static_cast<double>(at(sl.last_ns).load() - sent) / 1e6);
                ++fanout_i_;
            } else if (now - sent > static_cast<i64>(o_.publish_timeout * s_ns)) {
                error("fanout publish " + std::to_string(fanout_i_) + " reached " +
                      std::to_string(got) + " of " + std::to_string(expected_) + " in " +
                      std::to_string(o_.publish_timeout) + " s");
                fanout_ms_.push_back(-1);
                ++fanout_i_;
            } else
                return;
        }
        if (fanout_sent_ >= o_.publishes) {
            // The last publish's own answer (the server's count of sessions reached) may come
            // after its subscribers have it: wait for it, bounded by the publish timeout.
            const i64 last_sent =
                fanout_sent_ ? at(shared_.slot(fanout_sent_ - 1).send_ns).load() : now;
            if (publish_answers_ < fanout_sent_ &&
                now - last_sent <= static_cast<i64>(o_.publish_timeout * s_ns))
                return;
            return finish(now);
        }
        if (!server_quiet(now))
            return;
        if (conn* p = free_publisher()) {
            quiet_start_ = 0;
            quiet_ok_ = false;
            const i64 t = now_ns();
            at(shared_.slot(fanout_sent_).send_ns).store(t);
            publish(*p, 0, fanout_sent_, t);
            ++fanout_sent_;
        }
    }

    /// Fan-out publishes go to held subscribers: true once the --quiet-pids servers have taken
    /// every subscriber's next poll (their CPU time stands still: < 1 ms over 20 ms), or after
    /// --quiet-timeout (counted as not quiet). Without --quiet-pids: at once.
    bool server_quiet(i64 now) {
        if (o_.quiet_pids.empty())
            return true;
        if (quiet_start_ == 0) {
            quiet_start_ = quiet_at_ = now;
            quiet_cpu_ = servers_cpu_ns();
            return false;
        }
        if (quiet_ok_)
            return true; // decided; waiting for a free publisher
        if (now - quiet_at_ < 20 * ms_ns)
            return false;
        const i64 cpu = servers_cpu_ns();
        const bool idle = cpu >= 0 && quiet_cpu_ >= 0 && cpu - quiet_cpu_ < ms_ns;
        const bool late = now - quiet_start_ >= static_cast<i64>(o_.quiet_timeout * s_ns);
        if (!idle && !late) {
            quiet_at_ = now;
            quiet_cpu_ = cpu;
            return false;
        }
        not_quiet_ += !idle;
        quiet_wait_ms_.push_back(static_cast<double>(now - quiet_start_) / 1e6);
        quiet_ok_ = true;
        return true;
    }

    /// CPU time of the --quiet-pids processes, every thread (schedstat, ns); -1 if unreadable.
    i64 servers_cpu_ns() const {
        i64 total = 0;
        for (int pid : o_.quiet_pids) {
            const std::string dir = "/proc/" + std::to_string(pid) + "/task";
            DIR* d = ::opendir(dir.c_str());
            if (!d)
                return -1;
            while (const dirent* e = ::readdir(d)) {
                if (e->d_name[0] == '.')
                    continue;
                const std::string file = dir + "/" + e->d_name + "/schedstat";
                if (FILE* f = std::fopen(file.c_str(), "r")) {
                    long long run = 0;
                    if (std::fscanf(f, "%lld", &run) == 1)
                        total += run;
                    std::fclose(f);
                }
            }
            ::closedir(d);
        }
        return total;
    }

    void start_draining(i64 now) {
        at(head().end_ns).store(now);
        at(head().phase).store(phase_draining, std::memory_order_release);
        lphase_ = lead_draining;
        drain_deadline_ = now + static_cast<i64>(o_.drain * s_ns);
    }

    void finish(i64 now) {
        if (finished_)
            return;
        if (o_.leader) {
            if (at(head().end_ns).load() == 0)
                at(head().end_ns).store(now);
            at(head().phase).store(phase_done, std::memory_order_release);
            lphase_ = lead_done;
        }
        stopping_ = true;
        finished_ = true;
        progress(now);
    }

    i64 next_wakeup(i64 now) const {
        i64 wake = std::min(next_progress_, hard_deadline_);
        for (const auto& r : retries_)
            wake = std::min(wake, r.first);
        if (o_.leader) {
            switch (lphase_) {
            case lead_running:
                if (o_.mode == mode_kind::rate)
                    wake = std::min(wake, free_pubs_.empty() ? now + ms_ns : next_due_);
                else if (o_.mode == mode_kind::fanout)
                    wake = std::min(wake, now + ms_ns / 4); // receipts in other processes
                else
                    wake = std::min(wake, std::min(run_end_, now + 5 * ms_ns));
                break;
            case lead_setup:
            case lead_verify:
            case lead_settle:
            case lead_draining:
                wake = std::min(wake, now + 5 * ms_ns);
                break;
            case lead_done:
                break;
            }
        } else {
            wake = std::min(wake, now + 5 * ms_ns);
        }
        return wake;
    }

    //----------------------------------------------------------------------------------------------
    // Output

    void progress(i64 now) {
        auto& h = head();
        const double t = static_cast<double>(now - t0_) / s_ns;
        const u64 recv = o_.mode == mode_kind::empty ? requests_window_ : received_;
        std::fprintf(stderr,
                     "[%s %5.1fs] conns %u/%u open %u ready %llu/%u (all %llu) | %s %llu (+%llu) "
                     "| sent %llu | errors %llu | %s\n",
                     o_.label.c_str(), t, started_, o_.connections, open_,
                     static_cast<unsigned long long>(ready_), o_.connections,
                     static_cast<unsigned long long>(at(h.ready).load()),
                     o_.mode == mode_kind::empty ? "requests" : "received",
                     static_cast<unsigned long long>(recv),
                     static_cast<unsigned long long>(recv - last_progress_count_),
                     static_cast<unsigned long long>(sent_),
                     static_cast<unsigned long long>(error_total_), phase_name(shared_phase()));
        last_progress_count_ = recv;
    }

    static const char* phase_name(u64 p) {
        switch (p) {
        case phase_setup:
            return "setup";
        case phase_running:
            return "running";
        case phase_draining:
            return "draining";
        default:
            return "done";
        }
    }

    static std::string num(double v) {
        char b[64];
        std::snprintf(b, sizeof b, "%.3f", v);
        return b;
    }

    static const char* mode_name(mode_kind m) {
        switch (m) {
        case mode_kind::hold:
            return "hold";
        case mode_kind::fanout:
            return "fanout";
        case mode_kind::throughput:
            return "throughput";
        case mode_kind::rate:
            return "rate";
        case mode_kind::empty:
            return "empty";
        }
        return "?";
    }

    static std::string quote(std::string_view s) {
        std::string q = "\"";
        for (char ch : s) {
            if (ch == '"' || ch == '\\')
                q += '\\';
            if (static_cast<unsigned char>(ch) < 0x20)
                q += ' ';
            else
                q += ch;
        }
        return q + "\"";
    }

    void report() {
        auto& h = head();
        // Fan-out, exactly once: every subscriber still here has every publish that was sent
        // (duplicates and skips were counted as they came).
        u64 sent_all = 0, short_of = 0;
        if (o_.mode == mode_kind::fanout) {
            for (u32 i = 0; i < o_.publishes; ++i)
                sent_all += at(shared_.slot(i).send_ns).load() != 0;
            for (u32 i = 0; i < started_; ++i)
                if (const conn& c = conns_[i]; c.kind == role::subscriber && c.ready && !c.dead)
                    short_of += c.seq < sent_all;
            for (u64 i = 0; i < short_of; ++i)
                error("fanout: a subscriber short of a publish at the end");
        }
        const i64 start = at(h.start_ns).load();
        const i64 end = at(h.end_ns).load();
        const double window = start && end > start ? static_cast<double>(end - start) / s_ns : 0;
        std::string j = "{";
        auto field = [&j](std::string_view k, const std::string& v) {
            if (j.size() > 1)
                j += ',';
            j += quote(k) + ":" + v;
        };
        auto whole = [](u64 v) { return std::to_string(v); };
        field("target", quote(o_.target == target_kind::megaphone ? "megaphone" : "nchan"));
        field("mode", quote(mode_name(o_.mode)));
        field("label", quote(o_.label));
        field("leader", o_.leader ? "true" : "false");
        field("connections", whole(o_.connections));
        field("total", whole(o_.total));
        field("publishers", whole(static_cast<u64>(o_.publishers)));
        field("size", whole(msg_.text.size()));
        field("ready", whole(ready_));
        field("ready_all", whole(at(h.ready).load()));
        field("dead", whole(dead_));
        u64 held = 0;
        for (u32 i = 0; i < started_; ++i)
            held += conns_[i].kind == role::subscriber && conns_[i].busy && conns_[i].fd >= 0;
        field("held", whole(held));
        field("connects", whole(connects_));
        field("reconnects", whole(reconnects_));
        field("recreated", whole(recreated_));
        field("answers", whole(answers_));
        field("transport", quote(o_.transport == transport_kind::sse  ? "sse"
                                 : o_.transport == transport_kind::ws ? "ws"
                                                                      : "long-poll"));
        if (o_.transport != transport_kind::long_poll) {
            field("streams_opened", whole(stream_opens_));
            field("events", whole(events_));
            field("frames", whole(frames_));
            field("ws_control", whole(ws_control_));
            field("ws_acks", whole(ws_acks_));
            field("pings", whole(pings_));
            field("ws_closes", whole(ws_closes_));
            field("ws_refused", whole(ws_refused_));
        }
        field("setup_s", num(setup_s_));
        field("window_s", num(window));
        field("elapsed_s", num(static_cast<double>(now_ns() - t0_) / s_ns));
        std::string errs = "{";
        for (const auto& [k, n] : errors_)
            errs += (errs.size() > 1 ? "," : "") + quote(k) + ":" + whole(n);
        field("errors", errs + "}");
        field("error_count", whole(error_total_));
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
        field("cpu_s", num(cpu));
        field("received", whole(received_));
        if (o_.publishers > 0)
            field("publish_answers", whole(publish_answers_));
        switch (o_.mode) {
        case mode_kind::hold:
            break;
        case mode_kind::fanout: {
            field("publishes_sent", whole(sent_all));
            field("duplicates", whole(duplicates_));
            field("skipped", whole(skipped_));
            field("short_of_publishes", whole(short_of));
            if (o_.leader) {
                std::vector<double> ok;
                std::string lat = "[", reached = "[";
                for (std::size_t i = 0; i < fanout_ms_.size(); ++i) {
                    lat += (i ? "," : "") + num(fanout_ms_[i]);
                    reached += (i ? "," : "") +
                               whole(at(shared_.slot(static_cast<u32>(i)).reached).load());
                    if (fanout_ms_[i] >= 0)
                        ok.push_back(fanout_ms_[i]);
                }
                std::sort(ok.begin(), ok.end());
                auto pct = [&ok](double p) {
                    if (ok.empty())
                        return 0.0;
                    const auto rank =
                        static_cast<std::size_t>(std::ceil(p * static_cast<double>(ok.size())));
                    return ok[std::max<std::size_t>(rank, 1) - 1];
                };
                field("publishes", whole(o_.publishes));
                field("expected", whole(expected_));
                field("complete", whole(ok.size()));
                field("latency_ms", lat + "]");
                field("reached", reached + "]");
                std::string waits = "[";
                for (std::size_t i = 0; i < quiet_wait_ms_.size(); ++i)
                    waits += (i ? "," : "") + num(quiet_wait_ms_[i]);
                field("quiet_wait_ms", waits + "]");
                field("not_quiet", whole(not_quiet_));
                field("p50_ms", num(pct(0.5)));
                field("p99_ms", num(pct(0.99)));
                field("max_ms", num(ok.empty() ? 0 : ok.back()));
            }
            break;
        }
        case mode_kind::throughput:
        case mode_kind::rate:
            field("sent", whole(sent_));
            field("published_all", whole(at(h.published).load()));
            field("delivered_all", whole(at(h.delivered).load()));
            field("received_window", whole(received_window_));
            field("msg_per_s",
                  num(window > 0 ? static_cast<double>(received_window_) / window : 0));
            if (o_.mode == mode_kind::rate) {
                field("rate", num(o_.rate));
                field("late", whole(late_));
                field("max_lag_ms", num(static_cast<double>(max_lag_ns_) / 1e6));
            }
            field("p50_ms", num(latency_.percentile_ms(0.5)));
            field("p99_ms", num(latency_.percentile_ms(0.99)));
            field("p999_ms", num(latency_.percentile_ms(0.999)));
            field("max_ms", num(latency_.max_ms()));
            field("hist", latency_.json());
            if (o_.leader) {
                field("publish_p50_ms", num(publish_rtt_.percentile_ms(0.5)));
                field("publish_p99_ms", num(publish_rtt_.percentile_ms(0.99)));
            }
            break;
        case mode_kind::empty: {
            field("requests", whole(requests_window_));
            field("rps", num(window > 0 ? static_cast<double>(requests_window_) / window : 0));
            std::string st = "{";
            for (const auto& [k, n] : statuses_)
                st += (st.size() > 1 ? "," : "") + quote(std::to_string(k)) + ":" + whole(n);
            field("status", st + "}");
            field("p50_ms", num(latency_.percentile_ms(0.5)));
            field("p99_ms", num(latency_.percentile_ms(0.99)));
            field("max_ms", num(latency_.max_ms()));
            field("hist", latency_.json());
            break;
        }
        }
        j += "}\n";
        std::fwrite(j.data(), 1, j.size(), stdout);
        std::fflush(stdout);
    }

    enum lead_phase {
        lead_setup,
        lead_verify,
        lead_settle,
        lead_running,
        lead_draining,
        lead_done
    };

    options o_;
    shared_state shared_;
    message_template msg_;
    sockaddr_in server_{};
    sockaddr_in pub_server_{}; // --publish-port (the same as server_ without it)
    std::vector<in_addr_t> sources_;
    std::size_t source_ = 0;
    std::size_t spread_ = 0; // > 1: connections take the first spread_ sources in turn
    std::size_t rr_ = 0;
    std::string host_header_, pub_host_header_;
    std::string pub_head_, pub_tail_;
    std::mt19937_64 rng_;
    int ep_ = -1;
    std::vector<conn> conns_;
    std::vector<u32> free_pubs_;
    std::vector<std::pair<i64, u32>> retries_;

    i64 t0_ = 0, hard_deadline_ = 0, setup_deadline_ = 0, next_progress_ = 0;
    i64 gate_deadline_ = 0;
    u64 duplicates_ = 0, skipped_ = 0;
    i64 verify_deadline_ = 0, settle_until_ = 0, next_info_ = 0, run_end_ = 0, next_due_ = 0;
    i64 drain_deadline_ = 0, window_start_ = 0, max_lag_ns_ = 0;
    lead_phase lphase_ = lead_setup;
    bool stopping_ = false, finished_ = false, looping_ = false, info_pending_ = false;
    i64 info_subscribers_ = 0;
    u32 started_ = 0, in_setup_ = 0, open_ = 0, fanout_i_ = 0, fanout_sent_ = 0;
    u64 ready_ = 0, dead_ = 0, connects_ = 0, reconnects_ = 0, recreated_ = 0, answers_ = 0;
    u64 expected_ = 0, received_ = 0, received_window_ = 0, sent_ = 0, publish_answers_ = 0;
    u64 channel_rr_ = 0, late_ = 0, issued_ = 0, requests_window_ = 0, error_total_ = 0;
    u64 last_progress_count_ = 0;
    u64 stream_opens_ = 0, events_ = 0, frames_ = 0, ws_control_ = 0, ws_acks_ = 0, pings_ = 0;
    u64 ws_closes_ = 0, ws_refused_ = 0;
    std::string ws_key_, ws_accept_; // ws: the handshake's key and the answer it must get
    double setup_s_ = 0;
    std::map<std::string, u64> errors_;
    std::map<unsigned, u64> statuses_;
    std::vector<double> fanout_ms_, quiet_wait_ms_;
    i64 quiet_start_ = 0, quiet_at_ = 0, quiet_cpu_ = 0;
    bool quiet_ok_ = false; // this wait is over: publish once a publisher is free
    u64 not_quiet_ = 0;
    histogram latency_, publish_rtt_;
};

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    options o = parse_options(argc, argv);
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur < static_cast<rlim_t>(o.connections) + static_cast<rlim_t>(o.publishers) + 16)
        die("this process may open " + std::to_string(rl.rlim_cur) +
            " files: too few for --connections " + std::to_string(o.connections) +
            " (spread them over several processes)");
    ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); // wake-ups within a microsecond (rate mode)
    loadgen g{std::move(o)};
    return g.run();
}
