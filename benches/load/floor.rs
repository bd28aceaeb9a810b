//! The kernel floor: the same answer bytes written once to each of N accepted loopback
//! sockets by a plain loop — no HTTP parsing, no event loop, no server. The server's
//! fan-out cannot beat this; the report states how close it comes.
//!
//! Both ends of N sockets need 2N descriptors, and the benchmark already holds N to the
//! server, so the floor is two child processes — this benchmark's own binary re-run in a
//! hidden mode: a **writer**, which accepts N sockets and writes, and a **reader**, which
//! connects them and reads with the same client code ([`crate::pool`]) as the server's
//! rounds. Having both sides outside the benchmark lets floor rounds run *between* server
//! rounds, so a noisy neighbour on this shared machine slows both alike instead of
//! whichever ran during its burst.
//!
//! ```text
//!   bench → writer:  spawn; writer listens on 127.0.0.1:0, prints "port P"
//!   bench → reader:  spawn with P; reader connects a control socket, then N sockets,
//!                    each sending the request it sends the server (--transport)
//!   writer:          accepts control, then N; writes a stream's head to each (SSE, WS);
//!                    sends "ready" to the reader; the reader reads the heads
//!   reader → bench:  "ready <connected> <failed>"
//!   per round:
//!     bench → reader: "round R <ms left>"
//!     reader → writer: "g" (time zero)
//!     writer:          writes the answer (poll), event (SSE) or frame (WS) to each
//!                      socket; "<loop ns> <errors>" to reader
//!     reader:          reads N answers; a poll sends GET /chat on each again (as after
//!                      a broadcast); replies "done <errors> <loop ns> <time zero>"
//!                      (CLOCK_MONOTONIC ns), a line of latencies (ns after time zero)
//!                      and a line with the first error
//!   bench closes the reader's stdin; the reader closes control; the writer exits.
//! ```
//!
//! The writer never reads the requests. They are sent so that each connection's TCP
//! state matches a server connection's: a socket that has only ever received acknowledges
//! its first segments at once (quick-ACK mode), while one that answers what it received
//! lets the ACK wait and ride on its next request. On loopback an immediate ACK is
//! processed in the writer's own `write` call, so without the requests the floor's loop
//! pays for N extra ACKs the server never sees, and the floor flatters the server. Stream
//! clients (SSE, WebSocket) send nothing after their first request, to the server or to
//! the floor, so both sides see the same ACKs there too.

use crate::args::FloorArgs;
use crate::child::Child;
use crate::dist::Dist;
use crate::host;
use crate::pool::{Pool, Sources};
use crate::transport::{self, Transport};
use crate::wire;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Listen backlog for the writer, as deep as the server's: the reader connects in a burst.
const WRITER_BACKLOG: i32 = 65_535;

/// How long the children have to exit after being told to.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The token of floor round `round`; same shape as the server rounds' tokens.
fn token(round: usize) -> String {
    format!("floor-r{round}")
}

/// What the floor measured for one N.
pub struct FloorResult {
    /// Sockets connected to the writer.
    pub connected: usize,
    /// Connects that failed plus answers that did not arrive intact.
    pub errors: usize,
    /// First problem, if any.
    pub first_error: Option<String>,
    /// "go" sent → each answer received, all rounds pooled.
    pub latency: Dist,
    /// First → last answer received, per round.
    pub spans: Vec<Duration>,
    /// "go" → last answer received, per round.
    pub lasts: Vec<Duration>,
    /// The writer's own loop time (first write → last write returned), per round.
    pub write_loops: Vec<Duration>,
    /// All latencies, sorted, for the CDF plot.
    pub sorted: Vec<Duration>,
    /// The writer's CPU over the go → last windows, % of one core (as the server's).
    pub writer_cpu_pct: Option<f64>,
    /// The writer's CPU per answer written.
    pub writer_cpu_per_write: Option<Duration>,
}

