//! Routing: a parsed request becomes one [`Action`] — reply now, park until a message comes,
//! or broadcast. Knows no sockets and changes no state; the server carries the action out.

use crate::answer::{self, Also, Replies};
use crate::api::{self, ApiError, NewMessage};
use crate::assets::Assets;
use crate::http::{self, Limits, Method, Parse, Request, Status};
use crate::outgoing::Response;
use crate::position::Position;
use crate::token::{self, Identity, Refusal, Secret};
use crate::ws;
use std::rc::Rc;

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
    /// `POST /chat`: store `message` in the lobby and send it to everyone waiting there,
    /// then answer the poster. Both fields passed the same checks as a room post.
    Broadcast {
        /// A valid name: the post's `from`, or [`api::ANONYMOUS`].
        from: String,
        /// A valid text.
        message: String,
    },
    /// A request refused for its token: send `response` (401 or 403), count it.
    Denied {
        /// The refusal, headers and JSON body.
        response: Response,
        /// Hang up after writing.
        close: bool,
        /// Which refusal, for `/stats`.
        denial: Denial,
    },
    /// `GET /stats` (or `HEAD`: the same head, no body): the server fills in its counters.
    Stats {
        /// HEAD.
        head_only: bool,
    },
    /// `GET /rooms/{room}/messages`: answer from history, or wait for the next message.
    RoomPoll {
        /// A valid room name.
        room: String,
        /// Where the client is; `None` for a client with nothing yet.
        since: Option<Position>,
        /// Who polls, for presence.
        name: Option<String>,
    },
    /// `POST /rooms/{room}/messages`.
    RoomPost {
        /// A valid room name.
        room: String,
        /// The validated message.
        message: NewMessage,
    },
    /// `POST /rooms/{room}/typing`.
    Typing {
        /// A valid room name.
        room: String,
        /// A valid name.
        from: String,
    },
    /// `GET /rooms/{room}/presence`.
    Presence {
        /// A valid room name.
        room: String,
    },
    /// `GET /rooms/{room}/events`: an SSE stream.
    Stream {
        /// A valid room name.
        room: String,
        /// Where to resume (`?since=` or `Last-Event-ID`).
        since: Option<Position>,
        /// Who listens, for presence.
        name: Option<String>,
        /// When the token it was opened with expires (seconds since 1970): the stream is
        /// told `expired` and closed then. `None` without tokens.
        expires: Option<u64>,
    },
    /// `GET /rooms/{room}/ws`: a WebSocket, the handshake checked; answered 101 with
    /// `accept` as its `Sec-WebSocket-Accept`, then the room's frames as for a stream.
    Socket {
        /// A valid room name.
        room: String,
        /// Where to resume (`?since=`); `None`: a new client, or one that says where in its
        /// first frame (`resume`).
        since: Option<Position>,
        /// Who listens, for presence, and who posts (`?name=`, or the token's `sub`).
        name: Option<String>,
        /// When the token it was opened with expires (seconds since 1970).
        expires: Option<u64>,
        /// `Sec-WebSocket-Accept`.
        accept: String,
    },
}

/// Why a request was refused for its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// 401: no token, or one that is malformed, forged or expired.
    Unauthorized,
    /// 403: a good token that does not grant the room.
    Forbidden,
}

impl Action {
    /// The room whose copy must be loaded before this request can be answered from it,
    /// with `--redis` (reads and waits; posts go straight to Redis).
    pub fn room_to_read(&self) -> Option<&str> {
        match self {
            Action::Park => Some(crate::chat::LOBBY),
            Action::RoomPoll { room, .. }
            | Action::Stream { room, .. }
            | Action::Socket { room, .. }
            | Action::Presence { room } => Some(room),
            _ => None,
        }
    }

    /// The position a read resumes from, if it names one.
    pub fn since(&self) -> Option<Position> {
        match self {
            Action::RoomPoll { since, .. }
            | Action::Stream { since, .. }
            | Action::Socket { since, .. } => *since,
            _ => None,
        }
    }
}

/// What routing needs besides the request.
pub struct Context<'a> {
    /// Static files.
    pub assets: &'a Assets,
    /// `--max-message`.
    pub max_message_bytes: usize,
    /// How room-API answers are spelled (CORS for `--cors-origin`).
    pub replies: &'a Replies,
    /// With `--token-secret-file`: every request into a room needs a token.
    pub auth: Option<Auth<'a>>,
    /// WebSocket is on (not `--no-websocket`).
    pub websocket: bool,
    /// `--cors-origin`: the one other origin whose pages may open a WebSocket here.
    pub cors_origin: Option<&'a str>,
}

