//! Collections described by a manifest: a CSV, TSV or Parquet table with a path and a label per
//! clip, and optionally a track id, a group (artist, album), a fold and a split. Column names are
//! settings ([`Columns`]), so a dataset's own table (FMA's `tracks.csv`, an MTG-Jamendo TSV) is
//! mapped rather than converted.
//!
//! Paths are relative to the manifest's folder (or absolute). A row whose file is missing or
//! unreadable, whose label is empty, whose fold or split cannot be read, or whose track id was
//! already listed is a [`SourceReject`] with its reason, never an error of the stage.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use genrelab_store::StoreError;

use crate::StageError;
use crate::source::{ClipEntry, FileHash, SourceReject};

/// Which columns of a manifest (or of a hub dataset) hold what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    /// The audio file, relative to the manifest's folder or absolute.
    pub path: String,
    /// Builds the path from other columns instead of `path`: `{column}` is the cell,
    /// `{column:06}` the cell zero-padded to 6 characters, `{column:06:0..3}` its characters
    /// 0..3 after padding (FMA: `fma_small/{track_id:06:0..3}/{track_id:06}.mp3`).
    pub path_template: Option<String>,
    /// The class label (a string; for hub datasets also a `ClassLabel` index).
    pub label: String,
    /// The track id; unset: the path as written.
    pub id: Option<String>,
    /// The group (artist, album): splits keep each group in one part or fold.
    pub group: Option<String>,
    /// A fold number (0, 1, ...) for `split.protocol = "given"`.
    pub fold: Option<String>,
    /// A part (`train`, `valid` / `validation` / `val`, `test`) for `split.protocol = "given"`.
    pub split: Option<String>,
    /// Hub datasets: the struct column holding the encoded audio (`bytes`, `path`).
    pub audio: String,
    /// Text manifests: the field delimiter (one character); unset: tab for `.tsv`, else comma.
    pub delimiter: Option<String>,
    /// Text manifests: header lines; with more than one, a column's name is its non-empty header
    /// cells joined by `.` (FMA's `tracks.csv`: `header_rows = 3`, `label = "track.genre_top"`).
    pub header_rows: usize,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            path: "path".into(),
            path_template: None,
            label: "label".into(),
            id: None,
            group: None,
            fold: None,
            split: None,
            audio: "audio".into(),
            delimiter: None,
            header_rows: 1,
        }
    }
}

/// A table as text: column names, and per row its line (for messages) and cells.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<Option<String>>)>,
}

/// Read a manifest file: Parquet by its magic bytes, else delimited text.
pub fn read_table(path: &Path, cols: &Columns) -> Result<Table, StageError> {
    let head = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    if head.starts_with(b"PAR1") {
        let t = genrelab_store::foreign::read_text_table(path)?;
        let rows = t.rows.into_iter().enumerate().map(|(i, r)| (format!("row {}", i + 1), r)).collect();
        return Ok(Table { columns: t.columns, rows });
    }
    let delimiter = match &cols.delimiter {
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        Some(d) if d == "\\t" || d == "tab" => b'\t',
        Some(d) => return Err(StageError::Config(format!("download.columns.delimiter must be one character, got {d:?}"))),
        None if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) => b'\t',
        None => b',',
    };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(&head[..]);
    let mut records = reader.records();
    let header_rows = cols.header_rows.max(1);
    let mut headers: Vec<Vec<String>> = vec![];
    for _ in 0..header_rows {
        match records.next() {
            Some(Ok(r)) => headers.push(r.iter().map(|c| c.trim().to_string()).collect()),
            Some(Err(e)) => return Err(StageError::Source(format!("{}: {e}", path.display()))),
            None => return Err(StageError::Source(format!("{}: fewer than {header_rows} header line(s)", path.display()))),
        }
    }
    let width = headers.iter().map(Vec::len).max().unwrap_or(0);
    let columns = (0..width)
        .map(|i| headers.iter().filter_map(|h| h.get(i).filter(|c| !c.is_empty()).cloned()).collect::<Vec<_>>().join("."))
        .collect();
    let mut rows = vec![];
    for r in records {
        let r = r.map_err(|e| StageError::Source(format!("{}: {e}", path.display())))?;
        let line = r.position().map_or(0, |p| p.line());
        rows.push((format!("line {line}"), r.iter().map(|c| Some(c.to_string()).filter(|c| !c.trim().is_empty())).collect()));
    }
    Ok(Table { columns, rows })
}

/// One piece of a path template.
enum Piece {
    Text(String),
    Cell { column: usize, width: usize, range: Option<(usize, usize)> },
}