/// A running floor: writer and reader children with N sockets between them.
pub struct Floor {
    /// Declared (so dropped) before the writer: on an error path the reader's sockets
    /// close first and the writer sees its control socket close.
    reader: Child,
    writer: Child,
    /// Round requests to the reader.
    to_reader: ChildStdin,
    /// The reader's answers.
    from_reader: BufReader<ChildStdout>,
    /// Filled in round by round; the summaries at [`finish`](Floor::finish).
    result: FloorResult,
    /// Writer CPU summed over rounds (`None` once any reading failed).
    writer_cpu: Option<Duration>,
    /// go → last summed over rounds: the windows `writer_cpu` is a share of.
    window: Duration,
    /// Answers received over all rounds: what `writer_cpu` is divided by.
    written: usize,
    /// The writer's CPU time when the round under way began.
    cpu_before: Option<Duration>,
}

/// One floor round of one writer/reader pair, in absolute time.
pub struct PairRound {
    /// When the reader told the writer to go, as CLOCK_MONOTONIC nanoseconds.
    pub go_ns: u64,
    /// go → each answer received.
    pub latencies: Vec<Duration>,
}

impl Floor {
    /// Starts the writer (on `writer_cpu`) and the reader (on `reader_cpu`) and connects
    /// `n` sockets between them by `connect_deadline`, read as clients of `transport`
    /// read; both children exit by themselves after `run_deadline`. The reader takes `n`
    /// source addresses from `sources`.
    pub fn start(
        exe: &Path,
        (writer_cpu, reader_cpu): (Option<usize>, Option<usize>),
        transport: Transport,
        n: usize,
        message_bytes: usize,
        sources: &mut Sources,
        (connect_deadline, run_deadline): (Instant, Instant),
    ) -> Result<Floor, String> {
        let secs_until = |t: Instant| t.saturating_duration_since(Instant::now()).as_secs() + 1;
        let budget = secs_until(run_deadline).to_string();
        let common = |mode: &str| {
            let mut command = Command::new(exe);
            command
                .arg(mode)
                .arg("--count")
                .arg(n.to_string())
                .arg("--message-bytes")
                .arg(message_bytes.to_string())
                .arg("--transport")
                .arg(transport.name())
                .arg("--budget")
                .arg(&budget)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            command
        };
        let mut writer = Child::spawn(common("--floor-writer"), "floor writer", writer_cpu)
            .map_err(|e| e.to_string())?;
        let port = read_line(&mut BufReader::new(
            writer.take_stdout().ok_or("writer stdout not piped")?,
        ))?;
        let port = port
            .strip_prefix("port ")
            .ok_or_else(|| format!("writer said {port:?}, not its port"))?;

        let mut command = common("--floor-reader");
        command
            .arg("--port")
            .arg(port)
            .arg("--source-start")
            .arg(sources.reserve(n).to_string())
            .arg("--per-source")
            .arg(sources.per_address().to_string())
            .arg("--connect-secs")
            .arg(secs_until(connect_deadline).to_string());
        let mut reader =
            Child::spawn(command, "floor reader", reader_cpu).map_err(|e| e.to_string())?;
        let to_reader = reader.take_stdin().ok_or("reader stdin not piped")?;
        let mut from_reader =
            BufReader::new(reader.take_stdout().ok_or("reader stdout not piped")?);
        // "ready <connected> <failed>"; the reader bounds its own wait by its budget.
        let ready = read_line(&mut from_reader)?;
        let fields: Vec<&str> = ready.split_whitespace().collect();
        let (Some(&"ready"), Some(Ok(connected)), Some(Ok(failed))) = (
            fields.first(),
            fields.get(1).map(|f| f.parse::<usize>()),
            fields.get(2).map(|f| f.parse::<usize>()),
        ) else {
            return Err(format!("floor reader said {ready:?}"));
        };
        if failed > 0 {
            return Err(format!("{failed} of {n} floor connects failed"));
        }
        Ok(Floor {
            reader,
            writer,
            to_reader,
            from_reader,
            result: FloorResult {
                connected,
                errors: 0,
                first_error: None,
                latency: Dist::default(),
                spans: Vec::new(),
                lasts: Vec::new(),
                write_loops: Vec::new(),
                sorted: Vec::new(),
                writer_cpu_pct: None,
                writer_cpu_per_write: None,
            },
            writer_cpu: Some(Duration::ZERO),
            window: Duration::ZERO,
            written: 0,
            cpu_before: None,
        })
    }

