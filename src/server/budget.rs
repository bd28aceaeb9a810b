//! What one loop pass may do for any one cause, so that whatever a client sends (or however
//! many deadlines fall due together) everyone else gets their turn in the same pass: the
//! named budgets, each with what it costs at the worst. `tests/bounded_work.rs` steps the
//! loop and checks each one.

/// Requests one connection may have answered in one turn. A client that pipelines more
/// (20,000 tiny posts in one send froze everyone else for seconds) goes back in line.
pub const REQUESTS_PER_TURN: usize = 16;

/// Deliveries to other clients that one connection's requests may cause in one turn. A
/// post to a room of thousands ends its poster's turn at once; a broadcast is never cut
/// short, because "everyone waiting gets it in one pass" is the point of the server.
pub const DELIVERIES_PER_TURN: u64 = 1024;

/// Timers one pass fires, at most. Thousands of polls can fall due in one 10 ms tick (a
/// crowd that arrived together, or a loop that was stopped for a while), and each costs
/// an answer encoded and written: about 10 µs for a room poll on this project's 2-vCPU
/// machine, so such a pass takes 10-25 ms before the other clients' events get their turn
/// (hostile bench phase f: a calm client's p99 12 ms through 19,500 timeouts at once,
/// against 135 ms with no budget).
pub const TIMERS_FIRED_PER_PASS: usize = 1024;

/// Requests that waited for their room's copy (with `--redis`) handled again per pass, at
/// most. One load can release every request that waited on a room; each is handled as
/// when it first came (an answer from the copy, or a wait in the room's list), about the
/// work of one poll's timeout answer (measured above, `TIMERS_FIRED_PER_PASS`), so a
/// pass's worth is of the same order as a pass of timeouts, and the rest follow in the
/// next passes, after everyone else's turn. Not measured on its own.
pub const REQUESTS_RESUMED_PER_PASS: usize = 1024;

/// Slots of the connection slab a shutdown goes through per pass, telling each connection
/// it meets (a parked poll when to come back, a stream likewise, an idle one is closed),
/// at most. That is one answer or one frame each, the work of one poll's timeout answer
/// (about 10 µs, measured above), so a pass's worth is of the order of 10 ms; 19,500
/// waiting clients are told in 20 passes, and the server keeps serving the others in
/// between. Not measured on its own.
pub const SHUTDOWN_SLOTS_PER_PASS: usize = 1024;

/// Clients accepted per listener per pass, at most (refused ones included). Each costs an
/// `accept`, an `epoll_ctl` and a few small writes to the slab and the wheel (not timed on
/// their own); a crowd arriving at once (a benchmark's 19,500, a reconnect storm) is taken
/// a pass's worth at a time, so the clients already here keep their turns (nginx's
/// `multi_accept off` takes one per event; this takes a thousand).
pub const ACCEPTS_PER_PASS: usize = 1024;