fn parse_template(t: &str, index: &dyn Fn(&str) -> Result<usize, StageError>) -> Result<Vec<Piece>, StageError> {
    let bad = |what: String| StageError::Config(format!("download.columns.path_template {t:?}: {what}"));
    let mut pieces = vec![];
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        pieces.push(Piece::Text(rest[..open].to_string()));
        let close = rest[open..].find('}').ok_or_else(|| bad("a `{` is not closed".into()))? + open;
        let spec = &rest[open + 1..close];
        let mut parts = spec.splitn(3, ':');
        let column = index(parts.next().unwrap_or_default())?;
        let width = match parts.next() {
            Some(w) => w.parse().map_err(|_| bad(format!("width {w:?} is not a number")))?,
            None => 0,
        };
        let range = match parts.next() {
            Some(r) => {
                let range = || bad(format!("range {r:?} is not a..b"));
                let (a, b) = r.split_once("..").ok_or_else(range)?;
                Some((a.parse().map_err(|_| range())?, b.parse().map_err(|_| range())?))
            }
            None => None,
        };
        pieces.push(Piece::Cell { column, width, range });
        rest = &rest[close + 1..];
    }
    pieces.push(Piece::Text(rest.to_string()));
    Ok(pieces)
}

fn fill(pieces: &[Piece], row: &[Option<String>]) -> Option<String> {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Cell { column, width, range } => {
                let cell = row.get(*column)?.as_deref()?.trim();
                let padded = format!("{cell:0>width$}");
                match range {
                    Some((a, b)) => out.push_str(padded.get(*a..*b)?),
                    None => out.push_str(&padded),
                }
            }
        }
    }
    Some(out)
}

/// The clips a manifest lists (hashed with `hash`) and the rows that cannot be clips.
pub fn manifest_clips(
    manifest: &Path,
    cols: &Columns,
    mut hash: impl FnMut(&Path) -> FileHash,
) -> Result<(Vec<ClipEntry>, Vec<SourceReject>), StageError> {
    let table = read_table(manifest, cols)?;
    let root = manifest.parent().unwrap_or(Path::new("."));
    let index = |name: &str| -> Result<usize, StageError> {
        table.columns.iter().position(|c| c == name).ok_or_else(|| {
            StageError::Source(format!(
                "{}: no column {name:?} (columns: {}); set download.columns",
                manifest.display(),
                table.columns.join(", ")
            ))
        })
    };
    let optional = |name: &Option<String>| name.as_deref().map(index).transpose();
    let path_of: Vec<Piece> = match &cols.path_template {
        Some(t) => parse_template(t, &index)?,
        None => vec![Piece::Cell { column: index(&cols.path)?, width: 0, range: None }],
    };
    let (label, id, group, fold, part) =
        (index(&cols.label)?, optional(&cols.id)?, optional(&cols.group)?, optional(&cols.fold)?, optional(&cols.split)?);
    let mut clips = vec![];
    let mut rejects = vec![];
    let mut seen: HashMap<String, String> = HashMap::new();
    for (line, row) in &table.rows {
        let cell = |i: usize| row.get(i).cloned().flatten().map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
        let member = fill(&path_of, row);
        let track_id = id.and_then(cell).or_else(|| member.clone()).unwrap_or_else(|| line.clone());
        let genre = cell(label).unwrap_or_default();
        let location = member.as_deref().map_or_else(|| format!("{} {line}", manifest.display()), |m| root.join(m).display().to_string());
        let mut reject = |reason: String| {
            rejects.push(SourceReject { track_id: track_id.clone(), genre: genre.clone(), location: location.clone(), reason })
        };
        let Some(member) = member else {
            reject(format!("{line}: no path"));
            continue;
        };
        if genre.is_empty() {
            reject(format!("{line}: empty label (column {:?})", cols.label));
            continue;
        }
        if let Some(first) = seen.get(&track_id) {
            reject(format!("{line}: track id {track_id:?} listed twice (first on {first})"));
            continue;
        }
        let fold_value = match fold.and_then(cell) {
            None => None,
            Some(f) => match f.parse::<i32>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    reject(format!("{line}: fold {f:?} is not a number >= 0"));
                    continue;
                }
            },
        };
        let part_value = match part.and_then(cell) {
            None => None,
            Some(p) => match p.to_ascii_lowercase().as_str() {
                "train" | "training" => Some("train".to_string()),
                "valid" | "validation" | "val" | "dev" => Some("valid".to_string()),
                "test" | "testing" | "eval" => Some("test".to_string()),
                _ => {
                    reject(format!("{line}: split {p:?} is not train, valid or test"));
                    continue;
                }
            },
        };
        let (bytes, blake3) = match hash(&root.join(&member)) {
            Ok(h) => h,
            Err(e) => {
                reject(format!("{line}: cannot read {e}"));
                continue;
            }
        };
        seen.insert(track_id.clone(), line.clone());
        let mut clip = ClipEntry::new(track_id, genre, member, bytes, blake3);
        clip.group = group.and_then(cell);
        clip.fold = fold_value;
        clip.part = part_value;
        clips.push(clip);
    }
    Ok((clips, rejects))
}

