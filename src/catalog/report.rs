//! Annual statistics (agencies report them by mid-January): per unit and retention category, the
//! recordings archived in a year (count, hours, bytes) and what happened in that year to the
//! recordings of that unit and category, archived then or earlier (accesses, clips, exports,
//! holds, destructions). A supertrait of [`super::Catalog`]; both backends implement it with the
//! shared SQL in `report_sql.rs`. Years are calendar years in UTC.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Serialize, Serializer};

use super::Result;

/// How a recording without a unit is shown.
pub const NO_UNIT: &str = "(none)";

/// The counts of one report row (or of the total).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportCounts {
    /// Recordings archived in the year.
    pub recordings: i64,
    /// Their total duration in milliseconds (shown as `hours`).
    #[serde(skip)]
    pub duration_ms: i64,
    /// Their total duration in hours (rounded to 3 decimals when shown).
    #[serde(serialize_with = "three_decimals")]
    pub hours: f64,
    /// Their total size in bytes.
    pub bytes: i64,
    /// `accessed` and `downloaded` custody events in the year.
    pub accesses: i64,
    /// Clips made in the year (failed ones not counted).
    pub clips: i64,
    /// `exported` custody events in the year (one per recording per package).
    pub exports: i64,
    /// `held` custody events in the year (legal holds placed).
    pub holds: i64,
    /// `destroyed` custody events in the year.
    pub destructions: i64,
}

impl ReportCounts {
    fn add(&mut self, o: &ReportCounts) {
        self.recordings += o.recordings;
        self.duration_ms += o.duration_ms;
        self.bytes += o.bytes;
        self.accesses += o.accesses;
        self.clips += o.clips;
        self.exports += o.exports;
        self.holds += o.holds;
        self.destructions += o.destructions;
        self.hours = hours(self.duration_ms);
    }

    fn csv_fields(&self) -> String {
        format!(
            "{},{:.3},{},{},{},{},{},{}",
            self.recordings, self.hours, self.bytes, self.accesses, self.clips, self.exports, self.holds, self.destructions
        )
    }
}

/// One row: a unit and a category.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportRow {
    /// The unit path as stored (`""` when unknown; shown as [`NO_UNIT`]).
    #[serde(serialize_with = "unit_label")]
    pub unit: String,
    /// The retention category.
    pub category: String,
    /// The numbers.
    #[serde(flatten)]
    pub counts: ReportCounts,
}

/// A year's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnualReport {
    /// The calendar year (UTC).
    pub year: i32,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// One row per unit and category, sorted.
    pub rows: Vec<ReportRow>,
    /// The sums of all rows.
    pub total: ReportCounts,
}

/// CSV header of [`AnnualReport::to_csv`].
pub const CSV_HEADER: &str = "unit,category,recordings,hours,bytes,accesses,clips,exports,holds,destructions";

impl AnnualReport {
    /// Builds the report of `year` from the catalog.
    pub async fn build(catalog: &dyn super::Catalog, year: i32) -> Result<Self> {
        let (from, to) = year_bounds(year).ok_or_else(|| super::CatalogError::Refused(format!("year {year} is out of range")))?;
        let rows = catalog.report_rows(from, to).await?;
        Ok(Self::from_rows(year, rows))
    }

    /// A report of these rows, with its total.
    pub fn from_rows(year: i32, rows: Vec<ReportRow>) -> Self {
        let mut total = ReportCounts::default();
        for r in &rows {
            total.add(&r.counts);
        }
        AnnualReport { year, generated_at: crate::custody::format_at(super::now_micros()), rows, total }
    }

    /// Only the rows whose unit `keep` accepts (a caller's scope), with the total recomputed.
    pub fn retain(self, keep: impl Fn(&str) -> bool) -> Self {
        let rows = self.rows.into_iter().filter(|r| keep(&r.unit)).collect();
        let generated_at = self.generated_at;
        AnnualReport { generated_at, ..Self::from_rows(self.year, rows) }
    }

    /// CSV (RFC 4180): the header, one line per row, then a `TOTAL` line.
    pub fn to_csv(&self) -> String {
        let mut out = format!("{CSV_HEADER}\r\n");
        for r in &self.rows {
            let unit = if r.unit.is_empty() { NO_UNIT } else { &r.unit };
            out.push_str(&format!("{},{},{}\r\n", csv_field(unit), csv_field(&r.category), r.counts.csv_fields()));
        }
        out.push_str(&format!("TOTAL,,{}\r\n", self.total.csv_fields()));
        out
    }
}

/// The first and the after-last microsecond of a calendar year in UTC; `None` outside 1970..=9999.
pub fn year_bounds(year: i32) -> Option<(i64, i64)> {
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let start =
        |y: i32| chrono::NaiveDate::from_ymd_opt(y, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc().timestamp_micros());
    Some((start(year)?, start(year + 1)?))
}

