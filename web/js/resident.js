// The resident side of a screen: the household pick-list, the ledger record, bookings and doses,
// and opening a resident (which also tells the server whom the call was about).

import { api, errorText, Unauthorized } from "./api.js";
import { isWithheld } from "./banner.js";
import { $, arrowNavigate, h, icon, toast } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { dialButton } from "./dialer.js";
import { changeButton, rideBadge } from "./rebook.js";
import { buildSearchPanel } from "./search.js";
import { standbyButton } from "./standby.js";
import { activeSession, state } from "./state.js";
import { refreshResident, renderSessions } from "./workspace.js";

/** Tell the server which resident this call was about (fire and forget). */
function linkCall(s, residentId) {
  if (!s.call) return;
  api("POST", `/api/calls/${encodeURIComponent(s.call.id)}/resident`, { resident_id: residentId })
    .then((r) => {
      if (!r.ok) toast(t("pick.link_failed", { msg: errorText(r) }));
    })
    .catch((e) => {
      if (!(e instanceof Unauthorized)) toast(t("pick.link_failed", { msg: t("err.network") }));
    });
}

function pick(s, residentId) {
  const cand = s.candidates.find((c) => String(c.id) === String(residentId));
  if (!cand) return;
  const changed = String(s.chosenId) !== String(cand.id);
  s.chosenId = cand.id;
  s.record = cand;
  s.pickOpen = false;
  s.searchOpen = false;
  s.loadError = "";
  if (changed) linkCall(s, cand.id);
  refreshResident(s);
  $("#resident-card")?.focus({ preventScroll: true });
}

export async function openResident(s, resident) {
  const id = resident.id;
  const inCandidates = s.candidates.find((c) => String(c.id) === String(id));
  if (inCandidates) {
    pick(s, id);
    return;
  }
  const changed = String(s.chosenId) !== String(id);
  s.chosenId = id;
  s.searchOpen = false;
  s.loading = true;
  s.loadError = "";
  s.record = null;
  if (changed) linkCall(s, id);
  refreshResident(s);
  try {
    const r = await api("GET", `/api/residents/${encodeURIComponent(id)}`);
    if (String(s.chosenId) !== String(id)) return;
    if (r.ok && r.data) s.record = normaliseRecord(r.data);
    else s.loadError = t("res.load_failed", { msg: errorText(r) });
  } catch (e) {
    if (e instanceof Unauthorized) return;
    s.loadError = t("res.load_failed", { msg: t("err.network") });
  }
  s.loading = false;
  if (s.key === state.activeKey) {
    refreshResident(s);
    $("#resident-card")?.focus({ preventScroll: true });
  } else {
    renderSessions();
  }
}

export function normaliseRecord(r) {
  return {
    phones: [],
    bookings: [],
    vaccinations: [],
    inquiries: [],
    calls: [],
    ...r,
  };
}

/** Name, kana, birth date + age, ticket: the facts that tell household members apart. */
export function personSummary(r, cls) {
  const birth = fmt.parseDate(r.birth_date);
  const years = fmt.age(birth);
  return [
    h(
      "span",
      { class: `${cls}-who` },
      h("span", { class: `${cls}-kana`, lang: "ja", text: r.name_kana || "" }),
      h("span", { class: `${cls}-name`, "data-testid": `${cls === "pick" ? "pick" : "result"}-name`, lang: "ja", text: r.name || "" }),
    ),
    h(
      "span",
      { class: `${cls}-birth` },
      h("span", { class: `${cls}-date`, text: fmt.formatSeireki(birth) }),
      h("span", { class: `${cls}-wareki`, text: fmt.formatWareki(birth) }),
    ),
    h(
      "span",
      { class: `${cls}-age` },
      years == null ? "" : h("strong", { text: String(years) }),
      years == null ? "" : h("small", { text: t("res.age.unit") }),
      r.sex ? h("small", { class: "sex", text: t(`res.sex.${r.sex}`) }) : "",
    ),
    h(
      "span",
      { class: `${cls}-ticket` },
      h("small", { text: t("res.ticket") }),
      ticketView(r),
      r.town && cls === "result" ? h("small", { class: `${cls}-town`, lang: "ja", text: r.town }) : "",
    ),
  ];
}

