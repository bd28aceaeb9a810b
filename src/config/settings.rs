//! [`Config`]: every setting the rest of the crate reads, with the defaults a newcomer gets
//! from `cargo run`. Tests build one directly with short timeouts; the binary gets one
//! from the command line (`parse.rs`).

use crate::backplane::url::RedisUrl;
use crate::http::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen. Port 0 picks a free port (tests read it back from the server).
    pub addr: SocketAddr,
    /// Where the page comes from: built in (the default), a directory, or nowhere.
    pub www: Www,
    /// `--admin-addr`: a second listener for `/metrics` and the `/loop` X-ray, never the
    /// public one. `None`: no admin listener, and nothing of it runs.
    pub admin_addr: Option<SocketAddr>,
    /// How long `GET /chat` waits for a message before answering `{"error":"timeout"}`.
    pub poll_timeout: Duration,
    /// Caps on what one request may make us buffer.
    pub limits: Limits,
    /// Listen backlog asked of the kernel (which caps it at net.core.somaxconn). Deep,
    /// because a burst of thousands of browsers reconnecting must not overflow the accept
    /// queue: an overflowed SYN waits a full second for the client's retransmit.
    pub listen_backlog: i32,
    /// A client must send a whole request (head and body) within this long of its first
    /// byte, or it is answered 408 and closed: the slowloris defence.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long.
    /// Also reaps clients that vanished without a FIN once their poll has been answered.
    pub idle_timeout: Duration,
    /// A response the client does not take within this long is abandoned and the
    /// connection dropped, so a stalled reader costs nothing beyond its one response.
    pub write_timeout: Duration,
    /// Most connections held at once; past it a new connection is answered 503 and closed.
    /// `None`: the open-files limit less [`RESERVED_DESCRIPTORS`].
    pub max_conns: Option<usize>,
    /// On SIGINT/SIGTERM, how long pending polls and responses get to flush before exit.
    pub shutdown_grace: Duration,
    /// Whether `run` installs SIGINT/SIGTERM handlers. The binary does; embedders and
    /// in-process tests, which share the process, do not.
    pub handle_signals: bool,
    /// Soft open-files limit to set before start-up (`main` only); `None` raises it to the
    /// hard limit. Lowering it is how tests provoke descriptor exhaustion.
    pub open_files: Option<u64>,
    /// Messages each room keeps for clients that resume (`--history`).
    pub history_messages: usize,
    /// Bytes of encoded messages each room keeps, at most (`--history-bytes`).
    pub history_bytes: usize,
    /// Rooms that may exist at once; past it, a new room name is refused with 507.
    pub max_rooms: usize,
    /// Longest message text in bytes (`--max-message`); past it, 413.
    pub max_message_bytes: usize,
    /// `Access-Control-Allow-Origin` for the room API, if cross-origin pages may use it.
    pub cors_origin: Option<String>,
    /// A name stays present this long after its last poll, on top of the poll timeout.
    pub presence_grace: Duration,
    /// Names present in one room at most (`--max-names-per-room`); past it, a request
    /// with a new name is refused with 507. Bounds what one room's presence costs.
    pub max_names_per_room: usize,
    /// Names one client address may have present at once, over all rooms
    /// (`--max-names-per-client`); past it, a new name is refused with 429.
    pub max_names_per_client: usize,
    /// Rooms one client address may give their first message (`--max-rooms-per-client`):
    /// a room with a message keeps its place in `--max-rooms` for good, so without this one
    /// client could take every place. Past it, such a post is refused with 429; 0 turns it
    /// off. Not applied with tokens, whose site vouches for its users.
    pub max_rooms_per_client: usize,
    /// How often an idle event stream gets a comment line, so proxies keep it open.
    pub heartbeat: Duration,
    /// Log verbosity for `main`; the library itself only calls `log`.
    pub log_level: log::LevelFilter,
    /// `--redis`: rooms, history, positions, idempotency keys and presence live in this
    /// Redis, shared by every process pointed at it; given more than once, each is a shard
    /// and every room lives on one of them (`crate::backplane::shards`), in this order on
    /// every node. Empty: all in this process's memory, and no Redis code runs.
    pub redis: Vec<RedisUrl>,
    /// `--redis-replicas`: a post is confirmed only once this many of Redis's replicas
    /// hold it (`WAIT`), so that a failover cannot take it back; 0: once the master
    /// does, as Redis replicates after answering.
    pub redis_replicas: u32,
    /// `--workers`: worker processes on one port (`main` only; needs `redis`).
    pub workers: usize,
    /// `--token-secret-file`: every room request needs an HS256 token signed with this.
    /// `None`: anyone may post as anyone and read any room (the demo, benchmarks).
    pub token_secret: Option<std::sync::Arc<crate::token::Secret>>,
    /// `--private-rooms`: rooms whose name starts with this are granted only by name,
    /// never by a token's `*`.
    pub private_rooms: Option<String>,
    /// `--post-rate`: posts one client may make per second, on average.
    pub post_rate: usize,
    /// `--post-burst`: posts one client may make at once before the rate applies.
    pub post_burst: usize,
    /// `--typing-interval`: one typing event per client per this long.
    pub typing_interval: Duration,
    /// `--max-conns-per-client`: connections one client address may hold at once; past
    /// it, 503 at accept. 0: unlimited (load benchmarks, whose clients share addresses).
    pub max_conns_per_client: usize,
    /// `--trusted-proxy`: peers in these networks may say who the client is (see
    /// [`crate::proxy`]); every per-client limit then counts that client. Empty: nobody's
    /// word is taken, every client is the address it connects from.
    pub trusted_proxies: crate::proxy::Trusted,
    /// `--proxy-protocol`: a trusted peer starts each connection with a PROXY header
    /// (v1 or v2), which names the client for the whole connection; its requests'
    /// `X-Forwarded-For` is then not read. A trusted peer that sends none is closed.
    pub proxy_protocol: bool,
    /// WebSocket is on (`GET /rooms/{room}/ws`); `--no-websocket` turns it off, for sites
    /// whose proxy drops upgrades (the endpoint then answers 404, so a client falls back).
    pub websocket: bool,
    /// Which worker this process is (1 to `workers`), set only in a process the supervisor
    /// started, never by a flag. A worker binds with SO_REUSEPORT, so that its siblings can
    /// bind the same port, and says in `/stats` which worker answered.
    pub worker: Option<usize>,
}

