// History: a resident's calls and inquiries in one timeline, newest first.

import { $, h, icon } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { buildBookings } from "./resident.js";

export function outcomeLabel(outcome) {
  return t(`outcome.${outcome == null ? "null" : outcome}`);
}

function categoryLabel(category) {
  const key = `cat.${category}`;
  const text = t(key);
  return text === key ? category : text;
}

/** Rows shown before 「さらに表示」: enough for the last few contacts at a 1366×768 desk. */
const PAGE = 5;

/** Redraws the history column (bookings, 要対応, the timeline), leaving the rest alone. */
export function refreshHistory(s) {
  const col = $("#col-history");
  if (!col) return;
  col.replaceChildren(...buildHistoryColumn(s));
}

/** The middle column: what is booked, what is still open, and the latest contacts. */
export function buildHistoryColumn(s) {
  return s.record ? [buildBookings(s.record), buildHistory(s)] : [buildHistory(s)];
}

/** 要対応: inquiries flagged for a call-back or a check, oldest first, at the top of the history. */
function buildFollowUps(inquiries) {
  const open = inquiries.filter((q) => q.follow_up).slice().reverse();
  const box = h(
    "div",
    { class: `follow-ups${open.length ? "" : " follow-ups-none"}`, id: "follow-ups", "data-testid": "follow-ups", "data-count": open.length },
    h("span", { class: "follow-ups-label" }, icon("flag"), t("hist.follow_up"), h("span", { class: "filter-count", text: String(open.length) })),
  );
  if (open.length === 0) {
    box.append(h("span", { class: "muted", text: t("hist.follow_up.none") }));
    return box;
  }
  const list = h("ul", { class: "follow-up-list", role: "list" });
  for (const q of open) {
    list.append(
      h(
        "li",
        { "data-testid": "follow-up-item", "data-id": q.id },
        h("time", { class: "hist-time", datetime: q.created_at, text: fmt.formatDateTime(q.created_at) }),
        h("strong", { text: categoryLabel(q.category) }),
        q.note ? h("span", { class: "follow-up-note", lang: "ja", text: q.note }) : "",
      ),
    );
  }
  box.append(list);
  return box;
}

export function buildHistory(s) {
  const panel = h("section", {
    class: "panel history",
    id: "history",
    "aria-labelledby": "history-heading",
    "data-open": s.histOpen ? "true" : null,
  });
  const r = s.record;
  const inquiries = r ? r.inquiries || [] : [];
  const calls = r ? r.calls || [] : [];
  const head = h("div", { class: "panel-head" }, h("h2", { class: "panel-title", id: "history-heading", text: t("hist.heading") }));
  if (r) {
    const filters = h("div", { class: "filters", role: "group", "aria-label": t("hist.heading") });
    for (const [key, label, n] of [
      ["all", t("hist.all"), inquiries.length + calls.length],
      ["inquiry", t("hist.inquiries"), inquiries.length],
      ["call", t("hist.calls"), calls.length],
    ]) {
      filters.append(
        h(
          "button",
          {
            type: "button",
            class: "filter",
            "data-testid": "history-filter",
            "data-filter": key,
            "aria-pressed": String(s.histFilter === key),
            onclick: () => {
              s.histFilter = key;
              s.histOpen = false;
              refreshHistory(s);
              $(`[data-filter="${key}"]`)?.focus();
            },
          },
          label,
          h("span", { class: "filter-count", text: String(n) }),
        ),
      );
    }
    head.append(filters);
  }
  panel.append(head);
  if (r) panel.append(buildFollowUps(inquiries));
  if (!r) {
    let text = t("hist.empty");
    if (s.candidates.length > 1) text = t("pick.choose");
    else if (s.lookup === "pending" && !s.loading) text = t("hist.pending");
    panel.append(h("p", { class: "empty", text }));
    return panel;
  }
  const rows = [];
  if (s.histFilter !== "call") for (const q of inquiries) rows.push({ kind: "inquiry", at: q.created_at, item: q });
  if (s.histFilter !== "inquiry") for (const c of calls) rows.push({ kind: "call", at: c.started_at, item: c });
  // Newest first; the server's order breaks ties (it is already newest first per kind).
  rows.forEach((row, i) => (row.order = i));
  rows.sort((a, b) => (Date.parse(b.at) || 0) - (Date.parse(a.at) || 0) || a.order - b.order);
  if (rows.length === 0) {
    panel.append(h("p", { class: "empty", "data-testid": "history-empty", text: t("hist.empty") }));
    return panel;
  }
  const list = h("ol", { class: "timeline", role: "list" });
  const shown = s.histOpen ? rows : rows.slice(0, PAGE);
  for (const row of shown) list.append(row.kind === "inquiry" ? inquiryRow(row.item, s) : callRow(row.item));
  panel.append(list);
  if (rows.length > PAGE) {
    panel.append(
      h("button", {
        type: "button",
        class: "btn-link hist-more",
        id: "history-more",
        "data-testid": "history-more",
        "aria-expanded": String(Boolean(s.histOpen)),
        text: s.histOpen ? t("hist.less") : t("hist.more", { n: rows.length - PAGE }),
        onclick: () => {
          s.histOpen = !s.histOpen;
          refreshHistory(s);
          $("#history-more")?.focus();
        },
      }),
    );
  }
  return panel;
}