/// What checking a token needs.
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    /// The shared secret.
    pub secret: &'a Secret,
    /// `--private-rooms`: rooms a `*` grant does not cover.
    pub private_prefix: Option<&'a str>,
    /// Now, in seconds since 1970.
    pub now: u64,
}

/// What a connection's buffered input amounts to.
#[derive(Debug)]
pub enum Next {
    /// No complete request yet; wait for more bytes (normal flow).
    NeedMore {
        /// The client holds its body back until it hears [`crate::answer::CONTINUE`]: send it, once
        /// for this request (see [`Parse::Partial`]).
        awaits_continue: bool,
    },
    /// The input can never become a valid request: answer `status`, then close.
    Reject(Status),
    /// A complete request: carry out `action`, then drop `consumed` bytes from the input.
    Request {
        /// What to do.
        action: Action,
        /// The client asked to close after this response (HTTP/1.0, `Connection: close`).
        close: bool,
        /// An HTTP/1.0 request: a response that keeps the connection must say so.
        http10: bool,
        /// How many input bytes the request used.
        consumed: usize,
        /// Its `X-Forwarded-For` headers, as one list (see [`Request::forwarded_for`]).
        forwarded_for: Option<String>,
    },
}

/// The whole request path of one connection without its socket: buffered bytes in, the
/// next thing to do out. The server calls this for every request; the fuzz target and the
/// property tests call it with arbitrary bytes.
pub fn next(input: &[u8], limits: &Limits, context: &Context) -> Next {
    match http::parse_request(input, limits) {
        Parse::Partial { awaits_continue } => Next::NeedMore { awaits_continue },
        Parse::Invalid(status) => Next::Reject(status),
        Parse::Complete(request) => Next::Request {
            action: route(&request, &input[request.body.clone()], context),
            close: !request.keep_alive,
            http10: request.http10,
            consumed: request.consumed,
            forwarded_for: request.forwarded_for,
        },
    }
}

/// Decides what to do with `request`, whose body is `body`.
pub fn route(request: &Request, body: &[u8], context: &Context) -> Action {
    let close = !request.keep_alive;
    // A response to HEAD never has a body, errors included, or the client would read the
    // body as the start of the next response.
    let head_only = request.method == Method::Head;
    let error = |status: Status, headers: &[(&str, &str)]| {
        reply(
            Response::Owned(answer::status_error(status, headers, head_only)),
            close,
        )
    };
    if let Some(rest) = request.path.strip_prefix("/rooms/") {
        return route_room(request, rest, body, context);
    }
    match (request.path.as_str(), request.method) {
        ("/chat", Method::Get | Method::Post) => {
            // The classic protocol is same-origin: its refusals carry no CORS headers.
            let who = match authenticate(request, crate::chat::LOBBY, context, &Replies::default())
            {
                Ok(who) => who,
                Err(denied) => return denied,
            };
            let signed = who.as_ref().map(|who| who.sub.as_str());
            match request.method {
                Method::Get => Action::Park,
                _ => match api::parse_classic_post(body, context.max_message_bytes, signed) {
                    Ok(NewMessage { from, text, .. }) => Action::Broadcast {
                        from,
                        message: text,
                    },
                    Err(refused) => classic_refusal(refused, close),
                },
            }
        }
        ("/chat", _) => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET, POST")]),
        ("/stats", Method::Get | Method::Head) => Action::Stats { head_only },
        ("/stats", _) => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET, HEAD")]),
        (path, method) => match context.assets.lookup(path) {
            Ok(asset) => match method {
                Method::Get => reply(Response::Shared(Rc::clone(&asset.get)), close),
                Method::Head => reply(Response::Shared(Rc::clone(&asset.head)), close),
                _ => error(Status::METHOD_NOT_ALLOWED, &[("Allow", "GET, HEAD")]),
            },
            Err(status) => error(status, &[]),
        },
    }
}

