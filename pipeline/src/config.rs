//! The one configuration file (TOML). Every parameter has a documented default
//! (`genrelab config` prints them all); a stage's fingerprint holds exactly the parameters it
//! reads, so editing one makes just the stages that depend on it stale.

use std::path::{Path, PathBuf};

use genrelab_stages::FeatureConfig;
use genrelab_stages::descriptors::DescriptorConfig;
use genrelab_stages::download::DownloadConfig;
use genrelab_stages::evaluate::EvaluateConfig;
use genrelab_stages::split::SplitConfig;
use genrelab_stages::train::TrainConfig;
use genrelab_stages::tune::TuneConfig;
use serde::{Deserialize, Serialize};

use crate::PipelineError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where stage outputs, the store and the stamps live (relative to the config file).
    pub workdir: PathBuf,
    /// Worker threads for parallel stages; 0 = every core. Not a parameter of any result.
    pub threads: usize,
    pub download: DownloadConfig,
    pub features: FeatureConfig,
    pub descriptors: DescriptorConfig,
    pub split: SplitConfig,
    pub train: TrainConfig,
    pub evaluate: EvaluateConfig,
    /// `genrelab tune`: the search space (not a stage: no stage reads it).
    pub tune: TuneConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workdir: PathBuf::from("work/gtzan"),
            threads: 0,
            download: DownloadConfig::default(),
            features: FeatureConfig::default(),
            descriptors: DescriptorConfig::default(),
            split: SplitConfig::default(),
            train: TrainConfig::default(),
            evaluate: EvaluateConfig::default(),
            tune: TuneConfig::default(),
        }
    }
}

impl Config {
    /// Read a config file; relative paths in it are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")), path)
    }

    pub fn parse(text: &str, base: &Path, name: &Path) -> Result<Config, PipelineError> {
        let mut cfg: Config = toml::from_str(text)
            .map_err(|e| PipelineError::Config { path: name.to_path_buf(), message: e.to_string() })?;
        let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = normalize(&base.join(&*p));
            }
        };
        resolve(&mut cfg.workdir);
        if let Some(p) = cfg.download.path.as_mut() {
            resolve(p);
        }
        if let Some(p) = cfg.split.lists.as_mut() {
            resolve(p);
        }
        cfg.features
            .validate()
            .map_err(|m| PipelineError::Config { path: name.to_path_buf(), message: format!("[features] {m}") })?;
        Ok(cfg)
    }

    /// The effective configuration as TOML (defaults filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
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

/// Where things live inside the work folder.
#[derive(Debug, Clone)]
pub struct Paths {
    pub workdir: PathBuf,
}

impl Paths {
    pub fn new(workdir: &Path) -> Self {
        Paths { workdir: workdir.to_path_buf() }
    }
    pub fn download_dir(&self) -> PathBuf {
        self.workdir.join("download")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.workdir.join("store")
    }
    /// The engine's own state: stamps, the hash cache, the run log.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join(".genrelab")
    }
    pub fn train_dir(&self) -> PathBuf {
        self.workdir.join("train")
    }
    pub fn report_dir(&self) -> PathBuf {
        self.workdir.join("report")
    }
    pub fn stamp(&self, stage: &str) -> PathBuf {
        self.state_dir().join("stamps").join(format!("{stage}.json"))
    }
    pub fn events(&self) -> PathBuf {
        self.state_dir().join("events.jsonl")
    }
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
    fn mistakes_are_reported_with_the_file_and_the_key() {
        let err = Config::parse("[features]\nn_mel = 64\n", Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(err.contains("my.toml") && err.contains("n_mel"), "{err}");
        let err = Config::parse("[features]\nn_fft = 7\n", Path::new("."), Path::new("my.toml")).unwrap_err().to_string();
        assert!(err.contains("n_fft"), "{err}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = Config::default();
        let back = Config::parse(&cfg.to_toml(), Path::new(""), Path::new("x")).unwrap();
        assert_eq!(back.features, cfg.features);
        assert_eq!(back.split, cfg.split);
    }
}
