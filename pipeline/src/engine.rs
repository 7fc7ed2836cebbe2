//! The incremental engine: stages declare their inputs, parameters and outputs; a stage runs
//! only when its fingerprint differs from the stamp written with its outputs, and `status` says
//! what changed.
//!
//! A stage's **fingerprint** is a hash of its name and version, the parameters it reads, the
//! output hashes of the stages it depends on and the content hashes of its inputs outside the
//! work folder, over a canonical JSON encoding (keys sorted: the order of a struct's fields does
//! not matter; stamps written before that are still accepted). Its **stamp** (`<workdir>/.genrelab/stamps/<stage>.json`) records those parts, the
//! hash of every output and a summary of the run. Outputs are written under temporary names and
//! renamed, and the stamp is written last: a run killed half-way leaves the earlier stages'
//! stamps intact and no stamp for the killed one, which therefore runs again, and only it.
//!
//! Downstream stages see an upstream stage through its outputs' hashes, not through its
//! fingerprint: a stage that reruns and produces identical outputs leaves its dependents current.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PipelineError;
use crate::fingerprint::{HashCache, hash_canonical_json, hash_json};

/// What the engine needs of an application's configuration: where its work folder is.
pub trait Workspace {
    fn workdir(&self) -> &Path;
}

/// What a stage's run can fail with: any error (the application's own types).
pub type StageFailure = Box<dyn std::error::Error + Send + Sync>;

/// The engine's files inside a work folder (stamps, the hash cache, the run log, the lock), and
/// the folder itself for an application's own layout.
#[derive(Debug, Clone)]
pub struct Paths {
    pub workdir: PathBuf,
}

impl Paths {
    pub fn new(workdir: &Path) -> Self {
        Paths { workdir: workdir.to_path_buf() }
    }
    /// The engine's own state: stamps, the hash cache, the run log.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join(".genrelab")
    }
    pub fn stamp(&self, stage: &str) -> PathBuf {
        self.state_dir().join("stamps").join(format!("{stage}.json"))
    }
    /// Left by a stage's run until its stamp is written: when it started, and its error if it
    /// failed (what `status` says of a stage without a stamp).
    pub fn unfinished(&self, stage: &str) -> PathBuf {
        self.state_dir().join("stamps").join(format!("{stage}.unfinished.json"))
    }
    pub fn events(&self) -> PathBuf {
        self.state_dir().join("events.jsonl")
    }
}

/// What a stage gets when it runs.
pub struct Ctx<'a, C> {
    pub cfg: &'a C,
    pub paths: &'a Paths,
    pub hashes: &'a mut HashCache,
    /// The user forced this stage (`--force`): e.g. the download stage asks the hub again.
    pub forced: bool,
    /// Draw progress bars.
    pub progress: bool,
}

/// The hash recorded for an optional input that does not exist.
const ABSENT: &str = "absent";

/// One step of the pipeline.
pub trait Stage<C> {
    fn name(&self) -> &'static str;
    /// Bump when the stage's code changes what it writes: every stamp of the old version goes stale.
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    /// Stages whose outputs this one reads.
    fn deps(&self) -> &'static [&'static str];
    /// The parameters this stage reads, and nothing else.
    fn params(&self, cfg: &C) -> Value;
    /// Files or folders outside the work folder that this stage reads (hashed by content).
    fn external_inputs(&self, _cfg: &C) -> Vec<PathBuf> {
        vec![]
    }
    /// Files the stage reads when they exist (a missing one is the stage's own business, such as
    /// a reject): hashed like the others, and recorded as absent when missing, so that the
    /// stage runs again when one appears.
    fn optional_inputs(&self, _cfg: &C) -> Vec<PathBuf> {
        vec![]
    }
    /// Files or folders this stage writes.
    fn outputs(&self, cfg: &C, paths: &Paths) -> Vec<PathBuf>;
    /// A check beyond hashes (e.g. that a cached download still exists); Some(reason) = stale.
    fn still_valid(&self, _cfg: &C, _paths: &Paths) -> Option<String> {
        None
    }
    /// What a stale stage's outputs already hold towards its next run (work a run keeps: a
    /// long stage's finished parts), for `status`; None when nothing.
    fn progress(&self, _cfg: &C, _paths: &Paths) -> Option<String> {
        None
    }
    /// Do the work; returns a summary recorded in the stamp.
    fn run(&self, ctx: &mut Ctx<C>) -> Result<Value, StageFailure>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Relative to the work folder when inside it.
    pub path: PathBuf,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub stage: String,
    pub version: u32,
    pub fingerprint: String,
    pub params: Value,
    /// Output hash of each upstream stage when this one ran.
    pub deps: BTreeMap<String, String>,
    /// Content hash of each external input when this one ran.
    pub externals: BTreeMap<String, String>,
    pub outputs: Vec<OutputRecord>,
    /// Hash of all output hashes: what dependents see.
    pub outputs_hash: String,
    pub summary: Value,
    pub finished_at: String,
    pub seconds: f64,
    pub genrelab_version: String,
}

