//! Reading Parquet files that genrelab did not write: a collection's manifest, and the audio
//! datasets of the Hugging Face hub (an `audio` struct of encoded bytes and a label per row).

use std::path::Path;

use arrow::array::{Array, AsArray, BinaryArray, LargeBinaryArray, StructArray};
use arrow::datatypes::DataType;

use crate::StoreError;
use crate::tables::{arrow_err, open_reader, parquet_err};

/// A table read as text: column names and rows, every cell cast to a string (None for nulls and
/// for cells of types that have no text form).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Every column of a Parquet file as text.
pub fn read_text_table(path: &Path) -> Result<TextTable, StoreError> {
    let builder = open_reader(path)?;
    let columns: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    let reader = builder.with_batch_size(8192).build().map_err(parquet_err(path))?;
    let mut rows = vec![];
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let texts: Vec<Option<arrow::array::ArrayRef>> =
            batch.columns().iter().map(|c| arrow::compute::cast(c, &DataType::Utf8).ok()).collect();
        for i in 0..batch.num_rows() {
            rows.push(
                texts.iter().map(|c| c.as_ref().filter(|c| c.is_valid(i)).map(|c| c.as_string::<i32>().value(i).to_string())).collect(),
            );
        }
    }
    Ok(TextTable { columns, rows })
}

/// One row of a hub audio dataset: the encoded audio, its file name if the dataset kept one, and
/// the label (a class index or a string, as stored).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRow {
    pub row: usize,
    pub bytes: Option<Vec<u8>>,
    pub file_name: Option<String>,
    pub label: Option<String>,
}

/// The class names of a `ClassLabel` column, from the `huggingface` key of a file's Parquet
/// metadata (what `datasets` writes), if there are any.
pub fn class_names(path: &Path, label_column: &str) -> Result<Option<Vec<String>>, StoreError> {
    let builder = open_reader(path)?;
    let kv = builder.metadata().file_metadata().key_value_metadata();
    let Some(json) = kv.into_iter().flatten().find(|k| k.key == "huggingface").and_then(|k| k.value.clone()) else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| StoreError::invalid(path, format!("the `huggingface` metadata is not JSON: {e}")))?;
    let feature = &v["info"]["features"][label_column];
    Ok(feature["names"].as_array().map(|names| names.iter().map(|n| n.as_str().unwrap_or_default().to_string()).collect()))
}

/// Rows of a hub audio dataset file, `batch` at a time: the `audio_column` struct's `bytes` and
/// `path` fields and the `label_column` as text. Only those two columns are read.
pub fn read_audio_rows(
    path: &Path,
    audio_column: &str,
    label_column: &str,
    batch: usize,
    mut f: impl FnMut(Vec<AudioRow>) -> Result<(), String>,
) -> Result<(), StoreError> {
    let builder = open_reader(path)?;
    let schema = builder.schema().clone();
    for name in [audio_column, label_column] {
        if schema.field_with_name(name).is_err() {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(StoreError::invalid(path, format!("no column `{name}` (columns: {})", have.join(", "))));
        }
    }
    let roots: Vec<usize> = [audio_column, label_column].iter().filter_map(|n| schema.index_of(n).ok()).collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).with_batch_size(batch.max(1)).build().map_err(parquet_err(path))?;
    let mut row = 0usize;
    for b in reader {
        let b = b.map_err(arrow_err(path))?;
        let audio = b
            .column_by_name(audio_column)
            .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            .ok_or_else(|| StoreError::invalid(path, format!("column `{audio_column}` is not a struct of `bytes` and `path`")))?;
        let bytes =
            audio.column_by_name("bytes").ok_or_else(|| StoreError::invalid(path, format!("`{audio_column}` has no `bytes` field")))?;
        let names = audio.column_by_name("path").and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok());
        let labels = b.column_by_name(label_column).and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok());
        let mut out = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let data = if audio.is_null(i) || bytes.is_null(i) {
                None
            } else if let Some(a) = bytes.as_any().downcast_ref::<BinaryArray>() {
                Some(a.value(i).to_vec())
            } else if let Some(a) = bytes.as_any().downcast_ref::<LargeBinaryArray>() {
                Some(a.value(i).to_vec())
            } else {
                return Err(StoreError::invalid(path, format!("`{audio_column}.bytes` is not binary")));
            };
            let text = |c: &Option<arrow::array::ArrayRef>| {
                c.as_ref().filter(|c| c.is_valid(i)).map(|c| c.as_string::<i32>().value(i).to_string())
            };
            out.push(AudioRow { row, bytes: data, file_name: text(&names), label: text(&labels) });
            row += 1;
        }
        f(out).map_err(|message| StoreError::invalid(path, message))?;
    }
    Ok(())
}
