//! The engine on toy stages: current / stale on input, parameter and version changes, output
//! tampering, and resuming after a failure half-way through the graph.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use genrelab_pipeline::engine::{Ctx, Engine, Paths, Stage, StageFailure, Workspace};
use serde_json::{Value, json};

/// The toy stages' own configuration: the engine knows only that it has a work folder.
#[derive(Debug, Clone)]
struct Toy {
    workdir: PathBuf,
    /// Read by `scale`.
    folds: usize,
    /// Read by no stage.
    seed: u64,
    other: u32,
}

impl Workspace for Toy {
    fn workdir(&self) -> &std::path::Path {
        &self.workdir
    }
}

/// `copy`: reads an external file, writes it upper-cased.
struct Copy {
    input: PathBuf,
    version: u32,
}
/// `scale`: reads copy's output, writes it repeated `folds` times; can be told to fail.
struct Scale {
    fail: Rc<Cell<bool>>,
}

impl Stage<Toy> for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn about(&self) -> &'static str {
        "toy"
    }
    fn deps(&self) -> &'static [&'static str] {
        &[]
    }
    fn params(&self, _cfg: &Toy) -> Value {
        json!({})
    }
    fn external_inputs(&self, _cfg: &Toy) -> Vec<PathBuf> {
        vec![self.input.clone()]
    }
    fn outputs(&self, _cfg: &Toy, paths: &Paths) -> Vec<PathBuf> {
        vec![paths.workdir.join("copy.txt")]
    }
    fn run(&self, ctx: &mut Ctx<Toy>) -> Result<Value, StageFailure> {
        let text = std::fs::read_to_string(&self.input).unwrap().to_uppercase();
        genrelab_store::atomic::write_atomic(ctx.paths.workdir.join("copy.txt"), text.as_bytes()).unwrap();
        Ok(json!({"chars": text.len()}))
    }
}

impl Stage<Toy> for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "toy"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["copy"]
    }
    fn params(&self, cfg: &Toy) -> Value {
        json!({"folds": cfg.folds})
    }
    fn outputs(&self, _cfg: &Toy, paths: &Paths) -> Vec<PathBuf> {
        vec![paths.workdir.join("scale.txt")]
    }
    fn run(&self, ctx: &mut Ctx<Toy>) -> Result<Value, StageFailure> {
        if self.fail.get() {
            return Err("simulated crash".into());
        }
        let text = std::fs::read_to_string(ctx.paths.workdir.join("copy.txt")).unwrap().repeat(ctx.cfg.folds);
        genrelab_store::atomic::write_atomic(ctx.paths.workdir.join("scale.txt"), text.as_bytes()).unwrap();
        Ok(Value::Null)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    input: PathBuf,
    cfg: Toy,
    fail: Rc<Cell<bool>>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.txt");
        std::fs::write(&input, "abc").unwrap();
        let cfg = Toy { workdir: dir.path().join("work"), folds: 10, seed: 42, other: 128 };
        Fixture { input, cfg, fail: Rc::new(Cell::new(false)), _dir: dir }
    }
    fn engine(&self, copy_version: u32) -> Engine<Toy> {
        Engine::new(vec![Box::new(Copy { input: self.input.clone(), version: copy_version }), Box::new(Scale { fail: self.fail.clone() })])
    }
    /// Run everything; return the stages that ran.
    fn run(&self, copy_version: u32) -> Vec<String> {
        self.engine(copy_version)
            .run(&self.cfg, &[], &[], false)
            .unwrap()
            .into_iter()
            .filter(|o| o.action == "ran")
            .map(|o| o.stage)
            .collect()
    }
    fn reasons(&self, stage: &str) -> Vec<String> {
        let st = self.engine(1).status(&self.cfg, &[]).unwrap();
        st.into_iter().find(|s| s.stage == stage).unwrap().reasons.iter().map(|r| r.to_string()).collect()
    }
}

