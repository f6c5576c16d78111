#include "app/cli.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace megaphone {

namespace {

[[noreturn]] void usage_error(const std::string& what) {
    std::cerr << "megaphone: " << what << " (see --help)\n";
    std::exit(2);
}

double number(std::string_view option, std::string_view text) {
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value < 0 || !std::isfinite(value))
        usage_error(std::string(option) + " takes a non-negative number, not '" +
                    std::string(text) + "'");
    return value;
}

std::chrono::milliseconds seconds(std::string_view option, std::string_view text) {
    return std::chrono::milliseconds(
        static_cast<long long>(std::llround(number(option, text) * 1000)));
}

template <class T>
T whole(std::string_view option, std::string_view text, T max) {
    const double v = number(option, text);
    if (v != std::floor(v) || v > static_cast<double>(max))
        usage_error(std::string(option) + " takes a whole number up to " + std::to_string(max));
    return static_cast<T>(v);
}

double secs(std::chrono::milliseconds d) {
    return static_cast<double>(d.count()) / 1000.0;
}

void print_help(std::string_view about, const server_options& d) {
    std::printf(
        "%.*s\n\n"
        "Options (defaults in brackets):\n"
        "  --address ADDR        listen address [%s]\n"
        "  --port N              listen port; 0 picks a free one and prints it [%u]\n"
        "  --tls-cert FILE       serve HTTPS too, with this PEM certificate chain [off]\n"
        "  --tls-key FILE        the certificate's PEM private key [the --tls-cert file]\n"
        "  --tls-port N          HTTPS listen port, next to the HTTP one; 0: a free one [%u]\n"
        "  --threads N           I/O threads, one session shard each; 0: one per core [%u]\n"
        "  --wait S              longest a request is held, seconds (caps the client's) [%g]\n"
        "  --hold N              most requests held at once per session [%u]\n"
        "  --inactivity S        a session with no request held this long is closed [%g]\n"
        "  --polling S           shortest interval between empty polls of a polling session "
        "[%g]\n"
        "  --max-body BYTES      largest request body; larger gets 413 [%zu]\n"
        "  --max-queue N         packets queued per session before it is closed [%u]\n"
        "  --max-sessions N      sessions per thread; 0: no limit [%zu]\n"
        "  --read-timeout S      time to receive a whole request (and keep-alive idle) [%g]\n"
        "  --static-dir DIR      serve files from DIR for GET (none when empty) [%s]\n"
        "  --cors-origin ORIGIN  allowed CORS origin, repeatable; '*' allows any [*]\n"
        "  --node-id ID          session id prefix, for routing across servers [%s]\n"
        "  --help                this text\n",
        static_cast<int>(about.size()), about.data(), d.address.c_str(), d.port, d.tls_port,
        d.threads, secs(d.engine.max_wait), d.engine.max_hold, secs(d.engine.inactivity),
        secs(d.engine.polling), d.http.max_body, d.engine.max_queue, d.engine.max_sessions,
        secs(d.http.read_timeout), d.static_dir.c_str(), d.engine.node_id.c_str());
}

} // namespace

server_options parse_command_line(int argc, char** argv, std::string_view about) {
    server_options o;
    bool cors_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            print_help(about, o);
            std::exit(0);
        }
        if (i + 1 >= argc)
            usage_error("unknown option or missing value: " + std::string(arg));
        const std::string_view value = argv[++i];
        if (arg == "--address")
            o.address = value;
        else if (arg == "--port")
            o.port = whole<unsigned short>(arg, value, 65535);
        else if (arg == "--tls-cert")
            o.tls_cert = value;
        else if (arg == "--tls-key")
            o.tls_key = value;
        else if (arg == "--tls-port")
            o.tls_port = whole<unsigned short>(arg, value, 65535);
        else if (arg == "--threads")
            o.threads = whole<unsigned>(arg, value, 36);
        else if (arg == "--wait")
            o.engine.max_wait = seconds(arg, value);
        else if (arg == "--hold")
            o.engine.max_hold = whole<std::uint16_t>(arg, value, 16);
        else if (arg == "--inactivity")
            o.engine.inactivity = seconds(arg, value);
        else if (arg == "--polling")
            o.engine.polling = seconds(arg, value);
        else if (arg == "--max-body")
            o.http.max_body = whole<std::size_t>(arg, value, std::size_t{1} << 30);
        else if (arg == "--max-queue")
            o.engine.max_queue = whole<std::uint32_t>(arg, value, 1u << 24);
        else if (arg == "--max-sessions")
            o.engine.max_sessions = whole<std::size_t>(arg, value, std::size_t{1} << 32);
        else if (arg == "--read-timeout")
            o.http.read_timeout = seconds(arg, value);
        else if (arg == "--static-dir")
            o.static_dir = value;
        else if (arg == "--node-id")
            o.engine.node_id = value;
        else if (arg == "--cors-origin") {
            if (!cors_given)
                o.http.cors_origins.clear();
            cors_given = true;
            o.http.cors_origins.emplace_back(value);
        } else
            usage_error("unknown option " + std::string(arg));
    }
    if (o.engine.max_queue == 0)
        usage_error("--max-queue must be at least 1");
    if (o.engine.node_id.empty() || o.engine.node_id.size() > 6 ||
        o.engine.node_id.find('-') != std::string::npos)
        usage_error("--node-id takes 1 to 6 characters, no '-'");
    if (o.tls_cert.empty() && !o.tls_key.empty())
        usage_error("--tls-key needs --tls-cert");
    if (!o.tls_cert.empty() && o.tls_port == o.port && o.port != 0)
        usage_error("--tls-port must differ from --port");
    if (!o.static_dir.empty() && !std::filesystem::is_directory(o.static_dir))
        usage_error("--static-dir " + o.static_dir.string() + " is not a directory");
    return o;
}

int serve_until_signalled(server& srv) {
    try {
        srv.start();
    } catch (const std::exception& e) {
        std::cerr << "megaphone: cannot start: " << e.what() << "\n";
        return 1;
    }
    std::printf("megaphone: listening on http://%s:%u\n", srv.options().address.c_str(),
                srv.port());
    if (srv.tls_port() != 0)
        std::printf("megaphone: listening on https://%s:%u\n", srv.options().address.c_str(),
                    srv.tls_port());
    std::fflush(stdout);

    net::io_context signals_ioc;
    net::signal_set signals{signals_ioc, SIGINT, SIGTERM};
    signals.async_wait([](beast::error_code, int) {});
    signals_ioc.run(); // returns after the first signal
    srv.stop();
    srv.wait();
    return 0;
}

} // namespace megaphone
