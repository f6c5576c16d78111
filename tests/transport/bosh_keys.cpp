// BOSH key sequencing (XEP-0124 §15): SHA-1(key) must equal the previous newkey (or key),
// compared case-insensitively, and a newkey starts a new sequence.
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using megaphone::bosh_key_sequence;
using verdict = megaphone::bosh_key_sequence::verdict;

namespace {

/// K(1) = hex(SHA-1(seed)), K(i) = hex(SHA-1(K(i-1))); returns K(1) .. K(n).
std::vector<std::string> key_sequence(const std::string& seed, int n) {
    std::vector<std::string> keys{bosh_key_sequence::sha1_hex(seed)};
    while (static_cast<int>(keys.size()) < n)
        keys.push_back(bosh_key_sequence::sha1_hex(keys.back()));
    return keys;
}

std::string upper(std::string s) {
    for (char& c : s)
        c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    return s;
}

} // namespace

TEST_CASE("bosh keys: SHA-1 in lower-case hex") {
    CHECK(bosh_key_sequence::sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK(bosh_key_sequence::sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST_CASE("bosh keys: the XEP's own examples (§15.4, §15.5)") {
    bosh_key_sequence keys{std::string("ca393b51b682f61f98e7877d61146407f3d0a770")};
    CHECK(keys.active());
    CHECK(keys.accept(std::string("bfb06a6f113cd6fd3838ab9d300fdb4fe3da2f7d"), std::nullopt) ==
          verdict::accepted);
    // Rekey: the last key of the old sequence with the first of a new one.
    CHECK(keys.accept(std::string("6f825e81f4532b2c5fa2d12457d8a1f22e8f838e"),
                      std::string("113f58a37245ec9637266cf2fb6e48bfeaf7964e")) ==
          verdict::accepted);
    // The old sequence is over: its next key no longer fits.
    CHECK(keys.accept(std::string("6f825e81f4532b2c5fa2d12457d8a1f22e8f838e"), std::nullopt) ==
          verdict::wrong_key);
    CHECK(keys.accept(std::nullopt, std::nullopt) == verdict::missing_key);
}

TEST_CASE("bosh keys: a whole sequence, case-insensitive, replays and gaps refused") {
    const auto k = key_sequence("seed", 6); // k[0] = K(1) ... k[5] = K(6)
    bosh_key_sequence keys{upper(k[5])};    // the creation's newkey, in upper case

    SECTION("K(5) .. K(1) in order") {
        for (int i = 4; i >= 0; --i) {
            INFO(i);
            CHECK(keys.accept(k[i], std::nullopt) == verdict::accepted);
        }
        // K(1) was the last: without a rekey nothing can follow it.
        CHECK(keys.accept(k[0], std::nullopt) == verdict::wrong_key);
    }
    SECTION("a replayed key") {
        CHECK(keys.accept(k[4], std::nullopt) == verdict::accepted);
        CHECK(keys.accept(k[4], std::nullopt) == verdict::wrong_key);
        // A refused key does not move the sequence: the right one still works.
        CHECK(keys.accept(k[3], std::nullopt) == verdict::accepted);
    }
    SECTION("a skipped key") {
        CHECK(keys.accept(k[3], std::nullopt) == verdict::wrong_key);
    }
    SECTION("a missing key") {
        CHECK(keys.accept(std::nullopt, std::nullopt) == verdict::missing_key);
        CHECK(keys.accept(std::nullopt, k[0]) == verdict::missing_key);
    }
    SECTION("a previous key sent in upper case is compared case-insensitively") {
        CHECK(keys.accept(k[4], std::nullopt) == verdict::accepted);
        // Hashing is over the key as sent, so an upper-case K(3) hashes to something else.
        CHECK(keys.accept(upper(k[3]), std::nullopt) == verdict::wrong_key);
        CHECK(keys.accept(k[3], std::nullopt) == verdict::accepted);
    }
    SECTION("rekey midway, then the new sequence") {
        const auto fresh = key_sequence("another seed", 3);
        CHECK(keys.accept(k[4], fresh[2]) == verdict::accepted);
        CHECK(keys.accept(k[3], std::nullopt) == verdict::wrong_key);
        CHECK(keys.accept(fresh[1], std::nullopt) == verdict::accepted);
        CHECK(keys.accept(fresh[0], std::nullopt) == verdict::accepted);
    }
    SECTION("an empty newkey does not switch the checks off") {
        CHECK(keys.accept(k[4], std::string()) == verdict::accepted);
        CHECK(keys.accept(std::nullopt, std::nullopt) == verdict::missing_key);
        CHECK(keys.accept(k[3], std::nullopt) == verdict::accepted);
    }
}

TEST_CASE("bosh keys: sessions without keys, and keys from decoded requests") {
    bosh_key_sequence none;
    CHECK_FALSE(none.active());
    CHECK(none.accept(std::nullopt, std::nullopt) == verdict::accepted);
    CHECK_FALSE(none.active());

    const auto k = key_sequence("s", 3);
    auto creation = megaphone::decode_bosh_request(
        "<body rid='1' newkey='" + k[2] + "' xmlns='http://jabber.org/protocol/httpbind'/>");
    REQUIRE(std::holds_alternative<megaphone::bosh_request>(creation));
    bosh_key_sequence keys{std::get<megaphone::bosh_request>(creation).newkey};
    CHECK(keys.active());
    auto next = megaphone::decode_bosh_request("<body rid='2' sid='x' key='" + k[1] +
                                               "' xmlns='http://jabber.org/protocol/httpbind'/>");
    REQUIRE(std::holds_alternative<megaphone::bosh_request>(next));
    CHECK(keys.accept(std::get<megaphone::bosh_request>(next)) == verdict::accepted);
    auto forged = megaphone::decode_bosh_request(
        "<body rid='3' sid='x' key='0000000000000000000000000000000000000000' "
        "xmlns='http://jabber.org/protocol/httpbind'/>");
    REQUIRE(std::holds_alternative<megaphone::bosh_request>(forged));
    CHECK(keys.accept(std::get<megaphone::bosh_request>(forged)) == verdict::wrong_key);
}
