// Search for a resident: by ticket number (a barcode scanner types it), by name in kana with the
// birth date, or by phone. One panel, bound to one search state, serves the idle screen, an unknown
// caller and "someone else" on a call.

import { api, errorText, Unauthorized } from "./api.js";
import { $, $$, arrowNavigate, h, icon } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { personSummary } from "./resident.js";
import { newSearch, persist } from "./state.js";

async function runSearch(search, panel, onFound) {
  search.error = null;
  const ticketDigits = fmt.toAsciiDigits(search.ticket).replace(/[\s\-ー－]/g, "");
  const kana = fmt.toKatakana(search.kana);
  const phone = fmt.toAsciiDigits(search.phone).trim();
  let query = null;
  if (ticketDigits) {
    // The 18-digit OCR line ends with the 10-digit 券番号.
    const ticket = /^\d{18}$/.test(ticketDigits) ? ticketDigits.slice(8) : ticketDigits;
    if (!/^\d{10}$/.test(ticket)) search.error = { field: "ticket", message: t("search.err.ticket") };
    else query = `ticket=${encodeURIComponent(ticket)}`;
  } else if (kana || search.birth) {
    // The birth date narrows a common reading down to one person; a surname alone lists a family.
    const birth = checkedBirth(search);
    if (!kana) search.error = { field: "kana", message: t("search.err.kana") };
    else if (birth && birth.error) search.error = { field: "birth_date", message: t(birth.error) };
    else if (!birth && kana.replace(/\s/g, "").length < 2) search.error = { field: "birth_date", message: t("search.err.birth") };
    else query = `kana=${encodeURIComponent(kana)}${birth ? `&birth_date=${fmt.isoDate(birth.date)}` : ""}`;
  } else if (phone) {
    query = `phone=${encodeURIComponent(phone)}`;
  } else {
    search.error = { field: "_", message: t("search.err.empty") };
  }
  if (!query) {
    updateSearchPanel(panel, search);
    focusSearchError(panel, search);
    return;
  }
  search.busy = true;
  search.results = null;
  updateSearchPanel(panel, search);
  try {
    const r = await api("GET", `/api/residents?${query}`);
    search.busy = false;
    if (r.ok && Array.isArray(r.data)) {
      search.results = r.data;
      if (r.data.length === 1) {
        onFound(r.data[0]);
        return;
      }
    } else {
      const field = r.data && r.data.field;
      search.error = {
        field: ["ticket", "kana", "birth_date", "phone"].includes(field) ? field : "_",
        message: errorText(r),
      };
    }
  } catch (e) {
    search.busy = false;
    if (e instanceof Unauthorized) return;
    search.error = { field: "_", message: t("err.network") };
  }
  if (panel.isConnected) {
    updateSearchPanel(panel, search);
    if (search.error) focusSearchError(panel, search);
    else $('[data-testid="search-result"]', panel)?.focus();
  }
}

function focusSearchError(panel, search) {
  const input = { ticket: "#search-ticket", kana: "#search-kana", birth_date: "#search-birth", phone: "#search-phone" }[
    search.error && search.error.field
  ];
  if (input) $(input, panel)?.focus();
}

