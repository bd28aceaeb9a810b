//! The rules between flags, checked once the whole command line is read: a flag alone can
//! be fine and still make no sense beside another (`--max-message` past `--max-body`,
//! `--workers 2` without `--redis`, an `--admin-addr` port range over `--addr`). They live
//! here rather than in the flag table, which knows one flag at a time, and run after every
//! flag so that the order flags are typed in never changes the answer. Each refusal names
//! the flag at fault and what to type instead, because it stops start-up.

use super::settings::{Config, Www};
use std::net::SocketAddr;

/// Which flags were typed rather than left at their default: two rules answer differently
/// for a default nobody chose.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Typed {
    /// `--max-message` was typed: past `--max-body` it is an error, not lowered to fit.
    pub(super) max_message: bool,
}

/// The rules between flags, applied once every flag is read, so that their order on the
/// command line does not matter. Lowers an untyped `--max-message` to `--max-body`; every
/// other rule refuses, naming the flag at fault and the way out.
pub(super) fn between_flags(config: &mut Config, typed: Typed) -> Result<(), String> {
    let body_bytes = config.limits.body_bytes;
    let max_message = config.max_message_bytes;
    if !typed.max_message {
        // Only the default: a small --max-body should not fail over a flag nobody typed.
        config.max_message_bytes = max_message.min(body_bytes);
    } else if max_message > body_bytes {
        return Err(format!(
            "--max-message: {max_message} is more than --max-body ({body_bytes}); \
             a text travels in the body, so it must fit"
        ));
    }
    if config.private_rooms.is_some() && config.token_secret.is_none() {
        return Err(
            "--private-rooms: private rooms need --token-secret-file: without a \
                    secret there are no tokens, so anyone could read and post in them"
                .to_owned(),
        );
    }
    if let Some(admin) = config.admin_addr {
        check_admin_ports(admin, config.addr, config.workers)?;
    }
    if let Www::Dir(dir) = &config.www {
        if let Err(e) = std::fs::read_dir(dir) {
            return Err(format!(
                "--www: cannot read the directory {} ({e}); give --www the page's directory, \
                 leave it out to serve the page built into the binary, or --no-www to serve \
                 only the API",
                dir.display()
            ));
        }
    }
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        return Err(
            "--proxy-protocol: no --trusted-proxy is given, so no peer may send a \
                    PROXY header; name the proxies' addresses with --trusted-proxy"
                .to_owned(),
        );
    }
    let backplane_cap = crate::backplane::MESSAGE_BYTES_MAX;
    if !config.redis.is_empty() && config.max_message_bytes > backplane_cap {
        return Err(format!(
            "--max-message: {} is more than {backplane_cap} with --redis: every message is \
             announced to every node through Redis's pub/sub, whose output limit (by default \
             32 MB at once, 8 MB for a minute) would cut every node's subscription",
            config.max_message_bytes
        ));
    }
    for (i, shard) in config.redis.iter().enumerate() {
        if config.redis[..i]
            .iter()
            .any(|before| before.at == shard.at && before.db == shard.db)
        {
            return Err(format!(
                "--redis: {} is given twice; each --redis is a shard of its own, and one Redis \
                 cannot hold two shards' rooms apart",
                shard.shown
            ));
        }
    }
    if config.redis_replicas > 0 && config.redis.is_empty() {
        return Err(format!(
            "--redis-replicas: {} replicas of what? It waits for Redis's replicas to hold \
             each post, so it needs --redis",
            config.redis_replicas
        ));
    }
    if config.workers > 1 && config.redis.is_empty() {
        return Err(format!(
            "--workers: {} workers need --redis: each worker is its own process with its own \
             rooms, so without a shared Redis a message posted to one would never reach \
             clients of another",
            config.workers
        ));
    }
    Ok(())
}

/// The admin port of worker `worker` (counted from 1) of `--workers`: `--admin-addr`'s
/// port plus `worker - 1`, so that every worker's figures can be scraped; `None` past
/// 65535. Start-up checks the last worker's against `--addr` and 65535; each worker binds
/// its own.
pub fn worker_admin_port(port: u16, worker: usize) -> Option<u16> {
    u16::try_from(worker.checked_sub(1)?)
        .ok()
        .and_then(|offset| port.checked_add(offset))
}

