// Formatting for people: 和暦 and 西暦 dates, ages, ticket numbers, phone numbers, durations.
// Pure functions, no DOM, so they read the same on every screen.

import { lang, t } from "./i18n.js";

const ZONE = "Asia/Tokyo"; // the city's clock, whatever the agent PC is set to

// 元号: first day of each era (Gregorian). A date belongs to the last era that began on or before it.
const ERAS = [
  { key: "reiwa", start: [2019, 5, 1] },
  { key: "heisei", start: [1989, 1, 8] },
  { key: "showa", start: [1926, 12, 25] },
  { key: "taisho", start: [1912, 7, 30] },
  { key: "meiji", start: [1868, 1, 25] },
];

/** 'YYYY-MM-DD' → {y, m, d}, or null. Plain calendar dates: no time zone involved. */
export function parseDate(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text || "");
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return null;
  return { y, m: mo, d };
}

function cmp(a, b) {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** Today's date in Japan as {y, m, d}. */
export function todayJst(now = new Date()) {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: ZONE,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(now);
  return parseDate(parts);
}

/** Completed years on `today` (someone born on 29 Feb turns a year older on 1 Mar). */
export function age(birth, today = todayJst()) {
  const b = typeof birth === "string" ? parseDate(birth) : birth;
  if (!b || !today) return null;
  let years = today.y - b.y;
  if (today.m < b.m || (today.m === b.m && today.d < b.d)) years -= 1;
  return years;
}

/** 和暦: {era: 'showa', year: 16} for 1941-03-02. */
export function wareki(date) {
  const d = typeof date === "string" ? parseDate(date) : date;
  if (!d) return null;
  const key = [d.y, d.m, d.d];
  for (const era of ERAS) {
    if (cmp(key, era.start) >= 0) return { era: era.key, year: d.y - era.start[0] + 1 };
  }
  return null;
}

/** 昭和16年3月2日 (ja) or "Shōwa 16" (en); 元年 for the first year of an era. */
export function formatWareki(date) {
  const d = typeof date === "string" ? parseDate(date) : date;
  const w = wareki(d);
  if (!d || !w) return "";
  const eraName = t(`era.${w.era}`);
  if (lang() === "en") return `${eraName} ${w.year}`;
  const year = w.year === 1 ? "元" : String(w.year);
  return `${eraName}${year}年${d.m}月${d.d}日`;
}

const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** 1941年3月2日 (ja) or "2 Mar 1941" (en). */
export function formatSeireki(date) {
  const d = typeof date === "string" ? parseDate(date) : date;
  if (!d) return "";
  if (lang() === "en") return `${d.d} ${MONTHS_EN[d.m - 1]} ${d.y}`;
  return `${d.y}年${d.m}月${d.d}日`;
}

function zonedParts(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return null;
  const parts = {};
  for (const p of new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE,
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    weekday: "short",
    hour12: false,
  }).formatToParts(when)) {
    parts[p.type] = p.value;
  }
  parts.month = String(Number(parts.month));
  parts.day = String(Number(parts.day));
  return parts;
}

const WEEKDAY_JA = { Sun: "日", Mon: "月", Tue: "火", Wed: "水", Thu: "木", Fri: "金", Sat: "土" };

/** A timestamp as the agent reads it: 2021/5/10（月）09:00 or Mon 10 May 2021 09:00. */
export function formatDateTime(iso) {
  const p = zonedParts(iso);
  if (!p) return "";
  const hour = p.hour === "24" ? "00" : p.hour;
  if (lang() === "en") return `${p.weekday} ${p.day} ${MONTHS_EN[p.month - 1]} ${p.year} ${hour}:${p.minute}`;
  return `${p.year}/${p.month}/${p.day}（${WEEKDAY_JA[p.weekday] ?? ""}）${hour}:${p.minute}`;
}

/** An appointment read back over the phone: 6月8日（火）14:30 or Tue 8 Jun 14:30. */
export function formatAppointment(iso) {
  const p = zonedParts(iso);
  if (!p) return "";
  const hour = p.hour === "24" ? "00" : p.hour;
  if (lang() === "en") return `${p.weekday} ${p.day} ${MONTHS_EN[p.month - 1]} ${hour}:${p.minute}`;
  return `${p.month}月${p.day}日（${WEEKDAY_JA[p.weekday] ?? ""}）${hour}:${p.minute}`;
}

