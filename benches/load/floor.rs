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
//! That is the **paired** floor ([`Layout::Paired`]): a [`FloorSet`] of P pairs, each
//! writer writing only its own reader's sockets, in accept order (= its reader's connect
//! order). Consecutive writes so reach one process, already awake after the first of
//! them, on sockets opened one after another. A worker's do not: its waiting list holds
//! clients of every load generator in no order. The **spread** floor ([`Layout::Spread`])
//! makes the same writes the way a worker does, P writers and P readers:
//!
//! ```text
//!   bench → writer w (all P, before any reader): spawn with --readers P; the writer
//!                    listens on a data port D and a control port C, prints "port D C"
//!   bench → reader r: spawn with every "D:C" and --first-writer r; the reader connects a
//!                    control socket to every writer's C, then its N_r sockets round-robin
//!                    over every writer's D from writer r on, each sending its request
//!   writer:          accepts P controls, then its share of every reader's sockets;
//!                    shuffles them (fixed-seed xorshift, once); writes the heads;
//!                    "ready" to every reader
//!   reader → bench:  "ready <connected> <failed>" (after every writer's "ready")
//!   per round:
//!     bench → every reader: "round R <ms left>"
//!     reader → every writer: "g" (time zero of this reader)
//!     writer:          once every reader's "g" is in, writes the answer to its sockets in
//!                      the shuffled order; "<loop ns> <errors>" to every reader (the
//!                      errors to the first only, so they are counted once)
//!     reader:          reads its N_r answers, polls again, replies as a paired reader
//!                      (loop ns = the slowest writer's)
//!   bench closes every reader's stdin, then waits for each; a writer ends at the first
//!   control socket it finds closed.
//! ```
//!
//! Floor r of a spread set is reader r with writer r, for the round protocol and the
//! writer's CPU (read once every reader of the round is done); a spread writer's CPU per
//! write is divided by its own writes, not its reader's answers.
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
    /// Round requests to the reader; `None` once closed, which ends the reader.
    to_reader: Option<ChildStdin>,
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
    /// Writes the writer makes a round when they are not this reader's answers (a spread
    /// floor's writer writes to every reader); `None`: the answers this reader received.
    writes: Option<usize>,
}

/// One floor round of one writer/reader pair, in absolute time.
pub struct PairRound {
    /// When the reader told the writer to go, as CLOCK_MONOTONIC nanoseconds.
    pub go_ns: u64,
    /// go → each answer received.
    pub latencies: Vec<Duration>,
}

/// How a [`FloorSet`]'s writers meet its readers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// Each writer holds one reader's sockets and writes them in accept order (= that
    /// reader's connect order): consecutive writes reach the same process, on sockets
    /// opened one after another.
    Paired,
    /// Every writer holds sockets of every reader and writes them in a shuffled order, as
    /// a worker's unordered waiting list holds clients of every load generator:
    /// consecutive writes reach different processes, on sockets scattered in memory.
    Spread,
}

impl Layout {
    /// For progress lines and the report.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Paired => "paired",
            Layout::Spread => "spread",
        }
    }
}

/// What every child of one floor is started with.
struct Spawn<'a> {
    /// This benchmark's binary, re-run in a hidden mode.
    exe: &'a Path,
    /// What the readers read as and the writers write.
    transport: Transport,
    /// Length of the message in each answer.
    message_bytes: usize,
    /// (the readers' connect deadline, when every child exits by itself).
    deadlines: (Instant, Instant),
}

