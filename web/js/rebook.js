// 予約変更: rebooking from the pop. A panel beside the screen shows the resident's bookings and,
// for the one being changed, the slots to offer instead (same venue nearest first, then other
// venues) with the seats left, kept live over /ws/slots while the panel is open.
//
// Changes (each one server transaction, audited, with an inquiry against the current call):
//   move         POST /api/bookings/{id}/move {slot_id, call_id}        (dose 2 follows dose 1)
//   move us both POST /api/bookings/{id}/move-together {slot_id, with_booking_id, call_id}
//   cancel       POST /api/bookings/{id}/cancel {call_id}               (dose 1 takes dose 2)
//   book         POST /api/bookings {resident_id, dose, slot_id, call_id} (after a cancel)
// Every click sends a new Idempotency-Key; a retry after a network failure resends the same
// one, so a double click or a resent request changes nothing twice. A refusal (409) is a
// sentence the agent can read aloud: it shows in the panel and nothing changed.
//
// Hooks for tests: #rebook (data-booking-id) [data-testid=rebook-booking] (data-booking-id,
// data-dose) [data-testid=rebook-slot] (data-slot-id, data-seats, data-same-venue)
// [data-testid=rebook-choose] [data-testid=rebook-cancel] [data-testid=rebook-together]
// [data-testid=rebook-message] (data-kind=done|refused|error) #rebook-close; on the record:
// [data-testid=booking-change] (data-booking-id), [data-testid=booking-ride] (when a booking
// carries a `ride`).

import { api, errorText, Unauthorized } from "./api.js";
import { $, h, icon } from "./dom.js";
import * as fmt from "./format.js";
import { lang } from "./i18n.js";
import { LiveConnection } from "./live.js";
import { normaliseRecord } from "./resident.js";
import { state } from "./state.js";
import { refreshResident } from "./workspace.js";

const TEXT = {
  ja: {
    heading: "予約の変更",
    change: "変更",
    close: "閉じる",
    current: "現在の予約",
    same: "同じ会場",
    other: "他の会場",
    seats: "残り{n}席",
    full: "満席",
    choose: "ここに変更",
    book: "ここで予約",
    cancel: "この予約を取り消す",
    cancel_confirm: "取り消しを確定",
    together: "一緒に変更: {name}（{dose}回目 {when}）",
    loading: "空き枠を確認中…",
    none: "ご案内できる枠がありません",
    done: "変更しました: {what}",
    cancelled: "取り消しました: {what}",
    booked: "予約しました: {what}",
    failed: "変更できませんでした（{msg}）",
    dose: "{n}回目",
    ride: "送迎",
    live_lost: "空席数の更新が途切れています",
  },
  en: {
    heading: "Change appointment",
    change: "Change",
    close: "Close",
    current: "Current appointments",
    same: "Same venue",
    other: "Other venues",
    seats: "{n} left",
    full: "Full",
    choose: "Move here",
    book: "Book here",
    cancel: "Cancel this appointment",
    cancel_confirm: "Confirm cancellation",
    together: "Move together: {name} (dose {dose} {when})",
    loading: "Checking free slots…",
    none: "No slots to offer",
    done: "Changed: {what}",
    cancelled: "Cancelled: {what}",
    booked: "Booked: {what}",
    failed: "Could not change it ({msg})",
    dose: "Dose {n}",
    ride: "Bus",
    live_lost: "Seat counts are not updating",
  },
};

function tr(key, params = {}) {
  const text = (TEXT[lang()] || TEXT.ja)[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ""));
}

/** A fresh key per click (crypto.getRandomValues works on plain http too, unlike randomUUID). */
export function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const LIVE = new Set(["booked", "checked_in"]);

/** The panel's state; one panel at a time, for one screen (session). */
let panel = null;

/** Seat counts kept live while the panel is open. */
let seats = null;

function liveSeats() {
  if (seats) return seats;
  seats = new LiveConnection({
    path: "/ws/slots",
    onMessage: (msg, { resync }) => {
      if (!panel) return;
      if (msg.type === "hello") {
        panel.liveOk = true;
        if (resync) loadAlternatives();
        return;
      }
      if (msg.type === "slot_update" && msg.slot) applySlot(msg.slot);
    },
    onStatus: (st) => {
      if (!panel) return;
      panel.liveOk = st === "online";
      const el = $("#rebook-live");
      if (el) el.hidden = panel.liveOk;
    },
  });
  return seats;
}

/** A booking's appointment: 6月8日（火）14:30, with 令和N年 when it is not this year. */
function when(b) {
  return fmt.formatAppointmentYear(b.starts_at);
}