    /// Runs floor round `round`; returns (go → last, first → last) of this round.
    pub fn round(
        &mut self,
        round: usize,
        deadline: Instant,
    ) -> Result<(Duration, Duration), String> {
        self.begin_round(round, deadline)?;
        let pair = self.end_round()?;
        let (first, last) = (pair.latencies[0], pair.latencies[pair.latencies.len() - 1]);
        Ok((last, last - first))
    }

    /// Asks the reader for round `round` and returns at once, so that several floors can
    /// run a round together ([`FloorSet`]); [`end_round`](Floor::end_round) collects it.
    pub fn begin_round(&mut self, round: usize, deadline: Instant) -> Result<(), String> {
        let left_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        self.cpu_before = host::cpu_time(self.writer.pid());
        writeln!(self.to_reader, "round {round} {left_ms}").map_err(|e| format!("reader: {e}"))
    }

    /// Waits for the round [`begin_round`](Floor::begin_round) asked for and records it.
    /// The latencies come back sorted and never empty.
    pub fn end_round(&mut self) -> Result<PairRound, String> {
        let done = read_line(&mut self.from_reader)?;
        let latencies = read_line(&mut self.from_reader)?;
        let first_error = read_line(&mut self.from_reader)?;
        let cpu_after = host::cpu_time(self.writer.pid());

        let mut fields = done.split_whitespace();
        let (Some("done"), Some(Ok(errors)), Some(Ok(loop_ns)), Some(Ok(go_ns))) = (
            fields.next(),
            fields.next().map(str::parse::<usize>),
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<u64>),
        ) else {
            return Err(format!("floor reader said {done:?}"));
        };
        let mut times: Vec<Duration> = latencies
            .split_whitespace()
            .filter_map(|ns| ns.parse().ok())
            .map(Duration::from_nanos)
            .collect();
        let r = &mut self.result;
        r.errors += errors;
        if first_error != "-" {
            r.first_error.get_or_insert(first_error);
        }
        r.write_loops.push(Duration::from_nanos(loop_ns));
        times.sort_unstable();
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Err("no answer arrived".into());
        };
        r.spans.push(last - first);
        r.lasts.push(last);
        self.window += last;
        self.written += times.len();
        self.writer_cpu = self
            .writer_cpu
            .zip(self.cpu_before.take().zip(cpu_after))
            .map(|(sum, (before, after))| sum + after.saturating_sub(before));
        r.sorted.extend(times.iter().copied());
        Ok(PairRound {
            go_ns,
            latencies: times,
        })
    }

    /// Stops both children and returns what the rounds measured.
    pub fn finish(self) -> FloorResult {
        let Floor {
            reader,
            writer,
            to_reader,
            from_reader,
            mut result,
            writer_cpu,
            window,
            written,
            cpu_before: _,
        } = self;
        // EOF on its stdin ends the reader, whose closing control socket ends the writer.
        drop(to_reader);
        drop(from_reader);
        reader.finish(EXIT_GRACE);
        writer.finish(EXIT_GRACE);
        result.latency = Dist::of(&mut result.sorted);
        if !window.is_zero() {
            result.writer_cpu_pct =
                writer_cpu.map(|cpu| 100.0 * cpu.as_secs_f64() / window.as_secs_f64());
        }
        if written > 0 {
            result.writer_cpu_per_write = writer_cpu.map(|cpu| cpu / written as u32);
        }
        result
    }
}

/// The floor for more sockets than one process may open: several writer/reader pairs
/// that run each round together, on whatever CPUs the scheduler gives them (as the
/// workers and the load generators get). Where the machine cannot hold a second copy of
/// every socket, a round is `passes` rounds of fewer sockets run one after another, so a
/// round still makes as many writes as the fan-out it is compared with, and its time is
/// the sum of the passes (first go → last answer each).
pub struct FloorSet {
    /// The pairs, each with at most the per-process share of sockets.
    floors: Vec<Floor>,
    /// Passes per round.
    passes: usize,
    /// Sockets over all pairs (writes per pass).
    sockets: usize,
}

/// One round of a [`FloorSet`].
pub struct SetRound {
    /// Sum over passes of first go → last answer.
    pub total: Duration,
    /// Each answer's time since its pass began, plus the passes before it.
    pub latencies: Vec<Duration>,
}