function inquiryRow(q, s) {
  const who =
    q.caller_kind === "proxy"
      ? q.relationship
        ? t("form.proxy_label", { rel: q.relationship })
        : t("form.proxy")
      : t("form.self");
  const isNew = s.savedIds.has(q.id);
  return h(
    "li",
    {
      class: `hist hist-inquiry${isNew ? " hist-new" : ""}`,
      "data-testid": "history-item",
      "data-kind": "inquiry",
      "data-id": q.id,
    },
    h(
      "div",
      { class: "hist-meta" },
      h("time", { class: "hist-time", datetime: q.created_at, text: fmt.formatDateTime(q.created_at) }),
      h("span", { class: "hist-category", text: categoryLabel(q.category) }),
      h("span", { class: "hist-who", text: who }),
      q.follow_up ? h("span", { class: "badge badge-flag", "data-testid": "history-follow-up" }, icon("flag"), t("hist.follow_up")) : "",
      isNew ? h("span", { class: "badge badge-accent", text: t("hist.new") }) : "",
      h("span", { class: "hist-agent", text: q.user_name || q.username ? t("hist.by", { who: q.user_name || q.username }) : "" }),
    ),
    q.note ? h("p", { class: "hist-note", lang: "ja", text: q.note }) : "",
  );
}

function callRow(c) {
  const talk = c.answered_at && c.ended_at ? (Date.parse(c.ended_at) - Date.parse(c.answered_at)) / 1000 : null;
  const bits = [];
  // Staff by name; the extension only when the answering phone is nobody's login.
  if (c.answered_by_name) bits.push(t("hist.by", { who: c.answered_by_name }));
  else if (c.answered_by) bits.push(t("hist.ext", { ext: c.answered_by }));
  if (talk != null && talk >= 0) bits.push(t("hist.duration", { d: fmt.formatDuration(talk) }));
  if (c.hold_s) bits.push(t("hist.hold", { d: fmt.formatDuration(c.hold_s) }));
  if (c.caller_number) bits.push(fmt.formatPhone(c.caller_number));
  const good = c.outcome === "answered";
  return h(
    "li",
    { class: "hist hist-call", "data-testid": "history-item", "data-kind": "call", "data-id": c.id, "data-outcome": c.outcome || "" },
    h(
      "div",
      { class: "hist-meta" },
      h("time", { class: "hist-time", datetime: c.started_at, text: fmt.formatDateTime(c.started_at) }),
      h("span", { class: "hist-call-label" }, icon("phone"), t("hist.call")),
      h("span", { class: `hist-outcome${good ? "" : " hist-outcome-missed"}`, text: outcomeLabel(c.outcome) }),
      h("span", { class: "hist-call-facts", text: bits.join(" · ") }),
    ),
  );
}
