//! The `feature` column of a feature table (a fixed-size list of `f32`, almost all of the table's
//! bytes), encoded straight from the rows' values.
//!
//! The pages are what Parquet readers expect of the column parquet-rs's Arrow writer makes:
//! data pages v1, repetition and definition levels RLE-encoded, values byte-stream-split and
//! zstd-compressed, an offset index and no statistics. Only the work differs: the general
//! writer builds a level for every value, gathers the values through Arrow arrays into its
//! encoder's buffer and splits them a byte at a time, which cost the features stage more than
//! compressing them. Here the levels of a row are two runs, computed, and the values are split
//! 32 at a time (AVX2 registers) straight from the row into the page buffer.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// zstd level of the spectrogram pages: the first of zstd's fast levels. On gtzan-mini's
/// features_full, 2.5 % more bytes than level 1 in about half the compression time.
const ZSTD_LEVEL: i32 = -1;

/// Uncompressed bytes of values per data page (at least one row per page).
const PAGE_BYTES: usize = 1 << 20;

/// The column chunk of one row group, built a row at a time in memory.
pub(crate) struct SpectrogramColumn {
    descr: ColumnDescPtr,
    /// Values per row, and rows per data page (pages begin at fixed rows of the group, so the
    /// same rows make the same pages however they are handed over).
    len: usize,
    page_rows: usize,
    compressor: zstd::bulk::Compressor<'static>,
    /// Values of the page being filled, and the encoded page (levels and split values).
    values: Vec<f32>,
    page: Vec<u8>,
    chunk: TrackedWrite<Vec<u8>>,
    locations: Vec<PageLocation>,
    rows: usize,
    uncompressed: i64,
}

impl SpectrogramColumn {
    pub(crate) fn new(descr: ColumnDescPtr, len: usize) -> Result<Self, ParquetError> {
        let compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(SpectrogramColumn {
            descr,
            len,
            page_rows: (PAGE_BYTES / (4 * len.max(1))).max(1),
            compressor,
            values: vec![],
            page: vec![],
            chunk: TrackedWrite::new(vec![]),
            locations: vec![],
            rows: 0,
            uncompressed: 0,
        })
    }

    /// Append one row of `len` values.
    pub(crate) fn write(&mut self, row: &[f32]) -> Result<(), ParquetError> {
        debug_assert_eq!(row.len(), self.len);
        self.rows += 1;
        if self.page_rows == 1 {
            // A page a row (features_full): encoded from the row itself.
            return self.write_page(row);
        }
        self.values.extend_from_slice(row);
        if self.values.len() == self.page_rows * self.len {
            self.flush_page()?;
        }
        Ok(())
    }

    /// Write the rows collected since the last page, if any.
    fn flush_page(&mut self) -> Result<(), ParquetError> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut values = std::mem::take(&mut self.values);
        self.write_page(&values)?;
        values.clear();
        self.values = values;
        Ok(())
    }

    /// Encode, compress and write a page of whole rows: the last rows written.
    fn write_page(&mut self, values: &[f32]) -> Result<(), ParquetError> {
        let rows = values.len() / self.len;
        // Levels of a list column, each with its length first: a row's repetition levels are
        // one 0 then len - 1 ones, every definition level is 1 (a present, non-null value).
        let mut rep = vec![];
        for _ in 0..rows {
            rle_run(&mut rep, 1, 0);
            if self.len > 1 {
                rle_run(&mut rep, self.len - 1, 1);
            }
        }
        let mut def = vec![];
        rle_run(&mut def, values.len(), 1);
        let mut levels = vec![];
        for l in [rep, def] {
            levels.extend_from_slice(&(l.len() as u32).to_le_bytes());
            levels.extend_from_slice(&l);
        }
        // Pages of the same rows have the same size: the buffer is only resized (and zeroed)
        // when that changes, every byte of it is then written.
        self.page.resize(levels.len() + 4 * values.len(), 0);
        self.page[..levels.len()].copy_from_slice(&levels);
        byte_stream_split(values, &mut self.page[levels.len()..]);
        let compressed = self.compressor.compress(&self.page).map_err(|e| ParquetError::External(Box::new(e)))?;
        let page = Page::DataPage {
            buf: Bytes::from(compressed),
            num_values: values.len() as u32,
            encoding: Encoding::BYTE_STREAM_SPLIT,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.chunk).write_page(CompressedPage::new(page, self.page.len()))?;
        self.locations.push(PageLocation {
            offset: spec.offset as i64,
            compressed_page_size: spec.compressed_size as i32,
            first_row_index: (self.rows - rows) as i64,
        });
        self.uncompressed += spec.uncompressed_size as i64;
        Ok(())
    }

    /// The finished chunk, appended as the next column of `group`.
    pub(crate) fn append_to<W: std::io::Write + Send>(mut self, group: &mut SerializedRowGroupWriter<'_, W>) -> Result<(), ParquetError> {
        self.flush_page()?;
        let bytes = Bytes::from(self.chunk.into_inner()?);
        let metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression_codec(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?).into())
            .set_encodings_mask(EncodingMask::new_from_encodings([Encoding::RLE, Encoding::BYTE_STREAM_SPLIT].iter()))
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::BYTE_STREAM_SPLIT,
                count: self.locations.len() as i32,
            }])
            .set_total_compressed_size(bytes.len() as i64)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values((self.rows * self.len) as i64)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(OffsetIndexMetaData { page_locations: self.locations, unencoded_byte_array_data_bytes: None }),
        };
        group.append_column(&bytes, close)
    }
}

