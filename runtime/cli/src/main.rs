//! The `dripline` command: `dripline up` runs a deployment, `dripline process`
//! works through what is due and exits, `validate` and `schema` help write
//! journey files. The benchmarks are a binary of their own (`dripline-bench`),
//! so none of their code ships in this one.

mod cli;
mod commands;

use clap::Parser as _;

use cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up(args) => commands::up::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Process {
            deployment,
            now_ms,
            cache,
            lease_ms,
        } => commands::process::run(deployment, now_ms, cache, lease_ms),
        Command::Validate {
            files,
            components,
            templates,
        } => {
            let against = commands::validate::Against {
                components,
                templates,
            };
            if !commands::validate::run(&files, &against)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Schema => {
            println!("{}", dripline_engine::json_schema());
            Ok(())
        }
        Command::Deadletters {
            data,
            store,
            action,
        } => commands::deadletters::run(&data, store, action),
        Command::Contacts {
            data,
            store,
            action,
        } => commands::contacts::run(&data, store, action),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Preview(args) => commands::simulate::preview(args),
        Command::Token { data, action } => commands::token::run(&data, action),
        Command::Import(args) => {
            if !commands::import::run(args)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