/// `/rooms/{room}/{what}`. Every answer here carries the API headers (CORS).
fn route_room(request: &Request, rest: &str, body: &[u8], context: &Context) -> Action {
    let close = !request.keep_alive;
    let fail = |error: ApiError, also: Also| {
        let head_only = request.method == Method::Head;
        let bytes = context
            .replies
            .error(error.status, error.message, also, head_only);
        reply(Response::Owned(bytes), close)
    };
    let not_found = ApiError {
        status: Status::NOT_FOUND,
        message: "no such endpoint: use /rooms/{room}/messages, /events, /typing or /presence",
    };
    let Some((room, what)) = rest.split_once('/') else {
        return fail(not_found, Also::Nothing);
    };
    if !api::valid_room(room) {
        return fail(
            ApiError {
                status: Status::BAD_REQUEST,
                message: "room names are 1 to 64 of A-Z a-z 0-9 _ -",
            },
            Also::Nothing,
        );
    }
    let query = request.query.as_deref();
    let who = match request.method {
        // A preflight carries no credentials (the browser asks before it sends them).
        Method::Options => None,
        _ => match authenticate(request, room, context, context.replies) {
            Ok(who) => who,
            Err(denied) => return denied,
        },
    };
    let signed = who.as_ref().map(|who| who.sub.as_str());
    let room = room.to_owned();
    let allow = |methods: &'static str| {
        (
            ApiError {
                status: Status::METHOD_NOT_ALLOWED,
                message: "method not allowed",
            },
            methods,
        )
    };
    let result: Result<Action, (ApiError, &str)> = match (what, request.method) {
        // A CORS preflight, for clients that send JSON or custom headers cross-origin.
        (_, Method::Options) if context.replies.preflight().is_some() => {
            let bytes = context.replies.preflight().unwrap_or_default();
            return reply(Response::Owned(bytes), close);
        }
        ("messages", Method::Get) => (|| {
            Ok(Action::RoomPoll {
                since: api::resume_position(query, None)?,
                name: api::presence_name(query, signed)?,
                room,
            })
        })()
        .map_err(|e| (e, "")),
        ("messages", Method::Post) => api::parse_message(
            request.content_type.as_deref(),
            body,
            context.max_message_bytes,
            signed,
        )
        .map(|message| Action::RoomPost { room, message })
        .map_err(|e| (e, "")),
        ("messages", _) => Err(allow("GET, POST")),
        ("typing", Method::Post) => {
            api::parse_typing(request.content_type.as_deref(), body, signed)
                .map(|from| Action::Typing { room, from })
                .map_err(|e| (e, ""))
        }
        ("typing", _) => Err(allow("POST")),
        ("presence", Method::Get) => Ok(Action::Presence { room }),
        ("presence", _) => Err(allow("GET")),
        ("events", Method::Get) => (|| {
            Ok(Action::Stream {
                since: api::resume_position(query, request.last_event_id.as_deref())?,
                name: api::presence_name(query, signed)?,
                expires: who.as_ref().map(|who| who.exp),
                room,
            })
        })()
        .map_err(|e| (e, "")),
        ("events", _) => Err(allow("GET")),
        ("ws", _) if !context.websocket => Err((
            ApiError {
                status: Status::NOT_FOUND,
                message: "WebSocket is off on this server (--no-websocket): \
                          use /events or /messages",
            },
            "",
        )),
        ("ws", Method::Get) => {
            return socket(
                request,
                room,
                (signed, who.as_ref().map(|w| w.exp)),
                context,
            );
        }
        ("ws", _) => Err(allow("GET")),
        _ => Err((not_found, "")),
    };
    match result {
        Ok(action) => action,
        Err((error, "")) => fail(error, Also::Nothing),
        Err((error, methods)) => fail(error, Also::Allow(methods)),
    }
}

/// `GET /rooms/{room}/ws`: the opening handshake judged (RFC 6455 §4.2.1), then what any
/// stream is judged on. A page from another site may not open it (cross-site WebSocket
/// hijacking: the browser sends the victim's cookies and any origin's page could read the
/// room): its `Origin` must be this server's own or `--cors-origin`. A client with no
/// `Origin` is not a browser, and proves nothing by leaving it out, so it may.
fn socket(
    request: &Request,
    room: String,
    (signed, expires): (Option<&str>, Option<u64>),
    context: &Context,
) -> Action {
    let close = !request.keep_alive;
    let refuse = |status: Status, message: &str, also: Also| {
        let bytes = context.replies.error(status, message, also, false);
        reply(Response::Owned(bytes), close)
    };
    let Some(upgrade) = request.upgrade.as_deref().filter(|u| u.connection) else {
        let message = "this is a WebSocket endpoint: send Upgrade: websocket and \
                       Connection: Upgrade (or use /events for Server-Sent Events)";
        return refuse(Status::UPGRADE_REQUIRED, message, Also::Upgrade);
    };
    let accept = match ws::accept(upgrade.key.as_deref(), upgrade.version.as_deref()) {
        Ok(accept) => accept,
        Err(ws::Refusal::Version) => {
            let message = "Sec-WebSocket-Version: only 13 is spoken here";
            return refuse(Status::UPGRADE_REQUIRED, message, Also::Upgrade);
        }
        Err(ws::Refusal::Key) => {
            let message = "Sec-WebSocket-Key: 16 bytes in base64 are required";
            return refuse(Status::BAD_REQUEST, message, Also::Nothing);
        }
    };
    if let Some(origin) = upgrade.origin.as_deref() {
        let own = upgrade.host.as_deref().is_some_and(|host| {
            ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host))
        });
        if !own && context.cors_origin != Some(origin) {
            let message = "Origin: a page from another site may not open this WebSocket \
                           (only this server's own pages, or --cors-origin's)";
            return refuse(Status::FORBIDDEN, message, Also::Nothing);
        }
    }
    let query = request.query.as_deref();
    let asked = (|| {
        Ok(Action::Socket {
            since: api::resume_position(query, None)?,
            name: api::presence_name(query, signed)?,
            expires,
            accept,
            room,
        })
    })();
    asked.unwrap_or_else(|error: ApiError| refuse(error.status, error.message, Also::Nothing))
}

