//! More clients than one process may hold: a fleet of load-generator children, each this
//! benchmark's own binary in the hidden `--generator` mode running one [`Pool`] under its
//! own open-files cap, driven by the parent over its stdin and stdout:
//!
//! ```text
//!   parent → generator             generator → parent
//!   open <k> <ms left> <port>      opened <ok> <failed> <first error or ->
//!   arm <token> <ms left>          armed; then, once every client has its answer:
//!                                  got <errors> / a line of arrival times (CLOCK_MONOTONIC
//!                                  ns) / the first error or -
//!   repoll                         sent <failed>
//!   churn <ms>                     churned <timeouts> <other> <failed> <open> <first error>
//!   close                          closed
//!   (stdin closes)                 exits
//! ```
//!
//! Every generator is told the same thing at once and answers in turn, so the clients of
//! all of them connect, wait and read in parallel, on whatever CPU the scheduler gives
//! them. Arrival times travel as CLOCK_MONOTONIC nanoseconds, the clock `Instant` reads,
//! so the parent can set them against the instant it posted. Each generator has its own
//! run of source addresses (reserved from the run's [`Sources`]), so ports never run out,
//! and is killed by its PID when the fleet is dropped (or by the kernel if the benchmark
//! dies, as every child of the benchmarks is).

#![allow(dead_code)] // shared by benches/load and benches/million, each using a subset

use crate::args::FloorArgs;
use crate::child::Child;
use crate::host;
use crate::pool::{Churned, Pool, Sources};
use crate::wire;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// One generator child and its pipes.
struct Generator {
    /// Killed by its PID when dropped.
    child: Child,
    /// Commands.
    to: ChildStdin,
    /// Answers.
    from: BufReader<ChildStdout>,
    /// Clients it holds open.
    open: usize,
    /// Clients it may still add: its share of source addresses and of its open-files cap.
    room: usize,
}

/// What growing the fleet brought.
#[derive(Default)]
pub struct Grown {
    /// Clients connected (each with its poll sent).
    pub opened: usize,
    /// Clients that could not connect or send their poll.
    pub failed: usize,
    /// The first problem, for the report.
    pub first_error: Option<String>,
}

/// One broadcast as the fleet saw it.
pub struct Delivered {
    /// Arrival of each expected answer, CLOCK_MONOTONIC nanoseconds.
    pub arrivals_ns: Vec<u64>,
    /// Clients without the expected answer.
    pub errors: usize,
    /// The first problem, for the report.
    pub first_error: Option<String>,
}

/// The generators, and how new ones are made.
pub struct Fleet {
    /// In the order started.
    generators: Vec<Generator>,
    /// This binary.
    exe: PathBuf,
    /// The server's address (loopback).
    dst: SocketAddr,
    /// Clients one generator may hold.
    per_generator: usize,
    /// Message length, for the needle each generator looks for.
    message_bytes: usize,
    /// Generators exit by themselves after this long.
    budget: Duration,
}

impl Fleet {
    /// A fleet with no generators yet; each one it starts holds at most `per_generator`
    /// clients to `dst`.
    pub fn new(
        exe: &Path,
        dst: SocketAddr,
        per_generator: usize,
        message_bytes: usize,
        budget: Duration,
    ) -> Fleet {
        Fleet {
            generators: Vec::new(),
            exe: exe.to_owned(),
            dst,
            per_generator,
            message_bytes,
            budget,
        }
    }

    /// Points clients opened from now on at `dst` (a server started again elsewhere).
    pub fn retarget(&mut self, dst: SocketAddr) {
        self.dst = dst;
    }

    /// Clients open over all generators.
    pub fn open(&self) -> usize {
        self.generators.iter().map(|g| g.open).sum()
    }

    /// Generators running.
    pub fn len(&self) -> usize {
        self.generators.len()
    }

