// What the auth tests share: a scratch directory of the process's own, keys made by the openssl
// command, and tokens minted by PyJWT (tests/auth/mint_tokens.py, Debian's python3-jwt), so
// every token the verifier accepts was made by an implementation other than the one it uses.
#pragma once

#include "auth/token.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace megaphone::test {

namespace fs = std::filesystem;

/// The time the token tests run at: tokens are minted around it, so nothing sleeps or
/// depends on the real clock.
inline const std::chrono::system_clock::time_point token_now{std::chrono::seconds{1'700'000'000}};

/// Seconds since the epoch of token_now + `offset` seconds, for exp and nbf claims.
inline long long at(long long offset) {
    return 1'700'000'000 + offset;
}

/// A directory of this process's own (ctest runs test cases side by side), removed at exit.
inline const fs::path& scratch_dir() {
    struct dir {
        fs::path path =
            fs::path(MEGAPHONE_BINARY_DIR) / ("test-auth-" + std::to_string(::getpid()));
        dir() {
            fs::remove_all(path);
            fs::create_directories(path);
        }
        ~dir() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    };
    static const dir d;
    return d.path;
}

inline std::string read_file(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

inline void run(const std::string& command) {
    INFO(command);
    REQUIRE(std::system(command.c_str()) == 0);
}

/// A private key file (for PyJWT to sign with) and its public key in PEM (for the verifier).
struct key_pair {
    fs::path private_file;
    fs::path public_file;
    std::string public_pem;
};

/// Makes a key with `openssl genpkey <args>` into the scratch directory.
inline key_pair make_key(const std::string& name, const std::string& genpkey_args) {
    key_pair k;
    k.private_file = scratch_dir() / (name + ".pem");
    k.public_file = scratch_dir() / (name + ".pub.pem");
    INFO("the openssl command is needed (scripts/setup installs it)");
    run("openssl genpkey " + genpkey_args + " -out '" + k.private_file.string() + "' 2>/dev/null");
    run("openssl pkey -in '" + k.private_file.string() + "' -pubout -out '" +
        k.public_file.string() + "'");
    k.public_pem = read_file(k.public_file);
    return k;
}

// Each key is made once per process, when a test first needs it.
inline const key_pair& rsa_key() {
    static const key_pair k = make_key("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
    return k;
}
inline const key_pair& other_rsa_key() {
    static const key_pair k = make_key("rsa-other", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
    return k;
}
inline const key_pair& ec_key() {
    static const key_pair k = make_key("ec", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    return k;
}
inline const key_pair& other_ec_key() {
    static const key_pair k =
        make_key("ec-other", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    return k;
}

/// A 32-byte HS256 secret, and another.
inline const std::string test_secret = "0123456789abcdef0123456789abcdef";
inline const std::string other_secret = "fedcba9876543210fedcba9876543210";

/// Mints one token per spec (see mint_tokens.py for the fields), in one run of the helper.
inline std::vector<std::string> mint(const nlohmann::json& specs) {
    static int batch = 0;
    const fs::path in = scratch_dir() / ("specs-" + std::to_string(batch) + ".json");
    const fs::path out = scratch_dir() / ("tokens-" + std::to_string(batch) + ".json");
    ++batch;
    std::ofstream(in) << specs.dump();
    INFO("python3-jwt and python3-cryptography are needed (scripts/setup installs them)");
    run("/usr/bin/python3 '" MEGAPHONE_SOURCE_DIR "/tests/auth/mint_tokens.py' '" + in.string() +
        "' '" + out.string() + "'");
    std::ifstream f(out);
    const auto tokens = nlohmann::json::parse(f).get<std::vector<std::string>>();
    REQUIRE(tokens.size() == specs.size());
    return tokens;
}

inline std::string mint_one(const nlohmann::json& spec) {
    return mint(nlohmann::json::array({spec})).front();
}

/// Claims valid at token_now: a user, an exp a minute ahead, a few patterns.
inline nlohmann::json good_claims() {
    return {{"sub", "alice"},
            {"exp", at(60)},
            {"channels", {"news*", "chat.lobby"}},
            {"publish", {"chat.lobby"}}};
}

/// "valid", or why the token was refused: reads well in a CHECK and in its failure message.
inline std::string outcome(const auth::expected<auth::token_claims, auth::token_error>& r) {
    return r ? "valid" : std::string(auth::to_string(r.error()));
}

/// A verifier for HS256 (test_secret), RS256 (rsa_key) or ES256 (ec_key).
inline auth::token_verifier verifier_for(const std::string& alg) {
    auth::token_options o;
    if (alg == "HS256")
        o.secret = test_secret;
    else if (alg == "RS256")
        o.public_key_pem = rsa_key().public_pem;
    else
        o.public_key_pem = ec_key().public_pem;
    return auth::token_verifier{o};
}

/// The spec signing `claims` for `alg` with the key verifier_for(alg) checks against.
inline nlohmann::json signed_spec(const std::string& alg, nlohmann::json claims) {
    nlohmann::json spec{{"alg", alg}, {"claims", std::move(claims)}};
    if (alg == "HS256")
        spec["key"] = test_secret;
    else if (alg == "RS256")
        spec["key_file"] = rsa_key().private_file.string();
    else
        spec["key_file"] = ec_key().private_file.string();
    return spec;
}

} // namespace megaphone::test