/// Parses a `--year` / route value: four digits, 1970 to 9999.
pub fn parse_year(s: &str) -> std::result::Result<i32, String> {
    let bad = || format!("expected a four-digit year such as 2025 (1970 to 9999), got {s:?}");
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let y: i32 = s.parse().map_err(|_| bad())?;
    year_bounds(y).map(|_| y).ok_or_else(bad)
}

/// Merges the per-query results of the backends into sorted rows. `recordings` holds
/// `(unit, category, count, duration_ms, bytes)`, `events` `(unit, category, kind, count)`,
/// `clips` `(unit, category, count)`.
pub(crate) fn merge(
    recordings: Vec<(String, String, i64, i64, i64)>,
    events: Vec<(String, String, String, i64)>,
    clips: Vec<(String, String, i64)>,
) -> Vec<ReportRow> {
    let mut rows: BTreeMap<(String, String), ReportCounts> = BTreeMap::new();
    for (unit, category, n, ms, bytes) in recordings {
        let c = rows.entry((unit, category)).or_default();
        c.recordings += n;
        c.duration_ms += ms;
        c.bytes += bytes;
    }
    for (unit, category, kind, n) in events {
        let c = rows.entry((unit, category)).or_default();
        match kind.as_str() {
            crate::custody::kind::ACCESSED | crate::custody::kind::DOWNLOADED => c.accesses += n,
            crate::custody::kind::EXPORTED => c.exports += n,
            crate::custody::kind::HELD => c.holds += n,
            crate::custody::kind::DESTROYED => c.destructions += n,
            _ => {}
        }
    }
    for (unit, category, n) in clips {
        rows.entry((unit, category)).or_default().clips += n;
    }
    rows.into_iter()
        .map(|((unit, category), mut counts)| {
            counts.hours = hours(counts.duration_ms);
            ReportRow { unit, category, counts }
        })
        .collect()
}

/// The custody event kinds the report counts.
pub(crate) const EVENT_KINDS: &str = "'accessed', 'downloaded', 'exported', 'held', 'destroyed'";

fn hours(ms: i64) -> f64 {
    ms as f64 / 3.6e6
}

fn three_decimals<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1000.0).round() / 1000.0)
}

fn unit_label<S: Serializer>(v: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() { NO_UNIT } else { v })
}

/// One CSV field: quoted when it holds a separator, a quote or a line break, and with a leading
/// `'` when a spreadsheet would otherwise read it as a formula (unit names come from sidecars).
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

/// Report queries (see the module docs).
#[async_trait]
pub trait ReportRecords: Send + Sync {
    /// Rows for the time span `[from, to)` (micros): recordings archived in it, and custody
    /// events and clips within it, grouped by the recording's unit (`""` when none) and category.
    async fn report_rows(&self, from: i64, to: i64) -> Result<Vec<ReportRow>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_parse_strictly() {
        assert_eq!(parse_year("2025"), Ok(2025));
        for bad in ["20x6", "25", "02025", "1969", "", " 2025", "+202"] {
            assert!(parse_year(bad).is_err(), "{bad}");
        }
        let (a, b) = year_bounds(2024).unwrap();
        assert_eq!(crate::custody::format_at(a), "2024-01-01T00:00:00.000000Z");
        assert_eq!(crate::custody::format_at(b), "2025-01-01T00:00:00.000000Z");
    }

    #[test]
    fn csv_quotes_and_totals() {
        let rows = merge(
            vec![("".into(), "uncategorized".into(), 2, 5_400_000, 20), ("=A,\"b\"".into(), "evidence".into(), 1, 0, 5)],
            vec![("".into(), "uncategorized".into(), "accessed".into(), 3), ("".into(), "uncategorized".into(), "destroyed".into(), 1)],
            vec![("x".into(), "evidence".into(), 1)],
        );
        let r = AnnualReport::from_rows(2025, rows);
        let csv = r.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "(none),uncategorized,2,1.500,20,3,0,0,0,1");
        assert_eq!(lines[2], "\"'=A,\"\"b\"\"\",evidence,1,0.000,5,0,0,0,0,0");
        assert_eq!(lines[3], "x,evidence,0,0.000,0,0,1,0,0,0");
        assert_eq!(lines[4], "TOTAL,,3,1.500,25,3,1,0,0,1");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["rows"][0]["unit"], NO_UNIT);
        assert_eq!(j["rows"][0]["hours"], 1.5);
        assert_eq!(j["total"]["recordings"], 3);
        assert!(j["total"].get("duration_ms").is_none());
        let scoped = r.retain(|u| u == "x");
        assert_eq!((scoped.rows.len(), scoped.total.clips, scoped.total.recordings), (1, 1, 0));
    }
}
