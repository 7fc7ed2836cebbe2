//! The one configuration file (TOML). Every parameter has a documented default
//! (`genrelab config` prints them all); a stage's fingerprint holds exactly the parameters it
//! reads, so editing one makes just the stages that depend on it stale.

use std::path::{Path, PathBuf};

use genrelab_audio::FeatureConfig;
use genrelab_data::descriptors::DescriptorConfig;
use genrelab_data::download::DownloadConfig;
use genrelab_data::split::SplitConfig;
use genrelab_runs::evaluate::EvaluateConfig;
use genrelab_runs::train::TrainConfig;
use genrelab_runs::tune::TuneConfig;
use serde::{Deserialize, Serialize};

use genrelab_pipeline::PipelineError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where stage outputs, the store and the stamps live (relative to the config file).
    pub workdir: PathBuf,
    /// Worker threads for parallel stages and for training and prediction on the CPU (libtorch's
    /// intra-op pool); 0 = every core (or `RAYON_NUM_THREADS`). Results are reproducible at a
    /// given thread count; other counts give the same figures up to float rounding. Not a
    /// parameter of any result.
    pub threads: usize,
    /// Training runs at once, each in a process of its own with `threads / jobs` threads
    /// (libtorch's random generator is global to a process, so runs that share one cannot train
    /// at once and stay deterministic). 1 = one run after another in this process. Runs of many
    /// folds or seeds use a machine's cores better this way: two one-thread processes trained
    /// 1.08 - 1.33x the samples of one process on both cores of a 2-core machine for the study's
    /// CNNs, as many for the resnet (bench/results/jobs.md). A run's figures are those of one process on as many threads.
    /// Not a parameter of any result.
    pub jobs: usize,
    /// The command that trains runs in a worker process (`genrelab --quiet train-runs`), set by
    /// the command line; not part of the file.
    #[serde(skip)]
    pub worker: Vec<std::ffi::OsString>,
    pub download: DownloadConfig,
    pub features: FeatureConfig,
    pub descriptors: DescriptorConfig,
    pub split: SplitConfig,
    pub train: TrainConfig,
    pub evaluate: EvaluateConfig,
    /// `genrelab tune`: the search space (not a stage: no stage reads it).
    pub tune: TuneConfig,
    /// The largest file and the longest clip read (features, descriptors, predict); beyond them
    /// a clip is a reject.
    pub limits: genrelab_audio::audio::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workdir: PathBuf::from("work/gtzan"),
            threads: 0,
            jobs: 1,
            worker: vec![],
            download: DownloadConfig::default(),
            features: FeatureConfig::default(),
            descriptors: DescriptorConfig::default(),
            split: SplitConfig::default(),
            train: TrainConfig::default(),
            evaluate: EvaluateConfig::default(),
            tune: TuneConfig::default(),
            limits: Default::default(),
        }
    }
}