/// The files a manifest names, existing or not (for the engine's fingerprint of the stage's
/// inputs: a missing file is a reject, and a change when it appears); empty when the manifest
/// cannot be read (the stage itself then says why).
pub fn listed_files(manifest: &Path, cols: &Columns) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    let _ = manifest_clips(manifest, cols, |p| {
        files.push(p.to_path_buf());
        Err(StoreError::Invalid { path: p.to_path_buf(), message: "only listed".into() })
    });
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_hash(p: &Path) -> FileHash {
        genrelab_store::content::file_hash(p)
    }

    #[test]
    fn csv_rows_become_clips_and_bad_rows_rejects_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("audio")).unwrap();
        for f in ["a.mp3", "b.flac", "c.wav"] {
            std::fs::write(dir.path().join("audio").join(f), f).unwrap();
        }
        let m = dir.path().join("list.csv");
        std::fs::write(
            &m,
            "file,genre,artist,fold\naudio/a.mp3,rock,A,0\naudio/b.flac,jazz,B,1\naudio/missing.wav,jazz,B,1\naudio/c.wav,,C,0\naudio/a.mp3,rock,A,0\naudio/c.wav,pop,C,x\n",
        )
        .unwrap();
        let cols = Columns {
            path: "file".into(),
            label: "genre".into(),
            group: Some("artist".into()),
            fold: Some("fold".into()),
            ..Columns::default()
        };
        let (clips, rejects) = manifest_clips(&m, &cols, fake_hash).unwrap();
        let got: Vec<_> = clips.iter().map(|c| (c.track_id.as_str(), c.genre.as_str(), c.group.as_deref(), c.fold)).collect();
        assert_eq!(got, [("audio/a.mp3", "rock", Some("A"), Some(0)), ("audio/b.flac", "jazz", Some("B"), Some(1))]);
        let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].starts_with("line 4: cannot read") && reasons[0].contains("missing.wav"), "{}", reasons[0]);
        assert_eq!(reasons[1], "line 5: empty label (column \"genre\")");
        assert!(reasons[2].starts_with("line 6: track id \"audio/a.mp3\" listed twice (first on line 2)"), "{}", reasons[2]);
        assert_eq!(reasons[3], "line 7: fold \"x\" is not a number >= 0");
        let missing = manifest_clips(&m, &Columns::default(), fake_hash).unwrap_err();
        let missing = missing.to_string();
        assert!(missing.contains("no column \"path\"") && missing.contains("file, genre, artist, fold"), "{missing}");
    }

    #[test]
    fn fma_style_three_header_rows_and_a_path_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("fma_small/000")).unwrap();
        std::fs::create_dir_all(dir.path().join("fma_small/123")).unwrap();
        std::fs::write(dir.path().join("fma_small/000/000002.mp3"), b"x").unwrap();
        std::fs::write(dir.path().join("fma_small/123/123456.mp3"), b"y").unwrap();
        let m = dir.path().join("tracks.csv");
        std::fs::write(&m, ",artist,track\n,name,genre_top\ntrack_id,,\n2,AWOL,Hip-Hop\n123456,Other,Rock\n").unwrap();
        let cols = Columns {
            path_template: Some("fma_small/{track_id:06:0..3}/{track_id:06}.mp3".into()),
            label: "track.genre_top".into(),
            id: Some("track_id".into()),
            group: Some("artist.name".into()),
            header_rows: 3,
            ..Columns::default()
        };
        let (clips, rejects) = manifest_clips(&m, &cols, fake_hash).unwrap();
        assert!(rejects.is_empty(), "{rejects:?}");
        let got: Vec<_> = clips.iter().map(|c| (c.track_id.as_str(), c.member.as_str(), c.genre.as_str(), c.group.as_deref())).collect();
        assert_eq!(
            got,
            [("2", "fma_small/000/000002.mp3", "Hip-Hop", Some("AWOL")), ("123456", "fma_small/123/123456.mp3", "Rock", Some("Other"))]
        );
    }

    #[test]
    fn tsv_by_extension_with_a_split_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.ogg"), b"x").unwrap();
        std::fs::write(dir.path().join("y.ogg"), b"y").unwrap();
        let m = dir.path().join("meta.tsv");
        std::fs::write(&m, "PATH\tTAG\tSET\nx.ogg\tgenre---rock\tvalidation\ny.ogg\tgenre---pop\tholdout\n").unwrap();
        let cols = Columns { path: "PATH".into(), label: "TAG".into(), split: Some("SET".into()), ..Columns::default() };
        let (clips, rejects) = manifest_clips(&m, &cols, fake_hash).unwrap();
        assert_eq!(clips.len(), 1);
        assert_eq!(clips[0].part.as_deref(), Some("valid"));
        assert_eq!(rejects[0].reason, "line 3: split \"holdout\" is not train, valid or test");
    }
}
