//! The store's tables: their Arrow schemas, writing them as Parquet, reading them back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::atomic::Staged;
use crate::column::SpectrogramColumn;
use crate::{AtomicFile, StoreError};

/// Version of the layouts below; bump on any change of columns or their meaning.
pub const SCHEMA_VERSION: u32 = 2;
const KEY_PREFIX: &str = "genrelab.";

/// The self-description written into every table's Parquet metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableMeta {
    /// `features`, `features_full`, `rejects`, `split`.
    pub table: String,
    /// Further `genrelab.*` entries: the feature configuration and its hash, the split protocol...
    pub entries: BTreeMap<String, String>,
}

impl TableMeta {
    pub fn new(table: &str) -> Self {
        TableMeta { table: table.to_string(), entries: BTreeMap::new() }
    }
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.entries.insert(key.to_string(), value.into());
        self
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }
    fn to_key_values(&self) -> Vec<KeyValue> {
        let mut kv = vec![
            KeyValue::new(format!("{KEY_PREFIX}table"), self.table.clone()),
            KeyValue::new(format!("{KEY_PREFIX}schema_version"), SCHEMA_VERSION.to_string()),
            KeyValue::new(format!("{KEY_PREFIX}created_by"), format!("genrelab {}", env!("CARGO_PKG_VERSION"))),
        ];
        kv.extend(self.entries.iter().map(|(k, v)| KeyValue::new(format!("{KEY_PREFIX}{k}"), v.clone())));
        kv
    }
    fn from_key_values(kvs: Option<&Vec<KeyValue>>) -> Self {
        let mut meta = TableMeta::default();
        for kv in kvs.into_iter().flatten() {
            let Some(key) = kv.key.strip_prefix(KEY_PREFIX) else { continue };
            let value = kv.value.clone().unwrap_or_default();
            match key {
                "table" => meta.table = value,
                "schema_version" | "created_by" => {}
                _ => {
                    meta.entries.insert(key.to_string(), value);
                }
            }
        }
        meta
    }
}

fn properties(meta: &TableMeta, row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_key_value_metadata(Some(meta.to_key_values()))
        .build()
}

pub(crate) fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> StoreError + '_ {
    move |source| StoreError::Parquet { path: path.to_path_buf(), source }
}
pub(crate) fn arrow_err(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> StoreError + '_ {
    move |source| StoreError::Arrow { path: path.to_path_buf(), source }
}

/// Write `batches` (all of `schema`) to `dest` atomically.
fn write_batches(
    dest: &Path,
    schema: SchemaRef,
    meta: &TableMeta,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<(), StoreError> {
    write_batches_staged(dest, schema, meta, batches)?.commit()?;
    Ok(())
}

fn write_batches_staged(
    dest: &Path,
    schema: SchemaRef,
    meta: &TableMeta,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<Staged, StoreError> {
    let file = AtomicFile::create(dest)?;
    let mut writer = ArrowWriter::try_new(file.try_clone()?, schema, Some(properties(meta, 64 * 1024))).map_err(parquet_err(dest))?;
    for batch in batches {
        writer.write(&batch).map_err(parquet_err(dest))?;
    }
    writer.close().map_err(parquet_err(dest))?;
    file.stage()
}

pub(crate) fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(path))
}

/// Read only the `genrelab.*` metadata of a table.
pub fn read_table_meta(path: &Path) -> Result<TableMeta, StoreError> {
    let builder = open_reader(path)?;
    Ok(TableMeta::from_key_values(builder.metadata().file_metadata().key_value_metadata()))
}

fn read_all(path: &Path, expect_table: &str) -> Result<(TableMeta, Vec<RecordBatch>), StoreError> {
    let builder = open_reader(path)?;
    let meta = TableMeta::from_key_values(builder.metadata().file_metadata().key_value_metadata());
    if meta.table != expect_table {
        return Err(StoreError::invalid(path, format!("expected a `{expect_table}` table, the file says `{}`", meta.table)));
    }
    let reader = builder.with_batch_size(256).build().map_err(parquet_err(path))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err(path))?;
    Ok((meta, batches))
}

fn column<'a, T: 'static>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a T, StoreError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StoreError::invalid(path, format!("column `{name}` is missing or of the wrong type")))
}

fn strings(v: impl IntoIterator<Item = impl AsRef<str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

// ---------------------------------------------------------------------------------------------
// features / features_full

/// One decoded clip and its spectrogram.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// `blues.00000`: the file name without extension, unique in GTZAN.
    pub track_id: String,
    pub genre: String,
    /// Where the audio came from (a path, or `tarball.tar.gz!member/path.wav`).
    pub source: String,
    /// blake3 of the audio file's bytes.
    pub audio_hash: String,
    /// Sample rate and length of the file as stored (before any resampling), per channel.
    pub sample_rate: u32,
    pub n_samples: u64,
    pub channels: u16,
    /// Mean and standard deviation of the (full-resolution) dB values: handy for queries.
    pub mean_db: f32,
    pub std_db: f32,
    /// The clip was shorter than the feature window, so its spectrogram is padded.
    pub padded: bool,
    /// Which window of the track the row holds (0 unless `features.excerpt = "windows"`, where a
    /// long track has a row per window, 0, 1, ..., in order).
    pub window: u32,
    /// Row-major `n_mels x n_frames` values in dB.
    pub values: Vec<f32>,
}

fn feature_schema(len: i32) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("track_id", DataType::Utf8, false),
        Field::new("genre", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("audio_hash", DataType::Utf8, false),
        Field::new("sample_rate", DataType::UInt32, false),
        Field::new("n_samples", DataType::UInt64, false),
        Field::new("channels", DataType::UInt32, false),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("mean_db", DataType::Float32, false),
        Field::new("std_db", DataType::Float32, false),
        Field::new("padded", DataType::Boolean, false),
        Field::new("window", DataType::UInt32, false),
        Field::new("n_mels", DataType::UInt32, false),
        Field::new("n_frames", DataType::UInt32, false),
        Field::new("feature", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), len), false),
    ]))
}

/// Rows per row group of a feature table with `len` values per row (about 16 MiB of values).
pub fn target_group_rows(len: usize) -> usize {
    ((16 << 20) / (len.max(1) * 4)).clamp(8, 4096)
}

