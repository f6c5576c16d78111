// admin_console: the /admin dashboard, itself a Megaphone application.
//
// The server creates it when its options carry an admin token. It serves
//   GET  /admin                    the page (web/admin.html, compiled in)           public*
//   GET  /admin/assets/NAME        admin.js, megaphone.js, fsm.svg (compiled in)    public
//   GET  /admin/sessions?page=&size=  one page of the sessions table, as JSON       header
//   POST /admin/comet[/NODE]       the JSON transport to this application           header
// Data needs the token in the `X-Megaphone-Token` header (a wrong or missing one: 403); a token
// in the query is not accepted there, since URLs end up in browser history and logs. The page
// holds no data: it is served without a token, so that a reload works. (*) It is opened with
// `/admin?token=TOKEN` (what the demo prints): a wrong token there gets 403, and the page's
// script keeps the token in sessionStorage, sends it in the header only, and takes it out of the
// address bar (history.replaceState).
//
// Every `period` the console sums the server's counters and publishes a snapshot (sessions per
// state, transitions with their rate per second, ...) on its channel, to which each of its
// sessions is subscribed: the page draws it on the machine's diagram. The snapshot also names this
// node ("node") and lists the cluster's live nodes ("nodes": id, address, age_ms of the last
// heartbeat, self), as the router last answered (asked again every period); without a cluster the
// list is empty.
#pragma once

#include "app/application.hpp"
#include "cluster/router.hpp"
#include "transport/exchange.hpp"
#include "transport/net.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace megaphone {

class server;
struct incoming;
struct metrics_snapshot;

class admin_console final : public application {
public:
    /// Mounts and routes itself on `srv`. `token` must not be empty.
    admin_console(server& srv, std::string token,
                  std::chrono::milliseconds period = std::chrono::seconds(1));
    ~admin_console() override;
    admin_console(const admin_console&) = delete;
    admin_console& operator=(const admin_console&) = delete;

    /// Stops publishing snapshots (the server calls it when it stops).
    void stop();

    /// False when `path` is one of the console's data paths and `request` lacks the token in
    /// its header, or when it is the page's address with a wrong `?token=`.
    bool allows(std::string_view path, const http::request<http::string_body>& request) const;
    /// The header that carries the token.
    static constexpr std::string_view token_header = "X-Megaphone-Token";
    static response forbidden();

    /// The snapshot published now (JSON): also what a new session gets at once.
    nlohmann::json snapshot();

    /// The snapshots' channel is this followed by "." and the node's id: each node's own (in a
    /// cluster the bus carries a channel to every node's subscribers).
    static constexpr std::string_view channel = "megaphone.admin";

    // application
    void on_open(session& s) override;

private:
    void run();
    void serve(incoming& in, std::string_view rest);

    server& srv_;
    std::string token_;
    std::string channel_; // channel + "." + node id
    std::chrono::milliseconds period_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    // The previous snapshot, for rates (under mutex_).
    std::unique_ptr<metrics_snapshot> previous_;
    std::chrono::steady_clock::time_point previous_at_{};
    packet latest_; // the last snapshot published (under mutex_)
    // The cluster's nodes as the router last answered: shared with its callback, which may run
    // on the router's thread after the console is gone.
    struct cluster_view {
        std::mutex mutex;
        std::vector<cluster_node> nodes;
    };
    std::shared_ptr<cluster_view> cluster_ = std::make_shared<cluster_view>();
    std::thread thread_;
};

/// A peer address as text: "1.2.3.4:5" or "[::1]:5".
std::string to_string(const peer_address& a);

} // namespace megaphone
