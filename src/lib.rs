//! # comet-chat
//!
//! The classic Comet chat (an Erlang/mochiweb design from 2008) rebuilt on one
//! single-threaded `mio` event loop: `GET /chat` waits until someone posts or the poll
//! timeout passes; `POST /chat` (`message=...`) answers every waiting poll at once, with one
//! response encoded once and written to each of them.
//!
//! Beside it, a protocol that loses nothing (`docs/PROTOCOL.md`): rooms, message ids with
//! an epoch, resume from any position, idempotent posts, typing, presence, and an SSE
//! stream, all on the same loop and the same write-once broadcast.
//!
//! ## What it deliberately is not
//!
//! Not async (no runtime, no futures), not multi-threaded, not an HTTP framework: it speaks
//! just enough HTTP/1.1 to serve its page and its API correctly, and refuses the rest with a
//! clear status. Without `--redis` everything is in memory, and a restart forgets the chat.
//!
//! ## A tour, in reading order
//!
//! - [`server`] — the shell: the poll loop, sleep → dispatch → ready → expire → reap →
//!   exit?. Start here; each of its jobs has a file under `src/server/` (setup, accept,
//!   proxied, io, effects, budget, timers, shutdown, handle, redis, admin, heartbeat). It
//!   gives the chat its inputs and carries out its effects in one place,
//!   `Server::carry_out()`.
//! - [`chat`] — the core, sans-I/O: every decision about rooms, messages and the clients
//!   waiting for them, with no socket, clock or Redis connection. Inputs in
//!   (`Chat::request()`, `Chat::left()`, `Chat::poll_timed_out()`, `Chat::redis()`, …),
//!   `Effect`s out. Its files: `state` (the `Chat` and its inputs), `requests`
//!   (each request: limits, names, room caps), `fanout` (store once, deliver to every
//!   waiter, presence), `store` (the one place that asks whether rooms live here or in
//!   Redis), `shared` (`--redis`: requests that wait for Redis), `copies` (rooms' copies
//!   kept true to Redis's), `pending` (what is on its way to Redis), `effect`, `asked`,
//!   `rooms` (rooms by name, up to a cap).
//! - [`conn`] — one client: socket, buffers, and its state (Reading / Parked / Streaming /
//!   Writing / Lingering / Closed), changed only by its own methods.
//! - [`outgoing`] — the bytes owed to a client: one buffer, or shared pieces (`writev`).
//! - [`http`] — bytes → requests on top of httparse; caps on every buffer.
//! - [`routes`] — a parsed request → an action (reply, park, post, stream, …).
//! - [`api`] — every way into a room (room API and classic posts): names, texts, positions,
//!   bodies, validated by one set of rules.
//! - [`ws`] — WebSocket (RFC 6455) bytes ↔ frames ↔ messages, handshake key; no socket.
//! - [`answer`] — every HTTP response, spelled in one place; [`sse`] — every SSE frame;
//!   [`websocket`] — every frame the chat writes over WebSocket (the same events, and acks).
//! - [`recency`] — which room was unused longest, to give way at the cap.
//! - [`room`] — one room: its message history (shared, never copied), positions.
//! - [`waitlist`] — the lists of connections waiting in a room.
//! - [`presence`] — who is in a room by name, and when each name leaves.
//! - [`event`] — typing, join and leave: ephemeral, never stored.
//! - [`clients`] — what each client address holds, for limits per client.
//! - [`proxy`] — who the client is behind a trusted reverse proxy: `X-Forwarded-For`, the
//!   PROXY protocol, the networks trusted to send them.
//! - [`limits`] — how fast each client may post and type (token buckets).
//! - [`token`] — signed identities (`--token-secret-file`): HS256 tokens checked and made.
//! - [`position`] — `<epoch>-<seq>` positions that make resuming stateless.
//! - [`timer`] — the hashed timer wheel, pure arithmetic over ticks.
//! - [`assets`] — the page, built into the binary by `build.rs` (or `--www DIR`, read once
//!   at start-up), served from memory.
//! - [`metrics`] — what the loop records about itself; [`admin`] — what `--admin-addr`
//!   says with it: Prometheus `/metrics` and the `/loop` X-ray.
//! - [`stats`], [`sys`], [`random`], [`config`] — small helpers each owning one thing.
//! - [`supervisor`] — `--workers N`: N processes of this same loop on one port, and the
//!   process that starts, restarts and stops them.
//!
//! `docs/ARCHITECTURE.md` walks a post to every waiting poll and a poll's timeout hop by
//! hop through these functions, then a long poll, an event stream and a post through
//! Redis; a test keeps every name it cites pointing at real code.

#![deny(missing_docs)]

pub mod admin;
pub mod answer;
pub mod api;
pub mod assets;
pub mod backplane;
pub mod chat;
pub mod clients;
pub mod config;
pub mod conn;
pub mod event;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod outgoing;
pub mod position;
pub mod presence;
pub mod proxy;
pub mod random;
pub mod recency;
pub mod room;
pub mod routes;
pub mod server;
pub mod sse;
pub mod stats;
pub mod supervisor;
pub mod sys;
pub mod timer;
pub mod token;
pub mod waitlist;
pub mod websocket;
pub mod ws;

pub use config::Config;
pub use server::handle::{spawn, Running, ServerHandle};
pub use server::{Flow, Server};