impl Spawn<'_> {
    /// The command line common to writers and readers of `n` sockets.
    fn command(&self, mode: &str, n: usize) -> Command {
        let mut command = Command::new(self.exe);
        command
            .arg(mode)
            .arg("--count")
            .arg(n.to_string())
            .arg("--message-bytes")
            .arg(self.message_bytes.to_string())
            .arg("--transport")
            .arg(self.transport.name())
            .arg("--budget")
            .arg(secs_until(self.deadlines.1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }

    /// Starts a writer of `n` sockets (a spread writer serving `readers` readers, if
    /// given) and returns it with the ports it printed: its one port when paired, its
    /// data port and control port when spread.
    fn writer(
        &self,
        n: usize,
        readers: Option<usize>,
        cpu: Option<usize>,
    ) -> Result<(Child, Vec<u16>), String> {
        let mut command = self.command("--floor-writer", n);
        if let Some(readers) = readers {
            command.arg("--readers").arg(readers.to_string());
        }
        let mut writer = Child::spawn(command, "floor writer", cpu).map_err(|e| e.to_string())?;
        let line = read_line(&mut BufReader::new(
            writer.take_stdout().ok_or("writer stdout not piped")?,
        ))?;
        let ports = line
            .strip_prefix("port ")
            .ok_or_else(|| format!("writer said {line:?}, not its port"))?
            .split_whitespace()
            .map(|p| p.parse::<u16>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("writer said {line:?}, not its port"))?;
        Ok((writer, ports))
    }

    /// A reader's command line for `n` sockets from addresses of `sources`; the caller
    /// adds where to connect.
    fn reader(&self, n: usize, sources: &mut Sources) -> Command {
        let mut command = self.command("--floor-reader", n);
        command
            .arg("--source-start")
            .arg(sources.reserve(n).to_string())
            .arg("--per-source")
            .arg(sources.per_address().to_string())
            .arg("--connect-secs")
            .arg(secs_until(self.deadlines.0).to_string());
        command
    }

    /// A spread floor: a writer per entry of `counts` started (and listening) before any
    /// reader, then reader `r` with `counts[r]` sockets dealt round-robin over all the
    /// writers from writer `r` on. Floor `r` is reader `r` with writer `r`, for the round
    /// protocol and the writer's CPU; writer `r` serves every reader all the same.
    fn spread(&self, counts: &[usize], sources: &mut Sources) -> Result<Vec<Floor>, String> {
        let writes = spread_writes(counts);
        let mut writers = Vec::with_capacity(writes.len());
        let mut ports = Vec::with_capacity(writes.len());
        for &w in &writes {
            let (writer, theirs) = self.writer(w, Some(counts.len()), None)?;
            let [data, control] = theirs[..] else {
                return Err(format!("spread writer gave ports {theirs:?}"));
            };
            writers.push(writer);
            ports.push(format!("{data}:{control}"));
        }
        let ports = ports.join(",");
        let mut readers = Vec::with_capacity(counts.len());
        for (first, &n) in counts.iter().enumerate() {
            let mut command = self.reader(n, sources);
            command
                .arg("--spread-ports")
                .arg(&ports)
                .arg("--first-writer")
                .arg(first.to_string());
            readers.push(Child::spawn(command, "floor reader", None).map_err(|e| e.to_string())?);
        }
        // Every reader is connecting by now, so each can reach "ready".
        readers
            .into_iter()
            .zip(writers)
            .zip(counts.iter().zip(writes))
            .map(|((reader, writer), (&n, w))| Floor::ready(reader, writer, n, Some(w)))
            .collect()
    }
}

/// Seconds from now until `t`, rounded up: a child's budget on its command line.
fn secs_until(t: Instant) -> u64 {
    t.saturating_duration_since(Instant::now()).as_secs() + 1
}

/// The writes each writer of a spread floor makes a round, when reader `r` deals its
/// `counts[r]` sockets round-robin over the writers from writer `r` on: socket `i` of
/// reader `r` goes to writer `(r + i) % P`.
fn spread_writes(counts: &[usize]) -> Vec<usize> {
    let p = counts.len();
    let mut writes = vec![0; p];
    for (r, &n) in counts.iter().enumerate() {
        for (w, slot) in writes.iter_mut().enumerate() {
            // The i in 0..n with i = w - r (mod P).
            let offset = (w + p - r % p) % p;
            *slot += n.saturating_sub(offset).div_ceil(p);
        }
    }
    writes
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
        deadlines: (Instant, Instant),
    ) -> Result<Floor, String> {
        let spawn = Spawn {
            exe,
            transport,
            message_bytes,
            deadlines,
        };
        let (writer, ports) = spawn.writer(n, None, writer_cpu)?;
        let [port] = ports[..] else {
            return Err(format!("paired writer gave ports {ports:?}"));
        };
        let mut command = spawn.reader(n, sources);
        command.arg("--port").arg(port.to_string());
        let reader =
            Child::spawn(command, "floor reader", reader_cpu).map_err(|e| e.to_string())?;
        Floor::ready(reader, writer, n, None)
    }

    /// Waits for `reader`'s "ready" (all `n` of its sockets connected and their heads
    /// read) and makes the floor of it and `writer`, whose writes a round are `writes`
    /// when they are not the reader's answers.
    fn ready(
        mut reader: Child,
        writer: Child,
        n: usize,
        writes: Option<usize>,
    ) -> Result<Floor, String> {
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
            to_reader: Some(to_reader),
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
            writes,
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
        self.count_cpu();
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
        let to_reader = self
            .to_reader
            .as_mut()
            .ok_or("reader already told to stop")?;
        writeln!(to_reader, "round {round} {left_ms}").map_err(|e| format!("reader: {e}"))
    }

    /// Waits for the round [`begin_round`](Floor::begin_round) asked for and records it,
    /// all but the writer's CPU ([`count_cpu`](Floor::count_cpu), once every reader of
    /// the round is done: a spread floor's writer may still be writing to the others).
    /// The latencies come back sorted and never empty.
    pub fn end_round(&mut self) -> Result<PairRound, String> {
        let done = read_line(&mut self.from_reader)?;
        let latencies = read_line(&mut self.from_reader)?;
        let first_error = read_line(&mut self.from_reader)?;

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
        self.written += self.writes.unwrap_or(times.len());
        r.sorted.extend(times.iter().copied());
        Ok(PairRound {
            go_ns,
            latencies: times,
        })
    }

    /// Adds the writer's CPU since [`begin_round`](Floor::begin_round) to the floor's;
    /// call it once the writer is done with the round.
    pub fn count_cpu(&mut self) {
        let cpu_after = host::cpu_time(self.writer.pid());
        self.writer_cpu = self
            .writer_cpu
            .zip(self.cpu_before.take().zip(cpu_after))
            .map(|(sum, (before, after))| sum + after.saturating_sub(before));
    }

    /// Tells the reader to stop (EOF on its stdin) without waiting for it.
    fn close_reader(&mut self) {
        self.to_reader = None;
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
            writes: _,
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
    /// passes when `n` is larger) and at most `per_pair` in one pair (one reader; a
    /// spread writer's share comes out within a few sockets of its reader's), writers
    /// meeting readers as `layout` says.
    pub fn start(
        exe: &Path,
        (n, max_sockets, per_pair): (usize, usize, usize),
        layout: Layout,
        message_bytes: usize,
        sources: &mut Sources,
        deadlines: (Instant, Instant),
    ) -> Result<FloorSet, String> {
        let passes = n.div_ceil(max_sockets.max(1)).max(1);
        let sockets = n.div_ceil(passes);
        let pairs = sockets.div_ceil(per_pair.max(1));
        // Spread evenly: the first `sockets % pairs` pairs take one more.
        let counts: Vec<usize> = (0..pairs)
            .map(|i| sockets / pairs + usize::from(i < sockets % pairs))
            .collect();
        let floors = match layout {
            Layout::Paired => counts
                .iter()
                .map(|&count| {
                    Floor::start(
                        exe,
                        (None, None),
                        Transport::Poll,
                        count,
                        message_bytes,
                        sources,
                        deadlines,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?,
            Layout::Spread => Spawn {
                exe,
                transport: Transport::Poll,
                message_bytes,
                deadlines,
            }
            .spread(&counts, sources)?,
        };
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
            // Every reader has all its answers, so every writer is done writing.
            for floor in &mut self.floors {
                floor.count_cpu();
            }
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
    pub fn finish(mut self) -> (usize, Option<String>, Option<Duration>) {
        let mut errors = 0;
        let mut first = None;
        let pairs = self.floors.len() as u32;
        let mut cpu = Some(Duration::ZERO);
        // Every reader first: a spread writer waits on the control socket of whichever
        // reader reached it first, so it ends only once that reader has.
        for floor in &mut self.floors {
            floor.close_reader();
        }
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

/// Seed of a spread writer's shuffle: fixed, so every run writes in the same order.
const SHUFFLE_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Puts `items` in a pseudo-random order (Fisher-Yates over xorshift64): a spread writer's
/// write order, as unordered as a worker's waiting list, with no dependency for it.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1; // xorshift never leaves zero
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Accepts `count` sockets on `listener`, in arrival order.
fn accept_all(listener: &TcpListener, count: usize) -> io::Result<Vec<TcpStream>> {
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let (socket, _) = listener.accept()?;
        // As the server does: answers are written whole, Nagle would only delay them.
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Waits for one reader's "g"; `false` when the reader closed its control socket.
fn await_go(control: &mut TcpStream) -> io::Result<bool> {
    let mut go = [0u8; 1];
    loop {
        match control.read(&mut go) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn write_rounds(args: &FloorArgs) -> io::Result<()> {
    let _ = comet_chat::sys::raise_open_files_limit();
    let listener = listen()?;
    let (mut controls, mut sockets) = if args.readers == 0 {
        // Paired: the reader's control socket is the first to arrive, then its N.
        println!("port {}", listener.local_addr()?.port());
        io::stdout().flush()?;
        let (control, _) = listener.accept()?;
        (vec![control], accept_all(&listener, args.count)?)
    } else {
        // Spread: the readers connect in any order, so their control sockets come to a
        // port of their own; the N come from all readers at once.
        let control_listener = listen()?;
        println!(
            "port {} {}",
            listener.local_addr()?.port(),
            control_listener.local_addr()?.port()
        );
        io::stdout().flush()?;
        let controls = (0..args.readers)
            .map(|_| control_listener.accept().map(|(control, _)| control))
            .collect::<io::Result<Vec<_>>>()?;
        let mut sockets = accept_all(&listener, args.count)?;
        shuffle(&mut sockets, SHUFFLE_SEED);
        (controls, sockets)
    };
    for control in &controls {
        control.set_nodelay(true)?;
    }
    // A stream's head goes out before any round, as the server's does.
    let opening = transport::stream_opening(args.transport);
    if !opening.is_empty() {
        for socket in &mut sockets {
            socket.write_all(&opening)?;
        }
    }
    for control in &mut controls {
        control.write_all(b"ready\n")?;
    }
    for round in 0.. {
        // A round starts when every reader has said go (a paired writer has one reader).
        for control in &mut controls {
            if !await_go(control)? {
                return Ok(()); // a reader is done with us
            }
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
        for (i, control) in controls.iter_mut().enumerate() {
            // Each reader adds up the errors it hears: the first hears them, the rest 0.
            let errors = if i == 0 { errors } else { 0 };
            writeln!(control, "{loop_ns} {errors}")?;
        }
    }
    Ok(())
}

/// One writer as a reader sees it: its control socket, both ways.
struct WriterLink {
    /// Reports ("ready", "<loop ns> <errors>") from the writer.
    from: BufReader<TcpStream>,
    /// "g" to the writer.
    to: TcpStream,
}

impl WriterLink {
    /// Connects to a writer's control port; reads wait at most `timeout`.
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<WriterLink> {
        let control = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        control.set_nodelay(true)?;
        // Bounds the wait for "ready" and for each round's report.
        control.set_read_timeout(Some(timeout))?;
        Ok(WriterLink {
            from: BufReader::new(control.try_clone()?),
            to: control,
        })
    }

    /// Reads the writer's "ready".
    fn await_ready(&mut self) -> io::Result<()> {
        let mut ready = String::new();
        self.from.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            return Err(io::Error::other(format!("writer said {ready:?}")));
        }
        Ok(())
    }

    /// Reads the writer's report of a round: (its loop's ns, its write errors).
    fn report(&mut self) -> io::Result<(u64, u64)> {
        let mut report = String::new();
        self.from.read_line(&mut report)?;
        let mut report = report.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(loop_ns)), Some(Ok(write_errors))) = (report.next(), report.next()) else {
            return Err(io::Error::other("writer report is not '<ns> <errors>'"));
        };
        Ok((loop_ns, write_errors))
    }
}

fn read_rounds(args: &FloorArgs) -> io::Result<()> {
    let _ = comet_chat::sys::raise_open_files_limit();
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // Paired: one writer, control and data on its one port. Spread: every writer.
    let (data, controls): (Vec<SocketAddr>, Vec<SocketAddr>) = if args.spread_ports.is_empty() {
        (vec![loopback(args.port)], vec![loopback(args.port)])
    } else {
        args.spread_ports
            .iter()
            .map(|&(data, control)| (loopback(data), loopback(control)))
            .unzip()
    };
    let deadline = Instant::now() + args.connect_budget;
    let mut writers = controls
        .iter()
        .map(|&addr| WriterLink::connect(addr, args.connect_budget))
        .collect::<io::Result<Vec<_>>>()?;
    let mut sources = Sources::starting_at(args.source_start, args.per_source);
    // The writer never reads the request; any position will do.
    let request = args.transport.request("0");
    let (mut pool, mut opened) = Pool::open_spread(
        args.transport,
        args.count,
        (&data, args.first_writer),
        &mut sources,
        &request,
        deadline,
    )?;
    if opened.failed == 0 {
        // A writer says ready once it has accepted all its N (and written their heads).
        for writer in &mut writers {
            writer.await_ready()?;
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
        for writer in &mut writers {
            writer.to.write_all(b"g")?;
        }
        let got = pool.receive(&needle, go + Duration::from_millis(left_ms));
        let (mut loop_ns, mut write_errors) = (0, 0);
        for writer in &mut writers {
            let (ns, errors) = writer.report()?;
            loop_ns = loop_ns.max(ns);
            write_errors += errors;
        }
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
