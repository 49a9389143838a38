// The supervisor page's venues panel: each venue's day, live. Reads GET /api/venue/progress
// when its socket (/ws/venues) says hello, then takes each `venue_progress` message as it
// comes (one per check-in, dose or vial change). Shows booked, checked in, vaccinated,
// no-shows, doses left in open vials, reception's measured throughput and the forecast wait,
// with a warning when the forecast wait exceeds the set limit.
//
// Stable hooks for browser tests: #sv-venues tr[data-venue-id][data-warning=true|false],
// cells td[data-kpi=booked|checked_in|vaccinated|no_show|doses_left|throughput|wait],
// #sv-venues-warning (hidden unless some venue warns).

import { api } from "./api.js";
import { LiveConnection } from "./live.js";

const progress = new Map();

function cell(text, kpi) {
  const c = document.createElement("td");
  c.textContent = text;
  c.className = "num";
  if (kpi) c.dataset.kpi = kpi;
  return c;
}

function waitText(f) {
  if (!f || f.throughput_per_min == null) return "–";
  return `${Math.round(f.forecast_wait_min || 0)}分`;
}

function hhmm(iso) {
  return new Date(iso).toLocaleTimeString("ja-JP", { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit" });
}

function render() {
  const body = document.querySelector("#sv-venues");
  if (!body) return;
  const rows = [...progress.values()].sort((a, b) => a.venue_id - b.venue_id);
  body.replaceChildren(
    ...rows.map((p) => {
      const tr = document.createElement("tr");
      const f = p.forecast || {};
      tr.dataset.venueId = String(p.venue_id);
      tr.dataset.warning = String(!!f.warning);
      if (f.warning) tr.className = "sv-venue-warn";
      const name = document.createElement("td");
      name.textContent = p.venue_name;
      tr.append(
        name,
        cell(String(p.booked), "booked"),
        cell(String(p.checked_in), "checked_in"),
        cell(String(p.vaccinated), "vaccinated"),
        cell(String(p.no_show), "no_show"),
        cell(String(p.expected), "expected"),
        cell(String(p.doses_left), "doses_left"),
        cell(f.throughput_per_min == null ? "–" : `${f.throughput_per_min}/分`, "throughput"),
        cell(waitText(f), "wait"),
      );
      return tr;
    }),
  );
  const warn = document.querySelector("#sv-venues-warning");
  if (warn) {
    const late = rows.filter((p) => p.forecast && p.forecast.warning);
    warn.hidden = late.length === 0;
    warn.textContent = late
      .map((p) => `${p.venue_name}: ${hhmm(p.forecast.warn_from)}から受付待ちが${p.forecast.max_wait_min}分を超える見込み（最大${Math.round(p.forecast.forecast_wait_min)}分）`)
      .join(" / ");
  }
}

async function load() {
  const r = await api("GET", "/api/venue/progress");
  if (!r.ok || !Array.isArray(r.data)) return;
  progress.clear();
  for (const p of r.data) progress.set(p.venue_id, p);
  render();
}

const live = new LiveConnection({
  path: "/ws/venues",
  onMessage: (msg) => {
    if (msg.type === "hello") {
      load();
      return;
    }
    if (msg.type === "venue_progress" && msg.progress) {
      progress.set(msg.progress.venue_id, msg.progress);
      render();
    }
  },
});

/** Starts the panel (after login). */
export function startVenues() {
  live.start();
}

/** Stops it (the session ended). */
export function stopVenues() {
  live.stop();
}
