//! Worker processes (`jobs` > 1): a queue of runs, most epochs first, one process per job; the
//! protocol between the stage and its workers (arguments, environment, reports) and the pool's
//! state machine (`WorkerState`) are all in this file.

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

/// One worker as the pool sees it. The pool's protocol is this machine and [`WorkerState::on`]:
/// a worker is given one run id at a time on its input and reports it with [`WORKER_DONE`];
/// when the queue is empty its input is closed and it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerState {
    /// Started, not yet given a run.
    Started,
    /// Training this run (its id went to the worker's input).
    Training(String),
    /// Its input is closed (no run left for it, or it stopped reading): it is expected to exit.
    Closing,
    /// It has exited, with the run it had been given and not reported (if any).
    Exited { success: bool, status: String, unfinished: Option<String> },
}

/// What happens to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerEvent {
    /// It is ready for a run (just started).
    Ready,
    /// It reported this run trained.
    Finished(String),
    /// Its input could not be written: it has stopped reading.
    InputClosed,
    /// It has exited. Every report it printed has been delivered before this.
    Exited { success: bool, status: String },
}

/// What the pool does with a worker after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerAction {
    /// Write this run id to its input.
    Send(String),
    /// Close its input.
    Close,
    Nothing,
}

impl WorkerState {
    /// The state after `event`, taking the worker's next run from the front of `queue` (a run
    /// whose id could not be written goes back to the front), and what to do with the worker.
    pub(crate) fn on(self, event: WorkerEvent, queue: &mut std::collections::VecDeque<String>) -> (WorkerState, WorkerAction) {
        use {WorkerAction as A, WorkerEvent as E, WorkerState as S};
        let assign = |queue: &mut std::collections::VecDeque<String>| match queue.pop_front() {
            Some(id) => (S::Training(id.clone()), A::Send(id)),
            None => (S::Closing, A::Close),
        };
        match (self, event) {
            (exited @ S::Exited { .. }, _) => (exited, A::Nothing),
            (state, E::Exited { success, status }) => {
                let unfinished = match state {
                    S::Training(run) => Some(run),
                    _ => None,
                };
                (S::Exited { success, status, unfinished }, A::Nothing)
            }
            (S::Started, E::Ready) => assign(queue),
            (S::Training(run), E::Finished(id)) if run == id => assign(queue),
            (S::Training(run), E::InputClosed) => {
                queue.push_front(run);
                (S::Closing, A::Close)
            }
            (_, E::InputClosed) => (S::Closing, A::Close),
            // A report of a run it was not given, or a second `Ready`: nothing changes.
            (state, E::Finished(_) | E::Ready) => (state, A::Nothing),
        }
    }
}

/// A worker process and its state.
struct Worker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// Forwards its reports to the pool's channel; joined when it exits.
    reader: Option<std::thread::JoinHandle<()>>,
    state: WorkerState,
}

