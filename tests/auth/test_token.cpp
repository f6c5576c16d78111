// token_verifier against tokens minted by PyJWT, with keys made by the openssl command: valid
// HS256, RS256 and ES256 tokens give their claims; every other token is refused with its reason.
// The algorithm comes from the configured key, never from the token (alg none, the RS256/HS256
// confusion attack); exp and nbf are checked at the `now` given, with the leeway; a token over
// the size limit is refused before it is parsed. The clock is token_now throughout.
#include "tests/auth/token_kit.hpp"

#include "auth/token.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using namespace megaphone::auth;
using namespace megaphone::test;
using nlohmann::json;
using namespace std::chrono_literals;

TEST_CASE("token_verifier accepts valid HS256, RS256 and ES256 tokens and gives their claims",
          "[auth][token]") {
    const std::string alg = GENERATE(as<std::string>{}, "HS256", "RS256", "ES256");
    INFO(alg);
    const token_verifier verifier = verifier_for(alg);
    const auto token = mint_one(signed_spec(alg, good_claims()));

    const auto claims = verifier.verify(token, token_now);
    REQUIRE(outcome(claims) == "valid");
    CHECK(claims->subject == "alice");
    REQUIRE(claims->expires);
    CHECK(*claims->expires == token_now + 60s);
    CHECK(claims->channels.allows("news"));
    CHECK(claims->channels.allows("news.eu"));
    CHECK(claims->channels.allows("chat.lobby"));
    CHECK_FALSE(claims->channels.allows("new"));
    CHECK_FALSE(claims->channels.allows("chat.lobby2"));
    CHECK(claims->publish.allows("chat.lobby"));
    CHECK_FALSE(claims->publish.allows("news"));
}

TEST_CASE("token_verifier gives empty pattern sets when channels and publish are absent",
          "[auth][token]") {
    const auto token = mint_one(signed_spec("HS256", {{"sub", "bob"}, {"exp", at(60)}}));
    const auto claims = verifier_for("HS256").verify(token, token_now);
    REQUIRE(outcome(claims) == "valid");
    CHECK(claims->channels.empty());
    CHECK(claims->publish.empty());
    CHECK_FALSE(claims->channels.allows("news"));
}

TEST_CASE("token_verifier refuses an expired token, past the leeway", "[auth][token]") {
    const std::string alg = GENERATE(as<std::string>{}, "HS256", "RS256", "ES256");
    INFO(alg);
    const auto tokens = mint(json::array({
        signed_spec(alg, {{"sub", "a"}, {"exp", at(-31)}}), // 31 s ago: past the 30 s leeway
        signed_spec(alg, {{"sub", "a"}, {"exp", at(-30)}}), // exp + leeway == now: expired
        signed_spec(alg, {{"sub", "a"}, {"exp", at(-3600)}}),
    }));
    const token_verifier verifier = verifier_for(alg);
    for (const auto& token : tokens)
        CHECK(outcome(verifier.verify(token, token_now)) == "expired");
}

TEST_CASE("token_verifier refuses a token not yet valid, past the leeway", "[auth][token]") {
    const std::string alg = GENERATE(as<std::string>{}, "HS256", "RS256", "ES256");
    INFO(alg);
    const auto tokens = mint(json::array({
        signed_spec(alg, {{"sub", "a"}, {"exp", at(3600)}, {"nbf", at(31)}}),
        signed_spec(alg, {{"sub", "a"}, {"exp", at(3600)}, {"nbf", at(3000)}}),
    }));
    const token_verifier verifier = verifier_for(alg);
    for (const auto& token : tokens)
        CHECK(outcome(verifier.verify(token, token_now)) == "not_yet_valid");
}

