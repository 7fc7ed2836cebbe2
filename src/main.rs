//! `genrelab`: the command line. It parses flags, reads the configuration and runs the stage graph
//! (this package's library: `config`, `graph`) on the engine (`genrelab-pipeline`); the work is in
//! the crates along the data's path: `genrelab-audio`, `-data`, `-runs`, `-report`, `-store`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use genrelab::config::{Config, Folders};
use genrelab::graph;
use query::Format;

mod logging;
mod query;
mod render;

#[derive(Parser)]
#[command(name = "genrelab", version, about = "Music genre classification as an incremental pipeline with a Parquet feature store")]
struct Cli {
    /// The configuration file (TOML). Relative paths inside it are relative to its folder.
    #[arg(short, long, global = true, default_value = "genrelab.toml", env = "GENRELAB_CONFIG")]
    config: PathBuf,
    /// Override a config key for this command (repeatable): KEY is dotted
    /// (`evaluate.window_hop=64`, `train.model.resnet.seeds=2`), VALUE a TOML value or a string.
    /// Stages whose parameters change run again, as after editing the file.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Less output (warnings and errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// The detailed log on standard error (timestamps, span timings); twice for debug events.
    /// `run` and `tune` always write it to <workdir>/.genrelab/last-run.log.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the stages that are not current (all, or the named ones and what they need).
    Run {
        /// Stages to bring up to date: download, features, descriptors, split, train, evaluate. None = all.
        stages: Vec<String>,
        /// Run this stage even if it is current (repeatable).
        #[arg(long)]
        force: Vec<String>,
        /// Print what ran as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show each stage as current or stale, and why.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run SQL (polars) over the store: features, features_full, descriptors, rejects, split, history, metrics, per_genre, predictions, tune.
    Query {
        sql: String,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Rows to show in the terminal table.
        #[arg(long, default_value_t = 50)]
        rows: usize,
    },
    /// Genres of audio files (WAV, FLAC, MP3, Ogg Vorbis, AAC / ALAC in .m4a; any rate and channel
    /// count), or of every audio file in a folder, with the trained models: the top 3 per file.
    Predict {
        /// Audio files, and folders: a folder stands for every audio file under it (.wav, .flac,
        /// .mp3, .ogg, .m4a; sub-folders included).
        #[arg(value_name = "FILE_OR_FOLDER")]
        files: Vec<PathBuf>,
        /// Model to use, or an ensemble across models `a+b` (default: the best model or
        /// `[evaluate]` ensemble of the last evaluation; every run of a model is averaged).
        #[arg(long)]
        model: Option<String>,
        /// How many genres to show per file (and per window), most probable first.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// Seconds between window starts (default: one window, 30 s; smaller overlaps them).
        #[arg(long)]
        hop: Option<f64>,
        /// Also show the genres of every window.
        #[arg(long)]
        timeline: bool,
        /// Print the predictions as JSON (every file's genres and probabilities, duration, sample
        /// rate, channels, windows, error or warning).
        #[arg(long)]
        json: bool,
    },
    /// Search the `[tune]` space for one model on validation parts only (resumable; trials in the
    /// store's `tune` table). Runs the stages it needs first.
    Tune {
        #[arg(long)]
        json: bool,
    },
    /// The comparison table of the last evaluation, and where the report is.
    Results {
        #[arg(long)]
        json: bool,
    },
    /// List the models of the registry.
    Models,
    /// Print the effective configuration, defaults included.
    Config,
    /// List the stages and what each does.
    Stages,
    /// Train the runs named on standard input (one id per line, `resnet/fold3-seed0`), printing
    /// `trained ID` after each, and exit when the input ends: the worker process that `jobs` > 1
    /// starts (the stage that starts it passes the training configuration, gives it its next run
    /// when it has finished one, checks and records what it trained).
    #[command(hide = true)]
    TrainRuns {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        train_dir: PathBuf,
        #[arg(long)]
        threads: usize,
    },
}

fn main() {
    // Before anything allocates: freed tensors' memory is reused, not faulted in again.
    genrelab_models::keep_freed_memory();
    let cli = Cli::parse();
    logging::init(cli.quiet, cli.verbose);
    if let Err(e) = run(cli) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, each said once: typed errors already put their cause in
/// their own message (`stage \`x\` failed: <why>`), so a cause already said is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out += ": ";
            }
            out += &s;
        }
    }
    out
}

