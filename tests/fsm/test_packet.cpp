// packet: the empty handle, from() copying bytes (binary and empty included), copies sharing one
// allocation, moves leaving the source empty, assignment (self-assignment too), equality by bytes
// against same_as by allocation, and the reference count keeping bytes alive exactly as long as a
// handle does (the ASan build turns a miscount into a use-after-free or a leak report).
#include "fsm/packet.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using megaphone::packet;
using namespace std::string_view_literals;

static_assert(sizeof(packet) == sizeof(void*), "a packet handle is one pointer wide");
static_assert(std::is_nothrow_copy_constructible_v<packet>);
static_assert(std::is_nothrow_move_constructible_v<packet>);
static_assert(std::is_nothrow_move_assignable_v<packet>);

TEST_CASE("packet: a default packet is empty and null", "[packet]") {
    const packet p;
    CHECK_FALSE(p);
    CHECK(p.empty());
    CHECK(p.size() == 0);
    CHECK(p.view().empty());
    CHECK(p == packet{});
    CHECK(p.same_as(packet{}));
}

TEST_CASE("packet::from copies the bytes", "[packet]") {
    std::string source = "hello";
    const packet p = packet::from(source);
    source[0] = 'J'; // the packet owns its copy
    CHECK(p);
    CHECK_FALSE(p.empty());
    CHECK(p.size() == 5);
    CHECK(p.view() == "hello");
    CHECK(p.view().data() != source.data());
}

TEST_CASE("packet::from keeps binary bytes, NULs included", "[packet]") {
    const auto bytes = "a\0b\xff\0"sv;
    const packet p = packet::from(bytes);
    CHECK(p.size() == 5);
    CHECK(p.view() == bytes);
}

TEST_CASE("packet::from of no bytes: allocated but empty", "[packet]") {
    const packet p = packet::from("");
    CHECK(p);         // a real (allocated) packet ...
    CHECK(p.empty()); // ... with no bytes
    CHECK(p.size() == 0);
    CHECK(p.view().empty());
    CHECK(p == packet{}); // equal by bytes to the null packet
    CHECK_FALSE(p.same_as(packet{}));
}

TEST_CASE("packet::make writes in place and keeps only what was written", "[packet]") {
    const packet p = packet::make(64, [](packet::writer& out) {
        out << "{\"n\":" << std::uint64_t{18446744073709551615ull} << ','
            << "\"z\":" << std::uint64_t{0} << '}';
    });
    CHECK(p.view() == R"({"n":18446744073709551615,"z":0})");
    CHECK(p.size() == 32);
    // Exactly the room asked for, and none at all.
    CHECK(packet::make(3, [](packet::writer& out) { out << "abc"; }).view() == "abc");
    const packet none = packet::make(0, [](packet::writer&) {});
    CHECK(none);
    CHECK(none.empty());
    // Like from(): copies share the one allocation.
    const packet copy = p;
    CHECK(copy.same_as(p));
}

TEST_CASE("packet::from of a large payload", "[packet]") {
    const std::string big(1 << 20, 'x');
    const packet p = packet::from(big);
    CHECK(p.size() == big.size());
    CHECK(p.view() == big);
}

TEST_CASE("packet: copies share one allocation", "[packet]") {
    const packet a = packet::from("shared");
    const packet b = a; // NOLINT(performance-unnecessary-copy-initialization)
    CHECK(b.same_as(a));
    CHECK(b.view().data() == a.view().data());
    CHECK(b == a);

    packet c;
    c = a;
    CHECK(c.same_as(a));
}

TEST_CASE("packet: equality compares bytes, same_as compares allocations", "[packet]") {
    const packet a = packet::from("x");
    const packet b = packet::from("x");
    const packet c = packet::from("y");
    CHECK(a == b);
    CHECK_FALSE(a.same_as(b));
    CHECK_FALSE(a == c);
}

TEST_CASE("packet: a move leaves the source null", "[packet]") {
    packet a = packet::from("moved");
    const char* bytes = a.view().data();

    packet b = std::move(a);
    CHECK(b.view() == "moved");
    CHECK(b.view().data() == bytes);
    CHECK_FALSE(a); // NOLINT(bugprone-use-after-move): moved-from is specified as null
    CHECK(a.empty());

    packet c = packet::from("old");
    c = std::move(b);
    CHECK(c.view() == "moved");
    CHECK(c.view().data() == bytes);
    CHECK_FALSE(b); // NOLINT(bugprone-use-after-move)
}

TEST_CASE("packet: assignment releases the old bytes and survives self-assignment", "[packet]") {
    packet a = packet::from("first");
    const packet b = packet::from("second");
    a = b;
    CHECK(a.same_as(b));
    CHECK(a.view() == "second");

    packet& alias = a;
    a = alias;
    CHECK(a.view() == "second");
    CHECK(a.same_as(b));

    a = std::move(alias);
    CHECK(a.view() == "second");

    a = packet{};
    CHECK_FALSE(a);
    CHECK(b.view() == "second");
}

TEST_CASE("packet: the bytes live exactly as long as some handle does", "[packet]") {
    std::vector<packet> copies;
    {
        const packet original = packet::from("refcounted");
        for (int i = 0; i < 100; ++i)
            copies.push_back(original);
    } // the original handle is gone; the copies keep the bytes
    for (const packet& c : copies) {
        CHECK(c.view() == "refcounted");
        CHECK(c.same_as(copies.front()));
    }
    packet last = copies.back();
    copies.clear();
    CHECK(last.view() == "refcounted");
    // `last` releases the final reference here; LeakSanitizer reports a count that stays > 0.
}

TEST_CASE("packet: copies on two threads keep the count exact", "[packet]") {
    const packet shared = packet::from("across threads");
    auto churn = [&shared] {
        for (int i = 0; i < 20000; ++i) {
            packet copy = shared;
            packet moved = std::move(copy);
            if (moved.size() != shared.size())
                return false;
        }
        return true;
    };
    bool ok1 = false;
    bool ok2 = false;
    std::thread t1([&] { ok1 = churn(); });
    std::thread t2([&] { ok2 = churn(); });
    t1.join();
    t2.join();
    CHECK(ok1);
    CHECK(ok2);
    CHECK(shared.view() == "across threads");
}

TEST_CASE("packet: from() and make() take the push time when made, and a given one is kept",
          "[packet]") {
    const auto steady_ns = [] {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    };
    const std::int64_t before = steady_ns();
    const packet copied = packet::from("a");
    const packet written = packet::make(1, [](packet::writer& out) { out << 'b'; });
    const std::int64_t after = steady_ns();
    CHECK(copied.born_ns() >= before);
    CHECK(copied.born_ns() <= after);
    CHECK(written.born_ns() >= before);
    CHECK(written.born_ns() <= after);

    // A message made from another keeps its push time; an answer's body has none.
    const packet kept = packet::make(1, copied.born_ns(), [](packet::writer& out) { out << 'c'; });
    CHECK(kept.born_ns() == copied.born_ns());
    CHECK(kept.view() == "c");
    const packet untimed = packet::make(1, 0, [](packet::writer& out) { out << 'd'; });
    CHECK(untimed.born_ns() == 0);
    CHECK(untimed.view() == "d");
}
