//! The split stage: which clips train, which validate, which test. Written once as the `split`
//! table and read by every later stage. Always by track, never by slice of a track.
//!
//! Protocols (`split.protocol`):
//! - `study`: the study's stratified hold-out (`train_test_split(stratify=y, test_size=0.2)`):
//!   `ceil(0.2 n)` test clips shared among genres in proportion to their size, the rounding
//!   remainder going to the genres with the largest fractional share. On GTZAN's 999 readable
//!   clips: 799 train (79 jazz) and 200 test (20 per genre).
//! - `kfold`: stratified k-fold; every clip gets a `fold` in `0..k`, each genre dealt evenly.
//! - `filtered`: the fault-filtered, artist-conditional split of Kereliuk, Sturm & Larsen (2015),
//!   443 / 197 / 290 (train / valid / test), from the lists shipped in `stages/data/gtzan-splits`
//!   (or `split.lists` to use other copies). Clips in no list get no part.
//!
//! - `given`: the parts or folds a manifest gave each clip (`download.columns.split` / `fold`).
//!
//! When the source gives clips a group (an artist or album, `download.columns.group`), `study`
//! and `kfold` keep every group whole: no group is in two parts or two folds, the parts still
//! stratified by class as well as whole groups allow. Shuffles use a seeded generator, so a seed
//! always gives the same split.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use genrelab_store::{SplitRow, TableMeta, names, write_split};
use serde::{Deserialize, Serialize};

use crate::StageError;
use crate::synthetic::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Study,
    Kfold,
    Filtered,
    Given,
}

impl Protocol {
    /// The protocol a split table's metadata names (`study`, `kfold`, ...).
    pub fn parse(name: &str) -> Option<Protocol> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    pub protocol: Protocol,
    /// `study`: fraction of clips held out for testing.
    pub test_fraction: f64,
    /// `study`: fraction of all clips taken from the training part (stratified) as a `valid`
    /// part, for recipes that select on validation (0 = none, the study's way).
    pub valid_fraction: f64,
    /// `kfold`: number of folds.
    pub folds: usize,
    pub seed: u64,
    /// `filtered`: a folder with `{train,valid,test}_filtered.txt`; unset uses the shipped lists.
    pub lists: Option<PathBuf>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { protocol: Protocol::Study, test_fraction: 0.2, valid_fraction: 0.0, folds: 10, seed: 42, lists: None }
    }
}

/// The fault-filtered lists as shipped with genrelab.
pub const FILTERED_LISTS: [(&str, &str); 3] = [
    ("train", include_str!("../gtzan-splits/train_filtered.txt")),
    ("valid", include_str!("../gtzan-splits/valid_filtered.txt")),
    ("test", include_str!("../gtzan-splits/test_filtered.txt")),
];

/// Clips by genre (genres and ids sorted), the starting point of every protocol.
fn by_genre(clips: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut g: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, genre) in clips {
        g.entry(genre).or_default().push(id);
    }
    g.values_mut().for_each(|v| v.sort());
    g
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

/// `n_test` split among classes in proportion to `counts`, largest remainders rounding up
/// (ties: larger class first, then the class order).
fn apportion(counts: &[usize], n_test: usize) -> Vec<usize> {
    let n: usize = counts.iter().sum();
    let exact: Vec<f64> = counts.iter().map(|&c| n_test as f64 * c as f64 / n as f64).collect();
    let mut alloc: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(counts[b].cmp(&counts[a])).then(a.cmp(&b))
    });
    let missing = n_test - alloc.iter().sum::<usize>();
    for &c in order.iter().take(missing) {
        alloc[c] += 1;
    }
    alloc
}