impl Stamp {
    pub fn load(path: &Path) -> Option<Stamp> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// The current state of a stage's inputs, to compare with its stamp.
#[derive(Debug, Clone)]
struct Inputs {
    params: Value,
    deps: BTreeMap<String, String>,
    externals: BTreeMap<String, String>,
    fingerprint: String,
    /// The fingerprint as stamps written before it was canonical hold it (keys in the order
    /// the structs declare them): such a stamp stays valid until its stage runs again.
    legacy_fingerprint: String,
}

/// Why a stage is stale (or runs): each kind with its facts, rendered for people by `Display`
/// and serialised for `status --json` / `run --json` as `{"kind": ..., facts..., "text": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// `--force STAGE`.
    Forced,
    NeverRun,
    /// The last run failed, with its error.
    LastRunFailed {
        started: String,
        error: String,
    },
    /// The last run was killed (or is still running).
    LastRunUnfinished {
        started: String,
    },
    UpstreamStale {
        stage: String,
    },
    WaitsFor {
        stage: String,
    },
    InputMissing {
        path: String,
    },
    VersionChanged {
        from: u32,
        to: u32,
    },
    /// A parameter the stage reads changed (`key` dotted, from the stage's name).
    Parameter {
        key: String,
        old: Value,
        new: Value,
    },
    /// More parameters changed than are listed.
    MoreParameters {
        count: usize,
    },
    OutputOfChanged {
        stage: String,
    },
    InputChanged {
        path: String,
    },
    NoLongerReads {
        path: String,
    },
    FingerprintChanged,
    OutputMissing {
        path: String,
    },
    OutputModified {
        path: String,
    },
    /// A stage's own check of what it wrote (a hub download gone from the cache).
    Invalid {
        why: String,
    },
    /// The stage failed (in `run`'s outcome).
    Failed {
        error: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::NeverRun => write!(f, "never run"),
            Reason::LastRunFailed { started, error } => write!(f, "last run failed (started {started}): {error}"),
            Reason::LastRunUnfinished { started } => write!(f, "last run did not finish (started {started}; killed, or still running)"),
            Reason::UpstreamStale { stage } => write!(f, "upstream `{stage}` is stale"),
            Reason::WaitsFor { stage } => write!(f, "waits for `{stage}`, which has not run"),
            Reason::InputMissing { path } => write!(f, "input {path} does not exist"),
            Reason::VersionChanged { from, to } => write!(f, "stage version changed: {from} -> {to}"),
            Reason::Parameter { key, old, new } => write!(f, "parameter {key}: {old} -> {new}"),
            Reason::MoreParameters { count } => write!(f, "... and {count} more parameters"),
            Reason::OutputOfChanged { stage } => write!(f, "output of `{stage}` changed"),
            Reason::InputChanged { path } => write!(f, "input {path} changed"),
            Reason::NoLongerReads { path } => write!(f, "no longer reads {path}"),
            Reason::FingerprintChanged => write!(f, "fingerprint changed"),
            Reason::OutputMissing { path } => write!(f, "output {path} is missing"),
            Reason::OutputModified { path } => write!(f, "output {path} was modified"),
            Reason::Invalid { why } | Reason::Failed { error: why } => write!(f, "{why}"),
        }
    }
}

/// A reason equals the sentence it is rendered as (what people and older tests read).
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        *other == self.to_string().as_str()
    }
}