impl FloorSet {
    /// Starts pairs for `n` writes a round: at most `max_sockets` sockets in all (more
    /// passes when `n` is larger) and at most `per_pair` in one pair.
    pub fn start(
        exe: &Path,
        (n, max_sockets, per_pair): (usize, usize, usize),
        message_bytes: usize,
        sources: &mut Sources,
        deadlines: (Instant, Instant),
    ) -> Result<FloorSet, String> {
        let passes = n.div_ceil(max_sockets.max(1)).max(1);
        let sockets = n.div_ceil(passes);
        let pairs = sockets.div_ceil(per_pair.max(1));
        let mut floors = Vec::with_capacity(pairs);
        for i in 0..pairs {
            // Spread evenly: the first `sockets % pairs` pairs take one more.
            let count = sockets / pairs + usize::from(i < sockets % pairs);
            floors.push(Floor::start(
                exe,
                (None, None),
                Transport::Poll,
                count,
                message_bytes,
                sources,
                deadlines,
            )?);
        }
        Ok(FloorSet {
            floors,
            passes,
            sockets,
        })
    }

    /// Sockets over all pairs.
    pub fn sockets(&self) -> usize {
        self.sockets
    }

    /// Passes per round.
    pub fn passes(&self) -> usize {
        self.passes
    }

    /// Runs round `round`: every pass, every pair at once.
    pub fn round(&mut self, round: usize, deadline: Instant) -> Result<SetRound, String> {
        let mut out = SetRound {
            total: Duration::ZERO,
            latencies: Vec::with_capacity(self.sockets * self.passes),
        };
        for pass in 0..self.passes {
            for floor in &mut self.floors {
                floor.begin_round(round * self.passes + pass, deadline)?;
            }
            let pairs = self
                .floors
                .iter_mut()
                .map(Floor::end_round)
                .collect::<Result<Vec<_>, _>>()?;
            let go = pairs.iter().map(|p| p.go_ns).min().unwrap_or(0);
            let mut end = Duration::ZERO;
            for pair in pairs {
                let lag = Duration::from_nanos(pair.go_ns - go);
                for latency in pair.latencies {
                    out.latencies.push(out.total + lag + latency);
                    end = end.max(lag + latency);
                }
            }
            out.total += end;
        }
        out.latencies.sort_unstable();
        Ok(out)
    }

    /// Stops every pair; returns the errors they counted, the first one, and the
    /// writers' CPU time per write (the pairs' mean; they write equal shares).
    pub fn finish(self) -> (usize, Option<String>, Option<Duration>) {
        let mut errors = 0;
        let mut first = None;
        let pairs = self.floors.len() as u32;
        let mut cpu = Some(Duration::ZERO);
        for floor in self.floors {
            let result = floor.finish();
            errors += result.errors;
            first = first.or(result.first_error);
            cpu = cpu.zip(result.writer_cpu_per_write).map(|(sum, c)| sum + c);
        }
        (
            errors,
            first,
            cpu.filter(|_| pairs > 0).map(|c| c / pairs.max(1)),
        )
    }
}

/// One line from a child, without its newline; EOF is an error (the child died).
fn read_line(from: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match from.read_line(&mut line) {
        Ok(0) => Err("floor child exited".into()),
        Ok(_) => Ok(line.trim_end().to_owned()),
        Err(e) => Err(format!("reading from floor child: {e}")),
    }
}

/// Ends the process after `budget` whatever happens, so a child the benchmark lost track
/// of cannot outlive the run.
pub fn watchdog(name: &'static str, budget: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("{name}: budget of {budget:?} used up, exiting");
        std::process::exit(3);
    });
}

/// The hidden `--floor-writer` mode.
pub fn writer_main(args: &FloorArgs) -> ExitCode {
    watchdog("floor writer", args.budget);
    report_exit("floor writer", write_rounds(args))
}

/// The hidden `--floor-reader` mode.
pub fn reader_main(args: &FloorArgs) -> ExitCode {
    watchdog("floor reader", args.budget);
    report_exit("floor reader", read_rounds(args))
}