/// The study's stratified hold-out.
pub fn stratified_holdout(clips: &[(String, String)], test_fraction: f64, seed: u64) -> Vec<SplitRow> {
    let groups = by_genre(clips);
    let n = clips.len();
    let n_test = ((test_fraction * n as f64) - 1e-9).ceil().max(0.0) as usize;
    let counts: Vec<usize> = groups.values().map(Vec::len).collect();
    let alloc = apportion(&counts, n_test.min(n));
    let mut rng = Rng::new(seed);
    let mut rows = vec![];
    for ((genre, ids), k) in groups.into_iter().zip(alloc) {
        let mut ids = ids;
        shuffle(&mut ids, &mut rng);
        for (i, id) in ids.into_iter().enumerate() {
            let part = if i < k { "test" } else { "train" };
            rows.push(SplitRow { track_id: id.into(), genre: genre.into(), part: Some(part.into()), fold: None });
        }
    }
    rows.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    rows
}

/// Moves a stratified `fraction` of the `train` rows to a `valid` part.
pub fn with_validation(mut rows: Vec<SplitRow>, fraction: f64, seed: u64) -> Vec<SplitRow> {
    if fraction <= 0.0 {
        return rows;
    }
    let train: Vec<(String, String)> =
        rows.iter().filter(|r| r.part.as_deref() == Some("train")).map(|r| (r.track_id.clone(), r.genre.clone())).collect();
    let valid: std::collections::HashSet<String> = stratified_holdout(&train, fraction, seed.wrapping_add(1))
        .into_iter()
        .filter(|r| r.part.as_deref() == Some("test"))
        .map(|r| r.track_id)
        .collect();
    for r in rows.iter_mut() {
        if valid.contains(&r.track_id) {
            r.part = Some("valid".into());
        }
    }
    rows
}

/// Stratified k-fold: each genre shuffled and dealt round-robin, continuing where the last
/// genre stopped so that fold sizes differ by at most one.
pub fn stratified_kfold(clips: &[(String, String)], folds: usize, seed: u64) -> Vec<SplitRow> {
    let mut rng = Rng::new(seed);
    let mut rows = vec![];
    let mut next = 0usize;
    for (genre, mut ids) in by_genre(clips) {
        shuffle(&mut ids, &mut rng);
        for id in ids {
            rows.push(SplitRow { track_id: id.into(), genre: genre.into(), part: None, fold: Some((next % folds) as i32) });
            next += 1;
        }
    }
    rows.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    rows
}

/// Parse `genre/genre.000NN.wav` lines into track ids.
fn list_ids(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).filter_map(|l| {
        let file = l.rsplit('/').next()?;
        Some(file.strip_suffix(".wav").unwrap_or(file).to_string())
    })
}

/// The fault-filtered split; returns the rows and the listed tracks that are missing.
pub fn filtered(clips: &[(String, String)], lists: &[(&str, String)]) -> (Vec<SplitRow>, Vec<String>) {
    let mut part_of: HashMap<String, &str> = HashMap::new();
    for (part, text) in lists {
        for id in list_ids(text) {
            part_of.insert(id, part);
        }
    }
    let present: HashMap<&str, ()> = clips.iter().map(|(id, _)| (id.as_str(), ())).collect();
    let mut missing: Vec<String> = part_of.keys().filter(|id| !present.contains_key(id.as_str())).cloned().collect();
    missing.sort();
    let mut rows: Vec<SplitRow> = clips
        .iter()
        .map(|(id, genre)| SplitRow {
            track_id: id.clone(),
            genre: genre.clone(),
            part: part_of.get(id).map(|p| p.to_string()),
            fold: None,
        })
        .collect();
    rows.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    (rows, missing)
}

fn load_lists(cfg: &SplitConfig) -> Result<Vec<(&'static str, String)>, StageError> {
    FILTERED_LISTS
        .iter()
        .map(|(part, shipped)| match &cfg.lists {
            None => Ok((*part, shipped.to_string())),
            Some(dir) => {
                let p = dir.join(format!("{part}_filtered.txt"));
                std::fs::read_to_string(&p).map(|t| (*part, t)).map_err(|e| StageError::io(p, e))
            }
        })
        .collect()
}

