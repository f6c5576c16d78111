// ticker: publishes a changing price to a channel at a fixed period, from its own thread.
// {"symbol":"MEGA","price":P,"time":MS,"seq":N}, wrapped by the hub as {"channel","data"}.
#pragma once

#include "app/application.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace megaphone::examples {

class ticker {
public:
    ticker(broker& b, std::string channel, std::chrono::milliseconds period);
    ~ticker();
    void start();
    void stop();

private:
    void run();

    broker& broker_;
    std::string channel_;
    std::chrono::milliseconds period_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
};

} // namespace megaphone::examples