/** The text of a booking's ride, or "" (the ride comes with transport: stop and pickup time). */
export function rideText(ride) {
  if (!ride) return "";
  const time = ride.pickup_at ? fmt.formatAppointment(ride.pickup_at).replace(/^.*）/, "") : "";
  return [ride.stop_name || ride.stop || "", time].filter(Boolean).join(" ");
}

/** The ride of a booking, shown where the booking is (hook: rides are added by transport). */
export function rideBadge(b) {
  if (!b || !b.ride) return "";
  return h("span", { class: "booking-ride", "data-testid": "booking-ride" }, icon("bus"), ` ${tr("ride")} ${rideText(b.ride)}`);
}

/** The 変更 button beside a booking in the record. */
export function changeButton(s, b) {
  return h("button", {
    type: "button",
    class: "btn btn-quiet btn-small booking-change",
    "data-testid": "booking-change",
    "data-booking-id": b.id,
    text: tr("change"),
    onclick: () => openRebook(s, b.id),
  });
}

export function openRebook(s, bookingId) {
  panel = {
    s,
    bookingId,
    alt: null,
    loading: true,
    error: "",
    message: null,
    busy: false,
    together: null,
    confirmCancel: false,
    liveOk: false,
    fetchStarted: 0,
    recent: new Map(),
  };
  liveSeats().start();
  render();
  loadAlternatives();
}

export function closeRebook() {
  if (!panel) return false;
  panel = null;
  if (seats) seats.stop();
  $("#rebook")?.remove();
  return true;
}

async function loadAlternatives() {
  if (!panel) return;
  const p = panel;
  p.loading = true;
  p.fetchStarted = performance.now();
  p.recent = new Map();
  render();
  try {
    const r = await api("GET", `/api/bookings/${encodeURIComponent(p.bookingId)}/alternatives`);
    if (panel !== p) return;
    if (r.ok && r.data) {
      p.alt = r.data;
      // Seat counts that changed while the list was on its way win over the list.
      for (const slot of p.recent.values()) applyTo(p, slot);
      p.error = "";
    } else {
      p.error = tr("failed", { msg: errorText(r) });
    }
  } catch (e) {
    if (e instanceof Unauthorized) return;
    if (panel === p) p.error = tr("failed", { msg: "network" });
  }
  if (panel === p) {
    p.loading = false;
    render();
  }
}

function applyTo(p, slot) {
  if (!p.alt) return false;
  let hit = false;
  for (const a of p.alt.slots) {
    if (a.id === slot.id) {
      a.capacity = slot.capacity;
      a.booked = slot.booked;
      a.closed = slot.closed;
      hit = true;
    }
  }
  return hit;
}

function applySlot(slot) {
  const p = panel;
  if (!p) return;
  if (p.loading) p.recent.set(slot.id, slot);
  if (applyTo(p, slot)) {
    // Only the seat cells change: the agent's place in the list stays.
    for (const row of document.querySelectorAll(`#rebook [data-testid=rebook-slot][data-slot-id="${slot.id}"]`)) {
      fillSlotRow(row, p.alt.slots.find((a) => a.id === slot.id), p);
    }
  }
}

function seatsLeft(a) {
  return Math.max(0, (a.capacity || 0) - (a.booked || 0));
}

/** Sends one change, resending the same key after a network failure. */
async function send(path, body) {
  const key = newKey();
  for (let attempt = 0; ; attempt += 1) {
    try {
      const res = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body),
      });
      let data = null;
      try {
        data = await res.json();
      } catch {
        data = null;
      }
      if (res.status === 401) {
        // The session ended: the page's own handler shows the login form.
        await api("GET", "/api/me").catch(() => {});
      }
      return { ok: res.ok, status: res.status, data };
    } catch (e) {
      if (attempt >= 2) throw e;
      await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
    }
  }
}

function describe(bookings) {
  return (bookings || []).map((b) => `${tr("dose", { n: b.dose })} ${when(b)} ${b.venue_name || ""}`.trim()).join("、");
}