/// A clip for the group-aware protocols: track id, class, group.
#[derive(Clone, Copy)]
pub struct GroupedClip<'a> {
    pub id: &'a str,
    pub class: &'a str,
    pub group: &'a str,
}

/// Groups (sorted by name, shuffled by `seed`, then largest first) with their clips and their
/// per-class counts over `classes`.
fn groups<'a>(clips: &[GroupedClip<'a>], classes: &[&'a str], rng: &mut Rng) -> Vec<(Vec<&'a str>, Vec<usize>)> {
    let mut by: BTreeMap<&str, (Vec<&str>, Vec<usize>)> = BTreeMap::new();
    for c in clips {
        let e = by.entry(c.group).or_insert_with(|| (vec![], vec![0; classes.len()]));
        e.0.push(c.id);
        e.1[classes.binary_search(&c.class).expect("class listed")] += 1;
    }
    let mut g: Vec<_> = by.into_values().collect();
    shuffle(&mut g, rng);
    g.sort_by_key(|(ids, _)| std::cmp::Reverse(ids.len()));
    g
}

fn classes_of<'a>(clips: &[GroupedClip<'a>]) -> Vec<&'a str> {
    let mut c: Vec<&str> = clips.iter().map(|c| c.class).collect();
    c.sort();
    c.dedup();
    c
}

/// The study's hold-out keeping groups whole: groups (largest first) go to `test` while they
/// fill more of each class's test quota than they overshoot it.
pub fn grouped_holdout(clips: &[GroupedClip], test_fraction: f64, seed: u64) -> Vec<SplitRow> {
    let classes = classes_of(clips);
    let counts: Vec<usize> = classes.iter().map(|k| clips.iter().filter(|c| c.class == *k).count()).collect();
    let n_test = ((test_fraction * clips.len() as f64) - 1e-9).ceil().max(0.0) as usize;
    let mut deficit = apportion(&counts, n_test.min(clips.len()));
    let mut rng = Rng::new(seed);
    let mut test = std::collections::HashSet::new();
    for (ids, per_class) in groups(clips, &classes, &mut rng) {
        let fill: usize = per_class.iter().zip(&deficit).map(|(g, d)| (*g).min(*d)).sum();
        let over: usize = per_class.iter().zip(&deficit).map(|(g, d)| g.saturating_sub(*d)).sum();
        if fill > over {
            deficit.iter_mut().zip(&per_class).for_each(|(d, g)| *d = d.saturating_sub(*g));
            test.extend(ids);
        }
    }
    let mut rows: Vec<SplitRow> = clips
        .iter()
        .map(|c| SplitRow {
            track_id: c.id.into(),
            genre: c.class.into(),
            part: Some(if test.contains(c.id) { "test" } else { "train" }.into()),
            fold: None,
        })
        .collect();
    rows.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    rows
}

/// Stratified k-fold keeping groups whole: each group (largest first) joins the fold where it
/// brings the per-class counts closest to an even share (ties: the smaller fold, then the lower).
pub fn grouped_kfold(clips: &[GroupedClip], folds: usize, seed: u64) -> Vec<SplitRow> {
    let classes = classes_of(clips);
    let target: Vec<f64> = classes.iter().map(|k| clips.iter().filter(|c| c.class == *k).count() as f64 / folds as f64).collect();
    let mut count = vec![vec![0usize; classes.len()]; folds];
    let mut size = vec![0usize; folds];
    let mut fold_of = HashMap::new();
    let mut rng = Rng::new(seed);
    for (ids, per_class) in groups(clips, &classes, &mut rng) {
        let cost = |f: usize| -> f64 {
            (0..classes.len()).map(|k| ((count[f][k] + per_class[k]) as f64 - target[k]).max(0.0).powi(2)).sum::<f64>()
        };
        let best = (0..folds).min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(size[a].cmp(&size[b])).then(a.cmp(&b))).expect("folds >= 1");
        count[best].iter_mut().zip(&per_class).for_each(|(c, g)| *c += g);
        size[best] += ids.len();
        fold_of.extend(ids.into_iter().map(|id| (id, best)));
    }
    let mut rows: Vec<SplitRow> = clips
        .iter()
        .map(|c| SplitRow { track_id: c.id.into(), genre: c.class.into(), part: None, fold: Some(fold_of[c.id] as i32) })
        .collect();
    rows.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    rows
}