fn load_config(path: &Path, sets: &[String]) -> Result<Config> {
    if !path.exists() {
        bail!("no configuration file {} (use --config FILE; `configs/demo.toml` runs the synthetic demo)", path.display());
    }
    let mut cfg = Config::load_with(path, sets)?;
    genrelab_models::use_threads(cfg.threads);
    // Training workers (`jobs` > 1) are this program.
    if let Ok(exe) = std::env::current_exe() {
        cfg.worker = vec![exe.into(), "--quiet".into(), "train-runs".into()];
    }
    Ok(cfg)
}

/// The work folder for this process alone (waiting, said, while another holds it), and its
/// detailed log from now on in `.genrelab/last-run.log`.
fn lock_work_folder(cfg: &Config, what: &str) -> Result<genrelab_pipeline::lock::WorkLock> {
    let lock = genrelab_pipeline::lock::WorkLock::acquire(&cfg.workdir, what, |holder| {
        genrelab_pipeline::engine::waiting_for(&cfg.workdir, holder)
    })?;
    logging::log_to_file(&genrelab_pipeline::Paths::new(&cfg.workdir).state_dir().join("last-run.log"));
    Ok(lock)
}

/// A training worker ends when the process that started it does (it is killed, say): it would
/// otherwise go on writing runs that a restarted stage trains again.
fn exit_with_parent() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(130);
                }
            }
        });
    }
}

fn run(cli: Cli) -> Result<()> {
    let (config, sets) = (cli.config.as_path(), cli.sets.as_slice());
    match cli.command {
        Command::Run { ref stages, ref force, json } => run_stages(&load_config(config, sets)?, stages, force, json),
        Command::Status { json } => status(&load_config(config, sets)?, json),
        Command::Query { ref sql, json, csv, rows } => query_store(&load_config(config, sets)?, sql, json, csv, rows),
        Command::Predict { ref files, ref model, top, hop, timeline, json } => {
            predict(&load_config(config, sets)?, files, model.as_deref(), top, hop, timeline, json)
        }
        Command::Tune { json } => tune(&load_config(config, sets)?, json),
        Command::Results { json } => results(&load_config(config, sets)?, json),
        Command::Models => {
            out(&render::models())?;
            Ok(())
        }
        Command::Config => {
            let cfg = match config.exists() {
                true => Config::load_with(config, sets)?,
                false => Config::parse_with("", sets, Path::new("."), config)?,
            };
            out(&cfg.to_toml())?;
            Ok(())
        }
        Command::TrainRuns { ref store, ref train_dir, threads } => {
            genrelab_models::use_threads(threads);
            exit_with_parent();
            genrelab_runs::train::train_worker(store, train_dir, std::io::stdin().lock(), std::io::stdout().lock())?;
            Ok(())
        }
        Command::Stages => {
            out(&render::stages(&graph::engine())?)?;
            Ok(())
        }
    }
}

/// Print `value` as indented JSON on standard output.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(value)?))?;
    Ok(())
}

fn run_stages(cfg: &Config, stages: &[String], force: &[String], json: bool) -> Result<()> {
    let _lock = lock_work_folder(cfg, "run")?;
    let outcomes = graph::engine().run(cfg, stages, force, std::io::stderr().is_terminal())?;
    if json {
        return print_json(&outcomes);
    }
    out(&render::outcomes(&outcomes))?;
    Ok(())
}

fn status(cfg: &Config, json: bool) -> Result<()> {
    let status = graph::engine().status(cfg, &[])?;
    if json {
        return print_json(&status);
    }
    out(&render::status(&cfg.workdir, &status))?;
    Ok(())
}

