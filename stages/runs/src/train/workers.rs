//! Worker processes (`jobs` > 1): a queue of runs, most epochs first, one process per job.

use super::*;

/// Runs trained in other processes, `jobs` at once, each process on `threads` threads.
/// libtorch keeps its random generator (dropout, initialisation) in one global per process, so
/// two runs in one process cannot train at once and stay deterministic; in processes of their
/// own they can, and give what one process training them in turn on as many threads gives (a
/// test checks). A worker keeps its thread count for all its runs: a run's figures depend on
/// its thread count (float rounding), so it never changes within a run.
#[derive(Debug, Clone)]
pub struct Workers {
    pub jobs: usize,
    pub threads: usize,
    /// The command that trains runs in a worker (the CLI's hidden `train-runs`, which calls
    /// [`train_worker`]); the stage appends `--store DIR --train-dir DIR --threads N`, passes
    /// the training configuration as JSON in [`WORKER_CONFIG_ENV`] and writes run ids to its
    /// input, one per line, the next when it has printed [`WORKER_DONE`] for the last.
    pub command: Vec<std::ffi::OsString>,
}

/// The environment variable that carries a worker's training configuration (JSON).
pub const WORKER_CONFIG_ENV: &str = "GENRELAB_TRAIN_CONFIG";

/// What a worker prints on its output when it has trained a run: this, then the run's id.
pub const WORKER_DONE: &str = "trained ";

/// A worker's work: train the runs of `train_dir` named by the lines of `runs` (its input,
/// one run id per line, until it ends) with the configuration in [`WORKER_CONFIG_ENV`],
/// printing [`WORKER_DONE`] and the id to `done` after each (no history table: the stage that
/// started it writes that). The store is read once.
pub fn train_worker(
    store_dir: &Path,
    train_dir: &Path,
    runs: impl std::io::BufRead,
    mut done: impl std::io::Write,
) -> Result<(), StageError> {
    let json = std::env::var(WORKER_CONFIG_ENV).map_err(|_| StageError::Config(format!("a training worker needs {WORKER_CONFIG_ENV}")))?;
    let cfg: TrainConfig = serde_json::from_str(&json).map_err(|e| StageError::Config(format!("{WORKER_CONFIG_ENV}: {e}")))?;
    let inputs = Inputs::read(store_dir, &input_kinds(&cfg)?)?;
    let (ctx, plans) = RunContext::new(&inputs, store_dir, train_dir, &cfg)?;
    let device = default_device().map_err(|e| StageError::Config(e.to_string()))?;
    for line in runs.lines() {
        let id = line.map_err(|e| StageError::Failed(format!("reading the runs to train: {e}")))?;
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let plan = plans.iter().find(|p| p.id == id).ok_or_else(|| StageError::Config(format!("no run {id} in this configuration")))?;
        ctx.train_plan(plan, device, |_| {})?;
        writeln!(done, "{WORKER_DONE}{id}")
            .and_then(|_| done.flush())
            .map_err(|e| StageError::Failed(format!("reporting run {id}: {e}")))?;
    }
    Ok(())
}

impl Workers {
    /// `jobs` processes sharing `threads` threads (0 = every core of this process's pool).
    pub fn new(jobs: usize, threads: usize, command: Vec<std::ffi::OsString>) -> Workers {
        let total = if threads == 0 { rayon::current_num_threads() } else { threads };
        Workers { jobs, threads: (total / jobs.max(1)).max(1), command }
    }
}

