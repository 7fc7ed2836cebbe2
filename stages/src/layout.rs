//! Where the clips are: GTZAN's file layouts, in a folder or inside a tarball.
//!
//! A clip is any `<genre>/<genre>.<digits>.wav` (the genre folder named like the file's prefix).
//! Recognised roots: the Marsyas layout `genres/<genre>/...` (also what `genres.tar.gz` holds),
//! the Kaggle layout `Data/genres_original/<genre>/...`, or a folder that directly holds the genre
//! folders. Other files (`.mf` lists, CSVs, images) are ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `genres/<genre>/<genre>.000NN.wav`
    Marsyas,
    /// `Data/genres_original/<genre>/<genre>.000NN.wav`
    Kaggle,
    /// `<genre>/<genre>.000NN.wav` directly under the given folder.
    GenreFolders,
}

impl Layout {
    /// The folder, relative to the data root, that holds the genre folders.
    pub fn clip_root(self) -> &'static str {
        match self {
            Layout::Marsyas => "genres",
            Layout::Kaggle => "Data/genres_original",
            Layout::GenreFolders => "",
        }
    }

    /// Which layout a relative path (a tar member or a file under the root) belongs to.
    pub fn of_path(rel: &str) -> Option<Layout> {
        let rel = rel.trim_start_matches("./");
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        parse_clip_name(rel)?;
        match parts.len() {
            2 => Some(Layout::GenreFolders),
            3 if parts[0] == "genres" => Some(Layout::Marsyas),
            4 if parts[0] == "Data" && parts[1] == "genres_original" => Some(Layout::Kaggle),
            _ => None,
        }
    }
}

/// `(track_id, genre)` of `.../<genre>/<genre>.<digits>.wav`, else None.
pub fn parse_clip_name(rel: &str) -> Option<(String, String)> {
    let mut parts = rel.rsplit('/');
    let file = parts.next()?;
    let folder = parts.next()?;
    let stem = file.strip_suffix(".wav")?;
    let (genre, number) = stem.rsplit_once('.')?;
    let valid = genre == folder
        && !genre.is_empty()
        && genre.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit());
    valid.then(|| (stem.to_string(), genre.to_string()))
}

/// Find the layout of a data folder by looking for its clip root.
pub fn detect_folder(root: &Path) -> Result<Layout, String> {
    for layout in [Layout::Marsyas, Layout::Kaggle, Layout::GenreFolders] {
        let dir = root.join(layout.clip_root());
        let has_clips = std::fs::read_dir(&dir).into_iter().flatten().flatten().any(|genre_dir| {
            let genre = genre_dir.file_name().to_string_lossy().into_owned();
            std::fs::read_dir(genre_dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| parse_clip_name(&format!("{genre}/{}", f.file_name().to_string_lossy())).is_some())
        });
        if has_clips {
            return Ok(layout);
        }
    }
    Err(format!(
        "no GTZAN clips found under {}: expected genres/<genre>/<genre>.00000.wav (Marsyas), \
         Data/genres_original/<genre>/<genre>.00000.wav (Kaggle) or <genre>/<genre>.00000.wav",
        root.display()
    ))
}

/// Every clip file under a folder of the given layout, sorted by relative path.
pub fn list_folder(root: &Path, layout: Layout) -> Vec<(PathBuf, String, String)> {
    let clip_root = root.join(layout.clip_root());
    let mut out = vec![];
    for genre_dir in std::fs::read_dir(&clip_root).into_iter().flatten().flatten() {
        let genre = genre_dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(genre_dir.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some((id, g)) = parse_clip_name(&format!("{genre}/{name}")) {
                out.push((f.path(), id, g));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_names_and_layouts() {
        assert_eq!(parse_clip_name("genres/jazz/jazz.00054.wav"), Some(("jazz.00054".into(), "jazz".into())));
        assert_eq!(parse_clip_name("hiphop/hiphop.00001.wav"), Some(("hiphop.00001".into(), "hiphop".into())));
        assert_eq!(parse_clip_name("genres/jazz/rock.00001.wav"), None, "folder and prefix must agree");
        assert_eq!(parse_clip_name("genres/jazz/jazz.mf"), None);
        assert_eq!(parse_clip_name("genres/jazz/jazz.00001.au"), None);
        assert_eq!(Layout::of_path("genres/pop/pop.00001.wav"), Some(Layout::Marsyas));
        assert_eq!(Layout::of_path("./genres/pop/pop.00001.wav"), Some(Layout::Marsyas));
        assert_eq!(Layout::of_path("Data/genres_original/pop/pop.00001.wav"), Some(Layout::Kaggle));
        assert_eq!(Layout::of_path("pop/pop.00001.wav"), Some(Layout::GenreFolders));
        assert_eq!(Layout::of_path("x/y/pop/pop.00001.wav"), None);
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn folders_of_each_layout_are_detected_and_listed() {
        for (layout, prefix) in [(Layout::Marsyas, "genres/"), (Layout::Kaggle, "Data/genres_original/"), (Layout::GenreFolders, "")] {
            let dir = tempfile::tempdir().unwrap();
            touch(dir.path(), &format!("{prefix}rock/rock.00001.wav"));
            touch(dir.path(), &format!("{prefix}rock/rock.00000.wav"));
            touch(dir.path(), &format!("{prefix}blues/blues.00000.wav"));
            touch(dir.path(), &format!("{prefix}blues/notes.txt"));
            touch(dir.path(), "features_30_sec.csv");
            assert_eq!(detect_folder(dir.path()).unwrap(), layout);
            let ids: Vec<_> = list_folder(dir.path(), layout).into_iter().map(|(_, id, _)| id).collect();
            assert_eq!(ids, ["blues.00000", "rock.00000", "rock.00001"]);
        }
        let empty = tempfile::tempdir().unwrap();
        touch(empty.path(), "music/song.mp3");
        let err = detect_folder(empty.path()).unwrap_err();
        assert!(err.contains("no GTZAN clips found") && err.contains("Kaggle"), "{err}");
    }
}
