#include "examples/xmpp/xmpp_app.hpp"

#include "app/session.hpp"

namespace megaphone::examples {

void xmpp_app::deliver(session& s, const xmpp::outputs& out) {
    for (const xmpp::output& o : out) {
        const bool self = o.conn == s.id();
        if (!o.xml.empty()) {
            if (self)
                s.push(packet::from(o.xml));
            else
                s.broker().push(o.conn, packet::from(o.xml));
        }
        if (o.close) {
            if (self)
                s.close();
            else
                s.broker().close(o.conn);
        }
    }
}

void xmpp_app::on_open(session& s) {
    if (s.kind() != content_kind::xml)
        return s.close(); // stanzas are XML: BOSH sessions only
    // A host we do not serve ends the session at once: the creation answer says host-unknown.
    if (!s.host().empty() && s.host() != core_.settings().domain)
        return s.close(close_reason::host_unknown);
    deliver(s, core_.open(s.id(), s.host()));
}

void xmpp_app::on_message(session& s, const message& m) {
    if (m.is_json())
        return;
    deliver(s, core_.stanza(s.id(), m.text()));
}

void xmpp_app::on_stream_restart(session& s) {
    deliver(s, core_.restart(s.id()));
}

void xmpp_app::on_close(session& s, close_reason) {
    deliver(s, core_.close(s.id()));
}

} // namespace megaphone::examples
