// The page around the screens: the top bar, the idle screen, one screen's layout (banner, record,
// form, history), the tabs when several screens are open, and the page title.

import { buildBanner, callerNumberText, renderBanner } from "./banner.js";
import { switchTo } from "./calls.js";
import { $, h, icon } from "./dom.js";
import { buildHistoryColumn, refreshHistory } from "./history.js";
import { applyI18n, t } from "./i18n.js";
import { buildInquiryForm, updateFormHeading } from "./inquiry.js";
import { fillResidentColumn, openResident } from "./resident.js";
import { buildSearchPanel } from "./search.js";
import { activeSession, isDirty, newSearch, newSession, persist, state, waitingSessions } from "./state.js";

export function renderChrome() {
  const u = state.user || {};
  $("#agent-name").textContent = u.display_name || u.username || "";
  const ext = state.extension || u.extension || "";
  $("#agent-ext").textContent = ext ? t("ext", { ext }) : "";
  $("#agent-ext").hidden = !ext;
  setConn(state.conn);
}

export function renderWorkspace() {
  const ws = $("#workspace");
  const s = activeSession();
  ws.replaceChildren(s ? renderSession(s) : renderIdle());
  applyI18n(ws);
  renderSessions();
  updateTitle();
}

function renderIdle() {
  const search = state.idleSearch;
  const panel = buildSearchPanel(search, {
    heading: t("search.heading"),
    onFound: (resident) => {
      const s = newSession();
      s.search = search;
      state.idleSearch = newSearch();
      state.sessions.push(s);
      state.activeKey = s.key;
      renderWorkspace();
      openResident(s, resident);
    },
  });
  const view = h(
    "section",
    { id: "idle", class: "idle", "data-testid": "idle", "aria-labelledby": "idle-heading" },
    h(
      "div",
      { class: "idle-hero" },
      h("div", { class: "idle-icon" }, icon("phone", "icon icon-xl")),
      h(
        "div",
        null,
        h("h1", { id: "idle-heading", class: "idle-heading", text: t("idle.heading") }),
        h("p", { class: "idle-lead", text: t("idle.lead") }),
        h("p", { class: "idle-lead muted", text: t("idle.lead2") }),
      ),
    ),
    panel,
  );
  // Ready for the barcode scanner, unless the agent is busy elsewhere on the page.
  const idleFocus = () => !document.activeElement || document.activeElement === document.body;
  queueMicrotask(() => idleFocus() && $("#search-ticket")?.focus({ preventScroll: true }));
  return view;
}

function renderSession(s) {
  const view = h("section", {
    id: s.call ? "pop" : "lookup",
    class: "session",
    "data-session-key": s.key,
    "data-phase": s.phase,
    "data-call-id": s.call ? s.call.id : null,
    "aria-label": s.call ? t(`call.${s.phase}`) : t("call.lookup"),
  });
  view.append(h("div", { id: "call-banner-slot" }));
  const grid = h(
    "div",
    { class: "session-grid" },
    h("div", { class: "col-resident", id: "col-resident" }),
    h("div", { class: "col-form" }, buildInquiryForm(s)),
    h("div", { class: "col-history", id: "col-history" }),
  );
  view.append(grid);
  // Fill the parts that refresh on their own, then attach.
  const slot = $("#call-banner-slot", view);
  slot.replaceWith(buildBanner(s));
  fillResidentColumn($("#col-resident", view), s);
  $("#col-history", view).append(...buildHistoryColumn(s));
  updateFormHeading(s, view);
  return view;
}

/** Rebuild the record, household and history, leaving the inquiry form (and its caret) alone. */
export function refreshResident(s) {
  if (s.key !== state.activeKey) {
    renderSessions();
    return;
  }
  const col = $("#col-resident");
  if (!col) {
    renderWorkspace();
    return;
  }
  fillResidentColumn(col, s);
  renderBanner(s);
  refreshHistory(s);
  updateFormHeading(s);
  applyI18n($("#workspace"));
  renderSessions();
  updateTitle();
}

export function setConn(conn) {
  state.conn = conn;
  const el = $("#conn-state");
  el.dataset.state = conn;
  $("#conn-label").textContent = t(`conn.${conn}`);
}

export function updateTitle() {
  const s = activeSession();
  let title = "窓口 madoguchi";
  if (s && s.call && (s.phase === "ringing" || s.phase === "talking")) {
    title = `${s.phase === "ringing" ? "● " : ""}${t(`call.${s.phase}`)} ${callerNumberText(s.call)} | ${title}`;
  }
  document.title = title;
}

export function renderSessions() {
  persist();
  const nav = $("#sessions");
  nav.replaceChildren();
  nav.hidden = state.sessions.length < 2 && !(state.sessions.length === 1 && !activeSession());
  if (nav.hidden) return;
  nav.append(h("span", { class: "sessions-label", text: t("call.sessions") }));
  const waiting = waitingSessions();
  for (const s of state.sessions) {
    const name = s.record ? s.record.name : s.call ? callerNumberText(s.call) : t("call.lookup");
    nav.append(
      h(
        "button",
        {
          type: "button",
          class: `session-tab${s.unseen ? " session-tab-new" : ""}`,
          "data-testid": "session-tab",
          "data-phase": s.phase,
          "data-call-id": s.call ? s.call.id : null,
          "data-unseen": s.unseen ? "true" : null,
          "aria-current": s.key === state.activeKey ? "true" : null,
          onclick: () => switchTo(s.key),
        },
        h("span", { class: "state-dot", "aria-hidden": "true" }),
        h("span", { class: "session-tab-state", text: s.call ? t(`call.${s.phase}`) : t("call.lookup") }),
        h("span", { class: "session-tab-name", text: name }),
        isDirty(s) ? h("span", { class: "session-tab-draft", text: t("call.draft") }) : "",
      ),
    );
  }
  if (waiting.length > 0) {
    nav.append(
      h(
        "span",
        { class: "sessions-waiting", "data-testid": "sessions-waiting" },
        t("queue.waiting", { n: waiting.length }),
        " ",
        h("kbd", { text: "F2" }),
        " / ",
        h("kbd", { text: "Alt+N" }),
        ` ${t("queue.switch")}`,
      ),
    );
  }
}
