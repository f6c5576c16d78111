#include "examples/ticker/ticker.hpp"

#include "app/hub.hpp"

#include <cmath>
#include <random>

namespace megaphone::examples {

ticker::ticker(broker& b, std::string channel, std::chrono::milliseconds period)
    : broker_{b}
    , channel_{std::move(channel)}
    , period_{period} {}

ticker::~ticker() {
    stop();
}

void ticker::start() {
    thread_ = std::thread([this] { run(); });
}

void ticker::stop() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

void ticker::run() {
    std::mt19937 random{std::random_device{}()};
    std::normal_distribution<double> step{0.0, 0.4};
    double price = 100.0;
    std::uint64_t seq = 0;
    auto next = std::chrono::steady_clock::now();
    std::unique_lock lock{mutex_};
    while (!stopping_) {
        price = std::max(1.0, price + step(random));
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        const nlohmann::json tick{
            {"symbol", "MEGA"},
            {"price", std::round(price * 100) / 100},
            {"time", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
            {"seq", ++seq}};
        broker_.publish(channel_, hub::envelope(channel_, tick));
        next += period_;
        wake_.wait_until(lock, next, [this] { return stopping_; });
    }
}

} // namespace megaphone::examples
