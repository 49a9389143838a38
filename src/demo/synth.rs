//! 合成舞鶴市: a synthetic resident register shaped like Maizuru City in 2021, for `madoguchi
//! demo`, benchmarks and tests. No real person is in it, yet an agent trying the demo meets the
//! city the system was built for: real 町名 and postal codes (`data/maizuru_towns.tsv`), names
//! that fit each birth year (`data/names.tsv`: no 80-year-old 陽翔), households sharing one
//! 0773 landline, an ageing population (about a third 65+), and a history of calls and
//! inquiries so that a screen pop is never empty.
//!
//! Everything is drawn from a seeded PRNG written here (splitmix64): the same seed gives the
//! same register, so a bug seen in a demo can be reproduced.
//!
//! Modelling choices (see `domain/VACCINATION.md` §7; marked [I] there where inferred):
//! - 地区 from the postal code: 624-01xx (由良川 valley) and 624-0953…0968 (八雲・神崎) are 加佐;
//!   the rest of 624 is 西; 625-01xx is 大浦; 625-0030…0035, 0040…0045 and 0081…0087 (愛宕,
//!   溝尻, 余部, 長浜, 和田) are 中; the rest of 625 is 東.
//! - People per town: urban 西/東 towns weigh 4, 中 3, the rural 加佐 and 大浦 hamlets 1, and
//!   rural households are older.
//! - Households of 1–5 (elderly alone or as a couple, singles, couples, families, single
//!   parents, three generations, an elderly parent with an adult child), about 2.3 people each.
//! - Ages 0–100; about 32% 65+ and 12% under 12, as the 2020 census and the IPSS projection give.
//! - A household shares one landline (0773-6x-xxxx or 0773-7x-xxxx) most of the time; most
//!   under 65 have a mobile, fewer of the old; some elderly list a child's mobile as family
//!   contact. At most two phones each, so the register round-trips through the resident CSV.
//! - 券番号 are sequential from a random start, zero-padded to 10 digits; 宛名番号 and
//!   世帯番号 are 10-digit numbers rising in steps; 市区町村コード is 262021.

use crate::domain::{
    AddressNo, BirthDate, Extension, Intent, Kana, MunicipalityCode, NewResident, PhoneNumber,
    PostalCode, Role, Sex, TicketNo,
};
use crate::store::Store;
use anyhow::Context;
use chrono::{Datelike, Months, NaiveDate};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// 舞鶴市's 全国地方公共団体コード (26202 + check digit 1).
pub const MUNICIPALITY_CODE: &str = "262021";
/// The city's real vaccination call-center number: what simulated callers dial.
pub const CALL_CENTER_NUMBER: &str = "0773-68-9225";
/// The queue the demo's history calls waited in (the AMI simulator's queue should match).
pub const DEMO_QUEUE: &str = "vaccine";
/// The day ages are counted on by [`residents`]: the start of fiscal 2021, the campaign's year.
pub const REFERENCE_DATE: (i32, u32, u32) = (2021, 4, 1);

const TOWNS_TSV: &str = include_str!("../../data/maizuru_towns.tsv");
const NAMES_TSV: &str = include_str!("../../data/names.tsv");

// ---------------------------------------------------------------------------------------------
// A small seeded PRNG: determinism without the rand crate.

/// splitmix64 (Steele, Lea, Flood 2014): one u64 of state, passes BigCrush, ample for
/// synthetic data. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6D61_646F_6775_6368) // "madoguch": seed 0 is a fine seed too
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0); the multiply-shift bias is below 2^-40 for our n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Index drawn in proportion to `weights` (0 for an empty or all-zero list).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }

    /// One element, uniformly; `None` only for an empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded tables

/// 町名 with its postal code and 地区.
#[derive(Debug, Clone)]
pub struct Town {
    /// `624-0101`
    pub postal_code: String,
    pub name: String,
    pub kana: String,
    pub district: &'static str,
    weight: f64,
}

#[derive(Debug, Clone)]
struct Name {
    kanji: String,
    kana: String,
}