/// Where a feature table's row groups begin, decided by the rows' content alone: a group starts
/// at a clip whose audio hash falls on a boundary (one clip in `target`, by a hash of the hash),
/// or after `2 x target` rows, never between the windows of one clip unless a group is full. The
/// same rows therefore always make the same groups, however the table was assembled (from
/// scratch, or from an earlier table with a few clips added): an incremental run writes the same
/// bytes as a fresh one, and adding a clip changes only the group it falls in.
#[derive(Debug, Clone)]
pub struct GroupCuts {
    target: usize,
    /// Rows in the current group (0: the next row starts one).
    rows: usize,
    last: Option<String>,
}

impl GroupCuts {
    pub fn new(target: usize) -> Self {
        GroupCuts { target: target.max(1), rows: 0, last: None }
    }

    fn boundary(&self, hash: &str) -> bool {
        // FNV-1a: stable across versions and platforms, unlike std's hasher.
        let h = hash.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        h % self.target as u64 == 0
    }

    fn cuts(&self, rows: usize, last: Option<&str>, hash: &str) -> bool {
        rows == 0 || rows >= 2 * self.target || (last != Some(hash) && self.boundary(hash))
    }

    /// Whether a row with `hash` appended now starts a new group.
    pub fn cuts_before(&self, hash: &str) -> bool {
        self.cuts(self.rows, self.last.as_deref(), hash)
    }

    /// Append a row; returns whether it starts a new group.
    pub fn push(&mut self, hash: &str) -> bool {
        let cut = self.cuts_before(hash);
        self.rows = if cut { 1 } else { self.rows + 1 };
        self.last = Some(hash.to_string());
        cut
    }

    /// Whether rows with `hashes`, appended now and followed by a row with `next` (None: the
    /// end), make exactly one group.
    pub fn is_one_group(&self, hashes: &[&str], next: Option<&str>) -> bool {
        let Some((first, rest)) = hashes.split_first() else { return false };
        let mut probe = GroupCuts { target: self.target, rows: self.rows, last: self.last.clone() };
        probe.push(first) && rest.iter().all(|h| !probe.push(h)) && next.is_none_or(|h| probe.cuts_before(h))
    }
}

/// Writes a feature table row group by row group, so a whole data set never sits in memory.
/// Row groups are cut by [`GroupCuts`]; a row group of another feature table with the same
/// schema and the same rows can be copied in as it is ([`FeatureTableWriter::copy_row_group`]),
/// without decoding or compressing it again: that is how the features stage assembles its tables
/// from the previous tables and the segments of new clips.
pub struct FeatureTableWriter {
    path: PathBuf,
    n_mels: usize,
    n_frames: usize,
    schema: SchemaRef,
    /// Every column but `feature`, which [`SpectrogramColumn`] encodes.
    scalars: SchemaRef,
    writer: SerializedFileWriter<BufWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    /// The row group being encoded, if any: its scalar columns and its spectrograms.
    open: Option<(Vec<ArrowColumnWriter>, SpectrogramColumn)>,
    cuts: GroupCuts,
    file: AtomicFile,
    rows: usize,
}

impl FeatureTableWriter {
    /// `meta.table` names the table (`features` or `features_full`); rows are `n_mels x n_frames`.
    pub fn create(dest: &Path, meta: &TableMeta, n_mels: usize, n_frames: usize) -> Result<Self, StoreError> {
        let len = n_mels * n_frames;
        let schema = feature_schema(len as i32);
        let target = target_group_rows(len);
        let meta = meta.clone().with("shape", format!("{n_mels}x{n_frames}"));
        let props = properties(&meta, 2 * target);
        let file = AtomicFile::create(dest)?;
        // ArrowWriter embeds the Arrow schema (the fixed-size list) in the file; its lower layers
        // then let row groups be encoded here or copied from another file.
        let sink = BufWriter::with_capacity(LARGE_IO, file.try_clone()?);
        let (writer, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(props)).and_then(|w| w.into_serialized_writer()).map_err(parquet_err(dest))?;
        let scalars = Arc::new(Schema::new(schema.fields()[..schema.fields().len() - 1].to_vec()));
        Ok(FeatureTableWriter {
            path: dest.to_path_buf(),
            n_mels,
            n_frames,
            schema,
            scalars,
            writer,
            factory,
            open: None,
            cuts: GroupCuts::new(target),
            file,
            rows: 0,
        })
    }

    /// Where this table's row groups begin, as rows come.
    pub fn cuts(&self) -> &GroupCuts {
        &self.cuts
    }

