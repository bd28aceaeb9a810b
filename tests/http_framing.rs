//! What HTTP/1.1 itself asks of a server, as a client on the wire sees it: absolute-form
//! request targets, bodiless 204s, and `100 Continue` for clients that wait for it.

mod common;

use common::*;

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests". Clients that
/// were configured with the server as a proxy send it.
#[test]
fn an_absolute_form_target_is_served_like_its_path() {
    let server = start_default();
    let addr = server.addr;
    let stats = request(
        addr,
        &format!("GET http://{addr}/stats HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(stats.status, 200);
    assert!(stats.json()["connections"].is_u64(), "{}", stats.text());
    let posted = request(
        addr,
        &format!(
            "POST HTTP://{addr}/rooms/r/messages HTTP/1.1\r\nContent-Length: 13\r\n\r\n\
             from=a&text=b"
        ),
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    let polled = request(
        addr,
        &format!("GET http://{addr}/rooms/r/messages?since=0 HTTP/1.1\r\n\r\n"),
    );
    assert_eq!(polled.json()["messages"][0]["text"], "b");
}
