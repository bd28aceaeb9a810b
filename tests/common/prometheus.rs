//! A real Prometheus for a test (Debian's `prometheus` package, which also brings
//! `promtool`; `tests/run-all.sh` installs it): its own free port, its own storage
//! directory and a scrape config pointed at our admin listener, started and stopped by its
//! PID. Never a mock: what it scrapes and parses is what any operator's would.

use crate::common::{free_port, scratch_dir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus, stopped (and its directory removed) when dropped.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

/// The first of `names` that runs, or a message saying how to install it.
pub fn binary(names: &[&'static str]) -> &'static str {
    names
        .iter()
        .copied()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: apt-get install prometheus (tests/run-all.sh does)",
                names[0]
            )
        })
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second.
    pub fn scraping(target: SocketAddr) -> Prometheus {
        let port = free_port();
        let dir = scratch_dir("prometheus", port);
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: comet-chat\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new(binary(&["/usr/bin/prometheus", "prometheus"]))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, port, dir };
        let started = Instant::now();
        while prometheus.get("/-/ready").map(|(status, _)| status) != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus did not get ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// A GET on its HTTP API: the status and the body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        let status = reply.get(9..12)?.parse().ok()?;
        let body = reply.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// The value of an instant query's first sample, once there is one.
    pub fn query(&self, expression: &str) -> Option<f64> {
        let encoded: String = expression
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = self.get(&format!("/api/v1/query?query={encoded}"))?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