/// A child mode's exit: success, or the error on stderr after the child's name.
pub fn report_exit(name: &str, result: io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_rounds(args: &FloorArgs) -> io::Result<()> {
    let _ = comet_chat::sys::raise_open_files_limit();
    let listener = listen()?;
    println!("port {}", listener.local_addr()?.port());
    io::stdout().flush()?;
    let (mut control, _) = listener.accept()?;
    control.set_nodelay(true)?;
    let mut sockets = Vec::with_capacity(args.count);
    while sockets.len() < args.count {
        let (socket, _) = listener.accept()?;
        // As the server does: answers are written whole, Nagle would only delay them.
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    // A stream's head goes out before any round, as the server's does.
    let opening = transport::stream_opening(args.transport);
    if !opening.is_empty() {
        for socket in &mut sockets {
            socket.write_all(&opening)?;
        }
    }
    control.write_all(b"ready\n")?;
    let mut go = [0u8; 1];
    for round in 0.. {
        match control.read(&mut go) {
            Ok(0) => return Ok(()), // the reader is done with us
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Encoded by the server's own functions, so the bytes match a broadcast's.
        let answer = transport::broadcast_bytes(
            args.transport,
            &wire::message(&token(round), args.message_bytes),
        );
        let mut errors = 0;
        let start = Instant::now();
        for socket in &mut sockets {
            if socket.write_all(&answer).is_err() {
                errors += 1;
            }
        }
        let loop_ns = start.elapsed().as_nanos();
        writeln!(control, "{loop_ns} {errors}")?;
    }
    Ok(())
}

fn read_rounds(args: &FloorArgs) -> io::Result<()> {
    let _ = comet_chat::sys::raise_open_files_limit();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let deadline = Instant::now() + args.connect_budget;
    let control = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    control.set_nodelay(true)?;
    // Bounds the wait for "ready" and for each round's report.
    control.set_read_timeout(Some(args.connect_budget))?;
    let mut from_writer = BufReader::new(control.try_clone()?);
    let mut to_writer = control;
    let mut sources = Sources::starting_at(args.source_start, args.per_source);
    // The writer never reads the request; any position will do.
    let request = args.transport.request("0");
    let (mut pool, mut opened) = Pool::open_as(
        args.transport,
        args.count,
        addr,
        &mut sources,
        &request,
        deadline,
    )?;
    if opened.failed == 0 {
        // The writer says ready once it has accepted all N (and written their heads).
        let mut ready = String::new();
        from_writer.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            return Err(io::Error::other(format!("writer said {ready:?}")));
        }
        let heads = pool.await_heads(deadline);
        opened.failed += heads.errors();
    }
    let mut out = io::stdout().lock();
    writeln!(out, "ready {} {}", opened.open, opened.failed)?;
    out.flush()?;
    if opened.failed > 0 {
        return Ok(()); // the writer would wait for the missing sockets forever
    }
    let mut requests = io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        if requests.read_line(&mut line)? == 0 {
            return Ok(()); // the benchmark is done with us
        }
        let mut fields = line.split_whitespace().skip(1).map(str::parse::<u64>);
        let (Some(Ok(round)), Some(Ok(left_ms))) = (fields.next(), fields.next()) else {
            return Err(io::Error::other(format!("bad request {line:?}")));
        };
        let needle = wire::needle(&token(round as usize), args.message_bytes);
        let go = Instant::now();
        to_writer.write_all(b"g")?;
        let got = pool.receive(&needle, go + Duration::from_millis(left_ms));
        let mut report = String::new();
        from_writer.read_line(&mut report)?;
        let mut report = report.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(loop_ns)), Some(Ok(write_errors))) = (report.next(), report.next()) else {
            return Err(io::Error::other("writer report is not '<ns> <errors>'"));
        };
        // As after a broadcast: every poll asks again; a stream just goes on.
        let repoll_errors = if args.transport.repolls() {
            pool.send_all(&request)
        } else {
            0
        };
        let errors = got.errors() + write_errors as usize + repoll_errors;
        writeln!(out, "done {errors} {loop_ns} {}", host::mono_ns(go))?;
        let latencies: Vec<String> = got
            .times
            .iter()
            .map(|t| t.saturating_duration_since(go).as_nanos().to_string())
            .collect();
        writeln!(out, "{}", latencies.join(" "))?;
        let first_error = got.first_error.unwrap_or_else(|| "-".into());
        writeln!(out, "{}", first_error.replace('\n', " "))?;
        out.flush()?;
    }
}

/// A blocking listener on a free loopback port with a deep backlog.
fn listen() -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(WRITER_BACKLOG)?;
    Ok(socket.into())
}