/**
 * The ticket, written one way everywhere (card, pick-list, search results): 市区町村コード, then
 * the 券番号 in two groups of five, spaced by CSS so copied text keeps only the digits.
 */
function ticketView(r, attrs = {}) {
  const ticket = fmt.ticketParts(r.municipality_code, r.ticket_no);
  return h(
    "span",
    { class: "ticket mono", "aria-label": `${t("res.ticket")} ${fmt.formatTicket(r.municipality_code, r.ticket_no)}`, ...attrs },
    ticket.code ? h("span", { class: "ticket-code", text: ticket.code }) : "",
    ticket.groups.map((g) => h("span", { class: "ticket-group", text: g })),
  );
}

// ---------------------------------------------------------------------------------------------
// Resident column: household pick-list, search, record, bookings

export function fillResidentColumn(col, s) {
  col.replaceChildren();
  if (s.candidates.length > 1) col.append(buildHousehold(s));
  const pending = s.lookup === "pending" && !s.record && !s.loading;
  if (s.searchOpen) {
    const unknown = Boolean(s.call) && s.candidates.length === 0 && !s.record && !s.loading;
    const failed = unknown && s.lookup === "failed";
    let heading = t("search.heading");
    let lead = "";
    if (failed) [heading, lead] = [t("lookup.failed"), t("lookup.failed.lead")];
    else if (pending) lead = t("lookup.pending.searching");
    else if (unknown && isWithheld(s.call)) [heading, lead] = [t("search.heading.withheld"), t("search.lead.unknown")];
    else if (unknown) [heading, lead] = [t("search.heading.unknown"), t("search.lead.unknown")];
    const panel = buildSearchPanel(s.search, {
      heading,
      lead,
      onFound: (resident) => openResident(s, resident),
      onClose:
        s.record || s.candidates.length > 0 || pending
          ? () => {
              s.searchOpen = false;
              refreshResident(s);
              ($("#search-other") || $("#lookup-pending"))?.focus();
            }
          : null,
    });
    if (failed) panel.setAttribute("data-testid", "lookup-failed");
    col.append(panel);
  }
  if (s.loading) {
    col.append(h("section", { class: "panel card card-loading", "aria-busy": "true" }, h("p", { class: "muted", text: t("res.loading") })));
  } else if (s.loadError) {
    col.append(h("section", { class: "panel card" }, h("p", { class: "form-error", role: "alert", text: s.loadError })));
  } else if (s.record) {
    col.append(buildCard(s));
  } else if (pending && !s.searchOpen) {
    // The pop went out before the ledger answered: the record follows in a candidates_update.
    col.append(
      h(
        "section",
        {
          class: "panel card card-prompt card-pending",
          id: "lookup-pending",
          "data-testid": "lookup-pending",
          tabindex: "-1",
          "aria-busy": "true",
        },
        h("p", { class: "prompt", text: t("lookup.pending") }),
        h("p", { class: "muted", text: t("lookup.pending.lead") }),
        h("button", {
          type: "button",
          class: "btn btn-secondary",
          text: t("lookup.search"),
          onclick: () => {
            s.searchOpen = true;
            refreshResident(s);
            $("#search-ticket")?.focus();
          },
        }),
      ),
    );
  } else if (s.candidates.length > 1 && !s.pickOpen) {
    col.append(
      h(
        "section",
        { class: "panel card card-prompt" },
        h("p", { class: "prompt", text: t("pick.choose") }),
        h("button", {
          type: "button",
          class: "btn btn-secondary",
          text: t("pick.open"),
          onclick: () => {
            s.pickOpen = true;
            refreshResident(s);
            $('[data-testid="pick-item"]')?.focus();
          },
        }),
      ),
    );
  }
}

