//! The V-SYS weekly vaccine request as a file for Excel (`madoguchi export vsys`, and the
//! records clerk's `GET /api/exports/vsys`): one row per venue and product, the vials to ask
//! for in the two weeks from `from` ([`crate::domain::vsys`]).

use super::excel::{Encoding, ExcelCsv, ExcelFile};
use crate::domain::vsys::{request, RequestLine, REQUEST_DAYS};
use crate::domain::Product;
use crate::store::Store;
use chrono::{Duration, NaiveDate};

pub const HEADER: [&str; 10] = [
    "期間開始",
    "期間終了",
    "会場ID",
    "会場",
    "ワクチン",
    "予約回数",
    "1バイアル回数",
    "必要バイアル",
    "在庫バイアル(未開封)",
    "希望バイアル",
];

/// The request lines of the two weeks from `from`.
pub async fn lines(store: &Store, from: NaiveDate) -> anyhow::Result<Vec<RequestLine>> {
    Ok(request(&store.vsys_demands(from).await?))
}

/// The request as CSV for Excel.
pub async fn vsys_file(
    store: &Store,
    from: NaiveDate,
    encoding: Encoding,
) -> anyhow::Result<ExcelFile> {
    let to = from + Duration::days(REQUEST_DAYS - 1);
    let mut csv = ExcelCsv::new(&HEADER);
    for l in lines(store, from).await? {
        let product = Product::parse(&l.product).map_or(l.product.clone(), |p| p.name_ja().into());
        csv.row(&[
            from.to_string(),
            to.to_string(),
            l.venue_id.to_string(),
            l.venue_name,
            product,
            l.doses_booked.to_string(),
            l.doses_per_vial.to_string(),
            l.vials_needed.to_string(),
            l.vials_in_stock.to_string(),
            l.vials_to_request.to_string(),
        ]);
    }
    Ok(csv.finish(encoding))
}