    /// Every generator's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.generators.iter().map(|g| g.child.pid()).collect()
    }

    /// Opens clients until `total` are open, filling the generators there are and
    /// starting more as needed; all of them connect at once. Each client sends `GET /chat`
    /// as soon as it connects.
    pub fn grow_to(
        &mut self,
        total: usize,
        sources: &mut Sources,
        deadline: Instant,
    ) -> Result<Grown, String> {
        let mut wanted = total.saturating_sub(self.open());
        let mut asked = Vec::new();
        for index in 0.. {
            if wanted == 0 {
                break;
            }
            if index == self.generators.len() {
                self.start_generator(sources)?;
            }
            let generator = &mut self.generators[index];
            let k = wanted.min(generator.room);
            if k == 0 {
                continue;
            }
            let port = self.dst.port();
            writeln!(generator.to, "open {k} {} {port}", ms_left(deadline)).map_err(pipe_error)?;
            generator.room -= k;
            wanted -= k;
            asked.push(index);
        }
        let mut grown = Grown::default();
        for index in asked {
            let generator = &mut self.generators[index];
            let line = read_line(&mut generator.from)?;
            let mut fields = line.splitn(4, ' ');
            let (Some("opened"), Some(Ok(ok)), Some(Ok(failed)), Some(error)) = (
                fields.next(),
                fields.next().map(str::parse::<usize>),
                fields.next().map(str::parse::<usize>),
                fields.next(),
            ) else {
                return Err(format!("generator said {line:?}"));
            };
            generator.open += ok;
            grown.opened += ok;
            grown.failed += failed;
            if error != "-" {
                grown.first_error.get_or_insert_with(|| error.to_owned());
            }
        }
        Ok(grown)
    }

    fn start_generator(&mut self, sources: &mut Sources) -> Result<(), String> {
        let mut command = Command::new(&self.exe);
        command
            .arg("--generator")
            // Named, not left to the child's defaults: a child started without `--bench`
            // parses as a smoke run, whose default is every transport at once.
            .arg("--transport")
            .arg("poll")
            .arg("--source-start")
            .arg(sources.reserve(self.per_generator).to_string())
            .arg("--per-source")
            .arg(sources.per_address().to_string())
            .arg("--message-bytes")
            .arg(self.message_bytes.to_string())
            .arg("--budget")
            .arg(self.budget.as_secs().max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Child::spawn(command, "load generator", None).map_err(|e| e.to_string())?;
        let to = child.take_stdin().ok_or("generator stdin not piped")?;
        let from = BufReader::new(child.take_stdout().ok_or("generator stdout not piped")?);
        self.generators.push(Generator {
            child,
            to,
            from,
            open: 0,
            room: self.per_generator,
        });
        Ok(())
    }

    /// Has every generator wait for the answer carrying `token`; returns once all of them
    /// are reading, so the post that follows is seen by clients already waiting.
    pub fn arm(&mut self, token: &str, deadline: Instant) -> Result<(), String> {
        let left = ms_left(deadline);
        self.each(|g| writeln!(g.to, "arm {token} {left}").map_err(pipe_error))?;
        self.each(|g| expect(&read_line(&mut g.from)?, "armed"))
    }

    /// Collects what [`arm`](Fleet::arm) asked for, from every generator.
    pub fn collect(&mut self) -> Result<Delivered, String> {
        let mut delivered = Delivered {
            arrivals_ns: Vec::with_capacity(self.open()),
            errors: 0,
            first_error: None,
        };
        self.each(|g| {
            let head = read_line(&mut g.from)?;
            let times = read_line(&mut g.from)?;
            let error = read_line(&mut g.from)?;
            let errors = head
                .strip_prefix("got ")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("generator said {head:?}"))?;
            delivered.errors += errors;
            delivered.arrivals_ns.extend(
                times
                    .split_whitespace()
                    .filter_map(|t| t.parse::<u64>().ok()),
            );
            if error != "-" {
                delivered.first_error.get_or_insert(error);
            }
            Ok(())
        })?;
        Ok(delivered)
    }

    /// Every client polls again; returns how many could not.
    pub fn repoll(&mut self) -> Result<usize, String> {
        self.each(|g| writeln!(g.to, "repoll").map_err(pipe_error))?;
        let mut failed = 0;
        self.each(|g| {
            let line = read_line(&mut g.from)?;
            failed += line
                .strip_prefix("sent ")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("generator said {line:?}"))?;
            Ok(())
        })?;
        Ok(failed)
    }

    /// Starts `for_how_long` of browsing: every answer is followed by a new poll (see
    /// [`Pool::churn`]). [`churn_finish`](Fleet::churn_finish) collects the counts.
    pub fn churn_start(&mut self, for_how_long: Duration) -> Result<(), String> {
        let ms = for_how_long.as_millis();
        self.each(|g| writeln!(g.to, "churn {ms}").map_err(pipe_error))
    }

    /// What every generator counted while churning, and the clients still open.
    pub fn churn_finish(&mut self) -> Result<(Churned, usize), String> {
        let mut total = Churned::default();
        let mut open = 0;
        self.each(|g| {
            let line = read_line(&mut g.from)?;
            let fields: Vec<&str> = line.splitn(6, ' ').collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<usize>().ok());
            let (Some(&"churned"), Some(timeouts), Some(other), Some(failed), Some(still)) =
                (fields.first(), number(1), number(2), number(3), number(4))
            else {
                return Err(format!("generator said {line:?}"));
            };
            total.timeouts += timeouts;
            total.other += other;
            total.failed += failed;
            g.open = still;
            open += still;
            if let Some(error) = fields.get(5).filter(|e| **e != "-") {
                total.first_error.get_or_insert_with(|| (*error).to_owned());
            }
            Ok(())
        })?;
        Ok((total, open))
    }

    /// Every generator resets all its clients at once (SO_LINGER 0) and keeps running,
    /// with room for as many again.
    pub fn close_all(&mut self) -> Result<(), String> {
        let per_generator = self.per_generator;
        self.each(|g| writeln!(g.to, "close").map_err(pipe_error))?;
        self.each(|g| {
            expect(&read_line(&mut g.from)?, "closed")?;
            g.open = 0;
            g.room = per_generator;
            Ok(())
        })
    }

    /// Runs `step` on every generator in turn.
    fn each(
        &mut self,
        mut step: impl FnMut(&mut Generator) -> Result<(), String>,
    ) -> Result<(), String> {
        self.generators.iter_mut().try_for_each(&mut step)
    }
}