/// `--admin-addr` against `--addr`: with `--workers N` worker i takes the admin port + i - 1
/// (`server::setup`), so every one of those ports must exist and none may be `--addr`'s, or
/// a worker would fail to bind after the others had started.
fn check_admin_ports(admin: SocketAddr, addr: SocketAddr, workers: usize) -> Result<(), String> {
    if admin.port() == 0 {
        // Each worker takes a free port of its own and logs it.
        return Ok(());
    }
    let Some(last) = worker_admin_port(admin.port(), workers) else {
        return Err(format!(
            "--admin-addr: worker {workers} would listen on port {} + {workers} - 1, past \
             65535; give --admin-addr a lower port",
            admin.port()
        ));
    };
    // A wildcard address holds the port on every address of its family, so it meets them.
    let wildcard = admin.ip().is_unspecified() || addr.ip().is_unspecified();
    let same_host = admin.ip() == addr.ip() || (wildcard && admin.is_ipv4() == addr.is_ipv4());
    if !same_host || !(admin.port()..=last).contains(&addr.port()) {
        return Ok(());
    }
    if workers == 1 {
        return Err(format!(
            "--admin-addr: {admin} is --addr too; the admin listener needs an address \
             of its own (keep it private, e.g. 127.0.0.1:9080)"
        ));
    }
    let worker = addr.port() - admin.port() + 1;
    Err(format!(
        "--admin-addr: worker {worker} would listen for admin on port {}, which is --addr's \
         ({addr}); with --workers {workers} the admin ports are {}..={last}, so give \
         --admin-addr a port outside --addr's",
        addr.port(),
        admin.port()
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::parse::run;

    /// `--trusted-proxy` adds up; a PROXY header needs someone trusted to send it.
    #[test]
    fn trusted_proxies_are_repeatable_and_checked() {
        let config = run(&["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy=::1"]).unwrap();
        assert!(config.trusted_proxies.contains([10, 9, 9, 9].into()));
        assert!(config
            .trusted_proxies
            .contains(std::net::Ipv6Addr::LOCALHOST.into()));
        assert!(!config.proxy_protocol);
        let err = run(&["--trusted-proxy", "10.0.0.1/8"]).unwrap_err();
        assert!(
            err.starts_with("--trusted-proxy: ") && err.contains("10.0.0.0/8"),
            "{err}"
        );
        let err = run(&["--trusted-proxy", "nginx"]).unwrap_err();
        assert!(
            err.starts_with("--trusted-proxy: 'nginx' is not an address"),
            "{err}"
        );
        let err = run(&["--proxy-protocol"]).unwrap_err();
        assert!(
            err.starts_with("--proxy-protocol: ") && err.contains("--trusted-proxy"),
            "{err}"
        );
    }
    /// `--redis` adds a shard each time, in order; the same Redis twice, or more shards
    /// than the cap, is refused at start-up.
    #[test]
    fn redis_shards_are_repeatable_and_checked() {
        let (a, b) = ("redis://127.0.0.1:7001", "redis://127.0.0.1:7002");
        let config = run(&[
            "--redis",
            a,
            "--redis",
            b,
            "--redis",
            "redis://127.0.0.1:7001/1",
        ])
        .unwrap();
        let shown: Vec<&str> = config.redis.iter().map(|r| r.shown.as_str()).collect();
        assert_eq!(shown, [a, b, "redis://127.0.0.1:7001/1"]);
        let err = run(&["--redis", a, "--redis", b, "--redis", a]).unwrap_err();
        assert!(
            err.starts_with("--redis: ") && err.contains("given twice"),
            "{err}"
        );
        let ports: Vec<String> = (0..=crate::backplane::shards::SHARDS_MAX)
            .map(|i| format!("redis://127.0.0.1:{}", 7000 + i))
            .collect();
        let args: Vec<&str> = ports.iter().flat_map(|url| ["--redis", url]).collect();
        let err = run(&args).unwrap_err();
        assert!(
            err.starts_with("--redis: ") && err.contains("at most 32 shards"),
            "{err}"
        );
        assert!(run(&args[2..]).is_ok(), "32 shards are allowed");
    }

    /// With `--workers N` worker i listens for admin on port + i - 1: a range that runs
    /// past 65535 or over `--addr` is refused at start-up, not by a worker failing to bind.
    #[test]
    fn worker_admin_ports_must_fit_and_miss_addr() {
        let workers = ["--workers", "3", "--redis", "redis://127.0.0.1:6379"];
        let with = |extra: &[&'static str]| {
            let mut args = workers.to_vec();
            args.extend_from_slice(extra);
            run(&args)
        };
        let err =
            with(&["--addr", "127.0.0.1:9082", "--admin-addr", "127.0.0.1:9080"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("worker 3") && err.contains("--addr"),
            "{err}"
        );
        let err = with(&["--addr", "127.0.0.1:9081", "--admin-addr", "0.0.0.0:9080"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("worker 2"),
            "{err}"
        );
        let err = with(&["--admin-addr", "127.0.0.1:65534"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("65535"),
            "{err}"
        );
        with(&["--addr", "127.0.0.1:9083", "--admin-addr", "127.0.0.1:9080"]).unwrap();
        with(&["--addr", "127.0.0.2:9081", "--admin-addr", "127.0.0.1:9080"]).unwrap();
        with(&["--admin-addr", "127.0.0.1:65533"]).unwrap();
        with(&["--admin-addr", "127.0.0.1:0"]).unwrap();
    }
}