function buildHousehold(s) {
  if (!s.pickOpen) {
    // Collapsed: one chip per member for a quick switch.
    const bar = h(
      "nav",
      { class: "household-bar", "aria-label": t("pick.summary", { n: s.candidates.length }) },
      h("span", { class: "household-count" }, icon("home"), t("pick.summary", { n: s.candidates.length })),
    );
    const chips = h("div", { class: "household-chips" });
    for (const c of s.candidates) {
      const years = fmt.age(c.birth_date);
      chips.append(
        h(
          "button",
          {
            type: "button",
            class: "chip",
            "data-testid": "pick-chip",
            "data-resident-id": c.id,
            "aria-current": String(c.id) === String(s.chosenId) ? "true" : null,
            onclick: () => pick(s, c.id),
          },
          h("span", { lang: "ja", text: c.name }),
          years == null ? "" : h("small", { text: ` ${years}${t("res.age.unit")}` }),
        ),
      );
    }
    bar.append(
      chips,
      h("button", {
        type: "button",
        class: "btn-link",
        id: "pick-open",
        text: t("pick.list"),
        "aria-label": t("pick.open"),
        onclick: () => {
          s.pickOpen = true;
          refreshResident(s);
          ($('[data-testid="pick-item"][aria-current="true"]') || $('[data-testid="pick-item"]'))?.focus();
        },
      }),
    );
    return bar;
  }
  const list = h("ul", { class: "pick-items", role: "list" });
  s.candidates.forEach((c, i) => {
    list.append(
      h(
        "li",
        null,
        h(
          "button",
          {
            type: "button",
            class: "pick-item",
            "data-testid": "pick-item",
            "data-resident-id": c.id,
            "aria-current": String(c.id) === String(s.chosenId) ? "true" : null,
            onclick: () => pick(s, c.id),
          },
          h("span", { class: "pick-index", "aria-hidden": "true", text: i < 9 ? String(i + 1) : "" }),
          personSummary(c, "pick"),
        ),
      ),
    );
  });
  list.addEventListener("keydown", (e) => {
    if (/^[1-9]$/.test(e.key) && !e.altKey && !e.ctrlKey && !e.metaKey) {
      const c = s.candidates[Number(e.key) - 1];
      if (c) {
        e.preventDefault();
        pick(s, c.id);
      }
      return;
    }
    arrowNavigate(e, '[data-testid="pick-item"]', list);
  });
  return h(
    "section",
    { class: "panel household", id: "pick-list", "data-testid": "pick-list", "aria-labelledby": "pick-heading" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { class: "panel-title", id: "pick-heading" }, icon("home"), t("pick.heading", { n: s.candidates.length })),
      s.record
        ? h(
            "button",
            {
              type: "button",
              class: "btn-icon",
              id: "pick-close",
              "aria-label": t("pick.close"),
              title: "Esc",
              onclick: () => closePickList(s),
            },
            icon("close"),
          )
        : "",
    ),
    h("p", { class: "muted pick-lead", text: t("pick.lead") }),
    list,
  );
}

export function closePickList(s) {
  if (!s.pickOpen) return false;
  s.pickOpen = false;
  refreshResident(s);
  ($("#pick-open") || $("#resident-card"))?.focus({ preventScroll: true });
  return true;
}

/**
 * The caller is identified and rang from a number the record does not have: offer to keep it,
 * so the next call from it pops this resident directly.
 */
function canKeepNumber(s) {
  const r = s.record;
  if (!s.call || !r || r.id == null || isWithheld(s.call)) return false;
  const n = s.call.caller_number;
  if (fmt.phoneKey(n).length < 3) return false;
  return !(r.phones || []).some((p) => p && (fmt.samePhone(p.e164, n) || fmt.samePhone(p.written, n)));
}

/** Japanese mobiles start 070, 080 or 090; anything else is most likely a landline. */
function defaultKind(number) {
  return /^0[789]0/.test(fmt.phoneKey(number)) ? "mobile" : "home";
}

