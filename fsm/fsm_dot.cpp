// megaphone-fsm-dot: prints the session machine's transition table as Graphviz dot.
//   megaphone-fsm-dot > docs/fsm.dot && dot -Tsvg docs/fsm.dot -o docs/fsm.svg
#include "fsm/session_fsm.hpp"

#include <iostream>

int main() {
    std::cout << megaphone::transition_table_dot();
    return 0;
}
