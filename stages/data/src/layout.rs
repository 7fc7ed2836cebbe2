//! Where the clips are: GTZAN's file layouts, and any folder of class sub-folders.
//!
//! GTZAN: a clip is any `<genre>/<genre>.<digits>.wav` (the genre folder named like the file's
//! prefix), and its track id is the file's stem (`jazz.00054`). Recognised roots: the Marsyas
//! layout `genres/<genre>/...` (also what `genres.tar.gz` holds), the Kaggle layout
//! `Data/genres_original/<genre>/...`, or a folder that directly holds the genre folders. Other
//! files (`.mf` lists, CSVs, images) are ignored.
//!
//! Any other collection: a folder whose top-level sub-folders are the classes, each holding audio
//! files (any name, nested as deep as you like, any format of [`AUDIO_EXTENSIONS`]). The label is
//! the top-level folder; the track id is the path relative to the root (`rock/live/1.mp3`).
//! Hidden files and folders (`.name`) are skipped, and symbolic links to folders are not
//! followed.

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
    /// `<class>/**/<any name>.<audio extension>`: any labelled collection.
    ClassFolders,
    /// Clips listed by a manifest (CSV, TSV or Parquet) with their labels.
    Manifest,
    /// Clips stored inside a hub dataset's Parquet files.
    HubParquet,
}

/// File extensions read as audio in class folders and manifests (decoded by symphonia, WAV by
/// hound as in training).
pub const AUDIO_EXTENSIONS: [&str; 9] = ["wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac"];

/// Whether a file name has one of [`AUDIO_EXTENSIONS`] (any case).
pub fn is_audio_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(ext)))
}

impl Layout {
    /// The folder, relative to the data root, that holds the genre folders.
    pub fn clip_root(self) -> &'static str {
        match self {
            Layout::Marsyas => "genres",
            Layout::Kaggle => "Data/genres_original",
            Layout::GenreFolders | Layout::ClassFolders | Layout::Manifest | Layout::HubParquet => "",
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

/// Find the layout of a data folder: one of GTZAN's when it has GTZAN clips, else class folders
/// when some top-level folder holds audio files.
pub fn detect_folder(root: &Path) -> Result<Layout, crate::StageError> {
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
    if std::fs::metadata(root).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(crate::StageError::Source(format!("{}: no such folder", root.display())));
    }
    if has_class_audio(root) {
        return Ok(Layout::ClassFolders);
    }
    Err(crate::StageError::Source(format!(
        "no audio found under {}: expected one sub-folder per class holding audio files ({}), \
         e.g. rock/song.mp3, or GTZAN's layouts (genres/<genre>/<genre>.00000.wav, Kaggle's \
         Data/genres_original/...)",
        root.display(),
        AUDIO_EXTENSIONS.join(", ")
    )))
}

/// Whether some class folder of `root` holds an audio file (stops at the first one found).
fn has_class_audio(root: &Path) -> bool {
    fn any_audio(dir: &Path) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                _ if name.starts_with('.') => false,
                Ok(t) if t.is_dir() => any_audio(&e.path()),
                Ok(_) => is_audio_name(&name),
                Err(_) => false,
            }
        })
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && !e.file_name().to_string_lossy().starts_with('.') && any_audio(&e.path()))
}

/// A file that looked like a clip but cannot be one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    pub path: PathBuf,
    pub reason: String,
}

/// Every audio file under the class folders of `root`: `(path, track id, label)` sorted by track
/// id, and the entries that could not be listed (unreadable folders, names that are not UTF-8,
/// dangling links). Symbolic links to files are followed, to folders are not.
pub fn list_class_folders(root: &Path) -> (Vec<(PathBuf, String, String)>, Vec<Unlisted>) {
    fn walk(dir: &Path, rel: &str, label: &str, out: &mut Vec<(PathBuf, String, String)>, bad: &mut Vec<Unlisted>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                bad.push(Unlisted { path: dir.to_path_buf(), reason: format!("cannot list the folder: {e}") });
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    bad.push(Unlisted { path: dir.to_path_buf(), reason: format!("cannot list the folder: {e}") });
                    continue;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                if is_audio_name(&entry.file_name().to_string_lossy()) {
                    bad.push(Unlisted { path, reason: "the file name is not valid UTF-8".into() });
                }
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let child = format!("{rel}/{name}");
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                walk(&path, &child, label, out, bad);
            } else if is_audio_name(&name) {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => out.push((path, child, label.to_string())),
                    Ok(_) => {}
                    Err(e) => bad.push(Unlisted { path, reason: format!("cannot read: {e}") }),
                }
            }
        }
    }
    let (mut out, mut bad) = (vec![], vec![]);
    let Ok(classes) = std::fs::read_dir(root) else { return (out, bad) };
    for entry in classes.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        let Some(label) = entry.file_name().to_str().map(str::to_string) else {
            if kind.is_dir() {
                bad.push(Unlisted { path: entry.path(), reason: "the folder name is not valid UTF-8".into() });
            }
            continue;
        };
        if kind.is_dir() && !label.starts_with('.') {
            walk(&entry.path(), &label, &label, &mut out, &mut bad);
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    bad.sort_by(|a, b| a.path.cmp(&b.path));
    (out, bad)
}