/**
 * An appointment with its year when that is not this year: 令和4年1月11日（火）09:30 (a letter's
 * 令和) or Tue 11 Jan 2022 09:30; this year's read as formatAppointment does.
 */
export function formatAppointmentYear(iso, today = todayJst()) {
  const p = zonedParts(iso);
  if (!p) return "";
  if (!today || Number(p.year) === today.y) return formatAppointment(iso);
  const hour = p.hour === "24" ? "00" : p.hour;
  if (lang() === "en") return `${p.weekday} ${p.day} ${MONTHS_EN[p.month - 1]} ${p.year} ${hour}:${p.minute}`;
  const w = wareki({ y: Number(p.year), m: Number(p.month), d: Number(p.day) });
  const era = w ? `${t(`era.${w.era}`)}${w.year === 1 ? "元" : w.year}年` : `${p.year}年`;
  return `${era}${formatAppointment(iso)}`;
}

/** Seconds as m:ss, or h:mm:ss past the hour. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** 〒624-0101 from '6240101' (already hyphenated codes pass through). */
export function formatPostal(code) {
  const digits = toAsciiDigits(code || "").replace(/\D/g, "");
  if (digits.length === 7) return `〒${digits.slice(0, 3)}-${digits.slice(3)}`;
  return code ? `〒${code}` : "";
}

/** Full-width digits (０-９), as a Japanese IME types them, to ASCII. */
export function toAsciiDigits(text) {
  return String(text).replace(/[０-９]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0));
}

/** ひらがな to カタカナ, and full-width spaces to one plain space: name_kana is katakana. */
export function toKatakana(text) {
  return String(text)
    .replace(/[\u3041-\u3096]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0x60))
    .replace(/[\s\u3000]+/g, " ")
    .trim();
}

/** Digits of a phone number in the national form (+81773… → 0773…), for comparing numbers. */
export function phoneKey(text) {
  let digits = toAsciiDigits(text || "").replace(/\D/g, "");
  if (String(text || "").trim().startsWith("+81") || (digits.startsWith("81") && digits.length >= 11)) {
    digits = "0" + digits.slice(2);
  }
  return digits;
}

export function samePhone(a, b) {
  const ka = phoneKey(a);
  return ka.length > 0 && ka === phoneKey(b);
}

/**
 * A ticket split for reading aloud: the 6-digit 市区町村コード, then the 10-digit 券番号 in two
 * groups of five. Returned as parts so the page can space them without putting spaces into
 * copied text.
 */
export function ticketParts(municipalityCode, ticketNo) {
  const no = String(ticketNo || "");
  const groups = no.length === 10 ? [no.slice(0, 5), no.slice(5)] : [no];
  return { code: String(municipalityCode || ""), groups };
}

/** The ticket on one line, for titles and screen readers: 262021-00000-12345. */
export function formatTicket(municipalityCode, ticketNo) {
  const { code, groups } = ticketParts(municipalityCode, ticketNo);
  return [code, ...groups].filter(Boolean).join("-");
}

// Area codes (市外局番) of 2 and 3 digits; the rest of the 10-digit landlines have 4 (0773
// 舞鶴), which is the default. Some 4-digit codes begin like a 3-digit one (0773 舞鶴 and 077
// 大津): AREA4 is checked first.
const AREA4 = ["0770", "0771", "0772", "0773", "0774", "0776", "0778", "0779", "0790", "0791", "0794", "0795",
  "0796", "0740", "0748", "0749", "0465", "0422", "0428"];
const AREA2 = ["03", "06"];
const AREA3 = ["011", "022", "025", "027", "028", "029", "042", "043", "044", "045", "046", "047", "048", "049",
  "052", "053", "054", "055", "058", "059", "072", "073", "075", "076", "077", "078", "079", "082", "083", "086",
  "087", "088", "089", "092", "093", "095", "096", "097", "098", "099"];

/**
 * One way of writing every phone number on the screen: national, with hyphens, whatever the
 * PBX or the ledger sent (+81773608318, 0773608318, 0773-60-8318 all read 0773-60-8318).
 * Numbers it does not recognise (an internal extension, a short code) pass through unchanged.
 */