    pub fn write(&mut self, rows: &[FeatureRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let len = self.n_mels * self.n_frames;
        if let Some(bad) = rows.iter().find(|r| r.values.len() != len) {
            return Err(StoreError::invalid(
                &self.path,
                format!("{} has {} values, the table holds {len}", bad.track_id, bad.values.len()),
            ));
        }
        let n = rows.len();
        let cols: Vec<ArrayRef> = vec![
            strings(rows.iter().map(|r| &r.track_id)),
            strings(rows.iter().map(|r| &r.genre)),
            strings(rows.iter().map(|r| &r.source)),
            strings(rows.iter().map(|r| &r.audio_hash)),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sample_rate))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.n_samples))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| u32::from(r.channels)))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.n_samples as f64 / r.sample_rate.max(1) as f64))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.mean_db))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.std_db))),
            Arc::new(arrow_array::BooleanArray::from(rows.iter().map(|r| r.padded).collect::<Vec<_>>())),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.window))),
            Arc::new(UInt32Array::from_value(self.n_mels as u32, n)),
            Arc::new(UInt32Array::from_value(self.n_frames as u32, n)),
        ];
        let batch = RecordBatch::try_new(self.scalars.clone(), cols).map_err(arrow_err(&self.path))?;
        let starts: Vec<bool> = rows.iter().map(|r| self.cuts.push(&r.audio_hash)).collect();
        let mut done = 0;
        while done < n {
            let end = (done + 1..n).find(|&i| starts[i]).unwrap_or(n);
            if starts[done] {
                self.close_row_group()?;
            }
            if self.open.is_none() {
                let index = self.writer.flushed_row_groups().len();
                let mut writers = self.factory.create_column_writers(index).map_err(parquet_err(&self.path))?;
                // The last leaf is `feature`'s, written by its own encoder.
                let descr = self.writer.schema_descr().column(writers.len() - 1);
                writers.pop();
                let spectrograms = SpectrogramColumn::new(descr, len).map_err(parquet_err(&self.path))?;
                self.open = Some((writers, spectrograms));
            }
            let (writers, spectrograms) = self.open.as_mut().expect("opened above");
            // One row at a time: where the encoder cuts pages depends on how the values are
            // handed to it, and rows written in any batches must make the same bytes (a table
            // assembled from an earlier one equals a fresh one; segments are written as rows come).
            for (row, r) in rows.iter().enumerate().take(end).skip(done) {
                let part = batch.slice(row, 1);
                let mut leaves = writers.iter_mut();
                for (field, column) in self.scalars.fields().iter().zip(part.columns()) {
                    for leaf in compute_leaves(field, column).map_err(parquet_err(&self.path))? {
                        let writer = leaves.next().expect("one column writer per leaf");
                        writer.write(&leaf).map_err(parquet_err(&self.path))?;
                    }
                }
                spectrograms.write(&r.values).map_err(parquet_err(&self.path))?;
            }
            done = end;
        }
        self.rows += n;
        Ok(())
    }

    /// Finish the row group being encoded, if any.
    fn close_row_group(&mut self) -> Result<(), StoreError> {
        let Some(open) = self.open.take() else { return Ok(()) };
        append_group(&mut self.writer, open, &self.path)
    }

    /// Whether row groups of `from` can be copied into this table as they are (same columns,
    /// same spectrogram size).
    pub fn can_copy_from(&self, from: &FeatureRowReader) -> bool {
        from.len == self.n_mels * self.n_frames
            && self.writer.schema_descr().root_schema() == from.metadata.file_metadata().schema_descr().root_schema()
    }

    /// Append row group `group` of `from` byte for byte (after the rows written so far), with
    /// its statistics and page index. The caller checks [`Self::can_copy_from`], that the group's
    /// rows are the ones this table wants next, and that they make one group here
    /// ([`GroupCuts::is_one_group`]), so that the table is what writing its rows would make.
    pub fn copy_row_group(&mut self, from: &FeatureRowReader, group: usize) -> Result<(), StoreError> {
        self.close_row_group()?;
        let source = LargeReads(File::open(&from.path).map_err(|e| StoreError::io(&from.path, e))?);
        let rg = from.metadata.row_group(group);
        let index = from.metadata.page_index_for_row_group(group);
        let err = parquet_err(&self.path);
        let mut out = self.writer.next_row_group().map_err(&err)?;
        for (c, column) in rg.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size() as u64,
                rows_written: rg.num_rows() as u64,
                metadata: column.clone(),
                bloom_filter: None,
                column_index: index.column_index(c).cloned(),
                offset_index: index.offset_index(c).cloned(),
            };
            out.append_column(&source, close).map_err(parquet_err(&from.path))?;
        }
        out.close().map_err(&err)?;
        let rows = from.group_range(group);
        // The copied group ends here: the next row starts another.
        self.cuts.rows = 0;
        self.cuts.last = rows.clone().last().map(|r| from.identity[r][0].clone());
        self.rows += rows.len();
        Ok(())
    }

    /// Move the row group being encoded here, unwritten, to the end of `to`, and discard this
    /// file (it is never moved into place). The table is then what encoding the rows there
    /// would make, provided (as for [`Self::copy_row_group`]) they make one group there.
    pub fn move_rows_into(mut self, to: &mut FeatureTableWriter) -> Result<(), StoreError> {
        if self.schema != to.schema || !self.writer.flushed_row_groups().is_empty() {
            return Err(StoreError::invalid(&to.path, format!("the rows of {} are not one group of this table", self.path.display())));
        }
        let Some(open) = self.open.take() else { return Ok(()) };
        to.close_row_group()?;
        append_group(&mut to.writer, open, &to.path)?;
        to.cuts.rows = 0;
        to.cuts.last = self.cuts.last.take();
        to.rows += self.rows;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Hand what is written so far to the disk to write in the background: the flush before
    /// the table is moved into place then waits for the rest only.
    pub fn start_writeback(&mut self) -> Result<(), StoreError> {
        self.writer.flush().map_err(|e| StoreError::io(&self.path, e))?;
        self.file.start_writeback();
        Ok(())
    }

    /// Close the Parquet file and move it into place.
    pub fn finish(self) -> Result<PathBuf, StoreError> {
        self.finish_staged()?.commit()
    }

    /// Written and flushed, not yet in place (see [`crate::atomic::commit_all`]).
    pub fn finish_staged(self) -> Result<Staged, StoreError> {
        self.close()?.stage()
    }

    /// Close the file and move it into place without waiting for the disk: for files that are
    /// a cache of work (the features stage's segments), which a killed process leaves whole or
    /// not at all (the rename comes last) and which are checked when read again.
    pub fn finish_cache(self) -> Result<PathBuf, StoreError> {
        self.close()?.commit_unsynced()
    }

    /// The last row group and the footer written; the file still under its temporary name.
    fn close(mut self) -> Result<AtomicFile, StoreError> {
        self.close_row_group()?;
        self.writer.close().map_err(parquet_err(&self.path))?;
        Ok(self.file)
    }
}

/// Write an encoded row group (its scalar columns, then its spectrograms) to `writer`.
fn append_group(
    writer: &mut SerializedFileWriter<BufWriter<File>>,
    (scalars, spectrograms): (Vec<ArrowColumnWriter>, SpectrogramColumn),
    path: &Path,
) -> Result<(), StoreError> {
    let err = parquet_err(path);
    let mut group = writer.next_row_group().map_err(&err)?;
    for w in scalars {
        w.close().map_err(&err)?.append_to_row_group(&mut group).map_err(&err)?;
    }
    spectrograms.append_to(&mut group).map_err(&err)?;
    group.close().map_err(&err)?;
    Ok(())
}

/// The size of the pieces in which feature tables are written and row groups copied: the
/// Parquet writer's own buffer and `File`'s reader move 8 KiB per system call, and a row group
/// of `features_full` is about 12 MB.
const LARGE_IO: usize = 1 << 20;

/// A file whose column chunks are read in [`LARGE_IO`] pieces when copied.
struct LargeReads(File);

