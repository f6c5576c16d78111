// The committed diagram docs/fsm.dot is exactly what the transition table generates, and the
// table has a row for every (open) state x event pair: an event can never find no row.
#include "fsm/session_fsm.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace megaphone;

namespace {

constexpr std::array<std::string_view, 6> states = {"waiting", "have_request", "have_packet",
                                                    "closed",  "streaming",    "writing"};
constexpr std::array<std::string_view, 9> events = {
    request_arrived::name, packet_pushed::name,     wait_expired::name,
    die_expired::name,     connection_closed::name, terminate_session::name,
    stream_opened::name,   stream_written::name,    stream_rewound::name};

/// The first line where two texts differ, for the failure message.
std::string first_difference(const std::string& a, const std::string& b) {
    std::istringstream in_a(a), in_b(b);
    std::string line_a, line_b;
    for (int n = 1;; ++n) {
        const bool more_a = static_cast<bool>(std::getline(in_a, line_a));
        const bool more_b = static_cast<bool>(std::getline(in_b, line_b));
        if (!more_a && !more_b)
            return "(they differ only in a final newline)";
        if (!more_a || !more_b || line_a != line_b)
            return "line " + std::to_string(n) +
                   ":\n  docs/fsm.dot: " + (more_a ? line_a : "(end of file)") +
                   "\n  generated:    " + (more_b ? line_b : "(end of text)");
    }
}

} // namespace

TEST_CASE("docs/fsm.dot is generated from the transition table", "[fsm][diagram]") {
    const std::string regenerate =
        "cmake --build " MEGAPHONE_BINARY_DIR
        " --target megaphone-fsm-dot && cd " MEGAPHONE_SOURCE_DIR " && " MEGAPHONE_BINARY_DIR
        "/bin/megaphone-fsm-dot > docs/fsm.dot && "
        "dot -Tsvg docs/fsm.dot -o docs/fsm.svg";
    const std::string path = MEGAPHONE_SOURCE_DIR "/docs/fsm.dot";
    std::ifstream in(path, std::ios::binary);
    if (!in)
        FAIL("cannot read " << path << "; generate it with\n  " << regenerate);
    const std::string committed{std::istreambuf_iterator<char>(in), {}};
    const std::string generated = transition_table_dot();
    if (committed != generated)
        FAIL("docs/fsm.dot differs from megaphone::transition_table_dot(): the transition table in "
             "fsm/session_machine.hpp changed. First difference at "
             << first_difference(committed, generated) << "\nRegenerate docs/fsm.dot and "
             << "docs/fsm.svg, and commit both:\n  " << regenerate);
    SUCCEED("docs/fsm.dot is up to date");
}

TEST_CASE("the transition table has a row for every state x event pair", "[fsm][diagram]") {
    const std::vector<table_row> rows = transition_table_rows();
    REQUIRE_FALSE(rows.empty());

    std::map<std::pair<std::string, std::string>, std::vector<table_row>> by_pair;
    for (const table_row& row : rows) {
        INFO(row.start << " | " << row.event << " | " << row.next << " | " << row.action << " | "
                       << row.guard);
        CHECK(std::find(states.begin(), states.end(), row.start) != states.end());
        CHECK(std::find(events.begin(), events.end(), row.event) != events.end());
        CHECK((row.next == "(stay)" ||
               std::find(states.begin(), states.end(), row.next) != states.end()));
        by_pair[{row.start, row.event}].push_back(row);
    }

    // Every state, `closed` included, has a row for every event; `closed`'s rows all ignore it.
    for (std::string_view state : states) {
        for (std::string_view event : events) {
            INFO(state << " x " << event);
            const auto it = by_pair.find({std::string(state), std::string(event)});
            REQUIRE(it != by_pair.end());
            if (state == "closed") {
                REQUIRE(it->second.size() == 1);
                CHECK(it->second.front().next == "(stay)");
                CHECK(it->second.front().action.empty());
                continue;
            }
            // Rows that share a start state and an event are told apart by their guards.
            if (it->second.size() > 1) {
                std::set<std::string> guards;
                for (const table_row& row : it->second) {
                    CHECK_FALSE(row.guard.empty());
                    guards.insert(row.guard);
                }
                CHECK(guards.size() == it->second.size());
            }
        }
    }
}