/// Each class must be splittable: at least `need` clips (or groups, when grouped).
fn check_classes(clips: &[GroupedClip], grouped: bool, need: usize, what: &str) -> Result<(), StageError> {
    for class in classes_of(clips) {
        let mut units: Vec<&str> = clips.iter().filter(|c| c.class == class).map(|c| if grouped { c.group } else { c.id }).collect();
        units.sort();
        units.dedup();
        if units.len() < need {
            let unit = if grouped { "groups" } else { "clips" };
            return Err(StageError::Config(format!(
                "class {class:?} has {} {unit}; {what} needs at least {need} (add clips of it, remove it, or change the split)",
                units.len()
            )));
        }
    }
    Ok(())
}

/// Counts per part / fold, for the summary and the table's metadata.
pub fn counts(rows: &[SplitRow]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for r in rows {
        let key = match (&r.part, r.fold) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => format!("fold{f}"),
            (None, None) => "unused".into(),
        };
        *c.entry(key).or_insert(0) += 1;
    }
    c
}

/// Run the stage on the clips of the features table; `source` gives the groups, folds and parts
/// a manifest set (None: no groups).
pub fn make_split(
    store_dir: &Path,
    cfg: &SplitConfig,
    source: Option<&crate::source::SourceManifest>,
) -> Result<BTreeMap<String, usize>, StageError> {
    let mut clips = genrelab_store::tables::read_track_genres(&store_dir.join(names::FEATURES))?;
    // One entry per track: the windows of a long track (`features.excerpt = "windows"`) are
    // consecutive rows of one track, and go to one part together.
    clips.dedup_by(|a, b| a.0 == b.0);
    if clips.is_empty() {
        return Err(StageError::Failed("the features table is empty".into()));
    }
    if clips.iter().all(|(_, class)| *class == clips[0].1) {
        // Every prediction would be right: a figure of 100 % that means nothing.
        return Err(StageError::Failed(format!(
            "every clip has the label `{}`: a classifier needs at least two classes (check the labels the source gives: folder names, the manifest's label column)",
            clips[0].1
        )));
    }
    let given: HashMap<&str, &crate::source::ClipEntry> =
        source.map(|s| s.clips.iter().map(|c| (c.track_id.as_str(), c)).collect()).unwrap_or_default();
    let grouped = given.values().any(|c| c.group.is_some());
    let grouped_clips: Vec<GroupedClip> = clips
        .iter()
        .map(|(id, class)| GroupedClip { id, class, group: given.get(id.as_str()).and_then(|c| c.group.as_deref()).unwrap_or(id) })
        .collect();
    let mut meta = TableMeta::new("split")
        .with("protocol", serde_json::to_value(cfg.protocol).expect("serialises").as_str().unwrap_or_default())
        .with("seed", cfg.seed.to_string());
    if grouped && matches!(cfg.protocol, Protocol::Study | Protocol::Kfold) {
        let mut g: Vec<&str> = grouped_clips.iter().map(|c| c.group).collect();
        g.sort();
        g.dedup();
        meta = meta.with("grouped", g.len().to_string());
    }
    let rows = match cfg.protocol {
        Protocol::Study => {
            // A run needs a test part to be evaluated on (0 left every run with nothing to score).
            if !(cfg.test_fraction > 0.0 && cfg.test_fraction < 1.0) {
                return Err(StageError::Config(format!("split.test_fraction must be in (0, 1), got {}", cfg.test_fraction)));
            }
            if !(0.0..1.0).contains(&cfg.valid_fraction) || cfg.valid_fraction + cfg.test_fraction >= 1.0 {
                return Err(StageError::Config(format!(
                    "split.valid_fraction must be in [0, 1 - test_fraction), got {}",
                    cfg.valid_fraction
                )));
            }
            meta = meta.with("test_fraction", cfg.test_fraction.to_string()).with("valid_fraction", cfg.valid_fraction.to_string());
            if cfg.test_fraction > 0.0 {
                check_classes(&grouped_clips, grouped, 2, "a train / test split")?;
            }
            if grouped {
                let rows = grouped_holdout(&grouped_clips, cfg.test_fraction, cfg.seed);
                if cfg.valid_fraction > 0.0 {
                    let train: Vec<GroupedClip> = grouped_clips
                        .iter()
                        .filter(|c| {
                            rows.binary_search_by(|r| r.track_id.as_str().cmp(c.id)).is_ok_and(|i| rows[i].part.as_deref() == Some("train"))
                        })
                        .copied()
                        .collect();
                    let valid: std::collections::HashSet<String> =
                        grouped_holdout(&train, cfg.valid_fraction / (1.0 - cfg.test_fraction), cfg.seed.wrapping_add(1))
                            .into_iter()
                            .filter(|r| r.part.as_deref() == Some("test"))
                            .map(|r| r.track_id)
                            .collect();
                    rows.into_iter()
                        .map(|mut r| {
                            if valid.contains(&r.track_id) {
                                r.part = Some("valid".into());
                            }
                            r
                        })
                        .collect()
                } else {
                    rows
                }
            } else {
                with_validation(
                    stratified_holdout(&clips, cfg.test_fraction, cfg.seed),
                    cfg.valid_fraction / (1.0 - cfg.test_fraction),
                    cfg.seed,
                )
            }
        }
        Protocol::Kfold => {
            if cfg.folds < 2 || cfg.folds > clips.len() {
                return Err(StageError::Config(format!(
                    "split.folds must be between 2 and the number of clips ({}), got {}",
                    clips.len(),
                    cfg.folds
                )));
            }
            meta = meta.with("folds", cfg.folds.to_string());
            if grouped {
                check_classes(&grouped_clips, true, 2, "k-fold cross-validation")?;
                grouped_kfold(&grouped_clips, cfg.folds, cfg.seed)
            } else {
                check_classes(&grouped_clips, false, 2, "k-fold cross-validation")?;
                stratified_kfold(&clips, cfg.folds, cfg.seed)
            }
        }
        Protocol::Given => {
            let rows: Vec<SplitRow> = clips
                .iter()
                .map(|(id, genre)| {
                    let c = given.get(id.as_str());
                    SplitRow {
                        track_id: id.clone(),
                        genre: genre.clone(),
                        part: c.and_then(|c| c.part.clone()),
                        fold: c.and_then(|c| c.fold),
                    }
                })
                .collect();
            if rows.iter().all(|r| r.part.is_none() && r.fold.is_none()) {
                return Err(StageError::Config(
                    "split.protocol = \"given\" needs a split or fold column in the manifest (download.columns.split / fold)".into(),
                ));
            }
            rows
        }
        Protocol::Filtered => {
            let (rows, missing) = filtered(&clips, &load_lists(cfg)?);
            if !missing.is_empty() {
                tracing::warn!(
                    missing = missing.len(),
                    first = %missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    "tracks of the fault-filtered lists are not in the features table (rejected or absent)"
                );
            }
            meta = meta.with("missing_from_lists", missing.len().to_string());
            rows
        }
    };
    let c = counts(&rows);
    if matches!(cfg.protocol, Protocol::Study | Protocol::Filtered) && !c.contains_key("test") {
        return Err(StageError::Failed(format!(
            "the `{}` split has no test clips (parts: {c:?}): nothing could be evaluated{}",
            serde_json::to_value(cfg.protocol).expect("serialises").as_str().unwrap_or_default(),
            if cfg.protocol == Protocol::Filtered { "; none of the test list's tracks is in the features table" } else { "" }
        )));
    }
    meta = meta.with("counts", serde_json::to_string(&c).expect("serialises"));
    write_split(&store_dir.join(names::SPLIT), &meta, &rows)?;
    tracing::info!(counts = ?c, "split written");
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GTZAN's 1,000 ids, less jazz.00054 when `drop_corrupt`.
    pub fn gtzan_ids(drop_corrupt: bool) -> Vec<(String, String)> {
        let genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"];
        genres
            .iter()
            .flat_map(|g| (0..100).map(move |i| (format!("{g}.{i:05}"), g.to_string())))
            .filter(|(id, _)| !(drop_corrupt && id == "jazz.00054"))
            .collect()
    }

    fn part_counts(rows: &[SplitRow], part: &str, genre: Option<&str>) -> usize {
        rows.iter().filter(|r| r.part.as_deref() == Some(part) && genre.is_none_or(|g| r.genre == g)).count()
    }

    #[test]
    fn study_split_of_999_clips_is_799_200_with_79_jazz() {
        let clips = gtzan_ids(true);
        let rows = stratified_holdout(&clips, 0.2, 42);
        assert_eq!(rows.len(), 999);
        assert_eq!(part_counts(&rows, "train", None), 799);
        assert_eq!(part_counts(&rows, "test", None), 200);
        assert_eq!(part_counts(&rows, "train", Some("jazz")), 79);
        for g in ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"] {
            assert_eq!(part_counts(&rows, "test", Some(g)), 20, "{g}");
        }
        assert_eq!(rows, stratified_holdout(&clips, 0.2, 42), "same seed, same split");
        assert_ne!(rows, stratified_holdout(&clips, 0.2, 43), "another seed, another split");
    }

    #[test]
    fn apportion_gives_remainders_to_largest_fractions() {
        assert_eq!(apportion(&[100, 99], 40), vec![20, 20]);
        assert_eq!(apportion(&[10, 10, 10], 4), vec![2, 1, 1]);
        assert_eq!(apportion(&[5, 1], 0), vec![0, 0]);
    }

    #[test]
    fn kfold_is_stratified_balanced_and_disjoint() {
        let clips = gtzan_ids(true);
        let rows = stratified_kfold(&clips, 10, 1);
        assert_eq!(rows.len(), 999);
        let c = counts(&rows);
        let sizes: Vec<usize> = (0..10).map(|f| c[&format!("fold{f}")]).collect();
        assert!(sizes.iter().all(|&s| s == 99 || s == 100), "{sizes:?}");
        for f in 0..10 {
            for g in ["blues", "jazz"] {
                let n = rows.iter().filter(|r| r.fold == Some(f) && r.genre == g).count();
                assert!((9..=10).contains(&n), "fold {f} {g}: {n}");
            }
        }
        let mut ids: Vec<_> = rows.iter().map(|r| &r.track_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 999, "every track in exactly one fold");
    }

    #[test]
    fn filtered_split_is_443_197_290_and_reports_missing_tracks() {
        let lists: Vec<(&str, String)> = FILTERED_LISTS.iter().map(|(p, t)| (*p, t.to_string())).collect();
        let (rows, missing) = filtered(&gtzan_ids(false), &lists);
        assert_eq!(part_counts(&rows, "train", None), 443);
        assert_eq!(part_counts(&rows, "valid", None), 197);
        assert_eq!(part_counts(&rows, "test", None), 290);
        assert_eq!(rows.iter().filter(|r| r.part.is_none()).count(), 1000 - 930);
        assert!(missing.is_empty());

        let (rows, missing) = filtered(&gtzan_ids(true), &lists);
        assert_eq!(part_counts(&rows, "train", None), 442);
        assert_eq!(missing, ["jazz.00054"]);
    }
}
