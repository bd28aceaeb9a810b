//! The admin listener's side of HTTP (`--admin-addr`): its four routes, and the bytes of
//! every answer it gives. It is a second port in the same loop, for operators and for
//! people studying the loop, never the public one:
//!
//! - `GET /metrics`: Prometheus text ([`exposition`]);
//! - `GET /loop` and `GET /loop.js`: the X-ray page, `www/admin/` built into the binary
//!   (the public port never serves `www/admin/`);
//! - `GET /loop/events`: the X-ray's feed, an event stream of [`xray::Frame`]s, four a
//!   second, computed only while someone watches.
//!
//! Anything else is `404`, or `405` for another method on a known path.

pub mod exposition;
pub mod xray;

use crate::answer;
use crate::http::{Method, Request, Status};

/// The X-ray page.
pub const PAGE_HTML: &str = include_str!("../www/admin/loop.html");
/// Its script.
pub const PAGE_JS: &str = include_str!("../www/admin/loop.js");

/// What an admin request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`.
    Metrics,
    /// `GET /loop`.
    Page,
    /// `GET /loop.js`.
    Script,
    /// `GET /loop/events`.
    Feed,
}

/// Routes an admin request: the route, or the status to refuse it with.
pub fn route(request: &Request) -> Result<Route, Status> {
    let route = match request.path.as_str() {
        "/metrics" => Route::Metrics,
        "/loop" => Route::Page,
        "/loop.js" => Route::Script,
        "/loop/events" => Route::Feed,
        _ => return Err(Status::NOT_FOUND),
    };
    match request.method {
        Method::Get => Ok(route),
        _ => Err(Status::METHOD_NOT_ALLOWED),
    }
}

/// Every admin answer closes its connection (a scrape every few seconds gains nothing from
/// keep-alive, and the admin side then needs no request loop of its own). The answers
/// below leave the `Connection: close` line out: the connection adds it as it sends them,
/// as it does every response's (`Conn::respond`); only [`refusal`], written straight to a
/// socket never taken in, carries it itself.
const CLOSE: (&str, &str) = ("Connection", "close");

/// The answer to a static route, or to a refusal.
pub fn answer(route: Result<Route, Status>) -> Vec<u8> {
    match route {
        Ok(Route::Page) => answer::response(
            Status::OK,
            "text/html; charset=utf-8",
            &[],
            PAGE_HTML.as_bytes(),
            false,
        ),
        Ok(Route::Script) => answer::response(
            Status::OK,
            "text/javascript; charset=utf-8",
            &[],
            PAGE_JS.as_bytes(),
            false,
        ),
        Ok(Route::Metrics) => unreachable!("/metrics is answered from a snapshot: metrics()"),
        Ok(Route::Feed) => answer::stream_head(&[]),
        Err(Status::METHOD_NOT_ALLOWED) => {
            answer::status_error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET")], false)
        }
        Err(status) => answer::status_error(status, &[], false),
    }
}

/// The `503` for a connection past the admin port's cap, written to it as it is accepted
/// and closed at once.
pub fn refusal() -> Vec<u8> {
    answer::status_error(Status::SERVICE_UNAVAILABLE, &[CLOSE], false)
}

/// `/metrics`: the exposition text as a response.
pub fn metrics(text: &str) -> Vec<u8> {
    answer::response(
        Status::OK,
        exposition::CONTENT_TYPE,
        &[],
        text.as_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};

    fn route_raw(raw: &str) -> Result<Route, Status> {
        let Parse::Complete(request) = parse_request(raw.as_bytes(), &Limits::default()) else {
            panic!("incomplete: {raw:?}")
        };
        route(&request)
    }

    #[test]
    fn four_routes_and_nothing_else() {
        assert_eq!(
            route_raw("GET /metrics HTTP/1.1\r\n\r\n"),
            Ok(Route::Metrics)
        );
        assert_eq!(route_raw("GET /loop HTTP/1.1\r\n\r\n"), Ok(Route::Page));
        assert_eq!(
            route_raw("GET /loop.js HTTP/1.1\r\n\r\n"),
            Ok(Route::Script)
        );
        assert_eq!(
            route_raw("GET /loop/events HTTP/1.1\r\n\r\n"),
            Ok(Route::Feed)
        );
        assert_eq!(
            route_raw("GET /chat HTTP/1.1\r\n\r\n"),
            Err(Status::NOT_FOUND)
        );
        assert_eq!(
            route_raw("GET /stats HTTP/1.1\r\n\r\n"),
            Err(Status::NOT_FOUND)
        );
        assert_eq!(
            route_raw("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Err(Status::METHOD_NOT_ALLOWED)
        );
        let refused = String::from_utf8(answer(Err(Status::METHOD_NOT_ALLOWED))).unwrap();
        assert!(refused.contains("\r\nAllow: GET\r\n"), "{refused}");
        let full = String::from_utf8(refusal()).unwrap();
        assert!(full.starts_with("HTTP/1.1 503 "), "{full}");
        assert!(full.contains("\r\nConnection: close\r\n"), "{full}");
        let page = String::from_utf8(answer(Ok(Route::Page))).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html"));
    }
}