async function keepNumber(s) {
  const r = s.record;
  if (!r || s.keeping) return;
  const number = s.call.caller_number;
  const kind = s.keepKind || defaultKind(number);
  s.keeping = true;
  refreshResident(s);
  let message = "";
  try {
    const res = await api("POST", `/api/residents/${encodeURIComponent(r.id)}/phones`, { number, kind, call_id: s.call.id });
    if (res.ok || res.status === 409) {
      // 409: the record already had it (kept from another screen): show it as kept.
      const row = res.ok && res.data ? res.data : { e164: number, written: number, kind };
      r.phones = [...(r.phones || []), row];
      message = t("keep.done", { number: fmt.formatPhone(number), kind: t(`phone.${row.kind || kind}`) });
    } else {
      message = t("keep.failed", { msg: errorText(res) });
    }
  } catch (e) {
    if (e instanceof Unauthorized) return;
    message = t("keep.failed", { msg: t("err.network") });
  } finally {
    s.keeping = false;
  }
  if (s.key === state.activeKey) refreshResident(s);
  if (message) toast(message);
}

function intentBadgeClass(intent) {
  return { wants: "badge-accent", declines: "badge-muted", clinic: "badge-outline" }[intent] || "badge-outline";
}

function buildCard(s) {
  const r = s.record;
  const birth = fmt.parseDate(r.birth_date);
  const years = fmt.age(birth);
  const callerNumber = s.call ? s.call.caller_number : "";

  const head = h(
    "header",
    { class: "card-head" },
    h(
      "div",
      { class: "card-who" },
      h("div", { class: "card-kana", "data-testid": "resident-kana", lang: "ja", text: r.name_kana || "" }),
      h("h2", { class: "card-name", id: "resident-name", "data-testid": "resident-name", lang: "ja", text: r.name || "" }),
    ),
    h(
      "div",
      { class: "card-age" },
      years == null
        ? ""
        : h("span", { class: "age", "data-testid": "resident-age" }, h("strong", { text: String(years) }), h("small", { text: t("res.age.unit") })),
      r.sex ? h("span", { class: "sex", text: t(`res.sex.${r.sex}`) }) : "",
    ),
  );

  const badges = h(
    "div",
    { class: "card-badges" },
    h(
      "span",
      { class: `badge ${intentBadgeClass(r.intent)}`, "data-testid": "resident-intent", "data-intent": r.intent || "none" },
      h("span", { class: "badge-label", text: t("res.intent") }),
      t(`intent.${r.intent || "none"}`),
    ),
    r.needs_transport
      ? h("span", { class: "badge badge-transport", "data-testid": "resident-transport" }, icon("bus"), t("res.transport.yes"))
      : h("span", { class: "badge badge-quiet", text: t("res.transport.no") }),
  );

  const facts = h("dl", { class: "facts" });
  const fact = (label, ...value) => facts.append(h("div", { class: "fact" }, h("dt", { text: label }), h("dd", null, ...value)));

  fact(
    t("res.birth"),
    h("span", { class: "fact-big", "data-testid": "resident-birth", text: fmt.formatSeireki(birth) }),
    h("span", { class: "fact-aside", "data-testid": "resident-wareki", text: fmt.formatWareki(birth) }),
  );
  fact(
    t("res.ticket"),
    ticketView(r, { "data-testid": "resident-ticket" }),
  );
  const addressLines = [
    h("span", { class: "postal", text: fmt.formatPostal(r.postal_code) }),
    h("span", { class: "address", lang: "ja", text: r.address || "" }),
  ];
  const townLine = [r.town, r.district].filter(Boolean).join(" · ");
  fact(t("res.address"), h("span", { class: "address-block" }, addressLines, townLine ? h("span", { class: "fact-aside", lang: "ja", text: townLine }) : ""));

  const phones = (r.phones || []).filter((p) => p && (p.written || p.e164));
  if (phones.length) {
    fact(
      t("res.phones"),
      h(
        "ul",
        { class: "phones", role: "list" },
        phones.map((p) => {
          const calling = callerNumber && (fmt.samePhone(p.e164, callerNumber) || fmt.samePhone(p.written, callerNumber));
          return h(
            "li",
            { class: calling ? "phone phone-calling" : "phone" },
            h("span", { class: "phone-kind", text: t(`phone.${p.kind || "other"}`) }),
            h("span", { class: "phone-number mono", text: fmt.formatPhone(p.e164 || p.written) }),
            calling ? h("span", { class: "tag", text: t("res.caller_line") }) : "",
            calling ? "" : dialButton(p.e164 || p.written, { residentId: r.id }),
          );
        }),
      ),
    );
  }
  if (canKeepNumber(s)) {
    const kind = s.keepKind || defaultKind(callerNumber);
    const select = h(
      "select",
      {
        id: "keep-number-kind",
        "data-testid": "keep-number-kind",
        "aria-label": t("keep.kind"),
        onchange: (e) => {
          s.keepKind = e.target.value;
        },
      },
      ["home", "mobile", "family"].map((k) => h("option", { value: k, text: t(`phone.${k}`), selected: k === kind ? "" : null })),
    );
    select.value = kind;
    fact(
      t("keep.label"),
      h(
        "span",
        { class: "keep-number" },
        h("span", { class: "phone-number mono", text: fmt.formatPhone(callerNumber) }),
        select,
        h("button", {
          type: "button",
          class: "btn btn-secondary btn-small",
          id: "keep-number",
          "data-testid": "keep-number",
          text: t("keep.submit"),
          disabled: s.keeping ? "" : null,
          onclick: () => keepNumber(s),
        }),
      ),
    );
  }
  fact(
    t("res.address_no"),
    h("span", { class: "mono", text: r.address_no || "" }),
    r.household_no ? h("span", { class: "fact-aside" }, `${t("res.household")} `, h("span", { class: "mono", text: r.household_no })) : "",
  );

  return h(
    "article",
    { class: "panel card", id: "resident-card", tabindex: "-1", "aria-labelledby": "resident-name", "data-resident-id": r.id },
    head,
    badges,
    facts,
    r.notes ? h("div", { class: "notes" }, h("span", { class: "notes-label", text: t("res.notes") }), h("p", { lang: "ja", text: r.notes })) : "",
  );
}