impl Reason {
    /// Reasons for people, joined by `sep`.
    pub fn join(reasons: &[Reason], sep: &str) -> String {
        reasons.iter().map(Reason::to_string).collect::<Vec<_>>().join(sep)
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, facts) = match self {
            Reason::Forced => ("forced", serde_json::json!({})),
            Reason::NeverRun => ("never_run", serde_json::json!({})),
            Reason::LastRunFailed { started, error } => ("last_run_failed", serde_json::json!({"started": started, "error": error})),
            Reason::LastRunUnfinished { started } => ("last_run_unfinished", serde_json::json!({"started": started})),
            Reason::UpstreamStale { stage } => ("upstream_stale", serde_json::json!({"stage": stage})),
            Reason::WaitsFor { stage } => ("waits_for", serde_json::json!({"stage": stage})),
            Reason::InputMissing { path } => ("input_missing", serde_json::json!({"path": path})),
            Reason::VersionChanged { from, to } => ("version_changed", serde_json::json!({"from": from, "to": to})),
            Reason::Parameter { key, old, new } => ("parameter", serde_json::json!({"key": key, "old": old, "new": new})),
            Reason::MoreParameters { count } => ("more_parameters", serde_json::json!({"count": count})),
            Reason::OutputOfChanged { stage } => ("output_of_changed", serde_json::json!({"stage": stage})),
            Reason::InputChanged { path } => ("input_changed", serde_json::json!({"path": path})),
            Reason::NoLongerReads { path } => ("no_longer_reads", serde_json::json!({"path": path})),
            Reason::FingerprintChanged => ("fingerprint_changed", serde_json::json!({})),
            Reason::OutputMissing { path } => ("output_missing", serde_json::json!({"path": path})),
            Reason::OutputModified { path } => ("output_modified", serde_json::json!({"path": path})),
            Reason::Invalid { why } => ("invalid", serde_json::json!({"why": why})),
            Reason::Failed { error } => ("failed", serde_json::json!({"error": error})),
        };
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), kind.into());
        if let Value::Object(facts) = facts {
            m.extend(facts);
        }
        m.insert("text".into(), self.to_string().into());
        Value::Object(m).serialize(s)
    }
}

/// Whether a stage is current, and why not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub current: bool,
    /// Empty when current.
    pub reasons: Vec<Reason>,
    pub last_run: Option<String>,
    pub seconds: Option<f64>,
    /// A stale stage's work already done towards its next run (the train stage's trained runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// What `run` did with one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageOutcome {
    pub stage: String,
    /// `ran`, `skipped` (current) or `failed`.
    pub action: String,
    pub reasons: Vec<Reason>,
    pub seconds: f64,
    pub summary: Value,
}

pub struct Engine<C> {
    stages: Vec<Box<dyn Stage<C>>>,
}

fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_unix(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ` from Unix seconds (civil-from-days, proleptic Gregorian).
pub fn format_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Dotted paths where two JSON values differ, with the old and new values.
pub fn json_diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                json_diff(&p, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (a, b) if a != b => out.push((prefix.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

/// Said once when another process holds the work folder's lock, before waiting for it.
pub fn waiting_for(workdir: &std::path::Path, holder: &str) {
    tracing::warn!("work folder {} is in use by {holder}; waiting for it to finish (Ctrl-C stops waiting)", workdir.display());
}

/// A reason per changed parameter; a change of the parameters' shape (a new section) can touch
/// dozens of keys, so past five the first four are named and the rest counted.
fn parameter_reasons(diffs: Vec<(String, Value, Value)>) -> Vec<Reason> {
    const SHOWN: usize = 4;
    let count = diffs.len();
    let shown = if count <= SHOWN + 1 { count } else { SHOWN };
    let mut out: Vec<Reason> = diffs.into_iter().take(shown).map(|(key, old, new)| Reason::Parameter { key, old, new }).collect();
    if shown < count {
        out.push(Reason::MoreParameters { count: count - shown });
    }
    out
}

impl<C: Workspace> Engine<C> {
    pub fn new(stages: Vec<Box<dyn Stage<C>>>) -> Self {
        Engine { stages }
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    fn find(&self, name: &str) -> Result<&dyn Stage<C>, PipelineError> {
        self.stages
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.as_ref())
            .ok_or_else(|| PipelineError::UnknownStage { name: name.into(), known: self.stage_names().join(", ") })
    }

    /// The stages needed for `targets` (all when empty), dependencies first.
    pub fn plan(&self, targets: &[String]) -> Result<Vec<&dyn Stage<C>>, PipelineError> {
        let mut wanted: Vec<&'static str> = vec![];
        fn visit<C: Workspace>(e: &Engine<C>, name: &str, wanted: &mut Vec<&'static str>) -> Result<(), PipelineError> {
            let s = e.find(name)?;
            for d in s.deps() {
                visit(e, d, wanted)?;
            }
            if !wanted.contains(&s.name()) {
                wanted.push(s.name());
            }
            Ok(())
        }
        if targets.is_empty() {
            for s in &self.stages {
                visit(self, s.name(), &mut wanted)?;
            }
        } else {
            for t in targets {
                visit(self, t, &mut wanted)?;
            }
        }
        wanted.iter().map(|n| self.find(n)).collect()
    }

    fn inputs(
        &self,
        stage: &dyn Stage<C>,
        cfg: &C,
        paths: &Paths,
        hashes: &mut HashCache,
    ) -> Result<Result<Inputs, Reason>, PipelineError> {
        let params = stage.params(cfg);
        let mut deps = BTreeMap::new();
        for d in stage.deps() {
            match Stamp::load(&paths.stamp(d)) {
                Some(s) => deps.insert(d.to_string(), s.outputs_hash),
                None => return Ok(Err(Reason::WaitsFor { stage: d.to_string() })),
            };
        }
        let mut externals = BTreeMap::new();
        for p in stage.external_inputs(cfg) {
            let h = hashes.path(&p)?;
            let Some(h) = h else {
                return Ok(Err(Reason::InputMissing { path: p.display().to_string() }));
            };
            externals.insert(p.display().to_string(), h);
        }
        for p in stage.optional_inputs(cfg) {
            let h = hashes.path(&p)?.unwrap_or_else(|| ABSENT.to_string());
            externals.insert(p.display().to_string(), h);
        }
        let what = serde_json::json!({
            "stage": stage.name(),
            "version": stage.version(),
            "params": params,
            "deps": deps,
            "externals": externals,
        });
        let (fingerprint, legacy_fingerprint) = (hash_canonical_json(&what), hash_json(&what));
        Ok(Ok(Inputs { params, deps, externals, fingerprint, legacy_fingerprint }))
    }

    /// Why `stage` is stale now (empty = current).
    fn reasons(
        &self,
        stage: &dyn Stage<C>,
        cfg: &C,
        paths: &Paths,
        hashes: &mut HashCache,
        upstream_stale: &[&str],
    ) -> Result<Vec<Reason>, PipelineError> {
        let mut why: Vec<Reason> =
            stage.deps().iter().filter(|d| upstream_stale.contains(d)).map(|d| Reason::UpstreamStale { stage: d.to_string() }).collect();
        let Some(stamp) = Stamp::load(&paths.stamp(stage.name())) else {
            why.push(unfinished_reason(paths, stage.name()));
            return Ok(why);
        };
        let inputs = match self.inputs(stage, cfg, paths, hashes)? {
            Ok(i) => i,
            Err(reason) => {
                why.push(reason);
                return Ok(why);
            }
        };
        if (inputs.fingerprint == stamp.fingerprint || inputs.legacy_fingerprint == stamp.fingerprint) && why.is_empty() {
            if let Some(r) = self.outputs_changed(&stamp, paths, hashes)? {
                return Ok(vec![r]);
            }
            return Ok(stage.still_valid(cfg, paths).map(|why| Reason::Invalid { why }).into_iter().collect());
        }
        if stamp.version != stage.version() {
            why.push(Reason::VersionChanged { from: stamp.version, to: stage.version() });
        }
        let mut diffs = vec![];
        json_diff(stage.name(), &stamp.params, &inputs.params, &mut diffs);
        why.extend(parameter_reasons(diffs));
        for (d, h) in &inputs.deps {
            if stamp.deps.get(d) != Some(h) {
                why.push(Reason::OutputOfChanged { stage: d.clone() });
            }
        }
        for (p, h) in &inputs.externals {
            if stamp.externals.get(p) != Some(h) {
                why.push(Reason::InputChanged { path: p.clone() });
            }
        }
        for p in stamp.externals.keys().filter(|p| !inputs.externals.contains_key(*p)) {
            why.push(Reason::NoLongerReads { path: p.clone() });
        }
        if why.is_empty() {
            why.push(Reason::FingerprintChanged);
        }
        Ok(why)
    }

    fn outputs_changed(&self, stamp: &Stamp, paths: &Paths, hashes: &mut HashCache) -> Result<Option<Reason>, PipelineError> {
        for o in &stamp.outputs {
            let p = paths.workdir.join(&o.path);
            match hashes.path(&p)? {
                None => return Ok(Some(Reason::OutputMissing { path: o.path.display().to_string() })),
                Some(h) if h != o.blake3 => return Ok(Some(Reason::OutputModified { path: o.path.display().to_string() })),
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// Current / stale (and why) for the planned stages.
    pub fn status(&self, cfg: &C, targets: &[String]) -> Result<Vec<StageStatus>, PipelineError> {
        let paths = Paths::new(cfg.workdir());
        let mut hashes = HashCache::load(&paths.state_dir().join("hashes.json"));
        let mut stale: Vec<&str> = vec![];
        let mut out = vec![];
        for stage in self.plan(targets)? {
            let reasons = self.reasons(stage, cfg, &paths, &mut hashes, &stale)?;
            if !reasons.is_empty() {
                stale.push(stage.name());
            }
            let stamp = Stamp::load(&paths.stamp(stage.name()));
            out.push(StageStatus {
                stage: stage.name().into(),
                last_run: stamp.as_ref().map(|s| s.finished_at.clone()),
                seconds: stamp.as_ref().map(|s| s.seconds),
                progress: if reasons.is_empty() { None } else { stage.progress(cfg, &paths) },
                current: reasons.is_empty(),
                reasons,
            });
        }
        hashes.save();
        Ok(out)
    }

    /// Run what is stale among `targets` (and their dependencies); `force` names stages to run
    /// regardless.
    pub fn run(&self, cfg: &C, targets: &[String], force: &[String], progress: bool) -> Result<Vec<StageOutcome>, PipelineError> {
        for f in force {
            self.find(f)?;
        }
        let paths = Paths::new(cfg.workdir());
        let _lock = crate::lock::WorkLock::acquire(cfg.workdir(), "run", |holder| waiting_for(cfg.workdir(), holder))?;
        std::fs::create_dir_all(paths.state_dir().join("stamps")).map_err(|e| PipelineError::io(paths.state_dir(), e))?;
        // The hash cache's and stamps' temporaries of a killed run.
        genrelab_store::atomic::remove_stale_temporaries(&paths.state_dir());
        genrelab_store::atomic::remove_stale_temporaries(&paths.state_dir().join("stamps"));
        let mut hashes = HashCache::load(&paths.state_dir().join("hashes.json"));
        let mut outcomes = vec![];
        for stage in self.plan(targets)? {
            let forced = force.iter().any(|f| f == stage.name());
            let mut reasons = self.reasons(stage, cfg, &paths, &mut hashes, &[])?;
            if forced {
                reasons.insert(0, Reason::Forced);
            }
            if reasons.is_empty() {
                tracing::info!(stage = stage.name(), "current, skipped");
                let o = StageOutcome { stage: stage.name().into(), action: "skipped".into(), reasons, seconds: 0.0, summary: Value::Null };
                log_event(&paths, &o);
                outcomes.push(o);
                continue;
            }
            match self.run_stage(stage, cfg, &paths, &mut hashes, forced, progress, &reasons) {
                Ok(o) => {
                    log_event(&paths, &o);
                    outcomes.push(o);
                }
                Err(e) => {
                    let o = StageOutcome {
                        stage: stage.name().into(),
                        action: "failed".into(),
                        reasons: vec![Reason::Failed { error: e.to_string() }],
                        seconds: 0.0,
                        summary: Value::Null,
                    };
                    log_event(&paths, &o);
                    hashes.save();
                    return Err(PipelineError::StageFailed { stage: stage.name().into(), source: Box::new(e) });
                }
            }
        }
        hashes.save();
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &self,
        stage: &dyn Stage<C>,
        cfg: &C,
        paths: &Paths,
        hashes: &mut HashCache,
        forced: bool,
        progress: bool,
        reasons: &[Reason],
    ) -> Result<StageOutcome, PipelineError> {
        let span = tracing::info_span!("stage", name = stage.name());
        let _enter = span.enter();
        tracing::info!(why = %Reason::join(reasons, "; "), "running");
        let inputs = match self.inputs(stage, cfg, paths, hashes)? {
            Ok(i) => i,
            Err(reason) => return Err(PipelineError::Failed(reason.to_string())),
        };
        // Sweep what a killed run may have left, and drop the old stamp: from here until the new
        // stamp is written, the stage's outputs are not to be trusted.
        for out in stage.outputs(cfg, paths) {
            if let Some(dir) = out.parent() {
                genrelab_store::atomic::remove_stale_temporaries(dir);
            }
            // An output folder (the report) holds temporaries of its own.
            if out.is_dir() {
                genrelab_store::atomic::remove_stale_temporaries(&out);
            }
        }
        let _ = std::fs::remove_file(paths.stamp(stage.name()));
        let unfinished = paths.unfinished(stage.name());
        let mark = |error: Option<&str>| {
            let json = serde_json::json!({ "started_at": now(), "error": error });
            let _ = genrelab_store::atomic::write_atomic(&unfinished, json.to_string().as_bytes());
        };
        mark(None);
        let start = Instant::now();
        let summary = stage
            .run(&mut Ctx { cfg, paths, hashes, forced, progress })
            .inspect_err(|e| mark(Some(&e.to_string())))
            .map_err(PipelineError::Stage)?;
        let seconds = start.elapsed().as_secs_f64();

        if std::env::var("GENRELAB_FAULT").is_ok_and(|f| f == format!("abort-before-stamp:{}", stage.name())) {
            // Fault injection for tests: die like a killed process, outputs written, no stamp.
            std::process::abort();
        }

        let mut outputs = vec![];
        for p in stage.outputs(cfg, paths) {
            let h = hashes
                .path(&p)?
                .ok_or_else(|| PipelineError::Failed(format!("stage `{}` did not write its output {}", stage.name(), p.display())))?;
            let rel = p.strip_prefix(&paths.workdir).map(Path::to_path_buf).unwrap_or(p.clone());
            outputs.push(OutputRecord { path: rel, blake3: h });
        }
        let outputs_hash = hash_json(&serde_json::to_value(&outputs).expect("json"));
        let stamp = Stamp {
            stage: stage.name().into(),
            version: stage.version(),
            fingerprint: inputs.fingerprint,
            params: inputs.params,
            deps: inputs.deps,
            externals: inputs.externals,
            outputs,
            outputs_hash,
            summary: summary.clone(),
            finished_at: now(),
            seconds,
            genrelab_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_vec_pretty(&stamp).expect("json");
        genrelab_store::atomic::write_atomic(paths.stamp(stage.name()), &json)?;
        let _ = std::fs::remove_file(&unfinished);
        hashes.save();
        tracing::info!(seconds = format!("{seconds:.2}"), "done");
        Ok(StageOutcome { stage: stage.name().into(), action: "ran".into(), reasons: reasons.to_vec(), seconds, summary })
    }
}

/// Why a stage without a stamp is stale: never run, or its last run failed (with the error) or
/// did not finish (killed, or still running), from the marker a run leaves until its stamp.
fn unfinished_reason(paths: &Paths, stage: &str) -> Reason {
    let marker: Option<Value> = std::fs::read(paths.unfinished(stage)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(m) = marker else {
        return Reason::NeverRun;
    };
    let started = m["started_at"].as_str().unwrap_or("?").to_string();
    match m["error"].as_str() {
        Some(e) => Reason::LastRunFailed { started, error: e.to_string() },
        None => Reason::LastRunUnfinished { started },
    }
}

fn log_event(paths: &Paths, o: &StageOutcome) {
    let line = serde_json::json!({ "time": now(), "stage": o.stage, "action": o.action, "reasons": o.reasons, "seconds": o.seconds });
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(paths.events()) {
        // One write of the whole line (formatting into the file wrote each JSON token with a
        // system call of its own, and an appended line could be interleaved with another's).
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_utc() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_795_478_400), "2026-11-24T00:00:00Z");
        assert_eq!(format_unix(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn many_parameter_changes_are_summarised() {
        let d = |n: usize| (0..n).map(|i| (format!("k{i}"), Value::from(1), Value::from(2))).collect::<Vec<_>>();
        assert_eq!(parameter_reasons(d(5)).len(), 5);
        let r = parameter_reasons(d(12));
        assert_eq!(r.len(), 5);
        assert_eq!((r[0].to_string().as_str(), r[4].to_string().as_str()), ("parameter k0: 1 -> 2", "... and 8 more parameters"));
        assert_eq!(r[4], Reason::MoreParameters { count: 8 });
    }

    #[test]
    fn json_diff_names_changed_keys() {
        let mut out = vec![];
        json_diff(
            "train",
            &serde_json::json!({"lr": 1e-4, "epochs": 150, "x": {"a": 1}}),
            &serde_json::json!({"lr": 1e-4, "epochs": 10, "x": {"a": 2}}),
            &mut out,
        );
        let out: Vec<String> = out.into_iter().map(|(k, a, b)| format!("{k}: {a} -> {b}")).collect();
        assert_eq!(out, ["train.epochs: 150 -> 10", "train.x.a: 1 -> 2"]);
    }
}