/// Where the static page comes from. Chosen once at start-up; the event loop only ever
/// sees the files in memory (`assets.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Www {
    /// The files of `www/` built into the binary (`build.rs`), so that the binary alone,
    /// copied anywhere, serves the page. The default.
    BuiltIn,
    /// `--www DIR`: the files of DIR, read once at start-up (restart to pick up changes).
    Dir(PathBuf),
    /// `--no-www`: no page, only the API.
    Off,
}

impl std::fmt::Display for Www {
    /// As the start-up log line says it: `built in`, the directory, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Www::BuiltIn => f.write_str("built in"),
            Www::Dir(dir) => write!(f, "{}", dir.display()),
            Www::Off => f.write_str("none"),
        }
    }
}

/// Descriptors kept back from `max_conns` for everything that is not a client: stdio, the
/// epoll instance, listener, waker, signal pipe, and the spare kept for EMFILE.
pub const RESERVED_DESCRIPTORS: u64 = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www: Www::BuiltIn,
            admin_addr: None,
            poll_timeout: Duration::from_secs(20),
            limits: Limits::default(),
            listen_backlog: 65_535,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_conns: None,
            shutdown_grace: Duration::from_secs(5),
            handle_signals: false,
            open_files: None,
            history_messages: 1000,
            history_bytes: 1 << 20,
            max_rooms: 1000,
            max_message_bytes: 4096,
            cors_origin: None,
            presence_grace: Duration::from_secs(5),
            max_names_per_room: 1000,
            max_names_per_client: 32,
            max_rooms_per_client: 64,
            heartbeat: Duration::from_secs(15),
            log_level: log::LevelFilter::Info,
            redis: Vec::new(),
            redis_replicas: 0,
            workers: 1,
            token_secret: None,
            private_rooms: None,
            post_rate: 10,
            post_burst: 20,
            typing_interval: Duration::from_secs(1),
            max_conns_per_client: 256,
            trusted_proxies: crate::proxy::Trusted::default(),
            proxy_protocol: false,
            websocket: true,
            worker: None,
        }
    }
}
