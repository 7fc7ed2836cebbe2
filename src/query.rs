//! SQL over the store with polars.
//!
//! Every `*.parquet` file in the store folder is a table named by its file stem (`features`,
//! `features_full`, `rejects`, `split`, ...). Tables are scanned lazily, so a query that touches
//! only a few columns of the 661 KB-per-row `features_full` table reads only those columns.

use std::path::Path;

use polars::prelude::*;
use polars::sql::SQLContext;

use genrelab_store::StoreError;

/// Names of the tables in `store_dir`, sorted.
pub fn table_names(store_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && !genrelab_store::atomic::is_temporary(p))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// Run a polars SQL query over the store's tables.
pub fn sql(store_dir: &Path, query: &str) -> Result<DataFrame, StoreError> {
    // The store is read, never written through SQL: a `DROP TABLE` or `INSERT` would only change
    // polars' in-memory view and report success while nothing happened.
    let first = query.trim_start().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or_default().to_ascii_uppercase();
    if !["SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE", ""].contains(&first.as_str()) && !query.trim_start().starts_with('(') {
        return Err(StoreError::Query(format!(
            "`{first}`: `genrelab query` only reads the store (SELECT, WITH, SHOW TABLES, EXPLAIN, DESCRIBE); the tables are written by the stages"
        )));
    }
    let names = table_names(store_dir);
    if names.is_empty() {
        return Err(StoreError::EmptyStore(store_dir.to_path_buf()));
    }
    let mut ctx = SQLContext::new();
    for name in &names {
        let path = store_dir.join(format!("{name}.parquet"));
        let lf = LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default())
            .map_err(|e| StoreError::Query(format!("cannot open {}: {e}", path.display())))?;
        ctx.register(name, lf);
    }
    let lf =
        ctx.execute(query).map_err(|e| StoreError::Query(format!("{e}\n(tables in {}: {})", store_dir.display(), names.join(", "))))?;
    lf.collect().map_err(|e| StoreError::Query(e.to_string()))
}

/// Output formats for query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Render a result for the terminal or for scripts.
pub fn render(df: &mut DataFrame, format: Format) -> Result<String, StoreError> {
    let err = |e: PolarsError| StoreError::Query(e.to_string());
    match format {
        Format::Table => Ok(format!("{df}")),
        Format::Csv => {
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf).finish(df).map_err(err)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Format::Json => {
            let mut buf = Vec::new();
            JsonWriter::new(&mut buf).with_json_format(JsonFormat::Json).finish(df).map_err(err)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrelab_store::tables::*;

    #[test]
    fn sql_counts_and_aggregates_over_written_tables() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FeatureTableWriter::create(&dir.path().join("features.parquet"), &TableMeta::new("features"), 2, 2).unwrap();
        let mk = |id: &str, genre: &str, mean: f32| FeatureRow {
            track_id: id.into(),
            genre: genre.into(),
            source: "s".into(),
            audio_hash: "h".into(),
            sample_rate: 22050,
            n_samples: 22050,
            channels: 1,
            mean_db: mean,
            std_db: 0.0,
            padded: true,
            window: 0,
            values: vec![mean; 4],
        };
        w.write(&[mk("a.1", "a", -10.0), mk("a.2", "a", -20.0), mk("b.1", "b", -40.0)]).unwrap();
        w.finish().unwrap();
        assert_eq!(table_names(dir.path()), ["features"]);

        let mut df =
            sql(dir.path(), "SELECT genre, COUNT(*) AS clips, AVG(mean_db) AS mean_db FROM features GROUP BY genre ORDER BY genre")
                .unwrap();
        assert_eq!(df.height(), 2);
        let clips: Vec<_> = df.column("clips").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(clips, [2, 1]);
        let mean: Vec<_> = df.column("mean_db").unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().into_no_null_iter().collect();
        assert_eq!(mean, [-15.0, -40.0]);

        let csv = render(&mut df, Format::Csv).unwrap();
        assert!(csv.starts_with("genre,clips,mean_db\n"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&render(&mut df, Format::Json).unwrap()).unwrap();
        assert_eq!(json[1]["genre"], "b");

        // The feature column itself (a fixed-size list, genrelab's own encoding) reads as a polars array.
        let df = sql(dir.path(), "SELECT feature FROM features").unwrap();
        assert!(matches!(df.column("feature").unwrap().dtype(), DataType::Array(_, 4)), "{:?}", df.dtypes());
        let values: Vec<f32> = df
            .column("feature")
            .unwrap()
            .as_materialized_series()
            .array()
            .unwrap()
            .get_inner()
            .f32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(values, [[-10.0f32; 4], [-20.0; 4], [-40.0; 4]].concat());

        let err = sql(dir.path(), "SELECT * FROM nope").unwrap_err().to_string();
        assert!(err.contains("tables in"), "{err}");

        // Statements that would write are refused, not reported as done.
        for q in ["DROP TABLE features", "  insert into features values (1)", "TRUNCATE features"] {
            let err = sql(dir.path(), q).unwrap_err().to_string();
            assert!(err.contains("only reads the store"), "{q}: {err}");
        }
        assert!(ok_or_print(sql(dir.path(), "with x as (select genre from features) select * from x")));
        assert!(ok_or_print(sql(dir.path(), "(SELECT genre FROM features)")));
        assert!(dir.path().join("features.parquet").exists());
    }

    fn ok_or_print<T, E: std::fmt::Display>(r: Result<T, E>) -> bool {
        r.map_err(|e| eprintln!("{e}")).is_ok()
    }
}
