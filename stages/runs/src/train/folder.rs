//! The train folder: what it holds towards the next run (for `status`), and runs no longer planned.

use super::*;

/// What a train folder holds towards the configured runs, for `genrelab status`: how many of
/// the `folds` x seeds runs of each configured model have a checkpoint, and the runs that have
/// trained part of their epochs (a killed or running stage; the next run resumes them). None
/// when the folder holds nothing of them. Checkpoints are counted, not checked against the
/// configuration: the stage does that when it runs.
pub fn folder_progress(train_dir: &Path, cfg: &TrainConfig, folds: usize) -> Option<String> {
    let (mut planned, mut trained, mut part) = (0, 0, vec![]);
    for model in &cfg.models {
        let Ok(mcfg) = cfg.for_model(model) else { continue };
        planned += mcfg.seeds * folds;
        let mut runs: Vec<PathBuf> = std::fs::read_dir(train_dir.join(model)).into_iter().flatten().flatten().map(|e| e.path()).collect();
        runs.sort();
        for run in runs {
            if run.join(CHECKPOINT).exists() {
                trained += 1;
            } else if let Some(n) = genrelab_models::train::epochs_completed(&run) {
                let name = run.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                part.push(format!("{model}/{name} at epoch {n} of {}", mcfg.recipe.epochs));
            }
        }
    }
    if trained == 0 && part.is_empty() {
        return None;
    }
    let mut text = format!("{trained} of {planned} runs have a checkpoint");
    if !part.is_empty() {
        text.push_str(&format!(", {} part-trained ({})", part.len(), part.join(", ")));
    }
    Some(text)
}

pub(crate) fn remove_unplanned(train_dir: &Path, wanted: &std::collections::HashSet<&str>) {
    for model_dir in std::fs::read_dir(train_dir).into_iter().flatten().flatten() {
        for run in std::fs::read_dir(model_dir.path()).into_iter().flatten().flatten() {
            let id = format!("{}/{}", model_dir.file_name().to_string_lossy(), run.file_name().to_string_lossy());
            if !wanted.contains(id.as_str()) {
                let _ = std::fs::remove_dir_all(run.path());
            }
        }
        let _ = std::fs::remove_dir(model_dir.path()); // only if now empty
    }
}
