#include "cluster/bus.hpp"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace megaphone {

packet stamp(const packet& payload, std::string_view epoch, std::uint64_t offset) {
    const std::string_view text = payload.view();
    std::size_t at = 0;
    while (at < text.size() &&
           (text[at] == ' ' || text[at] == '\n' || text[at] == '\r' || text[at] == '\t'))
        ++at;
    if (at == text.size() || text[at] != '{')
        return payload;
    std::size_t next = at + 1; // the first byte after "{" that is not white space
    while (next < text.size() &&
           (text[next] == ' ' || text[next] == '\n' || text[next] == '\r' || text[next] == '\t'))
        ++next;
    const bool empty_object = next < text.size() && text[next] == '}';
    // {"epoch":"E","offset":K, + the rest after "{"; pushed when its payload was
    return packet::make(text.size() + epoch.size() + 42, payload.born_ns(),
                        [&](packet::writer& out) {
                            out << "{\"epoch\":\"" << epoch << "\",\"offset\":" << offset;
                            if (!empty_object)
                                out << ',';
                            out << text.substr(at + 1);
                        });
}

void fill_random(std::span<unsigned char> out) {
    for (std::size_t got = 0; got < out.size();) {
        const ssize_t n = ::getrandom(out.data() + got, out.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        got += static_cast<std::size_t>(n);
    }
}

std::string new_epoch() {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::array<unsigned char, 12> raw{}; // 72 bits; 12 characters fit a std::string inline
    fill_random(raw);
    std::string out;
    for (const unsigned char b : raw)
        out += alphabet[b & 63];
    return out;
}

} // namespace megaphone