/// With tokens on, who sent `request` into `room`: `Ok(None)` when tokens are off, the
/// refusal (401 or 403, spelled by `replies`) when the token is missing, bad, or does not grant
/// the room. The token comes from `Authorization: Bearer`, or from `?token=` for clients
/// that cannot set headers (EventSource).
fn authenticate(
    request: &Request,
    room: &str,
    context: &Context,
    replies: &Replies,
) -> Result<Option<Identity>, Action> {
    let Some(auth) = context.auth else {
        return Ok(None);
    };
    let from_query;
    let presented = match &request.bearer {
        Some(token) => token.as_str(),
        None => {
            from_query = api::query_param(request.query.as_deref(), "token")
                .ok()
                .flatten()
                .unwrap_or_default();
            from_query.as_str()
        }
    };
    let close = !request.keep_alive;
    let head_only = request.method == Method::Head;
    let deny = |status: Status, challenge: &str, message: &str, denial: Denial| {
        let also = Also::Challenge(challenge);
        let bytes = replies.error(status, message, also, head_only);
        Action::Denied {
            response: Response::Owned(bytes),
            close,
            denial,
        }
    };
    match token::verify(presented, auth.secret, auth.now) {
        Ok(who) if who.may_enter(room, auth.private_prefix) => Ok(Some(who)),
        Ok(_) => Err(deny(
            Status::FORBIDDEN,
            r#"Bearer realm="comet-chat", error="insufficient_scope""#,
            "token: it does not grant this room (its rooms claim)",
            Denial::Forbidden,
        )),
        Err(Refusal::Missing) => Err(deny(
            Status::UNAUTHORIZED,
            r#"Bearer realm="comet-chat""#,
            Refusal::Missing.message(),
            Denial::Unauthorized,
        )),
        Err(refusal) => Err(deny(
            Status::UNAUTHORIZED,
            r#"Bearer realm="comet-chat", error="invalid_token""#,
            refusal.message(),
            Denial::Unauthorized,
        )),
    }
}

/// A refused classic post, in the classic format `{"error":"<sentence>"}` (no CORS: the
/// classic protocol is same-origin). The room API calls the text `text`; here the field is
/// `message`, and the sentence should name what the client sent.
fn classic_refusal(refused: ApiError, close: bool) -> Action {
    let sentence = match refused.message.strip_prefix("text: ") {
        Some(rest) => format!("message: {rest}"),
        None => refused.message.to_owned(),
    };
    let bytes = answer::error(refused.status, &[], &sentence, false);
    reply(Response::Owned(bytes), close)
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
        let assets = Assets::empty();
        let context = Context {
            assets: &assets,
            max_message_bytes: 4096,
            replies: &Replies::new(Some("https://example.org")),
            auth: None,
            websocket: true,
            cors_origin: Some("https://example.org"),
        };
        route(&req, &raw.as_bytes()[req.body.clone()], &context)
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
            Action::Stats { head_only: false }
        ));
        assert!(matches!(
            route_raw("HEAD /stats HTTP/1.1\r\n\r\n"),
            Action::Stats { head_only: true }
        ));
        match route_raw("POST /chat HTTP/1.1\r\nContent-Length: 14\r\n\r\nmessage=a+b%21") {
            Action::Broadcast { from, message } => {
                assert_eq!((from.as_str(), message.as_str()), (api::ANONYMOUS, "a b!"))
            }
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