TEST_CASE("token_verifier forgives clock skew within the leeway, and only that much",
          "[auth][token]") {
    const auto tokens = mint(json::array({
        signed_spec("HS256", {{"sub", "a"}, {"exp", at(-29)}}),                   // 0
        signed_spec("HS256", {{"sub", "a"}, {"exp", at(3600)}, {"nbf", at(30)}}), // 1
        signed_spec("HS256", {{"sub", "a"}, {"exp", at(1)}, {"nbf", at(0)}}),     // 2
        signed_spec("HS256", {{"sub", "a"}, {"exp", 1'700'000'000.5}}),           // 3
    }));
    SECTION("the default leeway, 30 s") {
        const token_verifier verifier = verifier_for("HS256");
        CHECK(outcome(verifier.verify(tokens[0], token_now)) == "valid");
        CHECK(outcome(verifier.verify(tokens[1], token_now)) == "valid");
        CHECK(outcome(verifier.verify(tokens[2], token_now)) == "valid");
        // The same tokens, 31 s later and earlier than they allow.
        CHECK(outcome(verifier.verify(tokens[0], token_now + 2s)) == "expired");
        CHECK(outcome(verifier.verify(tokens[1], token_now - 1s)) == "not_yet_valid");
    }
    SECTION("no leeway") {
        token_options o;
        o.secret = test_secret;
        o.leeway = 0s;
        const token_verifier verifier{o};
        CHECK(outcome(verifier.verify(tokens[0], token_now)) == "expired");
        CHECK(outcome(verifier.verify(tokens[1], token_now)) == "not_yet_valid");
        // Valid from nbf on, until just before exp; a fractional exp counts its fraction.
        CHECK(outcome(verifier.verify(tokens[2], token_now)) == "valid");
        CHECK(outcome(verifier.verify(tokens[2], token_now + 999ms)) == "valid");
        CHECK(outcome(verifier.verify(tokens[2], token_now + 1s)) == "expired");
        CHECK(outcome(verifier.verify(tokens[2], token_now - 1ms)) == "not_yet_valid");
        CHECK(outcome(verifier.verify(tokens[3], token_now + 499ms)) == "valid");
        CHECK(outcome(verifier.verify(tokens[3], token_now + 500ms)) == "expired");
    }
}

TEST_CASE("token_verifier refuses a token without exp unless told to accept it", "[auth][token]") {
    const auto token = mint_one(signed_spec("HS256", {{"sub", "a"}, {"channels", {"news"}}}));
    CHECK(outcome(verifier_for("HS256").verify(token, token_now)) == "missing_expiry");

    token_options o;
    o.secret = test_secret;
    o.require_expiry = false;
    const auto claims = token_verifier{o}.verify(token, token_now);
    REQUIRE(outcome(claims) == "valid");
    CHECK_FALSE(claims->expires);
    CHECK(claims->channels.allows("news"));
}

TEST_CASE("token_verifier refuses a token signed with another secret or key", "[auth][token]") {
    const auto tokens = mint(json::array({
        {{"alg", "HS256"}, {"key", other_secret}, {"claims", good_claims()}},
        {{"alg", "RS256"},
         {"key_file", other_rsa_key().private_file.string()},
         {"claims", good_claims()}},
        {{"alg", "ES256"},
         {"key_file", other_ec_key().private_file.string()},
         {"claims", good_claims()}},
    }));
    CHECK(outcome(verifier_for("HS256").verify(tokens[0], token_now)) == "bad_signature");
    CHECK(outcome(verifier_for("RS256").verify(tokens[1], token_now)) == "bad_signature");
    CHECK(outcome(verifier_for("ES256").verify(tokens[2], token_now)) == "bad_signature");
}

TEST_CASE("token_verifier refuses a token whose claims or signature were altered",
          "[auth][token]") {
    const std::string alg = GENERATE(as<std::string>{}, "HS256", "RS256", "ES256");
    INFO(alg);
    const auto tokens = mint(json::array({
        signed_spec(alg, good_claims()),
        signed_spec(alg, {{"sub", "mallory"}, {"exp", at(60)}, {"channels", {"*"}}}),
    }));
    const token_verifier verifier = verifier_for(alg);
    const auto split = [](const std::string& t) {
        const auto first = t.find('.'), second = t.rfind('.');
        return std::vector<std::string>{t.substr(0, first), t.substr(first + 1, second - first - 1),
                                        t.substr(second + 1)};
    };
    const auto good = split(tokens[0]);
    const auto other = split(tokens[1]);
    // Another payload under the good signature.
    CHECK(outcome(verifier.verify(good[0] + "." + other[1] + "." + good[2], token_now)) ==
          "bad_signature");
    // The signature with one character changed, cut short, or gone.
    std::string flipped = good[2];
    flipped[flipped.size() / 2] = flipped[flipped.size() / 2] == 'A' ? 'B' : 'A';
    CHECK(outcome(verifier.verify(good[0] + "." + good[1] + "." + flipped, token_now)) ==
          "bad_signature");
    CHECK(outcome(verifier.verify(good[0] + "." + good[1] + "." + good[2].substr(0, 8),
                                  token_now)) == "bad_signature");
    CHECK(outcome(verifier.verify(good[0] + "." + good[1] + ".", token_now)) == "bad_signature");
}

TEST_CASE("token_verifier refuses a signature spelled with stray bits in its last character",
          "[auth][token]") {
    // The last character of a base64url text carries bits past the last byte; an encoder
    // leaves them zero. With one set, the signature decodes to the same bytes: accepting it
    // would give one token several spellings.
    const std::string alg = GENERATE(as<std::string>{}, "HS256", "RS256", "ES256");
    INFO(alg);
    const auto token = mint_one(signed_spec(alg, good_claims()));
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const auto last = alphabet.find(token.back());
    REQUIRE(last != std::string::npos);
    const std::string stray = token.substr(0, token.size() - 1) + alphabet[last ^ 1];
    const auto verifier = verifier_for(alg);
    CHECK(outcome(verifier.verify(token, token_now)) == "valid");
    CHECK(outcome(verifier.verify(stray, token_now)) == "malformed");
}

TEST_CASE("token_verifier refuses alg none, however it is spelled", "[auth][token]") {
    const auto tokens = mint(json::array({
        {{"alg", "none"}, {"claims", good_claims()}},
        {{"alg", "none"}, {"claims", good_claims()}, {"header_alg", "None"}},
        {{"alg", "none"}, {"claims", good_claims()}, {"header_alg", "NONE"}},
    }));
    for (const std::string alg : {"HS256", "RS256", "ES256"}) {
        INFO(alg);
        const token_verifier verifier = verifier_for(alg);
        for (const auto& token : tokens) {
            INFO(token);
            CHECK(outcome(verifier.verify(token, token_now)) == "wrong_algorithm");
            // With a signature appended it is still none.
            CHECK(outcome(verifier.verify(token + "c2ln", token_now)) == "wrong_algorithm");
        }
    }
}

TEST_CASE("token_verifier takes the algorithm from its key, never from the token",
          "[auth][token]") {
    // The classic confusion attack: an HS256 token whose HMAC secret is the text of the RS256
    // (or ES256) public key, which the attacker knows. A verifier that let the header choose
    // would check it with HMAC keyed by the PEM and accept it.
    const auto tokens = mint(json::array({
        {{"alg", "HS256"},
         {"hmac_key_file", rsa_key().public_file.string()},
         {"claims", good_claims()}},
        {{"alg", "HS256"},
         {"hmac_key_file", ec_key().public_file.string()},
         {"claims", good_claims()}},
        signed_spec("RS256", good_claims()),
        signed_spec("ES256", good_claims()),
        signed_spec("HS256", good_claims()),
        // The right key and signature, the algorithm's name in lower case: not an HS256 token.
        {{"alg", "HS256"},
         {"key", test_secret},
         {"claims", good_claims()},
         {"header_alg", "hs256"}},
        // An algorithm of the same family the key does not pin.
        {{"alg", "RS512"},
         {"key_file", rsa_key().private_file.string()},
         {"claims", good_claims()}},
        {{"alg", "HS512"}, {"key", test_secret}, {"claims", good_claims()}},
    }));
    const auto rs256 = verifier_for("RS256");
    const auto es256 = verifier_for("ES256");
    const auto hs256 = verifier_for("HS256");

    CHECK(outcome(rs256.verify(tokens[0], token_now)) == "wrong_algorithm");
    CHECK(outcome(es256.verify(tokens[1], token_now)) == "wrong_algorithm");
    CHECK(outcome(rs256.verify(tokens[3], token_now)) == "wrong_algorithm"); // ES256 token
    CHECK(outcome(es256.verify(tokens[2], token_now)) == "wrong_algorithm"); // RS256 token
    CHECK(outcome(hs256.verify(tokens[2], token_now)) == "wrong_algorithm");
    CHECK(outcome(hs256.verify(tokens[3], token_now)) == "wrong_algorithm");
    CHECK(outcome(rs256.verify(tokens[4], token_now)) == "wrong_algorithm"); // HS256 token
    CHECK(outcome(hs256.verify(tokens[5], token_now)) == "wrong_algorithm");
    CHECK(outcome(rs256.verify(tokens[6], token_now)) == "wrong_algorithm");
    CHECK(outcome(hs256.verify(tokens[7], token_now)) == "wrong_algorithm");

    // With a secret and a public key both set, HS256 is checked with the secret alone: the
    // confusion token is then a wrongly signed one.
    token_options both;
    both.secret = test_secret;
    both.public_key_pem = rsa_key().public_pem;
    const token_verifier either{both};
    CHECK(either.algorithms() == "HS256, RS256");
    CHECK(outcome(either.verify(tokens[0], token_now)) == "bad_signature");
    CHECK(outcome(either.verify(tokens[2], token_now)) == "valid");
    CHECK(outcome(either.verify(tokens[4], token_now)) == "valid");
    CHECK(outcome(either.verify(tokens[3], token_now)) == "wrong_algorithm");
}

TEST_CASE("token_verifier refuses malformed tokens", "[auth][token]") {
    const auto verifier = verifier_for("HS256");
    const auto good = mint_one(signed_spec("HS256", good_claims()));
    const auto dot = good.find('.');
    const std::string header = good.substr(0, dot);
    const std::string rest = good.substr(dot); // ".payload.signature"
    const std::string payload_and_sig = good.substr(dot + 1);

    SECTION("not three parts") {
        for (const std::string& t :
             {std::string{}, std::string{"abc"}, std::string{"a.b"}, good + ".x",
              header + "." + payload_and_sig.substr(0, payload_and_sig.find('.')),
              std::string{".."}, "." + payload_and_sig, header + "..sig"}) {
            INFO(t);
            CHECK(outcome(verifier.verify(t, token_now)) == "malformed");
        }
    }
    SECTION("not base64url") {
        const std::string bad_chars[] = {
            header + "=" + rest,                                 // padding
            header.substr(0, 4) + "+" + header.substr(5) + rest, // the other alphabet
            header.substr(0, 4) + "/" + header.substr(5) + rest,
            header + " " + rest,
            header.substr(0, 4) + "\xff" + header.substr(5) + rest, // a byte over 0x7f
            header.substr(0, 4) + '\0' + header.substr(5) + rest,
            header + "A" + rest.substr(0, rest.size() - 1), // moved so a part is 4n + 1 long
        };
        for (const std::string& t : bad_chars) {
            INFO(t);
            CHECK(outcome(verifier.verify(t, token_now)) == "malformed");
        }
    }
    SECTION("a header that is not a JSON object with a string alg") {
        // base64url of: not json, {}, [], "HS256", {"alg":1}, {"alg":null}
        for (const std::string h :
             {"bm90IGpzb24", "e30", "W10", "IkhTMjU2Ig", "eyJhbGciOjF9", "eyJhbGciOm51bGx9"}) {
            INFO(h);
            CHECK(outcome(verifier.verify(h + rest, token_now)) == "malformed");
        }
    }
    SECTION("a payload that is not a JSON object, properly signed") {
        const auto tokens = mint(json::array({
            {{"alg", "HS256"}, {"key", test_secret}, {"raw_payload", "not json"}},
            {{"alg", "HS256"}, {"key", test_secret}, {"raw_payload", "[1, 2]"}},
            {{"alg", "HS256"}, {"key", test_secret}, {"raw_payload", "\"alice\""}},
            {{"alg", "HS256"}, {"key", test_secret}, {"raw_payload", "{\"sub\": \"a\""}},
        }));
        for (const auto& t : tokens) {
            INFO(t);
            CHECK(outcome(verifier.verify(t, token_now)) == "malformed");
        }
    }
    SECTION("a header with a typ other than JWT, or with crit") {
        const auto tokens = mint(json::array({
            {{"alg", "HS256"},
             {"key", test_secret},
             {"claims", good_claims()},
             {"headers", {{"typ", "xyz"}}}},
            {{"alg", "HS256"},
             {"key", test_secret},
             {"claims", good_claims()},
             {"headers", {{"typ", 7}}}},
            {{"alg", "HS256"},
             {"key", test_secret},
             {"claims", good_claims()},
             {"headers", {{"crit", {"exp"}}}}},
        }));
        for (const auto& t : tokens) {
            INFO(t);
            CHECK(outcome(verifier.verify(t, token_now)) == "malformed");
        }
    }
}

TEST_CASE("token_verifier refuses a token with a claim of the wrong type", "[auth][token]") {
    const json cases[] = {
        {{"exp", at(60)}},                                          // no sub
        {{"sub", 42}, {"exp", at(60)}},                             // sub not a string
        {{"sub", ""}, {"exp", at(60)}},                             // sub empty
        {{"sub", "a"}, {"exp", "tomorrow"}},                        // exp not a number
        {{"sub", "a"}, {"exp", at(60)}, {"nbf", true}},             // nbf not a number
        {{"sub", "a"}, {"exp", at(60)}, {"channels", "news"}},      // channels not an array
        {{"sub", "a"}, {"exp", at(60)}, {"channels", {"news", 1}}}, // ... of strings
        {{"sub", "a"}, {"exp", at(60)}, {"channels", {"a*b"}}},     // ... of valid patterns
        {{"sub", "a"}, {"exp", at(60)}, {"channels", {""}}},        //
        {{"sub", "a"}, {"exp", at(60)}, {"channels", nullptr}},     //
        {{"sub", "a"}, {"exp", at(60)}, {"publish", {{"x", 1}}}},   // publish not an array
        {{"sub", "a"}, {"exp", at(60)}, {"publish", {"news**"}}},   // ... of valid patterns
    };
    json specs = json::array();
    for (const json& claims : cases)
        specs.push_back(signed_spec("HS256", claims));
    const auto tokens = mint(specs);
    const auto verifier = verifier_for("HS256");
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        INFO(cases[i].dump());
        CHECK(outcome(verifier.verify(tokens[i], token_now)) == "bad_claim");
    }
}

TEST_CASE("token_verifier refuses an oversized token before parsing it", "[auth][token]") {
    json claims = good_claims();
    for (int i = 0; i < 300; ++i)
        claims["channels"].push_back("channel-" + std::to_string(i));
    const auto big = mint_one(signed_spec("HS256", claims));
    const auto verifier = verifier_for("HS256");
    REQUIRE(big.size() > 4096);
    CHECK(outcome(verifier.verify(big, token_now)) == "too_large");
    // Garbage as long: refused for its size, not for what it is.
    CHECK(outcome(verifier.verify(std::string(4097, '\xff'), token_now)) == "too_large");

    // The limit is inclusive.
    const auto token = mint_one(signed_spec("HS256", good_claims()));
    token_options o;
    o.secret = test_secret;
    o.max_size = token.size();
    CHECK(outcome(token_verifier{o}.verify(token, token_now)) == "valid");
    o.max_size = token.size() - 1;
    CHECK(outcome(token_verifier{o}.verify(token, token_now)) == "too_large");
}

TEST_CASE("token_verifier refuses keys it cannot pin an algorithm to", "[auth][token]") {
    const auto refused = [](token_options o) -> std::string {
        try {
            token_verifier v{std::move(o)};
            return "(accepted: " + v.algorithms() + ")";
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
    };
    token_options o;
    CHECK_THAT(refused(o), Catch::Contains("neither a secret"));

    o.secret = "too short, 31 bytes............";
    REQUIRE(o.secret.size() == 31);
    CHECK_THAT(refused(o), Catch::Contains("HS256 needs 32 or more"));

    o = {};
    o.public_key_pem = read_file(rsa_key().private_file); // the private key by mistake
    CHECK_THAT(refused(o), Catch::Contains("not a PEM public key"));
    o.public_key_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    CHECK_THAT(refused(o), Catch::Contains("not a PEM public key"));

    o.public_key_pem =
        make_key("rsa-1024", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024").public_pem;
    CHECK_THAT(refused(o), Catch::Contains("1024 bits"));
    o.public_key_pem =
        make_key("ec-384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384").public_pem;
    CHECK_THAT(refused(o), Catch::Contains("P-256"));
    o.public_key_pem = make_key("ed25519", "-algorithm ED25519").public_pem;
    CHECK_THAT(refused(o), Catch::Contains("neither an RSA nor an EC key"));

    o = {};
    o.secret = test_secret;
    o.leeway = -1s;
    CHECK_THAT(refused(o), Catch::Contains("negative"));

    o = {};
    o.public_key_pem = ec_key().public_pem;
    CHECK(refused(o) == "(accepted: ES256)");
    o.secret = test_secret;
    CHECK(refused(o) == "(accepted: HS256, ES256)");
}

TEST_CASE("token_error names every reason", "[auth][token]") {
    CHECK(to_string(token_error::too_large) == "too_large");
    CHECK(to_string(token_error::not_yet_valid) == "not_yet_valid");
    CHECK(to_string(token_error::missing_expiry) == "missing_expiry");
}