impl Config {
    /// Read a config file; relative paths in it are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, PipelineError> {
        Self::load_with(path, &[])
    }

    /// Read a config file with `KEY=VALUE` overrides applied (`--set`, see [`with_overrides`]).
    pub fn load_with(path: &Path, sets: &[String]) -> Result<Config, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        Self::parse_with(&text, sets, path.parent().unwrap_or(Path::new(".")), path)
    }

    /// [`Config::parse`] of `text` with `KEY=VALUE` overrides applied. An error the file has
    /// without them is reported as the file's (its own line numbers); one that an override
    /// brings names that `--set`.
    pub fn parse_with(text: &str, sets: &[String], base: &Path, name: &Path) -> Result<Config, PipelineError> {
        let err = match Self::parse(&with_overrides(text, sets, name)?, base, name) {
            Ok(cfg) => return Ok(cfg),
            Err(e) if sets.is_empty() => return Err(e),
            Err(e) => e,
        };
        Self::parse(text, base, name)?;
        for i in 0..sets.len() {
            let message = match toml::from_str::<Config>(&with_overrides(text, &sets[..=i], name)?) {
                Ok(cfg) => match cfg.validate() {
                    Ok(()) => continue,
                    Err(m) => m,
                },
                Err(e) => e.message().to_string(),
            };
            return Err(PipelineError::Config { path: name.to_path_buf(), message: format!("--set {}: {message}", sets[i]) });
        }
        Err(err)
    }

    /// The checks beyond the types: features and training recipes.
    fn validate(&self) -> Result<(), String> {
        if self.jobs == 0 || self.jobs > 256 {
            return Err("jobs must be 1 or more (1 = one training run at a time) and at most 256".into());
        }
        if self.threads > 1024 {
            return Err(format!("threads must be between 0 (every core) and 1024, got {}", self.threads));
        }
        self.features.validate().map_err(|m| format!("[features] {m}"))?;
        self.limits.validate().map_err(|m| format!("[limits] {m}"))?;
        self.train.validate().map_err(|e| e.to_string())
    }

    /// The worker processes that train runs when `jobs` > 1 (None: one run at a time here).
    pub fn workers(&self) -> Option<genrelab_runs::train::Workers> {
        match (self.jobs > 1, self.worker.is_empty()) {
            (true, false) => Some(genrelab_runs::train::Workers::new(self.jobs, self.threads, self.worker.clone())),
            (true, true) => {
                tracing::warn!(jobs = self.jobs, "no command to start training workers with: training one run at a time");
                None
            }
            _ => None,
        }
    }

    pub fn parse(text: &str, base: &Path, name: &Path) -> Result<Config, PipelineError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| PipelineError::Config {
            path: name.to_path_buf(),
            message: recipe_error_at(text).unwrap_or_else(|| e.to_string()),
        })?;
        if let Some((key, e)) = cfg.train.unknown_key() {
            return Err(PipelineError::Config { path: name.to_path_buf(), message: format!("line {}: {e}", train_key_line(text, &key)) });
        }
        let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = normalize(&base.join(&*p));
            }
        };
        resolve(&mut cfg.workdir);
        // The data's paths are parameters of the stages that read them: made absolute, so that
        // the same file named from another folder, or by an absolute path, fingerprints the same.
        let absolute_base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let absolute = |p: &mut PathBuf| *p = normalize(&absolute_base.join(&*p));
        if let Some(p) = cfg.download.path.as_mut() {
            absolute(p);
        }
        if let Some(p) = cfg.split.lists.as_mut() {
            absolute(p);
        }
        cfg.validate().map_err(|message| PipelineError::Config { path: name.to_path_buf(), message })?;
        Ok(cfg)
    }

    /// The effective configuration as TOML (defaults filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// A config text with `KEY=VALUE` overrides applied, in order: KEY is a dotted path into the
/// tables (`evaluate.window_hop`, `train.model.resnet.seeds`), VALUE a TOML value (`64`,
/// `[\"resnet\", \"logreg\"]`, `true`) or else taken as a string (`download.source=folder`).
/// Paths in values are relative to the config file's folder, as in the file. The text is
/// returned unchanged when there are none.
pub fn with_overrides(text: &str, sets: &[String], name: &Path) -> Result<String, PipelineError> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let err = |message: String| PipelineError::Config { path: name.to_path_buf(), message };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| err(e.to_string()))?;
    for set in sets {
        let (key, value) =
            set.split_once('=').ok_or_else(|| err(format!("--set {set}: expected KEY=VALUE, e.g. --set evaluate.window_hop=64")))?;
        let keys: Vec<&str> = key.trim().split('.').map(str::trim).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(err(format!("--set {set}: `{key}` is not a dotted key such as train.epochs")));
        }
        let raw = value.trim();
        let value = format!("v = {raw}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"));
        let value = value.unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let (last, parents) = keys.split_last().expect("one key at least");
        let mut t = &mut table;
        for (i, k) in parents.iter().enumerate() {
            let entry = t.entry(k.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry.as_table_mut().ok_or_else(|| err(format!("--set {set}: `{}` is a value, not a table", keys[..=i].join("."))))?;
        }
        t.insert(last.to_string(), value);
    }
    toml::to_string(&table).map_err(|e| err(e.to_string()))
}

/// `a/b/../c` -> `a/c`, lexically (the path need not exist yet).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl genrelab_pipeline::Workspace for Config {
    fn workdir(&self) -> &Path {
        &self.workdir
    }
}

/// genrelab's folders inside the work folder (the engine's own state is in `.genrelab/`).
pub trait Folders {
    fn download_dir(&self) -> PathBuf;
    fn store_dir(&self) -> PathBuf;
    fn train_dir(&self) -> PathBuf;
    fn report_dir(&self) -> PathBuf;
}

impl Folders for genrelab_pipeline::Paths {
    fn download_dir(&self) -> PathBuf {
        self.workdir.join("download")
    }
    fn store_dir(&self) -> PathBuf {
        self.workdir.join("store")
    }
    fn train_dir(&self) -> PathBuf {
        self.workdir.join("train")
    }
    fn report_dir(&self) -> PathBuf {
        self.workdir.join("report")
    }
}