/// Train `pending` in `w.jobs` worker processes, reporting the epochs they have completed to
/// `progress` about once a second; Ok when every run trained. The runs form one queue, the
/// longest first (epochs still to train): each worker is given its next run when it has
/// finished one, so no worker idles while runs wait. A failed worker's run is reported and the
/// queue goes on in the others.
pub(crate) fn train_in_workers(
    w: &Workers,
    pending: &[&RunPlan],
    (store_dir, train_dir): (&Path, &Path),
    cfg: &TrainConfig,
    progress: impl Fn(usize),
) -> Result<(), StageError> {
    use std::io::{BufRead, Write};
    // Each run's configured epochs, once: the progress loop below reads them every half second.
    let epochs: Vec<usize> = pending.iter().map(|p| cfg.epochs_of(&p.model)).collect();
    let epochs_done = |i: usize| genrelab_models::train::epochs_completed(&run_dir(train_dir, &pending[i].id)).unwrap_or(0).min(epochs[i]);
    let mut order: Vec<(usize, &RunPlan)> = pending.iter().enumerate().map(|(i, p)| (epochs[i] - epochs_done(i), *p)).collect();
    order.sort_by_key(|(left, _)| std::cmp::Reverse(*left)); // stable: ties keep the plan's order
    let mut queue: std::collections::VecDeque<String> = order.into_iter().map(|(_, p)| p.id.clone()).collect();
    let config = serde_json::to_string(cfg).expect("config to json");
    let jobs = w.jobs.min(queue.len());
    tracing::info!(jobs, runs = pending.len(), threads_each = w.threads, "training in worker processes");
    let (program, args) = w.command.split_first().ok_or_else(|| StageError::Config("no worker command to train runs with".into()))?;

    struct Worker {
        child: std::process::Child,
        stdin: Option<std::process::ChildStdin>,
        /// The run it trains now.
        current: Option<String>,
        exit: Option<std::process::ExitStatus>,
        reader: Option<std::thread::JoinHandle<()>>,
    }
    // Give a worker the queue's next run, or close its input when none is left (it then exits).
    let next = |wk: &mut Worker, queue: &mut std::collections::VecDeque<String>| {
        while let Some(stdin) = wk.stdin.as_mut() {
            let Some(id) = queue.pop_front() else { break };
            if writeln!(stdin, "{id}").and_then(|_| stdin.flush()).is_ok() {
                wk.current = Some(id);
                return;
            }
            queue.push_front(id); // it has exited: the run waits for another worker
            wk.stdin = None;
        }
        wk.stdin = None;
    };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    // Worker `i`; its finished runs arrive in `rx` as (i, run id).
    let spawn = |i: usize| -> Result<Worker, String> {
        let mut child = std::process::Command::new(program)
            .args(args)
            .arg("--store")
            .arg(store_dir)
            .arg("--train-dir")
            .arg(train_dir)
            .arg("--threads")
            .arg(w.threads.to_string())
            .env("GENRELAB_PROGRESS", "0")
            .env(WORKER_CONFIG_ENV, &config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a training worker ({}): {e}", Path::new(program).display()))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().expect("piped stdout"));
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix(WORKER_DONE) {
                    let _ = tx.send((i, id.to_string()));
                }
            }
        });
        Ok(Worker { child, stdin, current: None, exit: None, reader: Some(reader) })
    };
    // A worker that has exited: its input closed, its reader ended (every run it finished is in `rx`).
    let reap = |wk: &mut Worker| {
        wk.stdin = None;
        if let Some(r) = wk.reader.take() {
            let _ = r.join();
        }
    };
    let stop = |wk: &mut Worker| {
        let _ = wk.child.kill();
        wk.exit = wk.child.wait().ok();
        reap(wk);
    };
    let mut workers: Vec<Worker> = vec![];
    for i in 0..jobs {
        match spawn(i) {
            Ok(mut wk) => {
                next(&mut wk, &mut queue);
                workers.push(wk);
            }
            Err(e) => {
                workers.iter_mut().for_each(stop);
                return Err(StageError::Failed(e));
            }
        }
    }
    // A finished run is in `rx` before its worker's output ends; once a worker has exited and
    // its reader has ended, every run it finished has been received.
    let finished = |i: usize, id: String, workers: &mut Vec<Worker>, queue: &mut std::collections::VecDeque<String>| {
        let wk = &mut workers[i];
        if wk.current.as_deref() == Some(id.as_str()) {
            wk.current = None;
            next(wk, queue);
        }
    };
    loop {
        if let Ok((i, id)) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            finished(i, id, &mut workers, &mut queue);
        }
        for wk in workers.iter_mut().filter(|wk| wk.exit.is_none()) {
            wk.exit = wk.child.try_wait().map_err(|e| StageError::Failed(format!("waiting for a training worker: {e}")))?;
            if wk.exit.is_some() {
                reap(wk);
            }
        }
        while let Ok((i, id)) = rx.try_recv() {
            finished(i, id, &mut workers, &mut queue);
        }
        progress((0..pending.len()).map(epochs_done).sum());
        if workers.iter().all(|wk| wk.exit.is_some()) {
            break;
        }
    }
    let mut failed: Vec<String> = workers
        .iter()
        .filter(|wk| wk.current.is_some() || wk.exit.is_some_and(|e| !e.success()))
        .map(|wk| match &wk.current {
            Some(run) => format!("run {run}: {}", wk.exit.expect("exited")),
            None => format!("a worker: {}", wk.exit.expect("exited")),
        })
        .collect();
    if !queue.is_empty() {
        failed.push(format!("not started: {}", Vec::from(queue).join(", ")));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(StageError::Failed(format!("training worker(s) failed (their errors are printed above): {}", failed.join("; "))))
    }
}