impl Worker {
    /// Start worker `i` of `w`; its reports arrive in `tx` as `(i, run id)`.
    fn spawn(
        i: usize,
        w: &Workers,
        (store_dir, train_dir): (&Path, &Path),
        config: &str,
        tx: &std::sync::mpsc::Sender<(usize, String)>,
    ) -> Result<Worker, StageError> {
        use std::io::BufRead;
        let (program, args) = w.command.split_first().ok_or_else(|| StageError::Config("no worker command to train runs with".into()))?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .arg("--store")
            .arg(store_dir)
            .arg("--train-dir")
            .arg(train_dir)
            .arg("--threads")
            .arg(w.threads.to_string())
            .env("GENRELAB_PROGRESS", "0")
            .env(WORKER_CONFIG_ENV, config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| StageError::Failed(format!("starting a training worker ({}): {e}", Path::new(program).display())))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().expect("piped stdout"));
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix(WORKER_DONE) {
                    let _ = tx.send((i, id.to_string()));
                }
            }
        });
        Ok(Worker { child, stdin, reader: Some(reader), state: WorkerState::Started })
    }

    /// Apply `event` and carry out what it calls for.
    fn on(&mut self, event: WorkerEvent, queue: &mut std::collections::VecDeque<String>) {
        use std::io::Write;
        let (state, action) = std::mem::replace(&mut self.state, WorkerState::Closing).on(event, queue);
        self.state = state;
        match action {
            WorkerAction::Send(id) => {
                let sent = self.stdin.as_mut().is_some_and(|stdin| writeln!(stdin, "{id}").and_then(|_| stdin.flush()).is_ok());
                if !sent {
                    self.on(WorkerEvent::InputClosed, queue);
                }
            }
            WorkerAction::Close => self.stdin = None,
            WorkerAction::Nothing => {}
        }
    }

    /// Whether the process has ended; if so its reader is joined (so every report it printed
    /// is in the channel) and its exit is returned as the event to apply after those reports.
    fn poll_exit(&mut self) -> Result<Option<WorkerEvent>, StageError> {
        if matches!(self.state, WorkerState::Exited { .. }) {
            return Ok(None);
        }
        let status = self.child.try_wait().map_err(|e| StageError::Failed(format!("waiting for a training worker: {e}")))?;
        Ok(status.map(|status| {
            self.stdin = None;
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            WorkerEvent::Exited { success: status.success(), status: status.to_string() }
        }))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
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
    dirs: (&Path, &Path),
    cfg: &TrainConfig,
    progress: impl Fn(usize),
) -> Result<(), StageError> {
    let train_dir = dirs.1;
    // Each run's configured epochs, once: the progress loop below reads them every half second.
    let epochs: Vec<usize> = pending.iter().map(|p| cfg.epochs_of(&p.model)).collect();
    let epochs_done = |i: usize| genrelab_models::train::epochs_completed(&run_dir(train_dir, &pending[i].id)).unwrap_or(0).min(epochs[i]);
    let mut order: Vec<(usize, &RunPlan)> = pending.iter().enumerate().map(|(i, p)| (epochs[i] - epochs_done(i), *p)).collect();
    order.sort_by_key(|(left, _)| std::cmp::Reverse(*left)); // stable: ties keep the plan's order
    let mut queue: std::collections::VecDeque<String> = order.into_iter().map(|(_, p)| p.id.clone()).collect();
    let config = serde_json::to_string(cfg).expect("config to json");
    let jobs = w.jobs.min(queue.len());
    tracing::info!(jobs, runs = pending.len(), threads_each = w.threads, "training in worker processes");

    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let mut workers: Vec<Worker> = vec![];
    for i in 0..jobs {
        match Worker::spawn(i, w, dirs, &config, &tx) {
            Ok(mut wk) => {
                wk.on(WorkerEvent::Ready, &mut queue);
                workers.push(wk);
            }
            Err(e) => {
                workers.iter_mut().for_each(Worker::kill);
                return Err(e);
            }
        }
    }
    loop {
        if let Ok((i, id)) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            workers[i].on(WorkerEvent::Finished(id), &mut queue);
        }
        // Exits are applied after the reports the exited workers printed (their readers have
        // ended, so those reports are all in the channel by now).
        let mut exits = vec![];
        for (i, wk) in workers.iter_mut().enumerate() {
            if let Some(exit) = wk.poll_exit()? {
                exits.push((i, exit));
            }
        }
        while let Ok((i, id)) = rx.try_recv() {
            workers[i].on(WorkerEvent::Finished(id), &mut queue);
        }
        for (i, exit) in exits {
            workers[i].on(exit, &mut queue);
        }
        progress((0..pending.len()).map(epochs_done).sum());
        if workers.iter().all(|wk| matches!(wk.state, WorkerState::Exited { .. })) {
            break;
        }
    }
    let mut failed: Vec<String> = workers
        .iter()
        .filter_map(|wk| match &wk.state {
            WorkerState::Exited { unfinished: Some(run), status, .. } => Some(format!("run {run}: {status}")),
            WorkerState::Exited { success: false, status, .. } => Some(format!("a worker: {status}")),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::{WorkerAction as A, WorkerEvent as E, WorkerState as S};
    use std::collections::VecDeque;

    fn queue(ids: &[&str]) -> VecDeque<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_worker_takes_runs_one_at_a_time_until_the_queue_is_empty() {
        let mut q = queue(&["a", "b"]);
        let (s, a) = S::Started.on(E::Ready, &mut q);
        assert_eq!((&s, &a), (&S::Training("a".into()), &A::Send("a".into())));
        // A report of another run changes nothing.
        let (s, a) = s.on(E::Finished("b".into()), &mut q);
        assert_eq!((&s, &a, q.len()), (&S::Training("a".into()), &A::Nothing, 1));
        let (s, a) = s.on(E::Finished("a".into()), &mut q);
        assert_eq!((&s, &a), (&S::Training("b".into()), &A::Send("b".into())));
        let (s, a) = s.on(E::Finished("b".into()), &mut q);
        assert_eq!((&s, &a), (&S::Closing, &A::Close));
        let (s, a) = s.on(E::Exited { success: true, status: "exit status: 0".into() }, &mut q);
        assert_eq!(s, S::Exited { success: true, status: "exit status: 0".into(), unfinished: None });
        assert_eq!(a, A::Nothing);
        // An exited worker stays exited, whatever arrives late.
        assert_eq!(s.clone().on(E::Finished("b".into()), &mut q).0, s);
    }

    #[test]
    fn a_run_that_could_not_be_given_goes_back_to_the_front_and_an_exit_keeps_the_unfinished_run() {
        let mut q = queue(&["a", "b"]);
        let (s, _) = S::Started.on(E::Ready, &mut q);
        let (s, a) = s.on(E::InputClosed, &mut q);
        assert_eq!((s, a, q.clone()), (S::Closing, A::Close, queue(&["a", "b"])));
        let (s, _) = S::Started.on(E::Ready, &mut q);
        let (s, _) = s.on(E::Exited { success: false, status: "exit status: 3".into() }, &mut q);
        assert_eq!(s, S::Exited { success: false, status: "exit status: 3".into(), unfinished: Some("a".into()) });
        assert_eq!(q, queue(&["b"]));
    }
}