/// `[train]` of a config text, each value with where it is: the recipe's keys are flattened into
/// `[train]` (one `Recipe` type), and serde's own messages for them (a bad value, an unknown key)
/// name neither the key nor the line.
#[derive(serde::Deserialize)]
struct TrainTable {
    #[serde(default)]
    train: std::collections::BTreeMap<String, toml::Spanned<toml::Value>>,
}

impl TrainTable {
    fn line(&self, text: &str, key: &str) -> usize {
        self.train.get(key).map_or(0, |v| text[..v.span().start].matches('\n').count() + 1)
    }
}

/// A bad recipe value of `[train]` in `text`, named by its key and line.
fn recipe_error_at(text: &str) -> Option<String> {
    let doc: TrainTable = toml::from_str(text).ok()?;
    let table: std::collections::BTreeMap<&String, &toml::Value> = doc.train.iter().map(|(k, v)| (k, v.get_ref())).collect();
    let (key, e) = genrelab_runs::train::TrainConfig::recipe_error(&serde_json::to_value(table).ok()?)?;
    Some(format!("line {}: {e}", doc.line(text, &key)))
}

/// The line of `key` in the `[train]` table of `text` (0 when it is not there).
fn train_key_line(text: &str, key: &str) -> usize {
    toml::from_str::<TrainTable>(text).map_or(0, |doc| doc.line(text, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_paths_resolve_against_the_file() {
        let cfg = Config::parse("", Path::new("/etc/gl"), Path::new("x.toml")).unwrap();
        assert_eq!(cfg.workdir, PathBuf::from("/etc/gl/work/gtzan"));
        assert_eq!(cfg.features, FeatureConfig::default());
        let cfg = Config::parse(
            "workdir = \"/abs\"\n[download]\nsource = \"folder\"\npath = \"data/gtzan\"\n",
            Path::new("/etc/gl"),
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.workdir, PathBuf::from("/abs"));
        assert_eq!(cfg.download.path, Some(PathBuf::from("/etc/gl/data/gtzan")));
        let cfg = Config::parse("workdir = \"../work/demo\"", Path::new("configs"), Path::new("x.toml")).unwrap();
        assert_eq!(cfg.workdir, PathBuf::from("work/demo"));
        let cfg = Config::parse("workdir = \"../../w\"", Path::new("./configs"), Path::new("x.toml")).unwrap();
        assert_eq!(cfg.workdir, PathBuf::from("../w"));
    }

    #[test]
    fn the_data_path_is_the_same_whichever_way_the_config_is_named() {
        let text = "[download]\nsource = \"folder\"\npath = \"../data\"\n";
        let cwd = std::env::current_dir().unwrap();
        let relative = Config::parse(text, Path::new("configs"), Path::new("configs/x.toml")).unwrap();
        let dotted = Config::parse(text, Path::new("./configs/"), Path::new("./configs/x.toml")).unwrap();
        let absolute = Config::parse(text, &cwd.join("configs"), &cwd.join("configs/x.toml")).unwrap();
        assert_eq!(relative.download.path, Some(cwd.join("data")));
        assert_eq!((&dotted.download.path, &absolute.download.path), (&relative.download.path, &relative.download.path));
    }

    #[test]
    fn mistakes_are_reported_with_the_file_and_the_key() {
        let err = Config::parse("[features]\nn_mel = 64\n", Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(err.contains("my.toml") && err.contains("n_mel"), "{err}");
        let err = Config::parse("[features]\nn_fft = 7\n", Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(err.contains("n_fft"), "{err}");
    }

    #[test]
    fn values_that_would_abort_or_hang_a_stage_are_refused_when_the_config_is_read() {
        let err = |text: &str| Config::parse(text, Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        for (text, says) in [
            ("[features]\nframes = 100000000\n", "frames must be at most 100000"),
            ("[features]\nn_fft = 2097152\n", "n_fft must be even, between 16 and 65536"),
            ("[features]\npad_db = nan\n", "pad_db must be numbers"),
            ("threads = 100000\n", "threads must be between 0 (every core) and 1024, got 100000"),
            ("[train]\nlearning_rate = nan\n", "learning_rate > 0"),
            ("[train]\nweight_decay = inf\n", "weight_decay >= 0"),
            // Typos are refused, among the recipe's keys too (they are flattened into [train]).
            ("[train]\nepochs = 3\nlearnig_rate = 0.1\n", "line 3: configuration: [train]: unknown key `learnig_rate`, expected one of"),
            ("[train]\ngain_bd = 3.0\n", "unknown key `gain_bd`"),
            ("[train.model.resnet]\nbanddrop = 0.5\n", "[train.model.resnet]: unknown key `banddrop`"),
            ("[train]\n\ngain_db = \"loud\"\n", "line 3: configuration: [train] gain_db: invalid type: string \"loud\", expected f32"),
            ("[train.model.resnet]\nselect = \"best\"\n", "[train.model.resnet] select: unknown variant `best`"),
        ] {
            let e = err(text);
            assert!(e.contains("my.toml") && e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn set_overrides_keys_at_any_depth_with_typed_values() {
        let file = "workdir = \"w\"\n[train]\nepochs = 30\n[train.model.resnet]\nseeds = 3\n";
        let sets: Vec<String> = [
            "evaluate.window_hop=64",
            "train.epochs = 5",
            "train.model.resnet.seeds=2",
            "train.model.logreg.learning_rate=0.01",
            "train.models=[\"resnet\", \"logreg\"]",
            "download.source=folder",
            "download.path=data/x",
        ]
        .map(String::from)
        .to_vec();
        let cfg = Config::parse(&with_overrides(file, &sets, Path::new("x.toml")).unwrap(), Path::new("/c"), Path::new("x.toml")).unwrap();
        assert_eq!(cfg.evaluate.window_hop, Some(64));
        assert_eq!(cfg.train.recipe.epochs, 5);
        assert_eq!(cfg.train.models, ["resnet", "logreg"]);
        assert_eq!(cfg.train.for_model("resnet").unwrap().seeds, 2);
        assert_eq!(cfg.train.for_model("logreg").unwrap().recipe.learning_rate, 0.01);
        assert_eq!(cfg.train.for_model("logreg").unwrap().recipe.epochs, 5);
        assert_eq!(cfg.download.source, genrelab_data::download::SourceKind::Folder);
        assert_eq!(cfg.download.path, Some(PathBuf::from("/c/data/x")), "relative to the config's folder");
        assert_eq!(cfg.workdir, PathBuf::from("/c/w"), "the file's other keys stay");
        // A later --set wins; none at all leaves the text as it is.
        let twice = ["train.epochs=5".to_string(), "train.epochs=7".to_string()];
        assert!(with_overrides(file, &twice, Path::new("x.toml")).unwrap().contains("epochs = 7"));
        assert_eq!(with_overrides(file, &[], Path::new("x.toml")).unwrap(), file);
    }

    #[test]
    fn bad_overrides_are_errors_naming_the_set() {
        let fail = |set: &str| {
            Config::parse_with("[train]\nepochs = 30\n", &[set.to_string()], Path::new("."), Path::new("my.toml")).unwrap_err().to_string()
        };
        let e = fail("train.epochs");
        assert!(e.contains("my.toml") && e.contains("expected KEY=VALUE"), "{e}");
        let e = fail("train..epochs=3");
        assert!(e.contains("not a dotted key"), "{e}");
        let e = fail("train.epochs.x=3");
        assert!(e.contains("`train.epochs` is a value, not a table"), "{e}");
        let e = fail("evaluate.window_hopp=64");
        assert!(e.contains("window_hopp") && e.contains("--set"), "{e}");
        let e = fail("train.epochs=many");
        assert!(e.contains("--set train.epochs=many: invalid type: string \"many\", expected usize"), "{e}");
        // The culprit among several is named, without line numbers of a text the user never saw.
        let sets = ["train.seeds=2", "evaluate.window_hop=x", "train.epochs=3"].map(String::from);
        let e = Config::parse_with("[train]\nepochs = 30\n", &sets, Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("--set evaluate.window_hop=x: invalid type") && !e.contains("line"), "{e}");
        // An error of the file itself is the file's, at its own line, whatever the overrides.
        let e =
            Config::parse_with("[train]\n\nepochs = \"x\"\n", &sets[..1], Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(e.contains("line 3") && !e.contains("--set"), "{e}");
        // Values are checked when the config is read, a model's recipe included.
        let e = fail("train.model.resnet.epochs=0");
        assert!(
            e.contains("--set train.model.resnet.epochs=0: configuration: [train] (model resnet) needs seeds >= 1, epochs >= 1"),
            "{e}"
        );
        let e = fail("train.model.nosuch.epochs=3");
        assert!(e.contains("[train.model.nosuch]") && e.contains("nosuch"), "{e}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = Config::default();
        let back = Config::parse(&cfg.to_toml(), Path::new(""), Path::new("x")).unwrap();
        assert_eq!(back.features, cfg.features);
        assert_eq!(back.split, cfg.split);
    }
}