impl parquet::file::reader::Length for LargeReads {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl parquet::file::reader::ChunkReader for LargeReads {
    type T = BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let mut file = self.0.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(BufReader::with_capacity(LARGE_IO, file))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// A feature table in memory: what training reads.
#[derive(Debug, Clone)]
pub struct FeatureMatrix {
    pub meta: TableMeta,
    pub track_ids: Vec<String>,
    pub genres: Vec<String>,
    pub n_mels: usize,
    pub n_frames: usize,
    /// `rows x n_mels x n_frames`, row-major.
    pub values: Vec<f32>,
}

impl FeatureMatrix {
    pub fn len(&self) -> usize {
        self.track_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.track_ids.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let len = self.n_mels * self.n_frames;
        &self.values[i * len..(i + 1) * len]
    }
}

/// Read a whole feature table (`features` or `features_full`).
pub fn read_features(path: &Path) -> Result<FeatureMatrix, StoreError> {
    let builder = open_reader(path)?;
    let meta = TableMeta::from_key_values(builder.metadata().file_metadata().key_value_metadata());
    if !meta.table.starts_with("features") {
        return Err(StoreError::invalid(path, format!("not a feature table (it says `{}`)", meta.table)));
    }
    let (n_mels, n_frames) = meta
        .get("shape")
        .and_then(|s| s.split_once('x'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| StoreError::invalid(path, "metadata has no valid `genrelab.shape`"))?;
    let reader = builder.with_batch_size(64).build().map_err(parquet_err(path))?;
    let mut m = FeatureMatrix { meta, track_ids: vec![], genres: vec![], n_mels, n_frames, values: vec![] };
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let ids = column::<StringArray>(path, &batch, "track_id")?;
        let genres = column::<StringArray>(path, &batch, "genre")?;
        let list = column::<FixedSizeListArray>(path, &batch, "feature")?;
        if list.value_length() as usize != n_mels * n_frames {
            return Err(StoreError::invalid(path, "feature length does not match `genrelab.shape`"));
        }
        m.track_ids.extend(ids.iter().map(|s| s.unwrap_or_default().to_string()));
        m.genres.extend(genres.iter().map(|s| s.unwrap_or_default().to_string()));
        let values = list.values().as_primitive::<Float32Type>();
        let start = list.offset() * n_mels * n_frames;
        m.values.extend_from_slice(&values.values()[start..start + list.len() * n_mels * n_frames]);
    }
    Ok(m)
}

/// `(track_id, genre)` of every row of a feature table, reading only those two columns.
pub fn read_track_genres(path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    let builder = open_reader(path)?;
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["track_id", "genre"]);
    let reader = builder.with_projection(mask).with_batch_size(4096).build().map_err(parquet_err(path))?;
    let mut out = vec![];
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let ids = column::<StringArray>(path, &batch, "track_id")?;
        let genres = column::<StringArray>(path, &batch, "genre")?;
        out.extend(ids.iter().zip(genres.iter()).map(|(i, g)| (i.unwrap_or_default().to_string(), g.unwrap_or_default().to_string())));
    }
    Ok(out)
}

/// A table of per-track float columns (`descriptors`): ids, genres, column names and a
/// row-major `rows x columns` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTable {
    pub meta: TableMeta,
    pub track_ids: Vec<String>,
    pub genres: Vec<String>,
    /// The `audio_hash` column, where the table has one (empty otherwise).
    pub audio_hashes: Vec<String>,
    pub columns: Vec<String>,
    pub values: Vec<f32>,
}

/// The column of the blake3 of a clip's bytes, in the tables that have one.
pub const AUDIO_HASH: &str = "audio_hash";

/// Read a table of `track_id`, `genre` and Float64 columns (and `audio_hash`, where present).
pub fn read_float_table(path: &Path) -> Result<FloatTable, StoreError> {
    let meta = read_table_meta(path)?;
    let reader = open_reader(path)?.with_batch_size(4096).build().map_err(parquet_err(path))?;
    let mut t = FloatTable { meta, track_ids: vec![], genres: vec![], audio_hashes: vec![], columns: vec![], values: vec![] };
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let ids = column::<StringArray>(path, &batch, "track_id")?;
        let genres = column::<StringArray>(path, &batch, "genre")?;
        if batch.column_by_name(AUDIO_HASH).is_some() {
            t.audio_hashes.extend(column::<StringArray>(path, &batch, AUDIO_HASH)?.iter().map(|h| h.unwrap_or_default().to_string()));
        }
        let schema = batch.schema();
        let names: Vec<String> =
            schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != "track_id" && n != "genre" && n != AUDIO_HASH).collect();
        if t.columns.is_empty() {
            t.columns = names.clone();
        }
        let cols = names.iter().map(|n| column::<Float64Array>(path, &batch, n)).collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            t.track_ids.push(ids.value(i).to_string());
            t.genres.push(genres.value(i).to_string());
            t.values.extend(cols.iter().map(|c| c.value(i) as f32));
        }
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// rejects

/// A clip the features stage could not use, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub track_id: String,
    pub genre: String,
    pub source: String,
    pub reason: String,
}

fn reject_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("track_id", DataType::Utf8, false),
        Field::new("genre", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

pub fn write_rejects(dest: &Path, meta: &TableMeta, rows: &[RejectRow]) -> Result<(), StoreError> {
    write_rejects_staged(dest, meta, rows)?.commit()?;
    Ok(())
}

/// [`write_rejects`], written and flushed but not yet in place.
pub fn write_rejects_staged(dest: &Path, meta: &TableMeta, rows: &[RejectRow]) -> Result<Staged, StoreError> {
    let schema = reject_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(rows.iter().map(|r| &r.track_id)),
            strings(rows.iter().map(|r| &r.genre)),
            strings(rows.iter().map(|r| &r.source)),
            strings(rows.iter().map(|r| &r.reason)),
        ],
    )
    .map_err(arrow_err(dest))?;
    write_batches_staged(dest, schema, meta, [batch])
}