export function buildBookings(r, session = activeSession()) {
  const bookings = (r.bookings || []).slice().sort((a, b) => (a.dose || 0) - (b.dose || 0));
  const vaccinations = r.vaccinations || [];
  const panel = h(
    "section",
    { class: "panel bookings", id: "bookings", "aria-labelledby": "bookings-heading" },
    h("h2", { class: "panel-title", id: "bookings-heading", text: t("book.heading") }),
  );
  if (bookings.length === 0) {
    panel.append(h("p", { class: "empty", "data-testid": "bookings-empty", text: t("book.empty") }));
  } else {
    const list = h("ul", { class: "booking-list", role: "list" });
    for (const b of bookings) {
      const status = b.status || "booked";
      list.append(
        h(
          "li",
          { class: "booking", "data-testid": "booking-item", "data-status": status },
          h("span", { class: "booking-dose", text: t("book.dose", { n: b.dose }) }),
          h("span", { class: "booking-when", text: fmt.formatAppointmentYear(b.starts_at) }),
          h("span", { class: "booking-venue", text: b.venue_name || t("book.venue", { id: b.venue_id ?? "" }) }),
          h("span", { class: `badge badge-${status === "cancelled" || status === "no_show" ? "muted" : "outline"}`, text: t(`book.status.${status}`) }),
          // The ride (送迎), when transport has given the booking one: {stop_name, pickup_at}.
          rideBadge(b),
          // 変更: the rebooking panel (rebook.js), for a live booking or to book a cancelled dose again.
          session && (status === "booked" || status === "checked_in" || status === "cancelled") ? changeButton(session, b) : "",
          // 待機リスト (standby.js): would come earlier if a dose is left over.
          session && status === "booked" && r.id ? standbyButton(r.id, b) : "",
        ),
      );
    }
    panel.append(list);
  }
  if (vaccinations.length) {
    const list = h("ul", { class: "booking-list", role: "list" });
    for (const v of vaccinations) {
      list.append(
        h(
          "li",
          { class: "booking", "data-testid": "vaccination-item" },
          h("span", { class: "booking-dose", text: t("vacc.dose", { n: v.dose }) }),
          h("span", { class: "booking-when", text: fmt.formatDateTime(v.given_at) }),
          h("span", { class: "booking-venue", text: [v.product, v.lot].filter(Boolean).join(" · ") }),
        ),
      );
    }
    panel.append(h("h3", { class: "panel-subtitle", text: t("vacc.heading") }), list);
  }
  return panel;
}
