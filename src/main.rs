//! The `comet-chat` binary: command line → [`Config`] → [`Server::run`].

use comet_chat::config::{self, Command};
use comet_chat::{sys, Config, Server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("comet-chat: {message}\n\n{}", config::usage());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .init()
    {
        eprintln!("comet-chat: cannot start logging: {e}");
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        // On stderr, not through the logger (which writes to stdout): whoever started us
        // looks there for why we stopped.
        Err(e) => {
            eprintln!("comet-chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut config: Config) -> std::io::Result<()> {
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
    let www = config.www.clone();
    let poll_timeout = config.poll_timeout;
    let server = Server::bind(config)?;
    let (soft, hard) = sys::open_files_limit()?;
    log::info!(
        "listening on http://{} (www: {}, {} files; poll timeout {:?}; open files {soft}/{hard}; \
         max connections {})",
        server.local_addr(),
        www.map_or("none".to_owned(), |dir| dir.display().to_string()),
        server.asset_count(),
        poll_timeout,
        server.max_conns(),
    );
    server.run()
}