pub fn read_rejects(path: &Path) -> Result<Vec<RejectRow>, StoreError> {
    let (_, batches) = read_all(path, "rejects")?;
    let mut out = vec![];
    for b in &batches {
        let cols = ["track_id", "genre", "source", "reason"].map(|n| column::<StringArray>(path, b, n));
        let [id, genre, source, reason] = cols;
        let (id, genre, source, reason) = (id?, genre?, source?, reason?);
        for i in 0..b.num_rows() {
            out.push(RejectRow {
                track_id: id.value(i).into(),
                genre: genre.value(i).into(),
                source: source.value(i).into(),
                reason: reason.value(i).into(),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// split

/// A clip's place in the protocol: a part (`train`, `valid`, `test`), a fold, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    pub track_id: String,
    pub genre: String,
    pub part: Option<String>,
    pub fold: Option<i32>,
}

fn split_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("track_id", DataType::Utf8, false),
        Field::new("genre", DataType::Utf8, false),
        Field::new("part", DataType::Utf8, true),
        Field::new("fold", DataType::Int32, true),
    ]))
}

pub fn write_split(dest: &Path, meta: &TableMeta, rows: &[SplitRow]) -> Result<(), StoreError> {
    let schema = split_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(rows.iter().map(|r| &r.track_id)),
            strings(rows.iter().map(|r| &r.genre)),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.part.as_deref()))),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.fold))),
        ],
    )
    .map_err(arrow_err(dest))?;
    write_batches(dest, schema, meta, [batch])
}

