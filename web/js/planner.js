// 会場の週: the planner's page (planner.html). A venue's week as a grid of slots (コマ): rows are
// the times of day, columns the seven days; each cell shows the seats left of its capacity,
// and changes it: the capacity (never below the seats booked) and closing or reopening the
// slot, through PATCH /api/slots/{id}. Seat counts stay live over /ws/slots.
//
// Server calls: GET /api/me, GET /api/venues, GET /api/slots?venue=&date=, PATCH
// /api/slots/{id}, GET /ws/slots.
// Hooks: #planner-venue #planner-week #planner-grid [data-testid=planner-cell] (data-slot-id,
// data-seats, data-closed) [data-testid=planner-capacity] [data-testid=planner-save]
// [data-testid=planner-close] #planner-message (data-kind=done|error).

import { api, errorText, onUnauthorized } from "./api.js";
import { $, h } from "./dom.js";
import * as fmt from "./format.js";
import { LiveConnection } from "./live.js";

const WEEKDAY = ["日", "月", "火", "水", "木", "金", "土"];

const view = { venue: null, week: null, slots: new Map() };

function iso(d) {
  return `${d.y}-${String(d.m).padStart(2, "0")}-${String(d.d).padStart(2, "0")}`;
}

function addDays(date, n) {
  const t = new Date(Date.UTC(date.y, date.m - 1, date.d + n));
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate() };
}

function weekday(date) {
  return new Date(Date.UTC(date.y, date.m - 1, date.d)).getUTCDay();
}

/** 09:30 from a slot's start, in Japan. */
function timeOf(startsAt) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(startsAt));
}

function say(kind, text) {
  const el = $("#planner-message");
  el.hidden = false;
  el.dataset.kind = kind;
  el.className = `rebook-message rebook-message-${kind}`;
  el.textContent = text;
}

async function boot() {
  onUnauthorized(() => {
    $("#planner-login").hidden = false;
  });
  const me = await api("GET", "/api/me").catch(() => null);
  if (!me || !me.ok) {
    $("#planner-login").hidden = false;
    return;
  }
  const venues = await api("GET", "/api/venues");
  const select = $("#planner-venue");
  for (const v of venues.data || []) select.append(h("option", { value: v.id, text: v.name }));
  const params = new URLSearchParams(location.search);
  if (params.get("venue")) select.value = params.get("venue");
  view.venue = select.value;
  view.week = fmt.parseDate(params.get("week") || "") || fmt.todayJst();
  $("#planner-week").value = iso(view.week);
  select.addEventListener("change", () => {
    view.venue = select.value;
    load();
  });
  $("#planner-week").addEventListener("change", (e) => {
    const d = fmt.parseDate(e.target.value);
    if (d) {
      view.week = d;
      load();
    }
  });
  $("#planner-prev").addEventListener("click", () => shift(-7));
  $("#planner-next").addEventListener("click", () => shift(7));
  new LiveConnection({
    path: "/ws/slots",
    onMessage: (msg, { resync }) => {
      if (msg.type === "hello" && resync) load();
      if (msg.type === "slot_update" && msg.slot && view.slots.has(msg.slot.id)) {
        view.slots.set(msg.slot.id, msg.slot);
        const cell = document.querySelector(`[data-testid=planner-cell][data-slot-id="${msg.slot.id}"]`);
        if (cell) fillCell(cell, msg.slot);
      }
    },
    onStatus: (st) => {
      $("#planner-live").textContent = st === "online" ? "空席数はリアルタイム更新" : "空席数の更新が途切れています";
    },
  }).start();
  load();
}

function shift(days) {
  view.week = addDays(view.week, days);
  $("#planner-week").value = iso(view.week);
  load();
}

async function load() {
  if (!view.venue) return;
  const days = Array.from({ length: 7 }, (_, i) => addDays(view.week, i));
  const answers = await Promise.all(
    days.map((d) => api("GET", `/api/slots?venue=${encodeURIComponent(view.venue)}&date=${iso(d)}`)),
  );
  view.slots = new Map();
  const byDay = answers.map((r) => (r.ok && Array.isArray(r.data) ? r.data : []));
  const times = new Set();
  for (const list of byDay) {
    for (const s of list) {
      view.slots.set(s.id, s);
      times.add(timeOf(s.starts_at));
    }
  }
  const rows = [...times].sort();
  const grid = $("#planner-grid");
  grid.replaceChildren();
  grid.append(
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        h("th", { text: "" }),
        days.map((d) => h("th", { scope: "col", "data-date": iso(d), text: `${d.m}/${d.d}（${WEEKDAY[weekday(d)]}）` })),
      ),
    ),
  );
  const body = h("tbody");
  for (const time of rows) {
    const tr = h("tr", null, h("th", { scope: "row", text: time }));
    byDay.forEach((list) => {
      const slots = list.filter((s) => timeOf(s.starts_at) === time);
      tr.append(h("td", null, slots.map((s) => cell(s))));
    });
    body.append(tr);
  }
  if (rows.length === 0) body.append(h("tr", null, h("td", { colspan: 8, class: "muted", text: "この週のコマはありません" })));
  grid.append(body);
}

function cell(slot) {
  const input = h("input", { type: "number", min: "0", max: "100000", class: "planner-capacity", "data-testid": "planner-capacity", "aria-label": "定員" });
  const box = h(
    "div",
    { class: "planner-cell", "data-testid": "planner-cell", "data-slot-id": slot.id },
    h("span", { class: "planner-product muted", text: slot.product }),
    h("span", { class: "planner-seats" }),
    h("span", { class: "planner-edit" }, input, h("button", { type: "button", class: "btn btn-small btn-secondary", "data-testid": "planner-save", text: "定員変更", onclick: () => save(box, { capacity: Number(input.value) }) })),
    h("button", { type: "button", class: "btn btn-small btn-quiet", "data-testid": "planner-close", onclick: () => save(box, { closed: !view.slots.get(slot.id).closed }) }),
  );
  fillCell(box, slot);
  return box;
}

function fillCell(box, slot) {
  const left = Math.max(0, slot.capacity - slot.booked);
  box.dataset.seats = String(left);
  box.dataset.closed = slot.closed ? "true" : "false";
  box.classList.toggle("planner-closed", slot.closed);
  box.classList.toggle("planner-full", left === 0);
  $(".planner-seats", box).textContent = slot.closed ? `休止（予約${slot.booked}）` : `残り${left} / ${slot.capacity}`;
  const input = $("[data-testid=planner-capacity]", box);
  if (document.activeElement !== input) input.value = String(slot.capacity);
  $("[data-testid=planner-close]", box).textContent = slot.closed ? "再開" : "休止";
}

async function save(box, change) {
  const id = Number(box.dataset.slotId);
  if (change.capacity != null && !(Number.isInteger(change.capacity) && change.capacity >= 0)) {
    say("error", "定員は0以上の整数です");
    return;
  }
  const r = await api("PATCH", `/api/slots/${id}`, change).catch(() => null);
  if (r && r.ok && r.data) {
    view.slots.set(id, r.data);
    fillCell(box, r.data);
    say("done", `${fmt.formatAppointmentYear(r.data.starts_at)}: 定員${r.data.capacity}${r.data.closed ? "・休止" : ""}`);
  } else {
    say("error", r ? errorText(r) : "通信できませんでした");
  }
}

boot();
