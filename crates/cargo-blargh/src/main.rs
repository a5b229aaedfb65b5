//! `cargo-blargh`: the developer's command (`cargo blargh …`) and, on the server, the agent
//! (`cargo-blargh agent …`): one executable for both sides.

mod agent_build;
mod agent_cmd;
mod app_cmd;
mod build;
mod cli;
mod deploy;
mod drift;
mod hooks;
mod output;
mod pack;
mod remote;
mod remote_agent;
mod seed_cmd;
mod settings;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The exec trampoline must run before anything else, while single-threaded.
    if blargh_agent::trampoline::is_trampoline(&args) {
        blargh_agent::trampoline::exec(&args);
    }
    // SAFETY: still single-threaded. The deploy key leaves the environment before any
    // child process (cargo build, build scripts, hooks) can inherit it.
    unsafe { remote::CiSecrets::take_from_env() };
    // `cargo blargh X` runs us as `cargo-blargh blargh X`.
    let args: Vec<std::ffi::OsString> = match args.get(1) {
        Some(a) if a == "blargh" => std::iter::once(args[0].clone())
            .chain(args[2..].iter().cloned())
            .collect(),
        _ => args,
    };
    let cli = cli::Cli::parse_from(args);
    let code = match cli.command {
        cli::Command::Agent(a) => agent_cmd::run(a),
        cli::Command::Seed(a) => seed_cmd::seed(a),
        cli::Command::Doctor(a) => seed_cmd::doctor(a),
        other => app_cmd::run(other),
    };
    remote::CiSecrets::remove_files();
    std::process::exit(code);
}
