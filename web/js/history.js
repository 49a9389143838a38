// History: a resident's calls and inquiries in one timeline, newest first.

import { $, h, icon } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";

export function outcomeLabel(outcome) {
  return t(`outcome.${outcome == null ? "null" : outcome}`);
}

function categoryLabel(category) {
  const key = `cat.${category}`;
  const text = t(key);
  return text === key ? category : text;
}

export function buildHistory(s) {
  const panel = h("section", { class: "panel history", id: "history", "aria-labelledby": "history-heading" });
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
              $("#col-history").replaceChildren(buildHistory(s));
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
  for (const row of rows) list.append(row.kind === "inquiry" ? inquiryRow(row.item, s) : callRow(row.item));
  panel.append(list);
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
      h("span", { class: "hist-agent", text: q.username ? t("hist.by", { who: q.username }) : "" }),
    ),
    q.note ? h("p", { class: "hist-note", lang: "ja", text: q.note }) : "",
  );
}

function callRow(c) {
  const talk = c.answered_at && c.ended_at ? (Date.parse(c.ended_at) - Date.parse(c.answered_at)) / 1000 : null;
  const bits = [];
  if (c.answered_by) bits.push(t("hist.ext", { ext: c.answered_by }));
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
