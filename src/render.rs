//! The command line's tables and lists for people (JSON output is the structs themselves).

use std::fmt::Write;
use std::path::Path;

use genrelab_pipeline::engine::Reason;
use genrelab_pipeline::{Engine, StageOutcome, StageStatus};
use genrelab_runs::predict::Prediction;
use genrelab_runs::tune::Trial;

/// `run`: what each stage did and why.
pub fn outcomes(outcomes: &[StageOutcome]) -> String {
    let mut out = format!("{:<12} {:<8} {:>8}  why\n", "stage", "action", "time");
    for o in outcomes {
        let time = if o.action == "ran" { format!("{:.2}s", o.seconds) } else { "-".into() };
        let why = if o.reasons.is_empty() { "current".into() } else { Reason::join(&o.reasons, "; ") };
        let _ = writeln!(out, "{:<12} {:<8} {:>8}  {}", o.stage, o.action, time, why);
    }
    out
}

/// `status`: each stage current or stale, when it last ran, why, and what a part-run holds.
pub fn status(workdir: &Path, status: &[StageStatus]) -> String {
    let mut out = format!("work folder: {}\n", workdir.display());
    let _ = writeln!(out, "{:<12} {:<8} {:<21} why", "stage", "state", "last run");
    for s in status {
        let state = if s.current { "current" } else { "stale" };
        let _ =
            writeln!(out, "{:<12} {:<8} {:<21} {}", s.stage, state, s.last_run.as_deref().unwrap_or("-"), Reason::join(&s.reasons, "; "));
        if let Some(p) = &s.progress {
            let _ = writeln!(out, "{:<43} done so far: {p}", "");
        }
    }
    out
}

/// `predict`: the model, then per file its best genres (and windows, warnings, errors).
pub fn predictions(model: &str, preds: &[Prediction]) -> String {
    let mut out = if model.contains('+') {
        format!("model: {model} (ensemble: each model's runs averaged, then the models, then the file's windows)\n")
    } else {
        format!("model: {model} (probabilities averaged over its runs and the file's windows)\n")
    };
    for p in preds {
        if let Some(e) = &p.error {
            let _ = writeln!(out, "{}: error: {e}", p.file);
            continue;
        }
        let top: Vec<String> = p.top.iter().map(|(g, pr)| format!("{g} {:.1}%", 100.0 * pr)).collect();
        let windows = if p.windows == 1 { "1 window".to_string() } else { format!("{} windows", p.windows) };
        let _ = writeln!(out, "{} ({:.1} s, {windows}): {}", p.file, p.seconds, top.join(", "));
        if let Some(w) = &p.warning {
            let _ = writeln!(out, "  warning: {w}");
        }
        for w in &p.timeline {
            let top: Vec<String> = w.top.iter().map(|(g, pr)| format!("{g} {:.0}%", 100.0 * pr)).collect();
            let _ = writeln!(out, "  {:>7.1}-{:<7.1} s  {}", w.start, w.end, top.join(", "));
        }
    }
    out
}

/// `tune`: the trials best first, then the best values as a config section.
pub fn trials(model: &str, trials: &[Trial]) -> anyhow::Result<String> {
    let mut out = format!("tuning {model} on validation parts (test parts unused), best first:\n");
    let _ = writeln!(out, "{:<17} {:>10} {:>9} {:>6} {:>8}  values", "trial", "valid loss", "valid acc", "epoch", "time");
    for t in trials {
        let _ = writeln!(
            out,
            "{:<17} {:>10.4} {:>8.1}% {:>6.1} {:>7.0}s  {}",
            t.trial,
            t.valid_loss,
            100.0 * t.valid_acc,
            t.mean_epoch,
            t.seconds,
            serde_json::to_string(&t.params)?
        );
    }
    if let Some(best) = trials.first() {
        let _ = writeln!(out, "\nbest values, as config:\n[train.model.{model}]");
        for (k, v) in &best.params {
            let _ = writeln!(out, "{k} = {v}");
        }
    }
    Ok(out)
}

/// `models`: the registry.
pub fn models() -> String {
    genrelab_models::registry().iter().map(|m| format!("{:<12} {}\n", m.name, m.about)).collect()
}

/// `stages`: each stage, what it needs and what it does.
pub fn stages(engine: &Engine<genrelab::Config>) -> anyhow::Result<String> {
    let mut out = String::new();
    for name in engine.stage_names() {
        let plan = engine.plan(&[name.to_string()])?;
        let s = plan.last().expect("plan ends with the stage");
        let _ = writeln!(out, "{:<10} needs [{}]: {}", name, s.deps().join(", "), s.about());
    }
    Ok(out)
}