/** The search panel, bound to one search state; `onFound` opens a resident. */
export function buildSearchPanel(search, { heading, lead, onFound, onClose }) {
  const panel = $("#tpl-search").content.firstElementChild.cloneNode(true);
  $(".panel-title", panel).textContent = heading;
  if (onClose) {
    const close = h(
      "button",
      { type: "button", class: "btn-icon panel-close", id: "search-close", "aria-label": t("pick.close"), onclick: onClose },
      icon("close"),
    );
    $(".panel-title", panel).after(close);
  }
  const leadEl = $(".search-lead", panel);
  if (lead) {
    leadEl.textContent = lead;
    leadEl.hidden = false;
  }
  const fields = { ticket: "#search-ticket", kana: "#search-kana", birth: "#search-birth", phone: "#search-phone" };
  for (const [key, sel] of Object.entries(fields)) {
    const input = $(sel, panel);
    input.value = search[key];
    input.addEventListener("input", () => {
      search[key] = input.value;
      persist();
      if (search.error) {
        search.error = null;
        updateSearchPanel(panel, search);
      }
      if (key === "birth") showBirthWareki(panel, search);
    });
  }
  const era = $("#search-era", panel);
  era.value = search.era ?? "showa";
  era.addEventListener("change", () => {
    search.era = era.value;
    persist();
    showBirthWareki(panel, search);
  });
  showBirthWareki(panel, search);
  $("#search-form", panel).addEventListener("submit", (event) => {
    event.preventDefault();
    if (!search.busy) runSearch(search, panel, onFound);
  });
  $("#search-clear", panel).addEventListener("click", () => {
    Object.assign(search, newSearch());
    for (const sel of Object.values(fields)) $(sel, panel).value = "";
    era.value = search.era;
    showBirthWareki(panel, search);
    updateSearchPanel(panel, search);
    $("#search-ticket", panel).focus();
  });
  panel._onFound = onFound;
  updateSearchPanel(panel, search);
  return panel;
}

/**
 * The birth date typed, read as the server will read it, and within the register's bounds (not
 * in the future, at most 125 years ago), so a refusal reads in the agent's language.
 */
function checkedBirth(search) {
  const parsed = fmt.parseBirthInput(search.birth, search.era || null);
  if (!parsed || parsed.error) return parsed;
  const years = fmt.age(parsed.date);
  if (years == null || years < 0) return { error: "birth.err.future" };
  if (years > 125) return { error: "birth.err.old" };
  return parsed;
}

/** The date as read, in 西暦 and 和暦 with the age, before the agent searches with it. */
function showBirthWareki(panel, search) {
  const out = $("#search-birth-wareki", panel);
  const parsed = checkedBirth(search);
  out.classList.toggle("hint-error", Boolean(parsed && parsed.error));
  out.removeAttribute("data-birth-iso");
  if (!parsed) {
    out.textContent = "";
    return;
  }
  if (parsed.error) {
    out.textContent = t(parsed.error);
    return;
  }
  const d = parsed.date;
  out.dataset.birthIso = fmt.isoDate(d);
  out.textContent = t("search.birth.readback", {
    date: fmt.formatSeireki(d),
    wareki: fmt.formatWareki(d),
    age: fmt.age(d),
  });
}

function updateSearchPanel(panel, search) {
  for (const el of $$("[data-field-error]", panel)) {
    const mine = search.error && search.error.field === el.dataset.fieldError;
    el.textContent = mine ? search.error.message : "";
    el.hidden = !mine;
  }
  for (const [field, sel] of Object.entries({
    ticket: "#search-ticket",
    kana: "#search-kana",
    birth_date: "#search-birth",
    phone: "#search-phone",
  })) {
    $(sel, panel).setAttribute("aria-invalid", String(Boolean(search.error && search.error.field === field)));
  }
  $("#search-submit", panel).disabled = search.busy;
  const out = $("#search-results", panel);
  out.replaceChildren();
  if (search.busy) {
    out.append(h("p", { class: "muted search-status", text: t("search.busy") }));
    return;
  }
  if (!search.results) return;
  if (search.results.length === 0) {
    out.append(h("p", { class: "empty", "data-testid": "search-none", text: t("search.none") }));
    return;
  }
  out.append(h("p", { class: "muted search-status", text: t("search.count", { n: search.results.length }) }));
  const list = h("ul", { class: "result-list", role: "list" });
  for (const r of search.results) {
    list.append(
      h(
        "li",
        null,
        h(
          "button",
          {
            type: "button",
            class: "result-item",
            "data-testid": "search-result",
            "data-resident-id": r.id,
            onclick: () => panel._onFound(r),
          },
          personSummary(r, "result"),
        ),
      ),
    );
  }
  list.addEventListener("keydown", (e) => arrowNavigate(e, '[data-testid="search-result"]', list));
  out.append(list);
}