struct Tables {
    towns: Vec<Town>,
    town_weights: Vec<f64>,
    surnames: Vec<Name>,
    surname_weights: Vec<f64>,
    /// Given names by sex (0 male, 1 female) and birth band (0: -1955, 1: 1956-1985, 2: 1986-).
    given: [[Vec<Name>; 3]; 2],
}

/// 地区 of a Maizuru postal code (7 digits): see the module doc for the reasoning.
pub fn district_of(postal: u32) -> &'static str {
    match postal {
        6_240_100..=6_240_199 | 6_240_953..=6_240_999 => "加佐",
        6_240_000..=6_249_999 => "西",
        6_250_100..=6_250_199 => "大浦",
        6_250_030..=6_250_035 | 6_250_040..=6_250_045 | 6_250_081..=6_250_087 => "中",
        _ => "東",
    }
}

fn is_rural(district: &str) -> bool {
    matches!(district, "加佐" | "大浦")
}

/// Kyoto's most common surnames (田中, 山本, 中村, then 井上, 吉田, 松本) weigh extra.
const KYOTO_SURNAMES: &[(&str, f64)] = &[
    ("田中", 5.0),
    ("山本", 4.0),
    ("中村", 3.5),
    ("井上", 2.0),
    ("吉田", 2.0),
    ("松本", 2.0),
];

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut towns = Vec::new();
        for line in TOWNS_TSV.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').map(str::trim).collect();
            let (Some(code), Some(name), Some(kana)) = (f.first(), f.get(1), f.get(2)) else {
                continue;
            };
            let Ok(postal) = code.parse::<u32>() else {
                continue;
            };
            if code.len() != 7 {
                continue;
            }
            let district = district_of(postal);
            let weight = match district {
                "西" | "東" => 4.0,
                "中" => 3.0,
                _ => 1.0,
            };
            towns.push(Town {
                postal_code: format!("{}-{}", &code[..3], &code[3..]),
                name: name.to_string(),
                kana: kana.to_string(),
                district,
                weight,
            });
        }
        let mut surnames = Vec::new();
        let mut given: [[Vec<Name>; 3]; 2] = Default::default();
        for line in NAMES_TSV.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').map(str::trim).collect();
            let (Some(kind), Some(kanji), Some(kana), Some(born)) =
                (f.first(), f.get(1), f.get(2), f.get(3))
            else {
                continue;
            };
            let name = Name {
                kanji: kanji.to_string(),
                kana: kana.to_string(),
            };
            let band = match *born {
                "-1955" => 0,
                "1956-1985" => 1,
                _ => 2,
            };
            match *kind {
                "surname" => surnames.push(name),
                "given_m" => given[0][band].push(name),
                "given_f" => given[1][band].push(name),
                _ => {}
            }
        }
        // The list is ordered by national frequency: a Zipf-like weight keeps that shape.
        let surname_weights = surnames
            .iter()
            .enumerate()
            .map(|(rank, n)| {
                let boost = KYOTO_SURNAMES
                    .iter()
                    .find(|(k, _)| *k == n.kanji)
                    .map_or(1.0, |(_, b)| *b);
                boost * 10.0 / (rank as f64 + 10.0)
            })
            .collect();
        let town_weights = towns.iter().map(|t| t.weight).collect();
        Tables {
            towns,
            town_weights,
            surnames,
            surname_weights,
            given,
        }
    })
}

/// The 189 町名 of Maizuru with postal code and 地区.
pub fn towns() -> &'static [Town] {
    &tables().towns
}

// ---------------------------------------------------------------------------------------------
// Households

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HouseholdKind {
    /// 高齢単身: one person 65+, mostly a widow.
    ElderAlone,
    /// 高齢夫婦
    ElderCouple,
    /// 単身 under 65.
    Single,
    /// 夫婦のみ under 65.
    Couple,
    /// 夫婦と子
    Family,
    /// ひとり親と子
    SingleParent,
    /// 三世代
    ThreeGenerations,
    /// 高齢の親と未婚の子
    ElderWithChild,
}

