//! Building a server: binding the listener, loading the page, registering the waker and the
//! signal pipe, and working out the connection cap from the open-files limit. Nothing runs
//! until `Server::run`.

use super::accept::Accepting;
use super::admin;
use super::io::Line;
use super::redis::RedisLink;
use super::shutdown::Control;
use super::timers::Timers;
use super::{accept, io, redis, Server, EVENTS_PER_POLL, LISTENER, SIGNALS, WAKER};
use crate::answer;
use crate::assets::Assets;
use crate::backplane::{link_caps, Backplane, Place};
use crate::chat::Chat;
use crate::config::{Config, Www, RESERVED_DESCRIPTORS};
use crate::metrics::LoopMetrics;
use crate::random::Random;
use crate::stats::Stats;
use crate::sys;
use crate::timer::TimerWheel;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

impl Server {
    /// Binds the listening socket and loads the static files. Nothing runs until [`run`].
    ///
    /// [`run`]: Server::run
    pub fn bind(config: Config) -> std::io::Result<Server> {
        let assets = match &config.www {
            Www::BuiltIn => Assets::built_in(),
            Www::Dir(dir) => Assets::load(dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "--www: cannot read {}: {e} (or --no-www to serve only the API)",
                        dir.display()
                    ),
                )
            })?,
            Www::Off => Assets::empty(),
        };
        let mut listener =
            accept::listen(config.addr, config.listen_backlog, config.worker.is_some())
                .map_err(|e| flag_error("--addr", e))?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let admin = match admin_addr(&config)? {
            Some(addr) => {
                let mut admin =
                    admin::Admin::bind(addr).map_err(|e| flag_error("--admin-addr", e))?;
                admin.register(poll.registry())?;
                Some(admin)
            }
            None => None,
        };
        let signals = if config.handle_signals {
            let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            Some(signals)
        } else {
            None
        };
        let stats = Arc::new(Stats::default());
        let (soft_limit, _) = sys::open_files_limit()?;
        let max_conns = config
            .max_conns
            .unwrap_or_else(|| soft_limit.saturating_sub(RESERVED_DESCRIPTORS).max(1) as usize);
        stats.open_files_limit.store(soft_limit, Ordering::Relaxed);
        stats.max_conns.store(max_conns as u64, Ordering::Relaxed);
        stats.rooms.store(1, Ordering::Relaxed);
        let shards = config.redis.len();
        let redis: Vec<RedisLink> = (config.redis.iter().enumerate())
            .map(|(shard, url)| {
                let (caps, place) = (link_caps(&config), Place { shard, shards });
                let replicas = config.redis_replicas;
                let backplane = Backplane::new(url.clone(), caps, replicas, redis::tokens(shard));
                RedisLink::new(backplane.with_place(place))
            })
            .collect();
        let shared = !redis.is_empty();
        let chat = Chat::new(&config, Arc::clone(&stats), Random::from_clock());
        let mut server = Server {
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            accepting: Accepting {
                listener: Some(listener),
                local_addr,
                max_conns,
                spare_descriptor: accept::open_spare_descriptor(),
                out_of_descriptors: false,
                refusal: answer::refusal(),
                refusal_per_client: answer::refusal_per_client(),
                more: false,
                taken: (0, 0),
            },
            conns: Slab::new(),
            next_generation: 1,
            line: Line::default(),
            read_chunk: vec![0; io::READ_CHUNK_BYTES].into_boxed_slice(),
            timers: Timers {
                wheel: TimerWheel::new(),
                started: Instant::now(),
                fired: Vec::new(),
                deadlines: Default::default(),
            },
            chat,
            assets,
            config,
            stats,
            metrics: LoopMetrics::default(),
            control: Control {
                stop: Arc::new(AtomicBool::new(false)),
                drain: Arc::new(AtomicBool::new(false)),
                waker,
                signals,
                supervisor: None,
                draining: false,
                grace_over: false,
                told_up_to: None,
            },
            admin,
            redis,
            sockets: Default::default(),
        };
        if shared {
            server.show_shards();
            server.connect_every_shard();
        }
        Ok(server)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.accepting.local_addr
    }

    /// With `--admin-addr`: where the admin listener listens (port 0 becomes a real port).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(admin::Admin::addr)
    }

    /// The connection cap in force.
    pub fn max_conns(&self) -> usize {
        self.accepting.max_conns
    }

    /// Number of files of the page served (built in, or read from `--www DIR`).
    pub fn asset_count(&self) -> usize {
        self.assets.len()
    }
}

/// A start-up error that names the flag whose value caused it: with two listeners, "cannot
/// listen on ADDR" alone does not say which one to change.
fn flag_error(flag: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{flag}: {e}"))
}

/// Where the admin listener goes: `--admin-addr`, and for worker `i` of `--workers` its
/// port plus `i - 1`, so that every worker's figures can be scraped (port 0 stays 0: each
/// worker then takes a free port and logs it).
fn admin_addr(config: &Config) -> std::io::Result<Option<SocketAddr>> {
    let Some(mut addr) = config.admin_addr else {
        return Ok(None);
    };
    if let (Some(worker), port) = (config.worker, addr.port()) {
        if port != 0 {
            let port = crate::config::worker_admin_port(port, worker).ok_or_else(|| {
                std::io::Error::other(format!(
                    "--admin-addr: port {port} + worker {worker} - 1 is past 65535"
                ))
            })?;
            addr.set_port(port);
        }
    }
    Ok(Some(addr))
}