pub fn read_split(path: &Path) -> Result<(TableMeta, Vec<SplitRow>), StoreError> {
    let (meta, batches) = read_all(path, "split")?;
    let mut out = vec![];
    for b in &batches {
        let id = column::<StringArray>(path, b, "track_id")?;
        let genre = column::<StringArray>(path, b, "genre")?;
        let part = column::<StringArray>(path, b, "part")?;
        let fold = column::<Int32Array>(path, b, "fold")?;
        for i in 0..b.num_rows() {
            out.push(SplitRow {
                track_id: id.value(i).into(),
                genre: genre.value(i).into(),
                part: part.is_valid(i).then(|| part.value(i).to_string()),
                fold: fold.is_valid(i).then(|| fold.value(i)),
            });
        }
    }
    Ok((meta, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, genre: &str, len: usize, base: f32) -> FeatureRow {
        FeatureRow {
            track_id: id.into(),
            genre: genre.into(),
            source: format!("genres/{genre}/{id}.wav"),
            audio_hash: "ab".repeat(32),
            sample_rate: 22050,
            n_samples: 661_500,
            channels: 1,
            mean_db: base,
            std_db: 1.0,
            padded: false,
            window: 0,
            values: (0..len).map(|i| base + i as f32 * 0.25).collect(),
        }
    }

    #[test]
    fn rows_are_found_by_audio_hash_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        // 2.4 MB rows: row groups of about 8 rows (cut by content), three for these 20.
        let (mels, frames) = (600, 1000);
        let mut w = FeatureTableWriter::create(&path, &TableMeta::new("features"), mels, frames).unwrap();
        for chunk in (0..20).collect::<Vec<_>>().chunks(7) {
            let rows: Vec<FeatureRow> = chunk
                .iter()
                .map(|&i| FeatureRow {
                    audio_hash: format!("h{i}"),
                    padded: i % 2 == 0,
                    ..row(&format!("t{i}"), "g", mels * frames, i as f32)
                })
                .collect();
            w.write(&rows).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(open_reader(&path).unwrap().metadata().num_row_groups(), 3);
        let mut r = FeatureRowReader::open(&path).unwrap();
        for i in [17, 3, 8, 19, 0] {
            let got = r.rows(&format!("h{i}"), "new id", "new genre", "here").unwrap();
            assert_eq!(got.len(), 1);
            let got = &got[0];
            assert_eq!((got.track_id.as_str(), got.genre.as_str(), got.padded, got.mean_db), ("new id", "new genre", i % 2 == 0, i as f32));
            assert_eq!(got.values, row("x", "g", mels * frames, i as f32).values, "row {i}");
        }
        assert!(r.rows("h20", "", "", "").unwrap().is_empty());
    }

    #[test]
    fn row_groups_are_cut_by_content_never_inside_a_clip_and_at_most_twice_the_target() {
        let starts = |hashes: &[String]| {
            let mut c = GroupCuts::new(4);
            hashes.iter().enumerate().filter(|(_, h)| c.push(h)).map(|(i, _)| i).collect::<Vec<_>>()
        };
        let hashes: Vec<String> = (0..200).map(|i| format!("clip{i}")).collect();
        let cuts = starts(&hashes);
        let sizes: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
        assert!(cuts.len() > 200 / 8 && cuts.len() < 200 / 2, "about one group per 4 rows: {}", cuts.len());
        // The same cuts after an insertion, but near it.
        let mut more = hashes.clone();
        more.insert(100, "new clip".into());
        let after: Vec<usize> = starts(&more).into_iter().filter(|&i| i > 120).map(|i| i - 1).collect();
        assert_eq!(after, cuts.iter().copied().filter(|&i| i > 119).collect::<Vec<_>>());
        // Windows of one clip stay together unless a group is full.
        let windows: Vec<String> = (0..30).map(|i| format!("clip{}", i / 5)).collect();
        let w = starts(&windows);
        assert!(w.iter().zip(std::iter::once(&0).chain(&w)).all(|(i, prev)| i % 5 == 0 || i - prev == 8), "{w:?}");
        let c = GroupCuts::new(4);
        assert!(c.is_one_group(&["a", "a"], None));
    }

    #[test]
    fn the_windows_of_a_track_are_its_consecutive_rows_and_a_duplicate_file_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let win = |id: &str, hash: &str, w: u32| FeatureRow { audio_hash: hash.into(), window: w, ..row(id, "g", 4, w as f32) };
        let mut w = FeatureTableWriter::create(&path, &TableMeta::new("features"), 2, 2).unwrap();
        w.write(&[win("long", "h1", 0), win("long", "h1", 1), win("long", "h1", 2), win("short", "h2", 0), win("copy of long", "h1", 0)])
            .unwrap();
        w.finish().unwrap();
        let mut r = FeatureRowReader::open(&path).unwrap();
        assert_eq!((r.rows_of("h1"), r.rows_of("h2")), (Some(0..3), Some(3..4)));
        let rows = r.rows("h1", "renamed", "g", "x").unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.window, r.mean_db, r.track_id.as_str())).collect::<Vec<_>>(),
            [(0, 0.0, "renamed"), (1, 1.0, "renamed"), (2, 2.0, "renamed")]
        );
        assert_eq!(read_track_genres(&path).unwrap().len(), 5, "every row");
    }

    #[test]
    fn whole_row_groups_are_copied_between_tables_and_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        // 2.4 MB rows: row groups of about 8 rows.
        let (mels, frames) = (600, 1000);
        let with_hash = |i: usize| FeatureRow { audio_hash: format!("h{i}"), ..row(&format!("t{i}"), "g", mels * frames, i as f32) };
        let mut w = FeatureTableWriter::create(&a, &TableMeta::new("features"), mels, frames).unwrap();
        w.write(&(0..20).map(with_hash).collect::<Vec<_>>()).unwrap();
        w.finish().unwrap();
        let from = FeatureRowReader::open(&a).unwrap();
        // Groups cut by content: some of about 8 rows.
        let (g1, g2) = (from.group_range(1), from.group_range(2));
        assert!(g1.start > 0 && g2.start == g1.end && g2.end <= 20, "{g1:?} {g2:?}");
        assert_eq!((from.rows_of("h9"), from.group_of(g1.start + 1)), (Some(9..10), (1, 1)));
        assert_eq!(from.identity(9), ("t9", "g", "genres/g/t9.wav"));

        let mut w = FeatureTableWriter::create(&b, &TableMeta::new("features"), mels, frames).unwrap();
        assert!(w.can_copy_from(&from));
        w.write(&[with_hash(100)]).unwrap();
        w.copy_row_group(&from, 1).unwrap();
        w.write(&[with_hash(101)]).unwrap();
        w.copy_row_group(&from, 2).unwrap();
        assert_eq!(w.rows(), 2 + g1.len() + g2.len());
        w.finish().unwrap();
        let m = read_features(&b).unwrap();
        let want: Vec<usize> = [100].into_iter().chain(g1.clone()).chain([101]).chain(g2.clone()).collect();
        assert_eq!(m.track_ids, want.iter().map(|i| format!("t{i}")).collect::<Vec<_>>());
        for (k, &i) in want.iter().enumerate() {
            assert_eq!(m.row(k), with_hash(i).values.as_slice(), "row {k} (t{i})");
        }
        let copied = FeatureRowReader::open(&b).unwrap();
        assert_eq!(
            copied.group_of(copied.rows_of(&format!("h{}", g2.start)).unwrap().start),
            (3, 0),
            "rows written, a copied group, a row, a copied group"
        );

        let other = FeatureTableWriter::create(&dir.path().join("c.parquet"), &TableMeta::new("features"), 2, 3).unwrap();
        assert!(!other.can_copy_from(&from), "another spectrogram size is not copied");
    }

    #[test]
    fn spectrograms_read_back_bit_for_bit_whole_or_a_few_rows_through_the_page_index() {
        // 4,003 values a row: 65 rows a data page (1 MiB), a remainder for the 32-value split.
        let (n_mels, n_frames) = (1, 4003);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features_full.parquet");
        let mut w = FeatureTableWriter::create(&path, &TableMeta::new("features_full"), n_mels, n_frames).unwrap();
        let rows: Vec<FeatureRow> = (0..300u32)
            .map(|i| {
                let mut r = row(&format!("t.{i:05}"), "g", 0, 0.0);
                r.audio_hash = blake3::hash(&i.to_le_bytes()).to_hex().to_string();
                // Every bit pattern matters (signs, exponents, NaN payloads): a pseudo-random walk.
                r.values = (0..4003u32).map(|j| f32::from_bits((i * 4003 + j).wrapping_mul(0x9E37_79B9).rotate_left(j % 32))).collect();
                r
            })
            .collect();
        for chunk in rows.chunks(7) {
            w.write(chunk).unwrap();
        }
        w.finish().unwrap();

        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let open = || ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(&path).unwrap(), options.clone()).unwrap();
        let metadata = open().metadata().clone();
        let pages: Vec<i64> = (0..metadata.num_row_groups())
            .flat_map(|g| {
                metadata
                    .page_index_for_row_group(g)
                    .offset_index(14)
                    .unwrap()
                    .page_locations
                    .iter()
                    .map(|p| p.first_row_index)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(pages, [0, 65, 130, 195, 260], "one row group, pages of 65 rows");
        let bits = |batch: &RecordBatch, r: usize| -> Vec<u32> {
            let list = batch.column_by_name("feature").unwrap().as_fixed_size_list().value(r);
            list.as_primitive::<Float32Type>().values().iter().map(|v| v.to_bits()).collect()
        };
        let want = |i: usize| rows[i].values.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let mut i = 0;
        for batch in open().build().unwrap() {
            let batch = batch.unwrap();
            for r in 0..batch.num_rows() {
                assert_eq!(bits(&batch, r), want(i), "row {i}");
                i += 1;
            }
        }
        assert_eq!(i, rows.len());
        // Rows inside a page, read through the offset index (pages skipped, not decoded).
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        let selection =
            RowSelection::from(vec![RowSelector::skip(130), RowSelector::select(3), RowSelector::skip(100), RowSelector::select(1)]);
        let got: Vec<RecordBatch> = open().with_row_selection(selection).build().unwrap().map(|b| b.unwrap()).collect();
        let got: Vec<Vec<u32>> = got.iter().flat_map(|b| (0..b.num_rows()).map(|r| bits(b, r))).collect();
        assert_eq!(got, [want(130), want(131), want(132), want(233)]);
    }

    #[test]
    fn rows_moved_from_another_writer_are_the_bytes_writing_them_makes() {
        let dir = tempfile::tempdir().unwrap();
        let (mels, frames) = (600, 1000);
        let rows: Vec<FeatureRow> =
            (0..20).map(|i| FeatureRow { audio_hash: format!("h{i}"), ..row(&format!("t{i}"), "g", mels * frames, i as f32) }).collect();
        // Where the last row group begins, as the table cuts them.
        let mut cuts = GroupCuts::new(target_group_rows(mels * frames));
        let last = rows.iter().enumerate().filter(|(_, r)| cuts.push(&r.audio_hash)).map(|(i, _)| i).last().unwrap();
        assert!(last > 0);
        let create =
            |name: &str, mels, frames| FeatureTableWriter::create(&dir.path().join(name), &TableMeta::new("features"), mels, frames);

        let mut direct = create("direct.parquet", mels, frames).unwrap();
        direct.write(&rows).unwrap();
        direct.finish().unwrap();
        let mut table = create("moved.parquet", mels, frames).unwrap();
        table.write(&rows[..last]).unwrap();
        let mut segment = create("segment.parquet", mels, frames).unwrap();
        segment.write(&rows[last..]).unwrap();
        segment.move_rows_into(&mut table).unwrap();
        assert_eq!(table.rows(), 20);
        let other = create("other.parquet", 2, 3).unwrap();
        assert!(other.move_rows_into(&mut table).is_err(), "rows of another size are refused");
        table.finish().unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        assert!(read("direct.parquet") == read("moved.parquet"), "moved rows are the bytes writing them makes");
        let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["direct.parquet", "moved.parquet"], "the segment is discarded");
    }

    #[test]
    fn feature_table_round_trips_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.parquet");
        let meta = TableMeta::new("features").with("feature_config", "{\"n_mels\":4}").with("feature_config_hash", "abc");
        let mut w = FeatureTableWriter::create(&path, &meta, 4, 3).unwrap();
        w.write(&[row("blues.00000", "blues", 12, -10.0), row("jazz.00001", "jazz", 12, -20.0)]).unwrap();
        w.write(&[row("rock.00002", "rock", 12, -30.0)]).unwrap();
        assert!(!path.exists(), "file appears only on finish");
        w.finish().unwrap();

        let m = read_features(&path).unwrap();
        assert_eq!(m.track_ids, ["blues.00000", "jazz.00001", "rock.00002"]);
        assert_eq!(m.genres, ["blues", "jazz", "rock"]);
        assert_eq!((m.n_mels, m.n_frames), (4, 3));
        assert_eq!(m.row(1)[0], -20.0);
        assert_eq!(m.row(2)[11], -30.0 + 11.0 * 0.25);
        assert_eq!(m.meta.get("feature_config_hash"), Some("abc"));
        assert_eq!(m.meta.get("shape"), Some("4x3"));
        assert_eq!(read_table_meta(&path).unwrap().table, "features");
        assert_eq!(read_track_genres(&path).unwrap()[2], ("rock.00002".to_string(), "rock".to_string()));
    }

    #[test]
    fn wrong_row_length_is_an_error_naming_the_track() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let mut w = FeatureTableWriter::create(&path, &TableMeta::new("features"), 2, 2).unwrap();
        let err = w.write(&[row("pop.00001", "pop", 5, 0.0)]).unwrap_err().to_string();
        assert!(err.contains("pop.00001") && err.contains("f.parquet"), "{err}");
    }

    #[test]
    fn split_and_rejects_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let split = vec![
            SplitRow { track_id: "a".into(), genre: "g".into(), part: Some("train".into()), fold: None },
            SplitRow { track_id: "b".into(), genre: "g".into(), part: None, fold: Some(3) },
        ];
        let p = dir.path().join("split.parquet");
        write_split(&p, &TableMeta::new("split").with("protocol", "kfold"), &split).unwrap();
        let (meta, back) = read_split(&p).unwrap();
        assert_eq!(back, split);
        assert_eq!(meta.get("protocol"), Some("kfold"));

        let rejects =
            vec![RejectRow { track_id: "jazz.00054".into(), genre: "jazz".into(), source: "x".into(), reason: "not a WAV file".into() }];
        let p = dir.path().join("rejects.parquet");
        write_rejects(&p, &TableMeta::new("rejects"), &rejects).unwrap();
        assert_eq!(read_rejects(&p).unwrap(), rejects);
        let err = read_split(&p).unwrap_err().to_string();
        assert!(err.contains("expected a `split` table"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// small result tables (training history, metrics, predictions): named typed columns

/// One column of a result table.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Str(Vec<String>),
    Int(Vec<i64>),
    OptInt(Vec<Option<i64>>),
    Float(Vec<f64>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::OptInt(v) => v.len(),
            Column::Float(v) => v.len(),
        }
    }
}