#[test]
fn first_run_runs_all_then_nothing_is_stale() {
    let f = Fixture::new();
    assert_eq!(f.reasons("copy"), ["never run"]);
    assert_eq!(f.run(1), ["copy", "scale"]);
    assert!(f.reasons("copy").is_empty() && f.reasons("scale").is_empty());
    assert_eq!(f.run(1), Vec::<String>::new());
    assert_eq!(std::fs::read_to_string(f.cfg.workdir.join("scale.txt")).unwrap(), "ABC".repeat(10));
}

#[test]
fn a_parameter_change_reruns_only_the_stage_that_reads_it() {
    let mut f = Fixture::new();
    f.run(1);
    f.cfg.folds = 3;
    assert!(f.reasons("copy").is_empty());
    assert_eq!(f.reasons("scale"), ["parameter scale.folds: 10 -> 3"]);
    // Parameters this stage does not read change nothing.
    f.cfg.seed = 1234;
    f.cfg.other = 64;
    assert_eq!(f.run(1), ["scale"]);
    assert_eq!(std::fs::read_to_string(f.cfg.workdir.join("scale.txt")).unwrap(), "ABC".repeat(3));
}

#[test]
fn input_content_not_mtime_decides() {
    let f = Fixture::new();
    f.run(1);
    // Same bytes, new mtime (a `touch`): still current.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&f.input, "abc").unwrap();
    assert_eq!(f.run(1), Vec::<String>::new());
    // New bytes: the stage reading it and everything downstream.
    std::fs::write(&f.input, "xyz").unwrap();
    assert!(f.reasons("copy")[0].starts_with("input ") && f.reasons("copy")[0].ends_with("changed"));
    assert_eq!(f.reasons("scale"), ["upstream `copy` is stale"]);
    assert_eq!(f.run(1), ["copy", "scale"]);
}

#[test]
fn a_stage_version_bump_reruns_it_and_identical_outputs_keep_dependents_current() {
    let f = Fixture::new();
    f.run(1);
    let st = f.engine(2).status(&f.cfg, &[]).unwrap();
    assert_eq!(st[0].reasons, ["stage version changed: 1 -> 2"]);
    // copy reruns and writes the same bytes: scale sees the same output hash and stays current.
    assert_eq!(f.run(2), ["copy"]);
}

#[test]
fn tampered_or_missing_outputs_make_the_stage_stale() {
    let f = Fixture::new();
    f.run(1);
    std::fs::write(f.cfg.workdir.join("scale.txt"), "edited").unwrap();
    assert_eq!(f.reasons("scale"), ["output scale.txt was modified"]);
    std::fs::remove_file(f.cfg.workdir.join("scale.txt")).unwrap();
    assert_eq!(f.reasons("scale"), ["output scale.txt is missing"]);
    assert_eq!(f.run(1), ["scale"]);
}

#[test]
fn a_failed_stage_leaves_earlier_stamps_and_resumes_from_itself() {
    let f = Fixture::new();
    f.fail.set(true);
    let err = f.engine(1).run(&f.cfg, &[], &[], false).unwrap_err().to_string();
    assert!(err.contains("stage `scale` failed") && err.contains("simulated crash"), "{err}");
    assert!(f.reasons("copy").is_empty(), "copy finished and is current");
    let why = f.reasons("scale");
    assert!(why.len() == 1 && why[0].starts_with("last run failed (started 20") && why[0].ends_with("simulated crash"), "{why:?}");
    f.fail.set(false);
    assert_eq!(f.run(1), ["scale"]);
    assert!(f.reasons("scale").is_empty(), "a finished run clears the failure");
}

#[test]
fn force_and_targets() {
    let f = Fixture::new();
    let e = f.engine(1);
    let ran: Vec<_> = e.run(&f.cfg, &["copy".into()], &[], false).unwrap().into_iter().map(|o| (o.stage, o.action)).collect();
    assert_eq!(ran, [("copy".to_string(), "ran".to_string())], "a target runs only what it needs");
    let out = e.run(&f.cfg, &[], &["copy".into()], false).unwrap();
    assert_eq!(out[0].reasons, ["forced"]);
    assert_eq!(out[0].action, "ran");
    let err = e.run(&f.cfg, &["nope".into()], &[], false).unwrap_err().to_string();
    assert!(err.contains("unknown stage `nope`") && err.contains("copy, scale"), "{err}");
}
