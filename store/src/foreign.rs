//! Reading Parquet files that genrelab did not write: a collection's manifest, and the audio
//! datasets of the Hugging Face hub (an `audio` struct of encoded bytes and a label per row).

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, BinaryArray, LargeBinaryArray, StructArray};
use arrow_schema::DataType;

use crate::StoreError;
use crate::tables::{arrow_err, open_reader, parquet_err};

/// A table read as text: column names and rows, every cell as [`column_texts`] writes it (None
/// for nulls and for cells of types that have no text form).
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
        let mut texts: Vec<std::vec::IntoIter<Option<String>>> =
            batch.columns().iter().map(|c| column_texts(c.as_ref()).into_iter()).collect();
        for _ in 0..batch.num_rows() {
            rows.push(texts.iter_mut().map(|c| c.next().flatten()).collect());
        }
    }
    Ok(TextTable { columns, rows })
}

/// Every cell of a column as text, as a manifest's or a label's column holds it: strings as they
/// are, integers and booleans in decimal, floats as Rust writes them (`1.0`, `0.25`),
/// dictionary-encoded strings (pandas' categoricals) by their value; None for nulls and for other
/// types (dates, lists, structs, ...).
pub fn column_texts(a: &dyn Array) -> Vec<Option<String>> {
    fn each<T>(a: &dyn Array, value: impl Fn(usize) -> T, text: impl Fn(T) -> String) -> Vec<Option<String>> {
        (0..a.len()).map(|i| a.is_valid(i).then(|| text(value(i)))).collect()
    }
    fn int<T: ArrowPrimitiveType>(a: &dyn Array) -> Vec<Option<String>>
    where
        T::Native: std::fmt::Display,
    {
        let p = a.as_primitive::<T>();
        each(a, |i| p.value(i), |v| v.to_string())
    }
    match a.data_type() {
        DataType::Utf8 => each(a, |i| a.as_string::<i32>().value(i), str::to_string),
        DataType::LargeUtf8 => each(a, |i| a.as_string::<i64>().value(i), str::to_string),
        DataType::Utf8View => each(a, |i| a.as_string_view().value(i), str::to_string),
        DataType::Boolean => each(a, |i| a.as_boolean().value(i), |v| v.to_string()),
        DataType::Int8 => int::<Int8Type>(a),
        DataType::Int16 => int::<Int16Type>(a),
        DataType::Int32 => int::<Int32Type>(a),
        DataType::Int64 => int::<Int64Type>(a),
        DataType::UInt8 => int::<UInt8Type>(a),
        DataType::UInt16 => int::<UInt16Type>(a),
        DataType::UInt32 => int::<UInt32Type>(a),
        DataType::UInt64 => int::<UInt64Type>(a),
        DataType::Float32 => each(a, |i| a.as_primitive::<Float32Type>().value(i), |v| format!("{v:?}")),
        DataType::Float64 => each(a, |i| a.as_primitive::<Float64Type>().value(i), |v| format!("{v:?}")),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let values = column_texts(d.values().as_ref());
            d.normalized_keys()
                .into_iter()
                .enumerate()
                .map(|(i, k)| if a.is_valid(i) { values.get(k).cloned().flatten() } else { None })
                .collect()
        }
        _ => vec![None; a.len()],
    }
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
/// `path` fields and the `label_column` as text. Only those two columns are read. An error of `f`
/// stops the reading and is returned as it is.
pub fn read_audio_rows<E: From<StoreError>>(
    path: &Path,
    audio_column: &str,
    label_column: &str,
    batch: usize,
    mut f: impl FnMut(Vec<AudioRow>) -> Result<(), E>,
) -> Result<(), E> {
    let builder = open_reader(path)?;
    let schema = builder.schema().clone();
    for name in [audio_column, label_column] {
        if schema.field_with_name(name).is_err() {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(StoreError::invalid(path, format!("no column `{name}` (columns: {})", have.join(", "))).into());
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
        let none = || vec![None; b.num_rows()];
        let names = audio.column_by_name("path").map_or_else(none, |c| column_texts(c.as_ref()));
        let labels = b.column_by_name(label_column).map_or_else(none, |c| column_texts(c.as_ref()));
        let mut out = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let data = if audio.is_null(i) || bytes.is_null(i) {
                None
            } else if let Some(a) = bytes.as_any().downcast_ref::<BinaryArray>() {
                Some(a.value(i).to_vec())
            } else if let Some(a) = bytes.as_any().downcast_ref::<LargeBinaryArray>() {
                Some(a.value(i).to_vec())
            } else {
                return Err(StoreError::invalid(path, format!("`{audio_column}.bytes` is not binary")).into());
            };
            out.push(AudioRow { row, bytes: data, file_name: names[i].clone(), label: labels[i].clone() });
            row += 1;
        }
        f(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{BooleanArray, Date32Array, DictionaryArray, Float64Array, Int64Array, LargeStringArray, StringArray, UInt8Array};

    #[test]
    fn cells_read_as_text_by_type() {
        let s = |v: &[Option<&str>]| v.iter().map(|v| v.map(String::from)).collect::<Vec<_>>();
        assert_eq!(column_texts(&StringArray::from(vec![Some("rock"), None])), s(&[Some("rock"), None]));
        assert_eq!(column_texts(&LargeStringArray::from(vec!["a/b.mp3"])), s(&[Some("a/b.mp3")]));
        assert_eq!(column_texts(&Int64Array::from(vec![Some(-3), None, Some(7)])), s(&[Some("-3"), None, Some("7")]));
        assert_eq!(column_texts(&UInt8Array::from(vec![255])), s(&[Some("255")]));
        assert_eq!(column_texts(&Float64Array::from(vec![1.0, 0.25])), s(&[Some("1.0"), Some("0.25")]));
        assert_eq!(column_texts(&BooleanArray::from(vec![true, false])), s(&[Some("true"), Some("false")]));
        // pandas' categoricals: dictionary-encoded strings, nulls kept.
        let dict: DictionaryArray<Int32Type> = vec![Some("jazz"), None, Some("blues"), Some("jazz")].into_iter().collect();
        assert_eq!(column_texts(&dict), s(&[Some("jazz"), None, Some("blues"), Some("jazz")]));
        // No text form: every cell None, the column's length kept.
        assert_eq!(column_texts(&Date32Array::from(vec![1, 2])), s(&[None, None]));
    }
}
