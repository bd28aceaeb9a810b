//! The `comet-chat` binary: command line → [`Config`] → [`Server::run`], in this process or,
//! with `--workers N`, in N worker processes under a supervisor (`supervisor.rs`); or
//! `comet-chat token ...`, which prints a signed token (`token.rs`).

use comet_chat::config::{self, Command};
use comet_chat::supervisor::{self, Role, Worker};
use comet_chat::{sys, Config, Server};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|first| first == "token") {
        return mint(&args[1..]);
    }
    let config = match config::parse_args(args.iter().cloned()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            // The error alone, so it does not scroll away under the usage text.
            eprintln!("comet-chat: {message}\nsee comet-chat --help");
            return ExitCode::from(2);
        }
    };
    let role = match supervisor::role(&config) {
        Ok(role) => role,
        Err(message) => {
            complain(&message);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .init()
    {
        eprintln!("comet-chat: cannot start logging: {e}");
    }
    let (who, outcome) = match role {
        Role::Alone => (String::new(), run(config, None)),
        Role::Supervisor => (String::new(), supervisor::run(&config, &args)),
        Role::Worker(worker) => (
            format!("worker {}: ", worker.index),
            run(config, Some(worker)),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain(&format!("{who}{e}"));
            ExitCode::FAILURE
        }
    }
}

/// `comet-chat token ...`: prints a token signed with the server's secret.
fn mint(args: &[OsString]) -> ExitCode {
    use comet_chat::token::{Minted, MINT_USAGE};
    match comet_chat::token::mint_command(args.iter().cloned()) {
        Ok(Minted::Token(token)) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Ok(Minted::Usage) => {
            println!("{MINT_USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            complain(&message);
            ExitCode::from(2)
        }
    }
}

/// Why we stop, on stderr rather than through the logger (which writes to stdout): whoever
/// started us looks there. One line in one write, since workers share the supervisor's
/// stderr and `eprintln!` may write a line in pieces that another process's line splits.
fn complain(message: &str) {
    let line = format!("comet-chat: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// One server in this process: alone, or as one of the supervisor's workers.
fn run(mut config: Config, mut worker: Option<Worker>) -> std::io::Result<()> {
    match config.open_files {
        Some(wanted) => match sys::set_open_files_limit(wanted) {
            Ok((before, after)) => log::info!("open files limit: soft {before} → {after} (asked)"),
            Err(e) => log::warn!("cannot set the open files limit to {wanted}: {e}"),
        },
        None => match sys::raise_open_files_limit() {
            Ok((before, after)) => log::info!("open files limit: soft {before} → {after} (hard)"),
            Err(e) => log::warn!("cannot raise the open files limit: {e}"),
        },
    }
    config.handle_signals = true;
    config.worker = worker.as_ref().map(|worker| worker.index);
    let www = config.www.clone();
    let poll_timeout = config.poll_timeout;
    let mut server = Server::bind(config)?;
    let (soft, hard) = sys::open_files_limit()?;
    let details = format!(
        "www: {}, {} files; poll timeout {:?}; open files {soft}/{hard}; max connections {}",
        www,
        server.asset_count(),
        poll_timeout,
        server.max_conns(),
    );
    if let Some(admin) = server.admin_addr() {
        log::info!("admin on http://{admin} (/metrics for Prometheus, /loop for the X-ray)");
    }
    match worker.as_mut() {
        None => log::info!("listening on http://{} ({details})", server.local_addr()),
        // Not "listening on": that line is the supervisor's, once every worker is ready.
        Some(worker) => {
            log::info!(
                "worker {} ready on {} (pid {}; {details})",
                worker.index,
                server.local_addr(),
                std::process::id()
            );
            if let Some(channel) = worker.listening()? {
                server.answer_supervisor(channel)?;
            }
        }
    }
    server.run()
}