const KINDS: [HouseholdKind; 8] = [
    HouseholdKind::ElderAlone,
    HouseholdKind::ElderCouple,
    HouseholdKind::Single,
    HouseholdKind::Couple,
    HouseholdKind::Family,
    HouseholdKind::SingleParent,
    HouseholdKind::ThreeGenerations,
    HouseholdKind::ElderWithChild,
];

/// Households of each kind per 100 (urban); tuned so the register lands near 32% 65+ and 12%
/// under 12.
const URBAN_WEIGHTS: [f64; 8] = [17.0, 15.0, 16.0, 9.0, 22.0, 4.0, 6.0, 10.0];
/// Rural hamlets: more old people, fewer young families.
const RURAL_WEIGHTS: [f64; 8] = [20.0, 20.0, 8.0, 6.0, 14.0, 2.0, 14.0, 16.0];

/// One member before names and numbers: age at the reference date, sex, and the role that
/// decides their given name's era and their phones.
#[derive(Debug, Clone, Copy)]
struct Member {
    age: u32,
    sex: Sex,
}

/// An age 65–100 shaped like an ageing town: most in their late 60s and 70s, few past 95.
fn elder_age(rng: &mut Rng) -> u32 {
    match rng.weighted(&[48.0, 34.0, 15.0, 3.0]) {
        0 => rng.range(65, 74),
        1 => rng.range(75, 84),
        2 => rng.range(85, 94),
        _ => rng.range(95, 100),
    }
}

fn any_sex(rng: &mut Rng) -> Sex {
    if rng.chance(0.5) {
        Sex::Male
    } else {
        Sex::Female
    }
}

/// A husband and wife: he is 0–5 years older, as registers of that generation mostly show.
fn couple(rng: &mut Rng, lo: u32, hi: u32) -> [Member; 2] {
    let husband = rng.range(lo, hi);
    let wife = husband.saturating_sub(rng.range(0, 5)).max(lo.min(husband));
    [
        Member {
            age: husband,
            sex: Sex::Male,
        },
        Member {
            age: wife,
            sex: Sex::Female,
        },
    ]
}

/// An [`elder_age`] of at least `lo`: the same shape, cut below.
fn elder_age_from(rng: &mut Rng, lo: u32) -> u32 {
    for _ in 0..64 {
        let age = elder_age(rng);
        if age >= lo {
            return age;
        }
    }
    lo
}

/// Children born when their mother was 22–40, still at home up to `max_age`.
fn children(rng: &mut Rng, mother_age: u32, count: u32, max_age: u32) -> Vec<Member> {
    (0..count)
        .map(|_| {
            let at_birth = rng.range(22, mother_age.clamp(22, 40));
            Member {
                age: (mother_age - at_birth.min(mother_age)).min(max_age),
                sex: any_sex(rng),
            }
        })
        .collect()
}

