// A real nginx in front of a test server: a reverse proxy on a free loopback port that passes
// every request to 127.0.0.1:<backend> (keep-alive upstream, X-Forwarded-For set), as the usual
// deployment on one host does. One process (master_process off), in the foreground, from a fresh
// temporary prefix (removed on destruction, nginx killed). Readiness is polled with a deadline.
// The child gets PR_SET_PDEATHSIG, so a dying test binary leaves no nginx behind.
#pragma once

#include "support/child_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace megaphone::test {

class nginx_proxy {
public:
    explicit nginx_proxy(unsigned short backend) {
        char tmpl[] = "/tmp/megaphone-nginx-XXXXXX";
        if (!::mkdtemp(tmpl))
            throw std::runtime_error("nginx_proxy: mkdtemp failed");
        dir_ = tmpl;
        std::filesystem::create_directories(dir_ + "/tmp");
        try {
            on_a_free_port([&](unsigned short port) {
                port_ = port;
                write_conf(backend);
                start();
            });
        } catch (...) {
            std::filesystem::remove_all(dir_);
            throw;
        }
    }
    ~nginx_proxy() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    nginx_proxy(const nginx_proxy&) = delete;
    nginx_proxy& operator=(const nginx_proxy&) = delete;

    unsigned short port() const noexcept { return port_; }

    std::string log() const { return file_text(dir_ + "/error.log"); }

private:
    void write_conf(unsigned short backend) {
        std::ofstream conf{dir_ + "/nginx.conf"};
        conf << "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log error.log warn;\n"
                "events { worker_connections 256; }\n"
                "http {\n"
                "    access_log off;\n"
                "    client_body_temp_path tmp/body;\n    proxy_temp_path tmp/proxy;\n"
                "    fastcgi_temp_path tmp/fastcgi;\n    uwsgi_temp_path tmp/uwsgi;\n"
                "    scgi_temp_path tmp/scgi;\n"
                "    upstream megaphone { server 127.0.0.1:"
             << backend
             << "; keepalive 16; }\n"
                "    server {\n"
                "        listen 127.0.0.1:"
             << port_
             << ";\n"
                "        location / {\n"
                "            proxy_pass http://megaphone;\n"
                "            proxy_http_version 1.1;\n"
                "            proxy_set_header Connection \"\";\n"
                "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "        }\n"
                "    }\n"
                "}\n";
    }

    void start() {
        std::vector<std::string> args{"/usr/sbin/nginx",   "-p", dir_ + "/",          "-e",
                                      dir_ + "/error.log", "-c", dir_ + "/nginx.conf"};
        pid_ = spawn_quiet(std::move(args));
        if (wait_ready(
                pid_, [this] { return listening(); }, std::chrono::seconds(10)))
            return;
        throw std::runtime_error(pid_ < 0 ? "nginx_proxy: nginx exited:\n" + log()
                                          : "nginx_proxy: not listening within 10 s:\n" + log());
    }

    bool listening() const {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            return false;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port_);
        const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(s);
        return ok;
    }

    std::string dir_;
    unsigned short port_ = 0;
    pid_t pid_ = -1;
};

} // namespace megaphone::test
