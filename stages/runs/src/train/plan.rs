//! Which runs a configuration and a split call for, and which rows each trains, validates and tests on.

use super::*;

/// One run: which model, which seed, which fold, which rows train, validate and test.
pub struct RunPlan {
    pub id: String,
    pub model: String,
    pub seed: u64,
    pub fold: Option<i32>,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

/// Whether a run of `fold` is among `folds` (None: every run is).
pub fn in_folds(folds: Option<&[i32]>, fold: Option<i32>) -> bool {
    folds.is_none_or(|f| fold.is_some_and(|x| f.contains(&x)))
}

/// Folds of a k-fold split, sorted.
pub fn folds_of(split: &[SplitRow]) -> Vec<i32> {
    let mut folds: Vec<i32> = split.iter().filter_map(|r| r.fold).collect();
    folds.sort();
    folds.dedup();
    folds
}

/// The validation fold of test fold `f`: the next one (cyclically).
fn valid_fold(split: &[SplitRow], f: i32) -> Option<i32> {
    let folds = folds_of(split);
    let i = folds.iter().position(|&x| x == f)?;
    (folds.len() > 2).then(|| folds[(i + 1) % folds.len()])
}

/// Rows of the feature matrix that a run tests on: fold `f` under k-fold, else the `test` part.
pub fn test_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>) -> Vec<usize> {
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold == Some(f),
        None => r.part.as_deref() == Some("test"),
    })
}

/// Rows a run validates on, when its recipe selects on validation: the next fold under k-fold,
/// else the `valid` part. Empty when it does not.
pub fn valid_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>, needs_validation: bool) -> Vec<usize> {
    if !needs_validation {
        return vec![];
    }
    match fold {
        Some(f) => match valid_fold(split, f) {
            Some(v) => rows_where(features, split, |r| r.fold == Some(v)),
            None => vec![],
        },
        None => rows_where(features, split, |r| r.part.as_deref() == Some("valid")),
    }
}

/// Rows that a run trains on: every other fold under k-fold (but the validation fold when the
/// recipe validates), else the `train` part.
pub fn train_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>, needs_validation: bool) -> Vec<usize> {
    let valid = fold.and_then(|f| valid_fold(split, f)).filter(|_| needs_validation);
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold.is_some_and(|x| x != f && Some(x) != valid),
        None => r.part.as_deref() == Some("train"),
    })
}

/// The feature rows of the split's tracks that `pred` selects: a track's one row, or all of its
/// windows (consecutive rows) with `features.excerpt = "windows"`.
fn rows_where(features: &FeatureMatrix, split: &[SplitRow], pred: impl Fn(&SplitRow) -> bool) -> Vec<usize> {
    let mut index: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (i, id) in features.track_ids.iter().enumerate() {
        index.entry(id.as_str()).or_default().push(i);
    }
    split.iter().filter(|r| pred(r)).filter_map(|r| index.get(r.track_id.as_str())).flatten().copied().collect()
}

/// The train / valid / test rows of every run the split and the config call for.
pub fn plan_runs(features: &FeatureMatrix, split: &[SplitRow], protocol: &str, cfg: &TrainConfig) -> Result<Vec<RunPlan>, StageError> {
    // k-fold, or a manifest's own folds (`given`): one run per fold.
    let given = folds_of(split);
    let by_fold = match Protocol::parse(protocol) {
        Some(Protocol::Kfold) => true,
        Some(Protocol::Given) => !given.is_empty(),
        _ => false,
    };
    let folds: Vec<Option<i32>> = if by_fold { given.into_iter().map(Some).collect() } else { vec![None] };
    let mut plans = vec![];
    for model in &cfg.models {
        let mcfg = cfg.for_model(model)?;
        let needs_valid = mcfg.needs_validation();
        for fold in &folds {
            let train = train_rows(features, split, *fold, needs_valid);
            let valid = valid_rows(features, split, *fold, needs_valid);
            let test = test_rows(features, split, *fold);
            if train.is_empty() {
                return Err(StageError::Failed(format!("the split gives run {model} no training clips")));
            }
            if needs_valid && valid.is_empty() {
                return Err(StageError::Config(format!(
                    "model {model} selects on validation (select = \"best_valid\" or patience) but the `{protocol}` split has no \
                     validation part: use split.valid_fraction > 0 (study), protocol = \"filtered\", or kfold with 3+ folds"
                )));
            }
            for seed in 0..mcfg.seeds as u64 {
                let fold_part = fold.map_or(String::new(), |f| format!("fold{f}-"));
                plans.push(RunPlan {
                    id: format!("{model}/{fold_part}seed{seed}"),
                    model: model.clone(),
                    seed,
                    fold: *fold,
                    train: train.clone(),
                    valid: valid.clone(),
                    test: test.clone(),
                });
            }
        }
    }
    Ok(plans)
}

/// Labels (sorted genre names, as the study's label encoder) and each row's label index.
pub fn labels_of(features: &FeatureMatrix) -> (Vec<String>, Vec<usize>) {
    let mut labels = features.genres.clone();
    labels.sort();
    labels.dedup();
    let y = features.genres.iter().map(|g| labels.binary_search(g).expect("label of a row")).collect();
    (labels, y)
}
