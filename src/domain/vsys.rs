//! V-SYS の希望量: the weekly vaccine request. For each venue and product, the doses booked in
//! the next two weeks make whole vials (a vial opened gives its doses the same day, so the
//! count is per day: a day's doses are rounded up to whole vials on their own), less the
//! unopened vials in stock at the venue. A venue never asks for fewer than none.

use serde::{Deserialize, Serialize};

/// The request covers this many days from its first.
pub const REQUEST_DAYS: i64 = 14;

/// What a venue needs of one product: the doses booked on each day of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub venue_id: i64,
    pub venue_name: String,
    /// The product code (`pfizer`, …).
    pub product: String,
    /// Doses booked, one entry per day that has any.
    pub doses_per_day: Vec<i64>,
    /// Doses one vial gives at this venue (5 or 6 for Pfizer, by the syringes in use).
    pub doses_per_vial: i64,
    /// Unopened, undiscarded vials of the product at the venue.
    pub vials_in_stock: i64,
}

/// One line of the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestLine {
    pub venue_id: i64,
    pub venue_name: String,
    pub product: String,
    pub doses_booked: i64,
    pub doses_per_vial: i64,
    /// Vials the booked doses take, each day rounded up to whole vials.
    pub vials_needed: i64,
    pub vials_in_stock: i64,
    /// Vials to ask V-SYS for: needed less stock, never below zero.
    pub vials_to_request: i64,
}

/// The request lines for the demands, in the order given.
pub fn request(demands: &[Demand]) -> Vec<RequestLine> {
    demands
        .iter()
        .map(|d| {
            let per = d.doses_per_vial.max(1);
            let needed: i64 = d
                .doses_per_day
                .iter()
                .map(|n| (n.max(&0) + per - 1) / per)
                .sum();
            RequestLine {
                venue_id: d.venue_id,
                venue_name: d.venue_name.clone(),
                product: d.product.clone(),
                doses_booked: d.doses_per_day.iter().map(|n| *n.max(&0)).sum(),
                doses_per_vial: per,
                vials_needed: needed,
                vials_in_stock: d.vials_in_stock,
                vials_to_request: (needed - d.vials_in_stock).max(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(days: &[i64], per: i64, stock: i64) -> Demand {
        Demand {
            venue_id: 1,
            venue_name: "舞鶴文化公園体育館".into(),
            product: "pfizer".into(),
            doses_per_day: days.to_vec(),
            doses_per_vial: per,
            vials_in_stock: stock,
        }
    }

    #[test]
    fn whole_vials_per_day_less_stock() {
        // 12 doses on day 1 (3 vials of 5: 15 drawn, 3 wasted), 10 on day 2 (2 vials), 1 on
        // day 3 (1 vial): 6 vials for 23 doses; 2 in stock → ask for 4.
        let r = request(&[demand(&[12, 10, 1], 5, 2)]);
        assert_eq!(r[0].doses_booked, 23);
        assert_eq!(r[0].vials_needed, 6);
        assert_eq!(r[0].vials_to_request, 4);
        // The same doses with 6-dose syringes: 2 + 2 + 1 = 5 vials.
        assert_eq!(request(&[demand(&[12, 10, 1], 6, 2)])[0].vials_needed, 5);
    }

    #[test]
    fn stock_beyond_need_asks_for_nothing() {
        let r = request(&[demand(&[30], 6, 9)]);
        assert_eq!((r[0].vials_needed, r[0].vials_to_request), (5, 0));
        let none = request(&[demand(&[], 5, 0)]);
        assert_eq!((none[0].doses_booked, none[0].vials_to_request), (0, 0));
    }
}