export function formatPhone(text) {
  const raw = String(text || "").trim();
  const d = phoneKey(raw);
  if (!/^0\d{9,10}$/.test(d)) return raw;
  if (d.length === 11) {
    if (/^0[789]0/.test(d) || /^050/.test(d)) return `${d.slice(0, 3)}-${d.slice(3, 7)}-${d.slice(7)}`;
    if (/^0120|^0800/.test(d)) return `${d.slice(0, 4)}-${d.slice(4, 7)}-${d.slice(7)}`;
    return raw;
  }
  if (/^0120|^0570/.test(d)) return `${d.slice(0, 4)}-${d.slice(4, 7)}-${d.slice(7)}`;
  if (AREA4.includes(d.slice(0, 4))) return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;
  if (AREA2.includes(d.slice(0, 2))) return `${d.slice(0, 2)}-${d.slice(2, 6)}-${d.slice(6)}`;
  if (AREA3.includes(d.slice(0, 3))) return `${d.slice(0, 3)}-${d.slice(3, 6)}-${d.slice(6)}`;
  return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;
}

const ERA_NAMES = {
  meiji: ["明治", "明", "m"],
  taisho: ["大正", "大", "t"],
  showa: ["昭和", "昭", "s"],
  heisei: ["平成", "平", "h"],
  reiwa: ["令和", "令", "r"],
};

export const ERA_KEYS = ["meiji", "taisho", "showa", "heisei", "reiwa"];

function validDate(y, m, d) {
  const when = new Date(Date.UTC(y, m - 1, d));
  return when.getUTCFullYear() === y && when.getUTCMonth() === m - 1 && when.getUTCDate() === d;
}

/**
 * A birth date as the agent types it, the same forms the server reads (domain::wareki):
 * 1950-06-06, 1950/6/6, 19500606; 昭和25年6月6日, 昭和元年…, 昭25.6.6, S25.6.6, S250606; and
 * 25/6/6 or 250606 in `era` (the era chosen beside the field). Returns {date: {y, m, d}},
 * {error: i18n key} or null for an empty field. A day the era never had is refused.
 */
export function parseBirthInput(text, era = null) {
  const s = String(text || "").normalize("NFKC").replace(/\s+/g, "");
  if (!s) return null;
  let m = /^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$/.exec(s) || /^(\d{4})(\d{2})(\d{2})$/.exec(s);
  // Four digits then a separator, or eight digits, is a Gregorian date; 250606 is 和暦 (YYMMDD).
  if (/^\d{4}\D/.test(s) || /^\d{8}$/.test(s)) {
    if (!m) return { error: "birth.err.form" };
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    return validDate(y, mo, d) ? { date: { y, m: mo, d } } : { error: "birth.err.date" };
  }
  let key = null;
  let rest = s;
  for (const k of ERA_KEYS) {
    const [full, short, letter] = ERA_NAMES[k];
    if (rest.startsWith(full)) [key, rest] = [k, rest.slice(full.length)];
    else if (rest.startsWith(short)) [key, rest] = [k, rest.slice(short.length)];
    else if (rest[0] && rest[0].toLowerCase() === letter && /[\d.元]/.test(rest[1] || "")) [key, rest] = [k, rest.slice(1).replace(/^\./, "")];
    if (key) break;
  }
  key = key || (ERA_KEYS.includes(era) ? era : null);
  if (!key) return { error: "birth.err.era" };
  m = /^(\d{2})(\d{2})(\d{2})$/.exec(rest) || /^(\d{1,2}|元)[年./-](\d{1,2})[月./-](\d{1,2})日?$/.exec(rest);
  if (!m) return { error: "birth.err.form" };
  const year = m[1] === "元" ? 1 : Number(m[1]);
  const [mo, d] = [Number(m[2]), Number(m[3])];
  const i = ERAS.findIndex((e) => e.key === key);
  const start = ERAS[i].start;
  const y = start[0] + year - 1;
  if (year < 1 || !validDate(y, mo, d)) return { error: "birth.err.date" };
  const next = i > 0 ? ERAS[i - 1].start : null; // ERAS is newest first
  if (cmp([y, mo, d], start) < 0 || (next && cmp([y, mo, d], next) >= 0)) return { error: "birth.err.era_range" };
  return { date: { y, m: mo, d } };
}

/** {y, m, d} → 'YYYY-MM-DD'. */
export function isoDate(d) {
  return `${d.y}-${String(d.m).padStart(2, "0")}-${String(d.d).padStart(2, "0")}`;
}