fn household_members(rng: &mut Rng, kind: HouseholdKind) -> Vec<Member> {
    match kind {
        HouseholdKind::ElderAlone => {
            let sex = if rng.chance(0.7) {
                Sex::Female
            } else {
                Sex::Male
            };
            vec![Member {
                age: elder_age(rng),
                sex,
            }]
        }
        HouseholdKind::ElderCouple => {
            let husband = elder_age(rng);
            let wife = husband.saturating_sub(rng.range(0, 5)).max(65);
            vec![
                Member {
                    age: husband,
                    sex: Sex::Male,
                },
                Member {
                    age: wife,
                    sex: Sex::Female,
                },
            ]
        }
        HouseholdKind::Single => vec![Member {
            age: rng.range(18, 64),
            sex: any_sex(rng),
        }],
        HouseholdKind::Couple => couple(rng, 23, 64).to_vec(),
        HouseholdKind::Family => {
            let parents = couple(rng, 27, 54);
            let kids = 1 + rng.weighted(&[35.0, 45.0, 20.0]) as u32;
            let mut v = parents.to_vec();
            v.extend(children(rng, parents[1].age, kids, 22));
            v
        }
        HouseholdKind::SingleParent => {
            let sex = if rng.chance(0.8) {
                Sex::Female
            } else {
                Sex::Male
            };
            let age = rng.range(27, 55);
            let mut v = vec![Member { age, sex }];
            let kids = 1 + rng.below(2) as u32;
            v.extend(children(rng, age, kids, 20));
            v
        }
        HouseholdKind::ThreeGenerations => {
            let mut v = if rng.chance(0.6) {
                let husband = elder_age_from(rng, 70);
                let wife = husband.saturating_sub(rng.range(0, 5)).max(68);
                vec![
                    Member {
                        age: husband,
                        sex: Sex::Male,
                    },
                    Member {
                        age: wife,
                        sex: Sex::Female,
                    },
                ]
            } else {
                vec![Member {
                    age: elder_age_from(rng, 72),
                    sex: Sex::Female,
                }]
            };
            let parents = couple(rng, 40, 64);
            v.extend(parents);
            let room = 5 - v.len() as u32;
            let kids = rng.range(0, room.min(2));
            v.extend(children(rng, parents[1].age, kids, 25));
            v
        }
        HouseholdKind::ElderWithChild => {
            let sex = if rng.chance(0.75) {
                Sex::Female
            } else {
                Sex::Male
            };
            let elder = elder_age_from(rng, 72);
            vec![
                Member { age: elder, sex },
                Member {
                    age: elder.saturating_sub(rng.range(22, 36)).clamp(35, 70),
                    sex: any_sex(rng),
                },
            ]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// Hands out unique phone numbers of one shape.
struct Numbers {
    used: HashSet<u64>,
}

impl Numbers {
    /// 0773-6x-xxxx / 0773-7x-xxxx, the city's landline exchanges. Written with hyphens mostly;
    /// some registers wrote `(0773)62-1234`.
    fn landline(&mut self, rng: &mut Rng) -> (String, String) {
        // Maizuru's exchanges hold 150,000 lines; a synthetic population far larger than the
        // city's (the 1,000,000-resident benchmark) spills over into Kyoto City's 075 numbers
        // instead of searching a full number space for ever.
        for _ in 0..64 {
            let exchange = if rng.chance(0.75) {
                rng.range(60, 69)
            } else {
                rng.range(75, 79)
            };
            let line = rng.range(0, 9999);
            let key = 7_730_000_000 + u64::from(exchange) * 10_000 + u64::from(line);
            if self.used.insert(key) {
                let written = if rng.chance(0.05) {
                    format!("(0773){exchange}-{line:04}")
                } else {
                    format!("0773-{exchange}-{line:04}")
                };
                return (written, format!("+81773{exchange}{line:04}"));
            }
        }
        loop {
            let exchange = rng.range(200, 999);
            let line = rng.range(0, 9999);
            let key = 750_000_000 + u64::from(exchange) * 10_000 + u64::from(line);
            if self.used.insert(key) {
                return (
                    format!("075-{exchange}-{line:04}"),
                    format!("+8175{exchange}{line:04}"),
                );
            }
        }
    }

    /// 090/080/070-xxxx-xxxx.
    fn mobile(&mut self, rng: &mut Rng) -> (String, String) {
        loop {
            let prefix = [90u64, 80, 70][rng.weighted(&[6.0, 3.0, 1.0])];
            let body = rng.below(100_000_000);
            if self.used.insert(prefix * 100_000_000 + body) {
                return (
                    format!("0{prefix}-{:04}-{:04}", body / 10_000, body % 10_000),
                    format!("+81{prefix}{body:08}"),
                );
            }
        }
    }
}

fn phone_entry(
    written: String,
    e164: &str,
    kind: &'static str,
) -> Option<(PhoneNumber, String, &'static str)> {
    PhoneNumber::parse(e164).ok().map(|p| (p, written, kind))
}

/// 接種意向 by age: the old mostly want it; under-12s were not eligible in 2021.
fn intent(rng: &mut Rng, age: u32) -> Intent {
    use Intent::*;
    let (choices, weights): (&[Intent], &[f64]) = match age {
        0..=11 => (&[NoAnswer, Wants], &[90.0, 10.0]),
        12..=64 => (
            &[Wants, Undecided, Declines, NoAnswer, Clinic],
            &[70.0, 10.0, 8.0, 10.0, 2.0],
        ),
        _ => (
            &[Wants, Undecided, Declines, NoAnswer, Clinic],
            &[85.0, 4.0, 4.0, 3.0, 4.0],
        ),
    };
    choices[rng.weighted(weights).min(choices.len() - 1)]
}

/// Notes a register clerk or an earlier call left, for a few residents.
const ELDER_NOTES: &[&str] = &[
    "耳が遠いため、大きな声でゆっくり話すこと",
    "車椅子を使用",
    "日中は長男の携帯へ連絡希望",
    "一人暮らし。民生委員が見守り中",
    "杖歩行。会場では付き添いあり",
    "目が不自由。通知は家族が読み上げ",
];
const ADULT_NOTES: &[&str] = &[
    "日中は仕事のため夕方以降の連絡を希望",
    "英語での案内を希望",
    "聴覚障害あり。FAXでの連絡を希望",
];

fn address(rng: &mut Rng, town: &Town) -> String {
    // 「○○町」「○○台」「○○が丘」 are names of their own; the old villages and wards take 字.
    let aza = if ["町", "台", "丘", "通り"]
        .iter()
        .any(|s| town.name.ends_with(s))
    {
        ""
    } else {
        "字"
    };
    let top = if is_rural(town.district) { 600 } else { 2000 };
    let banchi = rng.range(1, top);
    let mut a = format!("京都府舞鶴市{aza}{}{banchi}番地", town.name);
    if rng.chance(0.3) {
        a.push_str(&format!("の{}", rng.range(1, 30)));
    }
    a
}

// ---------------------------------------------------------------------------------------------
// The register

/// `n` synthetic residents, ages counted at [`REFERENCE_DATE`]. The same seed gives the same
/// residents.
pub fn residents(n: usize, seed: u64) -> Vec<NewResident> {
    let (y, m, d) = REFERENCE_DATE;
    let reference = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    residents_as_of(n, seed, reference)
}

/// `n` synthetic residents whose ages are counted at `reference` (the demo uses today, so its
/// present looks like the campaign's). Deterministic for a given seed and reference.
pub fn residents_as_of(n: usize, seed: u64, reference: NaiveDate) -> Vec<NewResident> {
    let t = tables();
    let mut rng = Rng::new(seed);
    let code = MunicipalityCode::parse(MUNICIPALITY_CODE).ok();
    let mut numbers = Numbers {
        used: HashSet::new(),
    };
    let mut next_ticket = rng.below(50_000_000);
    let mut next_address_no = 1_000_000_000 + rng.below(3_000_000_000);
    let mut next_household = 1_000_000_000 + rng.below(3_000_000_000);
    let mut out: Vec<NewResident> = Vec::with_capacity(n);
    let Some(code) = code else { return out };
    while out.len() < n {
        let Some(town) = t.towns.get(rng.weighted(&t.town_weights)) else {
            return out;
        };
        let rural = is_rural(town.district);
        let kind = KINDS[rng.weighted(if rural {
            &RURAL_WEIGHTS
        } else {
            &URBAN_WEIGHTS
        })];
        let mut members = household_members(&mut rng, kind);
        members.truncate(n - out.len());
        let surname_idx = rng.weighted(&t.surname_weights);
        let Some(surname) = t.surnames.get(surname_idx) else {
            return out;
        };
        next_household += 1 + rng.below(3);
        let household_no = format!("{next_household:010}");
        let addr = address(&mut rng, town);
        let elderly_home =
            members.iter().all(|m| m.age >= 65) || kind == HouseholdKind::ElderWithChild;
        let landline_chance = match kind {
            HouseholdKind::Single => 0.35,
            HouseholdKind::Couple => 0.6,
            HouseholdKind::Family | HouseholdKind::SingleParent => 0.7,
            _ => 0.97,
        };
        let landline = rng
            .chance(landline_chance)
            .then(|| numbers.landline(&mut rng));
        // A child living elsewhere, listed as family contact for parents on their own.
        let family_contact = (elderly_home && rng.chance(0.35)).then(|| numbers.mobile(&mut rng));
        let mut used_given: Vec<&str> = Vec::with_capacity(members.len());
        for m in &members {
            let birth_date = reference
                .checked_sub_months(Months::new(12 * m.age))
                .and_then(|d| d.checked_sub_days(chrono::Days::new(rng.below(365))))
                .unwrap_or(reference);
            let band = match birth_date.year() {
                ..=1955 => 0,
                1956..=1985 => 1,
                _ => 2,
            };
            let sex_idx = usize::from(m.sex == Sex::Female);
            // Parents do not give a child their own name, nor two children the same one.
            let mut given = rng.pick(&t.given[sex_idx][band]);
            for _ in 0..8 {
                match given {
                    Some(g) if used_given.contains(&g.kanji.as_str()) => {
                        given = rng.pick(&t.given[sex_idx][band]);
                    }
                    _ => break,
                }
            }
            let Some(given) = given else {
                return out;
            };
            used_given.push(&given.kanji);
            let mobile_chance = match m.age {
                0..=12 => 0.0,
                13..=15 => 0.5,
                16..=64 => 0.9,
                65..=74 => 0.6,
                75..=84 => 0.3,
                _ => 0.08,
            };
            let mut phones = Vec::with_capacity(2);
            if let Some((written, e164)) = &landline {
                phones.extend(phone_entry(written.clone(), e164, "home"));
            }
            if rng.chance(mobile_chance) {
                let (written, e164) = numbers.mobile(&mut rng);
                phones.extend(phone_entry(written, &e164, "mobile"));
            } else if m.age >= 65 {
                if let Some((written, e164)) = &family_contact {
                    phones.extend(phone_entry(written.clone(), e164, "family"));
                }
            }
            let intent = intent(&mut rng, m.age);
            let transport_chance = match m.age {
                0..=64 => 0.0,
                65..=74 => 0.04,
                75..=84 => 0.12,
                _ => 0.25,
            } * if rural { 1.5 } else { 1.0 };
            let needs_transport =
                matches!(intent, Intent::Wants | Intent::Undecided) && rng.chance(transport_chance);
            let notes = if m.age >= 75 && rng.chance(0.03) {
                rng.pick(ELDER_NOTES).copied().unwrap_or_default()
            } else if (18..65).contains(&m.age) && rng.chance(0.005) {
                rng.pick(ADULT_NOTES).copied().unwrap_or_default()
            } else {
                ""
            };
            let Ok(ticket_no) = TicketNo::parse(&format!("{next_ticket:010}")) else {
                return out;
            };
            next_ticket += 1;
            next_address_no += 1 + rng.below(7);
            // The tables are ours and checked by the tests: a value the domain refuses is
            // skipped, never a panic in a demo.
            let (Ok(address_no), Ok(name_kana), Ok(birth_date)) = (
                AddressNo::parse(&format!("{next_address_no:010}")),
                Kana::parse(&format!("{}\u{3000}{}", surname.kana, given.kana)),
                BirthDate::new(birth_date, reference),
            ) else {
                continue;
            };
            out.push(NewResident {
                address_no,
                municipality_code: code.clone(),
                ticket_no,
                name: format!("{}\u{3000}{}", surname.kanji, given.kanji),
                name_kana,
                birth_date,
                sex: m.sex,
                postal_code: PostalCode::parse(&town.postal_code).ok(),
                address: addr.clone(),
                town: town.name.clone(),
                district: town.district.to_string(),
                household_no: Some(household_no.clone()),
                intent,
                needs_transport,
                notes: notes.to_string(),
                phones,
            });
        }
    }
    out
}

/// Age in whole years on `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> u32 {
    on.years_since(birth).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Callers for the simulator

/// Up to `n` distinct numbers of generated residents, as written, for simulated calls. Old
/// residents are drawn more often: they are most of a vaccination line's callers.
pub fn caller_numbers(residents: &[NewResident], n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0xCA11);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let on = residents
        .iter()
        .map(|r| r.birth_date.date())
        .max()
        .unwrap_or_default();
    for _ in 0..n.saturating_mul(20) {
        if out.len() >= n || residents.is_empty() {
            break;
        }
        let r = &residents[rng.below(residents.len() as u64) as usize];
        let weight = if age_on(r.birth_date.date(), on) >= 65 {
            1.0
        } else {
            0.35
        };
        if !rng.chance(weight) {
            continue;
        }
        if let Some(p) = rng.pick(&r.phones) {
            if seen.insert(p.0.clone()) {
                out.push(p.1.clone());
            }
        }
    }
    out
}

/// Up to `n` distinct numbers from the phones in the ledger, as written (`0773-62-1234`,
/// `090-1234-5678`), for the demo's call generator.
pub async fn sample_phones(store: &Store, n: usize, seed: u64) -> anyhow::Result<Vec<String>> {
    let Some((lo, hi)) = store.phone_id_range().await? else {
        return Ok(Vec::new());
    };
    let mut rng = Rng::new(seed ^ 0x5A4D);
    let span = (hi - lo + 1) as u64;
    let mut out = Vec::with_capacity(n);
    let mut seen_ids = HashSet::new();
    let mut seen_numbers = HashSet::new();
    // A few rounds: ids left by deletions, and numbers shared by a household, are skipped.
    for _ in 0..6 {
        if out.len() >= n || seen_ids.len() as u64 >= span {
            break;
        }
        let want: Vec<i64> = (0..(n - out.len()) * 2)
            .map(|_| lo + rng.below(span) as i64)
            .filter(|id| seen_ids.insert(*id))
            .collect();
        let found = store.phones_by_ids(&want).await?;
        for id in want {
            if out.len() >= n {
                break;
            }
            if let Some(written) = found.get(&id) {
                let key = PhoneNumber::parse(written)
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|_| written.clone());
                if seen_numbers.insert(key) {
                    out.push(written.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Numbers that are in no synthetic register: 福知山 (0773-2x…4x shares the area code), Osaka,
/// IP phones. For simulated calls from people the ledger does not know.
pub fn stranger_numbers(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x5717);
    (0..n)
        .map(|_| match rng.weighted(&[5.0, 2.0, 1.0]) {
            0 => format!("0773-{}-{:04}", rng.range(22, 48), rng.below(10_000)),
            1 => format!("06-{:04}-{:04}", rng.range(6000, 6999), rng.below(10_000)),
            _ => format!("050-{:04}-{:04}", rng.range(1000, 9999), rng.below(10_000)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The demo database

/// What [`populate`] put in the database, for `madoguchi demo` to print.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub residents: usize,
    pub households: usize,
    pub calls: usize,
    pub inquiries: usize,
    /// Venues, slots and bookings of the city's assignment.
    pub appointments: super::appointments::AppointmentSummary,
    /// (username, password, role, extension)
    pub logins: Vec<(String, String, String, Option<String>)>,
}

impl std::fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} residents in {} households, {} past calls, {} inquiries",
            self.residents, self.households, self.calls, self.inquiries
        )?;
        writeln!(
            f,
            "{} venues, {} slots, {} bookings",
            self.appointments.venues, self.appointments.slots, self.appointments.bookings
        )?;
        writeln!(f, "logins (username / password, role, extension):")?;
        for (user, password, role, ext) in &self.logins {
            writeln!(
                f,
                "  {user:<11} / {password:<11} {role:<10} {}",
                ext.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// The demo staff: eight agents on extensions 201–208 and one login per other role. The
/// password is the username (a demo, on 127.0.0.1).
pub const DEMO_STAFF: &[(&str, &str, Role, Option<&str>)] = &[
    ("agent1", "オペレーター1", Role::Agent, Some("201")),
    ("agent2", "オペレーター2", Role::Agent, Some("202")),
    ("agent3", "オペレーター3", Role::Agent, Some("203")),
    ("agent4", "オペレーター4", Role::Agent, Some("204")),
    ("agent5", "オペレーター5", Role::Agent, Some("205")),
    ("agent6", "オペレーター6", Role::Agent, Some("206")),
    ("agent7", "オペレーター7", Role::Agent, Some("207")),
    ("agent8", "オペレーター8", Role::Agent, Some("208")),
    ("supervisor", "スーパーバイザー", Role::Supervisor, None),
    ("venue", "会場受付", Role::Venue, None),
    ("planner", "接種計画担当", Role::Planner, None),
    ("admin", "システム管理者", Role::Admin, None),
];

/// Creates (or resets) the demo staff; returns their logins and each agent's user id by
/// extension.
pub async fn add_demo_staff(
    store: &Store,
) -> anyhow::Result<(
    Vec<(String, String, String, Option<String>)>,
    HashMap<String, i64>,
)> {
    // argon2 is CPU-heavy: hash on the blocking pool, all at once.
    let hashes: Vec<_> = DEMO_STAFF
        .iter()
        .map(|(user, ..)| {
            tokio::task::spawn_blocking(move || crate::store::users::hash_password(user))
        })
        .collect();
    let mut logins = Vec::new();
    let mut agents = HashMap::new();
    for ((user, display, role, ext), hash) in DEMO_STAFF.iter().zip(hashes) {
        let hash = hash.await.context("hashing a demo password")??;
        let extension = ext
            .map(Extension::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?;
        let id = store
            .upsert_user(user, display, &hash, *role, extension.as_ref())
            .await?;
        if let Some(ext) = ext {
            agents.insert(ext.to_string(), id);
        }
        logins.push((
            user.to_string(),
            user.to_string(),
            role.code().to_string(),
            ext.map(str::to_string),
        ));
    }
    Ok((logins, agents))
}

/// Fills a database for `madoguchi demo`: `n` residents (ages counted today), the demo staff,
/// a history of calls and inquiries over the last 60 days (about one call per 20 residents),
/// and venues, slots and both doses assigned to those who want them. Meant for a fresh database: the residents' keys come from the seed.
pub async fn populate(store: &Store, n: usize, seed: u64) -> anyhow::Result<DemoSummary> {
    let now = chrono::Utc::now();
    let today = (now + chrono::Duration::hours(9)).date_naive(); // JST, the city's calendar
    let residents = residents_as_of(n, seed, today);
    let households = residents
        .iter()
        .filter_map(|r| r.household_no.as_deref())
        .collect::<HashSet<_>>()
        .len();
    store
        .bulk_insert_residents(&residents)
        .await
        .context("inserting the synthetic residents")?;
    let (logins, agents) = add_demo_staff(store).await?;

    let call_count = (n / 20).max(if n == 0 { 0 } else { 30 });
    let mut rng = Rng::new(seed ^ 0x4157);
    let picks = super::history::pick_callers(&residents, call_count, today, &mut rng);
    let keys: Vec<&AddressNo> = picks.iter().map(|i| &residents[*i].address_no).collect();
    let ids = store.resident_ids_by_address_no(&keys).await?;
    let history = super::history::generate(&residents, &picks, &ids, &agents, now, &mut rng);
    store
        .insert_calls(&history.calls)
        .await
        .context("inserting the call history")?;
    store
        .insert_inquiries(&history.inquiries)
        .await
        .context("inserting the inquiry history")?;
    let appointments = super::appointments::create(store, today).await?;
    Ok(DemoSummary {
        residents: residents.len(),
        households,
        calls: history.calls.len(),
        inquiries: history.inquiries.len(),
        appointments,
        logins,
    })
}