/// Milliseconds from now until `deadline`.
fn ms_left(deadline: Instant) -> u128 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
}

fn pipe_error(e: io::Error) -> String {
    format!("load generator: {e}")
}

fn expect(line: &str, word: &str) -> Result<(), String> {
    if line == word {
        Ok(())
    } else {
        Err(format!("generator said {line:?}, not {word:?}"))
    }
}

/// One line from a generator, without its newline; EOF is an error (it died).
fn read_line(from: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match from.read_line(&mut line) {
        Ok(0) => Err("a load generator exited".into()),
        Ok(_) => Ok(line.trim_end().to_owned()),
        Err(e) => Err(format!("reading from a load generator: {e}")),
    }
}

/// The hidden `--generator` mode: one pool, driven by the commands on stdin.
pub fn generator_main(args: &FloorArgs) -> ExitCode {
    crate::floor::watchdog("load generator", args.budget);
    crate::floor::report_exit("load generator", serve(args))
}

fn serve(args: &FloorArgs) -> io::Result<()> {
    let _ = comet_chat::sys::raise_open_files_limit();
    let mut sources = Sources::starting_at(args.source_start, args.per_source);
    let mut pool = Pool::new(0)?;
    let mut out = io::stdout().lock();
    let mut line = String::new();
    let stdin = io::stdin();
    let mut commands = stdin.lock();
    loop {
        line.clear();
        if commands.read_line(&mut line)? == 0 {
            return Ok(()); // the benchmark is done with us
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> io::Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad command {line:?}")))
        };
        let in_ms = |ms: u64| Instant::now() + Duration::from_millis(ms);
        match fields.first().copied() {
            Some("open") => {
                let deadline = in_ms(number(2)?);
                let dst = SocketAddr::from(([127, 0, 0, 1], number(3)? as u16));
                let opened = pool.grow(
                    number(1)? as usize,
                    dst,
                    &mut sources,
                    Some(wire::GET_CHAT),
                    deadline,
                )?;
                let error = opened.first_error.unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "opened {} {} {}",
                    opened.open,
                    opened.failed,
                    one_line(&error)
                )?;
            }
            Some("arm") => {
                let token = fields.get(1).copied().unwrap_or_default();
                let deadline = in_ms(number(2)?);
                writeln!(out, "armed")?;
                out.flush()?;
                let got = pool.receive(&wire::needle(token, args.message_bytes), deadline);
                writeln!(out, "got {}", got.errors())?;
                let times: Vec<String> = got
                    .times
                    .iter()
                    .map(|&t| host::mono_ns(t).to_string())
                    .collect();
                writeln!(out, "{}", times.join(" "))?;
                let error = got.first_error.unwrap_or_else(|| "-".into());
                writeln!(out, "{}", one_line(&error))?;
            }
            Some("repoll") => writeln!(out, "sent {}", pool.send_all(wire::GET_CHAT))?,
            Some("churn") => {
                let churned = pool.churn(in_ms(number(1)?));
                let error = churned.first_error.unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "churned {} {} {} {} {}",
                    churned.timeouts,
                    churned.other,
                    churned.failed,
                    pool.open_count(),
                    one_line(&error)
                )?;
            }
            Some("close") => {
                // The old pool resets every connection as it drops, leaving no TIME_WAIT,
                // so the same source addresses serve again.
                pool = Pool::new(0)?;
                sources = Sources::starting_at(args.source_start, args.per_source);
                writeln!(out, "closed")?;
            }
            _ => return Err(io::Error::other(format!("bad command {line:?}"))),
        }
        out.flush()?;
    }
}

/// An error message on one line, for the line-based protocol.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
