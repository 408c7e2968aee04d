//! `dripline import FILE`: a customer list into the store, with a progress
//! bar and a summary; each bad row is printed with its line and the rest go
//! in (see [`dripline_runner::import`]).

use std::fs::File;

use anyhow::Context as _;
use dripline::{OpenStore, StoreUrl};
use dripline_clock::Clock as _;
use dripline_runner::import::{Importer, Mapping, Report};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ImportArgs;

/// Imports the file; whether every row went in.
pub fn run(args: ImportArgs) -> anyhow::Result<bool> {
    let ImportArgs {
        file,
        mapping,
        data,
        store,
        quiet,
        now_ms,
    } = args;
    let mapping = match &mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Mapping::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Mapping::default(),
    };
    let url = store.unwrap_or_else(|| StoreUrl::Sqlite(data.join("dripline.db")));
    let store = OpenStore::open(&url)?.store();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size).with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {bytes}/{total_bytes} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        )
    };
    bar.set_message(name.clone());
    let mut importer = Importer::new(
        store.as_ref(),
        mapping,
        &name,
        now_ms.unwrap_or_else(|| dripline_clock::SystemClock.now_ms()),
    );
    let input = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    dripline_runner::import::read_into(&mut importer, &name, bar.wrap_read(input))?;
    let report = importer.finish()?;
    bar.finish_and_clear();
    print_report(&name, &report);
    Ok(report.failed.is_empty())
}

fn print_report(name: &str, report: &Report) {
    for (line, problem) in &report.failed {
        eprintln!("{name}:{line}: {problem}");
    }
    println!(
        "{name}: {} rows: {} contacts created, {} updated, {} unchanged, {} failed{}",
        report.rows,
        report.created,
        report.updated,
        report.unchanged,
        report.failed.len(),
        if report.identity_conflicts > 0 {
            format!(
                "; {} identities belong to other contacts and stayed with them",
                report.identity_conflicts
            )
        } else {
            String::new()
        },
    );
    if report.erased > 0 {
        println!(
            "{name}: {} rows skipped: they name people who were erased",
            report.erased
        );
    }
}
