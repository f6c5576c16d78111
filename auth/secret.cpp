#include "auth/secret.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace megaphone::auth {

bool constant_time_equal(std::string_view given, std::string_view secret) noexcept {
    // Every byte of the secret is compared, whatever the given value holds or how long it is:
    // no early exit, no branch on the secret's bytes. (Two SHA-256 digests, compared instead,
    // cost ~1 us each through OpenSSL 3's EVP: 8% of a publish's CPU on the hot path.)
    unsigned char diff = given.size() == secret.size() ? 0 : 1;
    for (std::size_t i = 0; i < secret.size(); ++i) {
        const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
        diff |= static_cast<unsigned char>(static_cast<unsigned char>(secret[i]) ^ g);
    }
    // Read through a volatile so the compiler cannot turn the loop into an early exit.
    const volatile unsigned char result = diff;
    return result == 0;
}

namespace {

class secret_file_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "megaphone.auth.secret_file"; }
    std::string message(int e) const override {
        switch (static_cast<secret_file_error>(e)) {
        case secret_file_error::not_a_file:
            return "not a regular file";
        case secret_file_error::too_large:
            return "larger than a secret file may be (64 KiB)";
        case secret_file_error::empty:
            return "empty";
        case secret_file_error::loose_permissions:
            return "readable or writable by others, or writable by its group (chmod 600 or 640)";
        }
        return "unknown secret file error";
    }
};

/// Closes the descriptor on every way out.
struct descriptor {
    int fd;
    ~descriptor() {
        if (fd >= 0)
            ::close(fd);
    }
};

std::error_code last_system_error() noexcept {
    return {errno, std::generic_category()};
}

} // namespace

const std::error_category& secret_file_category() noexcept {
    static const secret_file_category_impl category;
    return category;
}

std::error_code make_error_code(secret_file_error e) noexcept {
    return {static_cast<int>(e), secret_file_category()};
}

expected<std::string, std::error_code> read_secret_file(const std::filesystem::path& path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the checks below refuse it anyway.
    descriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)};
    if (file.fd < 0)
        return last_system_error();

    // Checked on the open file, so a rename between the check and the read changes nothing.
    struct stat st {};
    if (::fstat(file.fd, &st) != 0)
        return last_system_error();
    if (!S_ISREG(st.st_mode))
        return make_error_code(secret_file_error::not_a_file);
    if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0)
        return make_error_code(secret_file_error::loose_permissions);
    if (static_cast<std::uintmax_t>(st.st_size) > max_secret_file_size)
        return make_error_code(secret_file_error::too_large);

    // Read to the end, not to st_size: the file may have changed since fstat.
    std::string content;
    char buffer[4096];
    for (;;) {
        const ::ssize_t n = ::read(file.fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return last_system_error();
        }
        if (n == 0)
            break;
        content.append(buffer, static_cast<std::size_t>(n));
        if (content.size() > max_secret_file_size)
            return make_error_code(secret_file_error::too_large);
    }

    // Editors and `echo` end the file with a newline that is no part of the secret.
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r'))
        content.pop_back();
    if (content.empty())
        return make_error_code(secret_file_error::empty);
    return content;
}

} // namespace megaphone::auth