/// An RLE run of the RLE/bit-packing hybrid encoding of levels of bit width 1: the run's length
/// (ULEB128, shifted left once: the low bit 0 marks a run), then the value in one byte.
fn rle_run(out: &mut Vec<u8>, count: usize, value: u8) {
    let mut n = (count as u64) << 1;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.push(value);
}

/// Parquet's BYTE_STREAM_SPLIT of `values` into `out` (4 x values.len() bytes): byte k of every
/// value, in order, then byte k + 1, for k = 0 .. 3 (little-endian).
fn byte_stream_split(values: &[f32], out: &mut [u8]) {
    assert_eq!(out.len(), 4 * values.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above).
        done = unsafe { split_avx2(values, out) };
    }
    split_from(values, out, done);
}

/// The scalar split of values `from..`.
fn split_from(values: &[f32], out: &mut [u8], from: usize) {
    let n = values.len();
    for (i, v) in values.iter().enumerate().skip(from) {
        for (k, b) in v.to_le_bytes().into_iter().enumerate() {
            out[k * n + i] = b;
        }
    }
}

/// The split of the first multiple of 32 values; returns how many were split.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_avx2(values: &[f32], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let n = values.len();
    let blocks = n / 32;
    // Within each 128-bit lane (four floats): byte 0 of each, then byte 1, 2 and 3.
    let gather =
        _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    // Then the eight floats' byte k side by side: 64-bit element k holds byte k of all eight.
    let lanes = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let src = values.as_ptr() as *const __m256i;
    let dst = out.as_mut_ptr();
    for b in 0..blocks {
        // SAFETY: 32 values from 32 * b are in `values`, 32 bytes from k * n + 32 * b in `out`.
        unsafe {
            let r = [0, 1, 2, 3].map(|j| {
                let v = _mm256_loadu_si256(src.add(4 * b + j));
                _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, gather), lanes)
            });
            // A 4 x 4 transpose of 64-bit elements: stream k gets element k of r[0], ..., r[3].
            let lo01 = _mm256_unpacklo_epi64(r[0], r[1]);
            let hi01 = _mm256_unpackhi_epi64(r[0], r[1]);
            let lo23 = _mm256_unpacklo_epi64(r[2], r[3]);
            let hi23 = _mm256_unpackhi_epi64(r[2], r[3]);
            let streams = [
                _mm256_permute2x128_si256(lo01, lo23, 0x20),
                _mm256_permute2x128_si256(hi01, hi23, 0x20),
                _mm256_permute2x128_si256(lo01, lo23, 0x31),
                _mm256_permute2x128_si256(hi01, hi23, 0x31),
            ];
            for (k, s) in streams.into_iter().enumerate() {
                _mm256_storeu_si256(dst.add(k * n + 32 * b) as *mut __m256i, s);
            }
        }
    }
    32 * blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_puts_byte_k_of_every_value_in_stream_k() {
        for n in [0usize, 1, 7, 31, 32, 33, 64, 100, 1000] {
            let values: Vec<f32> = (0..n).map(|i| f32::from_bits(0x0102_0304u32.wrapping_mul(i as u32 + 1) ^ (i as u32) << 7)).collect();
            let mut fast = vec![0u8; 4 * n];
            byte_stream_split(&values, &mut fast);
            let mut scalar = vec![0u8; 4 * n];
            split_from(&values, &mut scalar, 0);
            assert_eq!(fast, scalar, "{n} values");
            for (i, v) in values.iter().enumerate() {
                let bytes: Vec<u8> = (0..4).map(|k| fast[k * n + i]).collect();
                assert_eq!(bytes, v.to_le_bytes(), "value {i} of {n}");
            }
        }
    }

    #[test]
    fn rle_runs_are_uleb128_lengths_shifted_then_the_value() {
        let mut out = vec![];
        rle_run(&mut out, 1, 0);
        rle_run(&mut out, 165_247, 1);
        // 165247 << 1 = 330494 = 0x50AFE: 0xFE (0x7E | 0x80), 0x95 (0x15 | 0x80), 0x14.
        assert_eq!(out, [2, 0, 0xFE, 0x95, 0x14, 1]);
    }
}