/// Every clip file under a folder of the given layout, sorted by relative path, and what could
/// not be listed: a genre folder that cannot be read, a clip whose name is not UTF-8, a clip
/// name that is a dangling link or cannot be read. Links to folders are not followed; other
/// files are ignored.
pub fn list_folder(root: &Path, layout: Layout) -> (Vec<(PathBuf, String, String)>, Vec<Unlisted>) {
    let clip_root = root.join(layout.clip_root());
    let (mut out, mut bad) = (vec![], vec![]);
    let genres = match std::fs::read_dir(&clip_root) {
        Ok(g) => g,
        Err(e) => {
            bad.push(Unlisted { path: clip_root, reason: format!("cannot list the folder: {e}") });
            return (out, bad);
        }
    };
    for genre_dir in genres.flatten() {
        // Genre folders only: a link to a folder is not followed, a file beside them ignored.
        if !genre_dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let files = match std::fs::read_dir(genre_dir.path()) {
            Ok(f) => f,
            Err(e) => {
                bad.push(Unlisted { path: genre_dir.path(), reason: format!("cannot list the folder: {e}") });
                continue;
            }
        };
        for f in files {
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    bad.push(Unlisted { path: genre_dir.path(), reason: format!("cannot list the folder: {e}") });
                    continue;
                }
            };
            let (Some(name), Some(genre)) =
                (f.file_name().to_str().map(str::to_string), genre_dir.file_name().to_str().map(str::to_string))
            else {
                // Cannot be a GTZAN name; said when it looks like a clip.
                if f.file_name().to_string_lossy().ends_with(".wav") {
                    bad.push(Unlisted { path: f.path(), reason: "the file or folder name is not valid UTF-8".into() });
                }
                continue;
            };
            let Some((id, g)) = parse_clip_name(&format!("{genre}/{name}")) else { continue };
            match std::fs::metadata(f.path()) {
                Ok(m) if m.is_file() => out.push((f.path(), id, g)),
                Ok(_) => {}
                Err(e) => bad.push(Unlisted { path: f.path(), reason: format!("cannot read: {e}") }),
            }
        }
    }
    out.sort();
    bad.sort_by(|a, b| a.path.cmp(&b.path));
    (out, bad)
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
            let ids: Vec<_> = list_folder(dir.path(), layout).0.into_iter().map(|(_, id, _)| id).collect();
            assert_eq!(ids, ["blues.00000", "rock.00000", "rock.00001"]);
        }
        let empty = tempfile::tempdir().unwrap();
        touch(empty.path(), "music/notes.txt");
        touch(empty.path(), "song.mp3");
        let err = detect_folder(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no audio found under") && err.contains("Kaggle") && err.contains("flac"), "{err}");
    }

    #[test]
    fn class_folders_take_any_name_nested_any_format_labelled_by_the_top_folder() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "rock/1.mp3",
            "rock/live/2003/2.FLAC",
            "jazz/a b.ogg",
            "jazz/x.m4a",
            "jazz/cover.jpg",
            "jazz/.hidden.wav",
            ".git/x.wav",
            "README.wav",
        ] {
            touch(dir.path(), rel);
        }
        assert_eq!(detect_folder(dir.path()).unwrap(), Layout::ClassFolders);
        let (found, bad) = list_class_folders(dir.path());
        let got: Vec<(&str, &str)> = found.iter().map(|(_, id, l)| (id.as_str(), l.as_str())).collect();
        assert_eq!(got, [("jazz/a b.ogg", "jazz"), ("jazz/x.m4a", "jazz"), ("rock/1.mp3", "rock"), ("rock/live/2003/2.FLAC", "rock")]);
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[cfg(unix)]
    #[test]
    fn links_to_folders_are_not_followed_and_dangling_links_are_named() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "rock/1.wav");
        std::os::unix::fs::symlink(dir.path().join("rock"), dir.path().join("rock/self")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone.wav"), dir.path().join("rock/dangling.wav")).unwrap();
        let (found, bad) = list_class_folders(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].path.ends_with("rock/dangling.wav") && bad[0].reason.contains("cannot read"), "{bad:?}");
    }

    #[cfg(unix)]
    #[test]
    fn gtzan_folders_name_what_they_cannot_list_and_ignore_links_to_folders() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "genres/rock/rock.00001.wav");
        touch(dir.path(), "genres/jazz/jazz.00001.wav");
        std::os::unix::fs::symlink(dir.path().join("gone.wav"), dir.path().join("genres/rock/rock.00002.wav")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("genres/rock"), dir.path().join("genres/pop")).unwrap();
        std::fs::create_dir(dir.path().join("genres/rock/rock.00003.wav")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"rock.0\xff004.wav");
        std::fs::write(dir.path().join("genres/rock").join(odd), b"x").unwrap();
        let (found, bad) = list_folder(dir.path(), Layout::Marsyas);
        let ids: Vec<&str> = found.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(ids, ["jazz.00001", "rock.00001"], "the link to a folder is not a genre; a folder is not a clip");
        let said: Vec<(String, &str)> =
            bad.iter().map(|u| (u.path.file_name().unwrap().to_string_lossy().into_owned(), u.reason.as_str())).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said.iter().any(|(n, r)| n == "rock.00002.wav" && r.starts_with("cannot read: ")), "{said:?}");
        assert!(said.iter().any(|(n, r)| n.starts_with("rock.0") && r.contains("not valid UTF-8")), "{said:?}");
        // A clip folder that is not there is named, not an empty listing.
        let (found, bad) = list_folder(dir.path(), Layout::Kaggle);
        assert!(found.is_empty() && bad.len() == 1 && bad[0].reason.starts_with("cannot list the folder"), "{bad:?}");
    }
}
