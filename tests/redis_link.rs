//! The link to Redis when something is wrong with it: a `--redis` URL that cannot work, a
//! peer at the `--redis` address that answers what Redis never would (a wrong port, a
//! proxy, a bug), and a Redis that forgot its scripts. Each must cost a refusal at start-up
//! or a reconnect, never the node. The fake peers here are small threads of this test:
//! the point is a misbehaving peer; everything else runs on a real redis-server.

mod common;

use common::redis::RedisServer;
use common::*;
use std::time::Duration;

#[test]
fn a_bad_redis_url_is_refused_without_printing_its_password() {
    for url in [
        "redis://ann:SECRET@bad-host.invalid:6379",
        "redis://ann:SECRET@127.0.0.1:notaport",
        "redis://ann:SECRET@127.0.0.1:99999",
        "redis://ann:SECRET@127.0.0.1:6379/x",
        "redis://ann:SECRET%FF@127.0.0.1:6379",
        "redis://:SECRET@127.0.0.1:6379?x",
        "redis://SECRET@[::1",
        "rediss://ann:SECRET@127.0.0.1:6379",
    ] {
        let (status, stderr) = run_to_exit(&["--no-www", "--redis", url], Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{url}: the server should refuse to start"));
        assert_eq!(status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("--redis"),
            "{url}: says which flag: {stderr}"
        );
        assert!(
            !stderr.contains("SECRET"),
            "{url}: printed the password: {stderr}"
        );
    }
}