fn query_store(cfg: &Config, sql: &str, json: bool, csv: bool, rows: usize) -> Result<()> {
    let store = genrelab_pipeline::Paths::new(&cfg.workdir).store_dir();
    let mut df = query::sql(&store, sql).with_context(|| format!("in store {}", store.display()))?;
    let format = match (json, csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    if format == Format::Table {
        // SAFETY: set before any other thread reads the environment (polars reads it when printing).
        unsafe {
            std::env::set_var("POLARS_FMT_MAX_ROWS", rows.to_string());
            std::env::set_var("POLARS_FMT_STR_LEN", "40");
            std::env::set_var("POLARS_FMT_TABLE_ROUNDED_CORNERS", "1");
        }
    }
    out(&query::render(&mut df, format)?)?;
    if format == Format::Table {
        out("\n")?;
    }
    Ok(())
}

fn predict(cfg: &Config, files: &[PathBuf], model: Option<&str>, top: usize, hop: Option<f64>, timeline: bool, json: bool) -> Result<()> {
    let paths = genrelab_pipeline::Paths::new(&cfg.workdir);
    if files.is_empty() {
        bail!("name at least one audio file or folder");
    }
    if top == 0 {
        bail!("--top must be at least 1");
    }
    if hop.is_some_and(|h| h.is_nan() || h <= 0.0) {
        bail!("--hop must be a positive number of seconds");
    }
    let opts = genrelab_runs::predict::PredictOptions { top, hop_seconds: hop, timeline, limits: cfg.limits };
    let (model, preds) = genrelab_runs::predict::predict_files(&paths.report_dir(), &paths.train_dir(), files, model, &opts)?;
    if json {
        print_json(&serde_json::json!({"model": model, "predictions": preds}))?;
    } else {
        out(&render::predictions(&model, &preds))?;
    }
    if preds.iter().any(|p| p.error.is_some()) {
        std::process::exit(2);
    }
    Ok(())
}

fn tune(cfg: &Config, json: bool) -> Result<()> {
    let paths = genrelab_pipeline::Paths::new(&cfg.workdir);
    let _lock = lock_work_folder(cfg, "tune")?;
    graph::engine().run(cfg, &["descriptors".to_string(), "split".to_string()], &[], std::io::stderr().is_terminal())?;
    let trials = genrelab_runs::tune::tune(&paths.store_dir(), &cfg.workdir.join("tune"), &cfg.train, &cfg.tune, cfg.workers())?;
    if json {
        return print_json(&trials);
    }
    out(&render::trials(&cfg.tune.model, &trials)?)?;
    Ok(())
}

fn results(cfg: &Config, json: bool) -> Result<()> {
    let report = genrelab_pipeline::Paths::new(&cfg.workdir).report_dir();
    let e = genrelab_runs::evaluate::read_evaluation(&report)?;
    // The report is the last evaluation that completed: say so when it no longer matches the
    // config or its inputs (or the last evaluate failed).
    let status = graph::engine().status(cfg, &["evaluate".to_string()])?;
    if let Some(eval) = status.iter().find(|s| s.stage == "evaluate" && !s.current) {
        let why: Vec<String> = status
            .iter()
            .filter(|s| !s.current)
            .map(|s| format!("{}: {}", s.stage, genrelab_pipeline::engine::Reason::join(&s.reasons, ", ")))
            .collect();
        eprintln!(
            "warning: these results are from the last evaluation that completed ({}); evaluate is stale now ({}). `genrelab run` brings them up to date",
            eval.last_run.as_deref().unwrap_or("time unknown"),
            why.join("; ")
        );
    }
    if json {
        return print_json(&e);
    }
    out(&format!("{}\n", genrelab_runs::evaluate::comparison_table(&e)))?;
    out(&format!("\nreport: {}\n", report.join("report.html").display()))?;
    Ok(())
}

/// Write to standard output. A reader that stopped reading (`genrelab query ... | head`) ends
/// the output quietly, as it ends other command-line tools' output, instead of a panic.
fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}