async function change(kind, slot) {
  const p = panel;
  if (!p || p.busy) return;
  const s = p.s;
  const booking = p.alt ? p.alt.booking : null;
  if (!booking) return;
  const callId = s.call ? s.call.id : undefined;
  let path;
  let body;
  if (kind === "cancel") {
    path = `/api/bookings/${encodeURIComponent(booking.id)}/cancel`;
    body = { call_id: callId };
  } else if (kind === "book") {
    path = "/api/bookings";
    body = { resident_id: p.alt.resident_id, dose: booking.dose, slot_id: slot.id, call_id: callId };
  } else if (p.together) {
    path = `/api/bookings/${encodeURIComponent(booking.id)}/move-together`;
    body = { slot_id: slot.id, with_booking_id: p.together, call_id: callId };
  } else {
    path = `/api/bookings/${encodeURIComponent(booking.id)}/move`;
    body = { slot_id: slot.id, call_id: callId };
  }
  p.busy = true;
  p.message = null;
  render();
  let res;
  try {
    res = await send(path, body);
  } catch {
    res = null;
  }
  if (panel !== p) return;
  p.busy = false;
  p.confirmCancel = false;
  if (!res) {
    p.message = { kind: "error", text: tr("failed", { msg: "network" }) };
  } else if (res.ok && res.data) {
    const done = res.data.bookings || [];
    const key = kind === "cancel" ? "cancelled" : kind === "book" ? "booked" : "done";
    p.message = { kind: "done", text: tr(key, { what: describe(done) }) };
    mergeBookings(s, done);
    // A new booking (after a cancel) is the one the panel follows from now on.
    const same = done.find((b) => b.dose === booking.dose && LIVE.has(b.status));
    if (same) p.bookingId = same.id;
    for (const slotNow of res.data.slots || []) applySlot(slotNow);
    p.together = null;
    reloadRecord(s);
    loadAlternatives();
  } else if (res.status === 409 && res.data) {
    p.message = { kind: "refused", text: res.data.error || errorText(res), reason: res.data.reason || "" };
  } else {
    p.message = { kind: "error", text: tr("failed", { msg: errorText(res) }) };
  }
  render();
}

/** Puts the bookings a change returned into every record on the screen that has them. */
function mergeBookings(s, bookings) {
  const records = [s.record, ...(s.candidates || [])].filter(Boolean);
  for (const b of bookings) {
    const record = records.find((r) => (r.bookings || []).some((x) => x.id === b.id)) || (panel && panel.alt && records.find((r) => r.id === panel.alt.resident_id));
    if (!record) continue;
    const list = record.bookings || (record.bookings = []);
    const i = list.findIndex((x) => x.id === b.id);
    // A ride the server did not send back stays as it was (the ride hook fills it).
    if (i >= 0) list[i] = { ...list[i], ...b };
    else list.push(b);
  }
  if (s.key === state.activeKey) refreshResident(s);
}

/** The record again from the server: the change's inquiry shows in the history. */
async function reloadRecord(s) {
  const r = s.record;
  if (!r || r.id == null) return;
  try {
    const res = await api("GET", `/api/residents/${encodeURIComponent(r.id)}`);
    if (res.ok && res.data && s.record === r) {
      Object.assign(r, normaliseRecord(res.data));
      if (s.key === state.activeKey) refreshResident(s);
    }
  } catch {
    // the bookings shown are already the ones the change returned
  }
}

function fillSlotRow(row, a, p) {
  const left = seatsLeft(a);
  const full = left === 0 || a.closed;
  row.dataset.seats = String(left);
  row.classList.toggle("rebook-slot-full", full);
  const cell = $(".rebook-seats", row);
  if (cell) cell.textContent = full ? tr("full") : tr("seats", { n: left });
  const button = $("[data-testid=rebook-choose]", row);
  if (button) button.disabled = full || p.busy;
}

function slotRow(a, p, bookable) {
  const row = h(
    "li",
    { class: "rebook-slot", "data-testid": "rebook-slot", "data-slot-id": a.id, "data-same-venue": a.same_venue ? "true" : "false" },
    h("span", { class: "rebook-when", text: fmt.formatAppointmentYear(a.starts_at) }),
    h("span", { class: "rebook-venue", lang: "ja", text: a.venue_name }),
    h("span", { class: "rebook-product muted", text: a.product }),
    h("span", { class: "rebook-seats" }),
    h("button", {
      type: "button",
      class: "btn btn-secondary btn-small",
      "data-testid": "rebook-choose",
      text: bookable ? tr("book") : tr("choose"),
      onclick: () => change(bookable ? "book" : "move", a),
    }),
  );
  fillSlotRow(row, a, p);
  return row;
}