/// Write a table of named columns (all of one length) atomically.
pub fn write_columns(dest: &Path, meta: &TableMeta, columns: Vec<(&str, Column)>) -> Result<(), StoreError> {
    write_columns_staged(dest, meta, columns)?.commit()?;
    Ok(())
}

/// [`write_columns`], written and flushed but not yet in place.
pub fn write_columns_staged(dest: &Path, meta: &TableMeta, columns: Vec<(&str, Column)>) -> Result<Staged, StoreError> {
    let rows = columns.first().map_or(0, |(_, c)| c.len());
    if let Some((name, _)) = columns.iter().find(|(_, c)| c.len() != rows) {
        return Err(StoreError::invalid(dest, format!("column `{name}` has another length than the first")));
    }
    let mut fields = vec![];
    let mut arrays: Vec<ArrayRef> = vec![];
    for (name, col) in columns {
        let (dtype, nullable, array): (DataType, bool, ArrayRef) = match col {
            Column::Str(v) => (DataType::Utf8, false, strings(v)),
            Column::Int(v) => (DataType::Int64, false, Arc::new(arrow_array::Int64Array::from(v))),
            Column::OptInt(v) => (DataType::Int64, true, Arc::new(arrow_array::Int64Array::from(v))),
            Column::Float(v) => (DataType::Float64, false, Arc::new(Float64Array::from(v))),
        };
        fields.push(Field::new(name, dtype, nullable));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(arrow_err(dest))?;
    write_batches_staged(dest, schema, meta, [batch])
}

/// Random access by audio hash to the rows of a feature table (`features` or `features_full`),
/// for reusing the rows of clips whose bytes have not changed: a clip's rows (one, or one per
/// window) are consecutive. Only the identity columns (`audio_hash`, `track_id`, `genre`,
/// `source`) are read up front; values come from a row's row group, read when first asked for
/// (and kept until a row of another group is asked for, so rows taken in table order read each
/// group once). Whole row groups can instead be copied into a new table as they are
/// ([`FeatureTableWriter::copy_row_group`]). Rows are numbered from 0 across the whole file.
pub struct FeatureRowReader {
    path: PathBuf,
    meta: TableMeta,
    metadata: Arc<ParquetMetaData>,
    len: usize,
    /// The rows of each audio hash (the first track with those bytes).
    index: std::collections::HashMap<String, std::ops::Range<usize>>,
    /// First row of each row group, and each row's (audio_hash, track_id, genre, source).
    group_starts: Vec<usize>,
    identity: Vec<[String; 4]>,
    cached: Option<(usize, RecordBatch)>,
}

impl FeatureRowReader {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        // With the page index and the full page encoding statistics, which copied row groups
        // carry along (so a copied group's metadata is what encoding it writes).
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
            .with_encoding_stats_as_mask(false);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).map_err(parquet_err(path))?;
        let meta = TableMeta::from_key_values(builder.metadata().file_metadata().key_value_metadata());
        let metadata = builder.metadata().clone();
        let len = meta
            .get("shape")
            .and_then(|s| s.split_once('x'))
            .and_then(|(a, b)| Some(a.parse::<usize>().ok()? * b.parse::<usize>().ok()?))
            .ok_or_else(|| StoreError::invalid(path, "metadata has no valid `genrelab.shape`"))?;
        if builder.schema().field_with_name("padded").is_err() {
            return Err(StoreError::invalid(path, "written by an older genrelab (no `padded` column)"));
        }
        let group_starts: Vec<usize> = metadata
            .row_groups()
            .iter()
            .scan(0usize, |start, rg| {
                let s = *start;
                *start += rg.num_rows() as usize;
                Some(s)
            })
            .collect();
        const IDENTITY: [&str; 4] = ["audio_hash", "track_id", "genre", "source"];
        let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), IDENTITY);
        let reader = builder.with_projection(mask).with_batch_size(1 << 16).build().map_err(parquet_err(path))?;
        let mut identity: Vec<[String; 4]> = vec![];
        for batch in reader {
            let batch = batch.map_err(arrow_err(path))?;
            let mut cols = vec![];
            for name in IDENTITY {
                cols.push(column::<StringArray>(path, &batch, name)?);
            }
            for i in 0..batch.num_rows() {
                identity.push([0, 1, 2, 3].map(|c| cols[c].value(i).to_string()));
            }
        }
        let mut index: std::collections::HashMap<String, std::ops::Range<usize>> = std::collections::HashMap::new();
        for (row, id) in identity.iter().enumerate() {
            // The rows of a track are consecutive; the same bytes under another track id later
            // (a duplicate file) reuse the first track's rows.
            let continues = |r: &std::ops::Range<usize>| r.end == row && identity[r.start][1] == id[1];
            match index.get_mut(&id[0]) {
                Some(r) if continues(r) => r.end += 1,
                Some(_) => {}
                None => {
                    index.insert(id[0].clone(), row..row + 1);
                }
            }
        }
        Ok(FeatureRowReader { path: path.to_path_buf(), meta, metadata, len, index, group_starts, identity, cached: None })
    }

    /// The rows of the clip with `audio_hash`.
    pub fn rows_of(&self, audio_hash: &str) -> Option<std::ops::Range<usize>> {
        self.index.get(audio_hash).cloned()
    }

    /// The row group holding `row`, and the row's place in it.
    pub fn group_of(&self, row: usize) -> (usize, usize) {
        let group = self.group_starts.partition_point(|&s| s <= row) - 1;
        (group, row - self.group_starts[group])
    }

    /// The rows of row group `group`.
    pub fn group_range(&self, group: usize) -> std::ops::Range<usize> {
        let start = self.group_starts[group];
        start..start + self.metadata.row_group(group).num_rows() as usize
    }

    /// Row `row`'s (track_id, genre, source).
    pub fn identity(&self, row: usize) -> (&str, &str, &str) {
        let id = &self.identity[row];
        (&id[1], &id[2], &id[3])
    }

    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    pub fn contains(&self, audio_hash: &str) -> bool {
        self.index.contains_key(audio_hash)
    }

    /// Drop the row group kept from the last read (a reader done with for now holds no rows).
    pub fn release(&mut self) {
        self.cached = None;
    }

    /// The rows of the clip with `audio_hash` (empty if the table has none), their identity
    /// columns set to the given ones.
    pub fn rows(&mut self, audio_hash: &str, track_id: &str, genre: &str, source: &str) -> Result<Vec<FeatureRow>, StoreError> {
        let Some(rows) = self.rows_of(audio_hash) else { return Ok(vec![]) };
        rows.map(|row| self.row(row, audio_hash, track_id, genre, source)).collect()
    }

    /// Row `row` (of the file), its identity columns set to the given ones.
    pub fn row(&mut self, row: usize, audio_hash: &str, track_id: &str, genre: &str, source: &str) -> Result<FeatureRow, StoreError> {
        let (rg, offset) = self.group_of(row);
        if self.cached.as_ref().is_none_or(|(g, _)| *g != rg) {
            let builder = open_reader(&self.path)?;
            let schema = builder.schema().clone();
            let reader = builder.with_row_groups(vec![rg]).with_batch_size(1 << 16).build().map_err(parquet_err(&self.path))?;
            let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err(&self.path))?;
            let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(arrow_err(&self.path))?;
            self.cached = Some((rg, batch));
        }
        let batch = &self.cached.as_ref().expect("just read").1;
        let path = &self.path;
        let list = column::<FixedSizeListArray>(path, batch, "feature")?;
        if list.value_length() as usize != self.len {
            return Err(StoreError::invalid(path, "feature length does not match `genrelab.shape`"));
        }
        let values = list.value(offset);
        let values = values.as_primitive::<Float32Type>().values().to_vec();
        Ok(FeatureRow {
            track_id: track_id.to_string(),
            genre: genre.to_string(),
            source: source.to_string(),
            audio_hash: audio_hash.to_string(),
            sample_rate: column::<UInt32Array>(path, batch, "sample_rate")?.value(offset),
            n_samples: column::<UInt64Array>(path, batch, "n_samples")?.value(offset),
            channels: column::<UInt32Array>(path, batch, "channels")?.value(offset) as u16,
            mean_db: column::<Float32Array>(path, batch, "mean_db")?.value(offset),
            std_db: column::<Float32Array>(path, batch, "std_db")?.value(offset),
            padded: column::<arrow_array::BooleanArray>(path, batch, "padded")?.value(offset),
            // Tables from before windows have one row per clip.
            window: batch
                .column_by_name("window")
                .map_or(Ok(0), |_| column::<UInt32Array>(path, batch, "window").map(|c| c.value(offset)))?,
            values,
        })
    }
}
