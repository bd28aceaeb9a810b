//! Routing: a parsed request becomes one [`Action`] — reply now, park until a message comes,
//! or broadcast. Knows no sockets and changes no state; the server carries the action out.

use crate::assets::Assets;
use crate::chat;
use crate::http::{self, Limits, Method, Parse, Request, Status};
use std::rc::Rc;

/// Bytes to send: built for this one request, or shared by many connections.
#[derive(Debug)]
pub enum Response {
    /// Encoded for this request alone.
    Owned(Vec<u8>),
    /// Encoded once and shared: static files, broadcasts, timeouts.
    Shared(Rc<[u8]>),
}

/// What the server should do with a request.
#[derive(Debug)]
pub enum Action {
    /// Send `response`; then keep the connection for the next request unless `close`.
    Reply {
        /// The bytes to write.
        response: Response,
        /// Hang up after writing.
        close: bool,
    },
    /// `GET /chat`: hold the connection until a message is posted or the poll times out.
    Park,
    /// `POST /chat`: send `message` to every parked poll, then answer the poster.
    Broadcast {
        /// The decoded message text.
        message: String,
    },
    /// `GET /stats`: the server fills in its counters.
    Stats,
}

/// What a connection's buffered input amounts to.
#[derive(Debug)]
pub enum Next {
    /// No complete request yet; wait for more bytes (normal flow).
    NeedMore,
    /// The input can never become a valid request: answer `status`, then close.
    Reject(Status),
    /// A complete request: carry out `action`, then drop `consumed` bytes from the input.
    Request {
        /// What to do.
        action: Action,
        /// The client asked to close after this response (HTTP/1.0, `Connection: close`).
        close: bool,
        /// How many input bytes the request used.
        consumed: usize,
    },
}

/// The whole request path of one connection without its socket: buffered bytes in, the
/// next thing to do out. The server calls this for every request; the fuzz target and the
/// property tests call it with arbitrary bytes.
pub fn next(input: &[u8], limits: &Limits, assets: &Assets) -> Next {
    match http::parse_request(input, limits) {
        Parse::Partial => Next::NeedMore,
        Parse::Invalid(status) => Next::Reject(status),
        Parse::Complete(request) => Next::Request {
            action: route(&request, &input[request.body.clone()], assets),
            close: !request.keep_alive,
            consumed: request.consumed,
        },
    }
}

/// Decides what to do with `request`, whose body is `body`.
pub fn route(request: &Request, body: &[u8], assets: &Assets) -> Action {
    let close = !request.keep_alive;
    // A response to HEAD never has a body, errors included, or the client would read the
    // body as the start of the next response.
    let error = |status: Status, headers: &[(&str, &str)], close: bool| {
        let head_only = request.method == Method::Head;
        reply(
            Response::Owned(http::error_response(status, headers, head_only, close)),
            close,
        )
    };
    match (request.path.as_str(), request.method) {
        ("/chat", Method::Get) => Action::Park,
        ("/chat", Method::Post) => match http::form_field(body, "message") {
            Ok(Some(message)) => Action::Broadcast { message },
            Ok(None) | Err(http::MalformedForm) => error(Status::BAD_REQUEST, &[], close),
            // Absent and malformed both mean "send message=<url-encoded UTF-8>".
        },
        ("/chat", _) => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET, POST")], close),
        ("/stats", Method::Get) => Action::Stats,
        ("/stats", _) => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET")], close),
        (path, method) => match assets.get(path) {
            Some(asset) => match method {
                Method::Get => reply(Response::Shared(Rc::clone(&asset.get)), close),
                Method::Head => reply(Response::Shared(Rc::clone(&asset.head)), close),
                _ => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET, HEAD")], close),
            },
            None => error(Status::NOT_FOUND, &[], close),
        },
    }
}

/// The reply to the poster once a broadcast went out.
pub fn posted(close: bool) -> Action {
    reply(Response::Owned(chat::posted_response(close)), close)
}

fn reply(response: Response, close: bool) -> Action {
    Action::Reply { response, close }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};

    fn route_raw(raw: &str) -> Action {
        let Parse::Complete(req) = parse_request(raw.as_bytes(), &Limits::default()) else {
            panic!("not a complete request: {raw:?}")
        };
        route(&req, &raw.as_bytes()[req.body.clone()], &Assets::empty())
    }

    fn status(action: &Action) -> u16 {
        match action {
            Action::Reply {
                response: Response::Owned(bytes),
                ..
            } => std::str::from_utf8(&bytes[9..12]).unwrap().parse().unwrap(),
            other => panic!("not an owned reply: {other:?}"),
        }
    }

    #[test]
    fn table() {
        assert!(matches!(
            route_raw("GET /chat HTTP/1.1\r\n\r\n"),
            Action::Park
        ));
        assert!(matches!(
            route_raw("GET /stats HTTP/1.1\r\n\r\n"),
            Action::Stats
        ));
        match route_raw("POST /chat HTTP/1.1\r\nContent-Length: 14\r\n\r\nmessage=a+b%21") {
            Action::Broadcast { message } => assert_eq!(message, "a b!"),
            other => panic!("{other:?}"),
        }
        let errors = [
            ("POST /chat HTTP/1.1\r\nContent-Length: 5\r\n\r\nother", 400),
            (
                "POST /chat HTTP/1.1\r\nContent-Length: 11\r\n\r\nmessage=%FF",
                400,
            ),
            ("PUT /chat HTTP/1.1\r\n\r\n", 405),
            ("POST /stats HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
            ("GET /nope HTTP/1.1\r\n\r\n", 404),
            ("GET /../Cargo.toml HTTP/1.1\r\n\r\n", 404),
        ];
        for (raw, code) in errors {
            assert_eq!(status(&route_raw(raw)), code, "{raw:?}");
        }
    }

    #[test]
    fn errors_to_head_have_no_body() {
        let Action::Reply {
            response: Response::Owned(bytes),
            ..
        } = route_raw("HEAD /nope HTTP/1.1\r\n\r\n")
        else {
            panic!()
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 "));
        assert!(text.contains("Content-Length: 21\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn allow_header_lists_the_methods() {
        let Action::Reply {
            response: Response::Owned(bytes),
            ..
        } = route_raw("DELETE /chat HTTP/1.1\r\n\r\n")
        else {
            panic!()
        };
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\r\nAllow: GET, POST\r\n"));
    }
}