function render() {
  const p = panel;
  let el = $("#rebook");
  if (!p) {
    el?.remove();
    return;
  }
  const s = p.s;
  const r = s.record || {};
  const bookings = (r.bookings || []).slice().sort((a, b) => (a.dose || 0) - (b.dose || 0) || a.id - b.id);
  const target = p.alt ? p.alt.booking : bookings.find((b) => b.id === p.bookingId);
  const live = target && LIVE.has(target.status);
  const fresh = h("section", {
    id: "rebook",
    class: "panel rebook-panel",
    role: "dialog",
    "aria-labelledby": "rebook-heading",
    "data-booking-id": p.bookingId,
    "aria-busy": p.busy || p.loading ? "true" : "false",
  });
  fresh.append(
    h(
      "div",
      { class: "panel-head" },
      h("h2", { class: "panel-title", id: "rebook-heading", text: `${tr("heading")} ${r.name ? `— ${r.name}` : ""}` }),
      h("button", { type: "button", class: "btn-icon", id: "rebook-close", "aria-label": tr("close"), title: "Esc", onclick: closeRebook }, icon("close")),
    ),
  );
  // Left: the resident's bookings.
  const mine = h("ul", { class: "rebook-bookings", role: "list" });
  for (const b of bookings) {
    mine.append(
      h(
        "li",
        {
          class: `rebook-booking${b.id === p.bookingId ? " rebook-booking-current" : ""}`,
          "data-testid": "rebook-booking",
          "data-booking-id": b.id,
          "data-dose": b.dose,
          "data-status": b.status,
          "aria-current": b.id === p.bookingId ? "true" : null,
        },
        h("strong", { text: tr("dose", { n: b.dose }) }),
        h("span", { class: "rebook-when", text: when(b) }),
        h("span", { class: "rebook-venue", lang: "ja", text: b.venue_name || "" }),
        h("span", { class: "muted", text: b.status && b.status !== "booked" ? b.status : "" }),
        rideBadge(b),
        b.id !== p.bookingId
          ? h("button", { type: "button", class: "btn-link", text: tr("change"), onclick: () => openRebook(s, b.id) })
          : "",
      ),
    );
  }
  const left = h("div", { class: "rebook-left" }, h("h3", { class: "panel-subtitle", text: tr("current") }), mine);
  if (live) {
    left.append(
      h("button", {
        type: "button",
        class: `btn ${p.confirmCancel ? "btn-danger" : "btn-quiet"} btn-small`,
        "data-testid": "rebook-cancel",
        text: p.confirmCancel ? tr("cancel_confirm") : tr("cancel"),
        disabled: p.busy ? "" : null,
        onclick: () => {
          if (!p.confirmCancel) {
            p.confirmCancel = true;
            render();
          } else {
            change("cancel");
          }
        },
      }),
    );
  }
  // Move us both: a household member's live booking of the same dose.
  const members = (p.alt && p.alt.household) || [];
  const partners = [];
  for (const m of members) {
    for (const b of m.bookings || []) {
      if (target && b.dose === target.dose) partners.push({ m, b });
    }
  }
  if (live && partners.length) {
    const box = h("div", { class: "rebook-together" });
    for (const { m, b } of partners) {
      const input = h("input", {
        type: "checkbox",
        "data-testid": "rebook-together",
        "data-booking-id": b.id,
        checked: p.together === b.id ? "" : null,
        onchange: (e) => {
          p.together = e.target.checked ? b.id : null;
          render();
        },
      });
      box.append(h("label", { class: "check" }, input, h("span", { lang: "ja", text: tr("together", { name: m.name, dose: b.dose, when: when(b) }) })));
    }
    left.append(box);
  }
  // Right: the slots to offer.
  const right = h("div", { class: "rebook-right" });
  if (p.loading && !p.alt) right.append(h("p", { class: "muted", text: tr("loading") }));
  else if (p.error) right.append(h("p", { class: "form-error", role: "alert", text: p.error }));
  else if (p.alt) {
    const bookable = !live;
    const same = p.alt.slots.filter((a) => a.same_venue);
    const other = p.alt.slots.filter((a) => !a.same_venue);
    if (!same.length && !other.length) right.append(h("p", { class: "empty", text: tr("none") }));
    for (const [label, list] of [
      [tr("same"), same],
      [tr("other"), other],
    ]) {
      if (!list.length) continue;
      right.append(
        h("h3", { class: "panel-subtitle", text: label }),
        h("ul", { class: "rebook-slots", role: "list" }, list.map((a) => slotRow(a, p, bookable))),
      );
    }
  }
  const message = p.message
    ? h("p", {
        class: `rebook-message rebook-message-${p.message.kind}`,
        "data-testid": "rebook-message",
        "data-kind": p.message.kind,
        "data-reason": p.message.reason || null,
        role: p.message.kind === "done" ? "status" : "alert",
        lang: "ja",
        text: p.message.text,
      })
    : h("p", { class: "rebook-message", "data-testid": "rebook-message", hidden: "" });
  fresh.append(
    message,
    h("p", { class: "muted", id: "rebook-live", text: tr("live_lost"), hidden: p.liveOk ? "" : null }),
    h("div", { class: "rebook-body" }, left, right),
  );
  // Keep the agent's place in a long list across a redraw.
  const scroll = el ? $(".rebook-right", el)?.scrollTop || 0 : 0;
  if (el) el.replaceWith(fresh);
  else document.body.append(fresh);
  const list = $(".rebook-right", fresh);
  if (list) list.scrollTop = scroll;
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && panel && !event.isComposing) {
    event.preventDefault();
    event.stopImmediatePropagation();
    closeRebook();
  }
}, true);
