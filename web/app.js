// madoguchi 窓口: the call-center agent screen.
//
// When the agent's phone rings, the server sends a screen_pop over /ws and the caller's ledger
// record shows here while the phone is still ringing; the agent records the inquiry against the
// call. Plain JavaScript modules, no framework: state lives in `state`, and render functions
// rebuild parts of the page from it. Typed text is written into state on every keystroke, so a
// rebuild (a new call, a language switch) never loses a draft.
//
// Stable hooks for browser tests (ids unless marked [data-testid=…]):
//   login:     #login-form #login-username #login-password #login-submit #login-error
//   top bar:   #lang-toggle #logout #conn-state (data-state=online|reconnecting|connecting|offline)
//              [data-testid=agent-name] [data-testid=agent-ext]
//   idle:      #idle (present when no call or record is open)
//   search:    #search-form #search-ticket #search-kana #search-birth #search-phone #search-submit
//              #search-clear #search-results [data-testid=search-result] (one per match,
//              data-resident-id) #search-error
//   a call:    #pop (present while a call's screen is shown; data-call-id, data-phase=
//              ringing|talking|ended|elsewhere); #lookup instead for a record opened without a call
//              #call-banner [data-testid=call-state] [data-testid=caller-number] #call-dismiss
//              #sessions [data-testid=session-tab] (when several screens are open)
//   household: #pick-list [data-testid=pick-item] (one per household member, data-resident-id,
//              aria-current="true" on the one shown) [data-testid=pick-chip] #pick-open #pick-close
//   record:    #resident-card [data-testid=resident-name] [data-testid=resident-kana]
//              [data-testid=resident-age] [data-testid=resident-birth] [data-testid=resident-wareki]
//              [data-testid=resident-ticket] [data-testid=resident-transport] (only when 送迎要)
//              [data-testid=resident-intent] #search-other
//   bookings:  #bookings [data-testid=booking-item] [data-testid=bookings-empty]
//   history:   #history [data-testid=history-item] (one per row, newest first, data-kind=
//              inquiry|call; an inquiry row contains its note text) [data-testid=history-filter]
//   inquiry:   #inquiry-form #inquiry-category #inquiry-note #inquiry-who-self #inquiry-who-proxy
//              #inquiry-relationship #inquiry-follow-up #inquiry-submit #inquiry-status
//              #inquiry-error; field errors: [data-field-error=category|note|relationship|…]
//   other:     #toast (quiet errors)
//
// Server calls: GET /api/me, POST /api/session, DELETE /api/session, GET /ws[?since=SEQ],
// GET /api/residents?ticket=|kana=&birth_date=|phone=, GET /api/residents/{id},
// POST /api/calls/{call id}/resident, POST /api/inquiries.

import { t, lang, setLang, applyI18n, CATEGORIES, RELATIONSHIPS } from "./i18n.js";
import * as fmt from "./format.js";

// ---------------------------------------------------------------------------------------------
// State

const state = {
  user: null,
  extension: "",
  conn: "offline",
  /** Open screens: one per call that popped here, plus records opened by search (walk-ins). */
  sessions: [],
  activeKey: null,
  idleSearch: newSearch(),
  lookupCounter: 0,
  /** Calls that have popped here; a replayed pop for a closed screen must not reopen it. */
  seenCalls: new Set(),
};

function newSearch() {
  return { ticket: "", kana: "", birth: "", phone: "", results: null, busy: false, error: null };
}

function newDraft() {
  return { category: "", note: "", caller_kind: "self", relationship: "", follow_up: false };
}

function newSession({ call = null, candidates = [] } = {}) {
  const key = call ? `call:${call.id}` : `lookup:${++state.lookupCounter}`;
  const now = Date.now();
  return {
    key,
    call,
    phase: call ? phaseOf(call.state) : "lookup",
    receivedAt: now,
    startedAt: call ? trustedTime(call.started_at, now) : now,
    answeredAt: call && call.answered_at ? trustedTime(call.answered_at, now) : null,
    endedAt: null,
    answeredBy: "",
    outcome: null,
    candidates,
    pickOpen: candidates.length > 1,
    chosenId: null,
    record: null,
    loading: false,
    loadError: "",
    searchOpen: Boolean(call) && candidates.length === 0,
    search: newSearch(),
    draft: newDraft(),
    formError: null,
    saving: false,
    savedIds: new Set(),
    histFilter: "all",
    confirmDismiss: false,
  };
}

function phaseOf(callState) {
  if (callState === "talking" || callState === "answered" || callState === "up") return "talking";
  if (callState === "ended") return "ended";
  return "ringing";
}

/** A server timestamp in ms, unless the agent PC's clock disagrees too much to use it. */
function trustedTime(iso, fallback) {
  const ms = Date.parse(iso || "");
  if (Number.isNaN(ms) || ms > fallback + 5000 || fallback - ms > 6 * 3600 * 1000) return fallback;
  return ms;
}

function activeSession() {
  return state.sessions.find((s) => s.key === state.activeKey) || null;
}

function sessionForCall(callId) {
  return state.sessions.find((s) => s.call && String(s.call.id) === String(callId)) || null;
}

/** The agent has started an inquiry here: keep this screen even if the call goes elsewhere. */
function isDirty(s) {
  const d = s.draft;
  return Boolean(
    d.note.trim() || d.category || d.relationship.trim() || d.follow_up || d.caller_kind !== "self",
  );
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "html") el.innerHTML = v; // only ever our own static icons
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const ICON = {
  phone:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6.6 10.8a15.2 15.2 0 0 0 6.6 6.6l2.2-2.2c.3-.3.7-.4 1-.2 1.1.4 2.3.6 3.6.6.6 0 1 .4 1 1V20c0 .6-.4 1-1 1A17 17 0 0 1 3 4c0-.6.4-1 1-1h3.5c.6 0 1 .4 1 1 0 1.3.2 2.5.6 3.6.1.3 0 .7-.2 1z" fill="currentColor"/></svg>',
  bus:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 16c0 .9.4 1.7 1 2.2V20a1 1 0 0 0 1 1h1a1 1 0 0 0 1-1v-1h8v1a1 1 0 0 0 1 1h1a1 1 0 0 0 1-1v-1.8c.6-.5 1-1.3 1-2.2V6c0-3.5-3.6-4-8-4S4 2.5 4 6zm3.5 1a1.5 1.5 0 1 1 0-3 1.5 1.5 0 0 1 0 3zm9 0a1.5 1.5 0 1 1 0-3 1.5 1.5 0 0 1 0 3zM18 11H6V6h12z" fill="currentColor"/></svg>',
  search:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M10.5 3a7.5 7.5 0 0 1 6 12l4.3 4.3-1.4 1.4-4.3-4.3A7.5 7.5 0 1 1 10.5 3zm0 2a5.5 5.5 0 1 0 0 11 5.5 5.5 0 0 0 0-11z" fill="currentColor"/></svg>',
  home:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3 2 11h3v9h5v-6h4v6h5v-9h3z" fill="currentColor"/></svg>',
  flag:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M5 3h2v1h11l-2 4.5L18 13H7v8H5z" fill="currentColor"/></svg>',
  close:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6l5.6-5.6L5 6.4z" fill="currentColor"/></svg>',
};

function icon(name, cls = "icon") {
  return h("span", { class: cls, html: ICON[name], "aria-hidden": "true" });
}

/** Is the agent typing somewhere? Then a new screen must not steal the caret. */
function isTyping() {
  const el = document.activeElement;
  if (!el || el === document.body) return false;
  if (el.closest("#inquiry-form")) return true;
  return (el.tagName === "INPUT" || el.tagName === "TEXTAREA") && el.value !== "";
}

let toastTimer = null;
function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 7000);
}

// ---------------------------------------------------------------------------------------------
// Server

class Unauthorized extends Error {}

/** JSON over fetch, same origin with the session cookie. Resolves {ok, status, data}. */
async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 200) };
    }
  }
  if (res.status === 401 && path !== "/api/session" && path !== "/api/me") {
    sessionExpired();
    throw new Unauthorized();
  }
  return { ok: res.ok, status: res.status, data };
}

function errorText(result) {
  return (result && result.data && result.data.error) || `HTTP ${result ? result.status : "?"}`;
}

// ---------------------------------------------------------------------------------------------
// Login

async function boot() {
  bindChrome();
  applyI18n();
  try {
    const r = await api("GET", "/api/me");
    if (r.ok && r.data && r.data.user) startApp(r.data.user);
    else showLogin();
  } catch {
    showLogin(t("err.network"));
  } finally {
    $("#boot").remove();
  }
}

function showLogin(message = "") {
  $("#login-view").hidden = false;
  $("#app-view").hidden = true;
  $("#agent").hidden = true;
  $("#conn-state").hidden = true;
  $("#logout").hidden = true;
  const err = $("#login-error");
  err.textContent = message;
  err.hidden = !message;
  document.title = `${t("login.heading")} | 窓口 madoguchi`;
  const user = $("#login-username");
  (user.value ? $("#login-password") : user).focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  const err = $("#login-error");
  if (!username || !password) {
    err.textContent = t("login.required");
    err.hidden = false;
    (username ? $("#login-password") : $("#login-username")).focus();
    return;
  }
  const button = $("#login-submit");
  button.disabled = true;
  button.textContent = t("login.busy");
  try {
    const r = await api("POST", "/api/session", { username, password });
    if (r.ok && r.data && r.data.user) {
      $("#login-password").value = "";
      err.hidden = true;
      startApp(r.data.user);
    } else {
      err.textContent = r.status === 401 || r.status === 403 ? t("login.failed") : errorText(r);
      err.hidden = false;
      $("#login-password").select();
    }
  } catch {
    err.textContent = t("err.network");
    err.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = t("login.submit");
  }
}

function startApp(user) {
  // Same person signing back in after an expired session keeps the open screens and drafts.
  if (!state.user || state.user.id !== user.id) {
    state.sessions = [];
    state.activeKey = null;
    state.idleSearch = newSearch();
    state.seenCalls = new Set();
    live.lastSeq = null;
  }
  state.user = user;
  state.extension = user.extension || "";
  if (document.activeElement && document.activeElement.closest("#login-view")) document.activeElement.blur();
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#agent").hidden = false;
  $("#conn-state").hidden = false;
  $("#logout").hidden = false;
  renderChrome();
  renderWorkspace();
  live.start();
}

function sessionExpired() {
  live.stop();
  showLogin(t("err.session"));
}

/**
 * Ask before throwing away unsaved notes. Automated browsers (navigator.webdriver) are not asked:
 * a scripted run has nobody to answer a native dialog and would stall on it.
 */
function mayDiscardDrafts() {
  if (!state.sessions.some(isDirty) || navigator.webdriver) return true;
  return window.confirm(t("leave.confirm"));
}

async function logout() {
  if (!mayDiscardDrafts()) return;
  live.stop();
  try {
    await api("DELETE", "/api/session");
  } catch {
    // logged out locally either way
  }
  state.user = null;
  state.sessions = [];
  state.activeKey = null;
  state.idleSearch = newSearch();
  live.lastSeq = null;
  $("#workspace").replaceChildren();
  showLogin();
}

// ---------------------------------------------------------------------------------------------
// Live connection: /ws with reconnect, backoff and replay from the last sequence number.

const live = {
  socket: null,
  lastSeq: null,
  attempts: 0,
  retryTimer: null,
  pingTimer: null,
  wanted: false,

  start() {
    this.wanted = true;
    if (!this.socket) this.connect();
  },

  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      s.close(1000, "logout");
    }
    setConn("offline");
  },

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const since = this.lastSeq == null ? "" : `?since=${encodeURIComponent(this.lastSeq)}`;
    return `${scheme}://${location.host}/ws${since}`;
  },

  connect() {
    clearTimeout(this.retryTimer);
    setConn(this.attempts === 0 && this.lastSeq == null ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.socket !== socket) return;
      this.attempts = 0;
      setConn("online");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
      }, 25000);
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") onMessage(msg);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.pingTimer);
      if (!this.wanted) return;
      setConn("reconnecting");
      this.checkThenRetry();
    });
  },

  /** A closed socket may mean an ended session: ask before hammering the server. */
  async checkThenRetry() {
    try {
      const r = await api("GET", "/api/me");
      if (r.status === 401) {
        sessionExpired();
        return;
      }
    } catch {
      // server unreachable: keep retrying
    }
    this.scheduleRetry();
  },

  scheduleRetry() {
    if (!this.wanted) return;
    const steps = [1000, 2000, 4000, 8000, 15000, 30000];
    const base = steps[Math.min(this.attempts, steps.length - 1)];
    this.attempts += 1;
    const delay = base * (0.8 + Math.random() * 0.4);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  },
};

function setConn(conn) {
  state.conn = conn;
  const el = $("#conn-state");
  el.dataset.state = conn;
  $("#conn-label").textContent = t(`conn.${conn}`);
}

function onMessage(msg) {
  if (typeof msg.seq === "number") {
    // A hello with a lower number means the server restarted: follow its numbering.
    if (msg.type === "hello" || live.lastSeq == null || msg.seq > live.lastSeq) live.lastSeq = msg.seq;
  }
  switch (msg.type) {
    case "hello":
      if (msg.user) state.user = { ...state.user, ...msg.user };
      if (msg.extension) state.extension = String(msg.extension);
      renderChrome();
      break;
    case "screen_pop":
      onScreenPop(msg);
      break;
    case "call_update":
      onCallUpdate(msg);
      break;
    default:
      break; // pong and message types this screen does not use
  }
}

// ---------------------------------------------------------------------------------------------
// Calls

function onScreenPop(msg) {
  const call = msg.call;
  if (!call || call.id == null) return;
  const candidates = Array.isArray(msg.candidates) ? msg.candidates.filter(Boolean).map(normaliseRecord) : [];
  const existing = sessionForCall(call.id);
  if (existing) {
    // A replay after reconnecting: refresh, keep what the agent chose and typed.
    existing.call = { ...existing.call, ...call };
    if (existing.candidates.length === 0 && candidates.length > 0 && !existing.record) {
      existing.candidates = candidates;
      existing.searchOpen = false;
      choosePopDefault(existing);
    }
    if (existing.key === state.activeKey) renderWorkspace();
    else renderSessions();
    return;
  }
  if (state.seenCalls.has(String(call.id))) return;
  state.seenCalls.add(String(call.id));
  // Screens nobody needs any more make way for the new call.
  state.sessions = state.sessions.filter(
    (s) => isDirty(s) || s.phase === "ringing" || s.phase === "talking",
  );
  const s = newSession({ call, candidates });
  choosePopDefault(s);
  state.sessions.push(s);
  state.activeKey = s.key;
  const typing = isTyping();
  renderWorkspace();
  if (!typing) focusForPop(s);
  announce(s);
}

/** Tell screen-reader users what the banner now says (the banner itself is rebuilt). */
function announce(s) {
  const el = $("#announcer");
  if (!el || !s || !s.call) return;
  const who = s.record ? s.record.name : s.candidates.length > 1 ? t("pick.summary", { n: s.candidates.length }) : "";
  el.textContent = [t(`call.${s.phase}`), callerNumberText(s.call), who].filter(Boolean).join(" ");
}

function choosePopDefault(s) {
  if (s.candidates.length === 1) {
    s.chosenId = s.candidates[0].id;
    s.record = s.candidates[0];
    s.pickOpen = false;
  } else if (s.candidates.length > 1) {
    s.pickOpen = true;
  }
}

function focusForPop(s) {
  if (s.candidates.length > 1 && s.pickOpen) $('[data-testid="pick-item"]')?.focus();
  else if (s.candidates.length === 0) $("#search-ticket")?.focus();
  else $("#resident-card")?.focus({ preventScroll: true });
}

function onCallUpdate(msg) {
  const callId = msg.call && msg.call.id;
  const s = sessionForCall(callId);
  if (!s) return;
  s.call = { ...s.call, ...msg.call };
  const now = Date.now();
  switch (msg.event) {
    case "answered_here":
      if (s.phase === "ringing") {
        s.phase = "talking";
        s.answeredAt = trustedTime(msg.call && msg.call.answered_at, now);
      }
      break;
    case "answered_elsewhere":
      s.answeredBy = msg.answered_by || (msg.call && msg.call.answered_by) || "";
      if (!isDirty(s)) {
        removeSession(s);
        return;
      }
      s.phase = "elsewhere";
      break;
    case "ended":
      s.outcome = msg.outcome ?? (msg.call && msg.call.outcome) ?? null;
      s.endedAt = trustedTime(msg.call && msg.call.ended_at, now);
      if (s.phase !== "elsewhere") s.phase = "ended";
      break;
    default:
      return;
  }
  if (s.key === state.activeKey) {
    renderBanner(s);
    $("#pop")?.setAttribute("data-phase", s.phase);
    announce(s);
  }
  renderSessions();
  updateTitle();
}

function removeSession(s) {
  state.sessions = state.sessions.filter((x) => x !== s);
  if (state.activeKey === s.key) {
    const next = state.sessions[state.sessions.length - 1];
    state.activeKey = next ? next.key : null;
    renderWorkspace();
  } else {
    renderSessions();
  }
}

function dismissSession(s) {
  if (s.saving) return; // the save in flight decides whether anything is left unsaved
  if (isDirty(s) && !s.confirmDismiss) {
    s.confirmDismiss = true;
    renderBanner(s);
    $("#call-dismiss-confirm")?.focus();
    return;
  }
  removeSession(s);
}

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

async function openResident(s, resident) {
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

function normaliseRecord(r) {
  return {
    phones: [],
    bookings: [],
    vaccinations: [],
    inquiries: [],
    calls: [],
    ...r,
  };
}

// ---------------------------------------------------------------------------------------------
// Search

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
    if (!kana) search.error = { field: "kana", message: t("search.err.kana") };
    else if (!search.birth && kana.replace(/\s/g, "").length < 2) search.error = { field: "birth_date", message: t("search.err.birth") };
    else query = `kana=${encodeURIComponent(kana)}${search.birth ? `&birth_date=${encodeURIComponent(search.birth)}` : ""}`;
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
function buildSearchPanel(search, { heading, lead, onFound, onClose }) {
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
      if (search.error) {
        search.error = null;
        updateSearchPanel(panel, search);
      }
      if (key === "birth") showBirthWareki(panel, search);
    });
  }
  showBirthWareki(panel, search);
  $("#search-form", panel).addEventListener("submit", (event) => {
    event.preventDefault();
    if (!search.busy) runSearch(search, panel, onFound);
  });
  $("#search-clear", panel).addEventListener("click", () => {
    Object.assign(search, newSearch());
    for (const sel of Object.values(fields)) $(sel, panel).value = "";
    showBirthWareki(panel, search);
    updateSearchPanel(panel, search);
    $("#search-ticket", panel).focus();
  });
  panel._onFound = onFound;
  updateSearchPanel(panel, search);
  return panel;
}

function showBirthWareki(panel, search) {
  const out = $("#search-birth-wareki", panel);
  const d = fmt.parseDate(search.birth);
  const years = d ? fmt.age(d) : null;
  out.textContent = d && d.y >= 1868 && years != null && years >= 0 && years < 130 ? `${fmt.formatWareki(d)}（${years}${t("res.age.unit")}）` : "";
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

/** Name, kana, birth date + age, ticket: the facts that tell household members apart. */
function personSummary(r, cls) {
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
      h("span", { class: "mono", text: r.ticket_no || "" }),
      r.town && cls === "result" ? h("small", { class: `${cls}-town`, lang: "ja", text: r.town }) : "",
    ),
  ];
}

function arrowNavigate(e, selector, root) {
  if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
  const items = $$(selector, root);
  const i = items.indexOf(document.activeElement);
  if (i < 0) return;
  e.preventDefault();
  const next = e.key === "ArrowDown" ? Math.min(i + 1, items.length - 1) : Math.max(i - 1, 0);
  items[next].focus();
}

// ---------------------------------------------------------------------------------------------
// Rendering: chrome, idle screen, session screen

function renderChrome() {
  const u = state.user || {};
  $("#agent-name").textContent = u.display_name || u.username || "";
  const ext = state.extension || u.extension || "";
  $("#agent-ext").textContent = ext ? t("ext", { ext }) : "";
  $("#agent-ext").hidden = !ext;
  setConn(state.conn);
}

function renderWorkspace() {
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
  $("#col-history", view).append(buildHistory(s));
  updateFormHeading(s, view);
  return view;
}

/** Rebuild the record, household and history, leaving the inquiry form (and its caret) alone. */
function refreshResident(s) {
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
  $("#col-history").replaceChildren(buildHistory(s));
  updateFormHeading(s);
  applyI18n($("#workspace"));
  renderSessions();
  updateTitle();
}

function renderBanner(s) {
  const old = $("#call-banner");
  if (old) old.replaceWith(buildBanner(s));
}

function bannerTiming(s) {
  const now = Date.now();
  if (!s.call) return null;
  if (s.answeredAt && s.phase !== "ringing") {
    const end = s.endedAt || now;
    return { label: t("call.talk"), seconds: (end - s.answeredAt) / 1000, live: !s.endedAt };
  }
  const end = s.endedAt || now;
  return { label: t("call.waited"), seconds: (end - s.startedAt) / 1000, live: !s.endedAt && s.phase === "ringing" };
}

function callerNumberText(call) {
  const n = (call.caller_number || "").trim();
  if (!n || /^(anonymous|unknown|withheld|private|restricted)$/i.test(n)) return t("call.withheld");
  return n;
}

function buildBanner(s) {
  const banner = h("div", {
    id: "call-banner",
    class: "banner",
    "data-phase": s.phase,
    role: "region",
    "aria-label": s.call ? t(`call.${s.phase}`) : t("call.lookup"),
  });
  const stateText = s.call ? t(`call.${s.phase}`) : t("call.lookup");
  banner.append(
    h(
      "div",
      { class: "banner-state" },
      h("span", { class: "state-dot", "aria-hidden": "true" }),
      h("span", { "data-testid": "call-state", class: "state-text", text: stateText }),
    ),
  );
  if (s.call) {
    const number = callerNumberText(s.call);
    banner.append(
      h(
        "div",
        { class: "banner-caller" },
        icon("phone", "icon banner-phone"),
        h("span", { class: "caller-number", "data-testid": "caller-number", text: number }),
        s.call.caller_name ? h("span", { class: "caller-name", text: s.call.caller_name }) : "",
      ),
    );
    const facts = h("dl", { class: "banner-facts" });
    if (s.call.queue) facts.append(h("div", null, h("dt", { text: t("call.queue") }), h("dd", { text: s.call.queue })));
    const timing = bannerTiming(s);
    if (timing) {
      facts.append(
        h(
          "div",
          null,
          h("dt", { text: timing.label }),
          h("dd", { class: "mono timer", id: "call-timer", "data-testid": "call-timer", text: fmt.formatDuration(timing.seconds) }),
        ),
      );
    }
    if (s.phase === "ended" && s.outcome) {
      facts.append(h("div", null, h("dt", { text: t("call.ended") }), h("dd", { text: outcomeLabel(s.outcome) })));
    }
    if (s.phase === "elsewhere") {
      facts.append(
        h("div", { class: "banner-note" }, h("dd", { text: s.answeredBy ? t("call.elsewhere.by", { ext: s.answeredBy }) : "" })),
      );
    }
    banner.append(facts);
  } else {
    banner.append(h("div", { class: "banner-caller banner-caller-quiet" }, icon("home", "icon banner-phone"), h("span", { class: "caller-label", text: t("call.lookup") })));
  }
  const actions = h("div", { class: "banner-actions" });
  if (s.record && !s.searchOpen && !s.loading) {
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-secondary btn-small",
          id: "search-other",
          "data-testid": "search-other",
          onclick: () => {
            s.searchOpen = true;
            refreshResident(s);
            $("#search-ticket")?.focus();
          },
        },
        icon("search"),
        s.search.results && s.search.results.length > 1 ? t("search.back") : t("search.other"),
      ),
    );
  }
  banner.append(actions);
  const canDismiss = s.phase !== "ringing" && s.phase !== "talking";
  if (canDismiss) {
    if (s.confirmDismiss) {
      actions.append(
        h("span", { class: "banner-warn", text: `${t("call.draft")} —` }),
        h("button", {
          type: "button",
          class: "btn btn-danger",
          id: "call-dismiss-confirm",
          text: t("call.dismiss"),
          onclick: () => dismissSession(s),
        }),
        h("button", {
          type: "button",
          class: "btn btn-quiet",
          text: "↩",
          "aria-label": t("pick.close"),
          onclick: () => {
            s.confirmDismiss = false;
            renderBanner(s);
            $("#inquiry-note")?.focus();
          },
        }),
      );
    } else {
      actions.append(
        h("button", {
          type: "button",
          class: "btn btn-secondary",
          id: "call-dismiss",
          "data-testid": "call-dismiss",
          "aria-label": t("call.dismiss.aria"),
          text: t("call.dismiss"),
          onclick: () => dismissSession(s),
        }),
      );
    }
  }
  return banner;
}

function tick() {
  const s = activeSession();
  const el = $("#call-timer");
  if (!s || !el) return;
  const timing = bannerTiming(s);
  if (timing && timing.live) el.textContent = fmt.formatDuration(timing.seconds);
}

function updateTitle() {
  const s = activeSession();
  let title = "窓口 madoguchi";
  if (s && s.call && (s.phase === "ringing" || s.phase === "talking")) {
    title = `${s.phase === "ringing" ? "● " : ""}${t(`call.${s.phase}`)} ${callerNumberText(s.call)} | ${title}`;
  }
  document.title = title;
}

function renderSessions() {
  const nav = $("#sessions");
  nav.replaceChildren();
  nav.hidden = state.sessions.length < 2;
  if (nav.hidden) return;
  nav.append(h("span", { class: "sessions-label", text: t("call.sessions") }));
  for (const s of state.sessions) {
    const name = s.record ? s.record.name : s.call ? callerNumberText(s.call) : t("call.lookup");
    nav.append(
      h(
        "button",
        {
          type: "button",
          class: "session-tab",
          "data-testid": "session-tab",
          "data-phase": s.phase,
          "aria-current": s.key === state.activeKey ? "true" : null,
          onclick: () => {
            state.activeKey = s.key;
            renderWorkspace();
          },
        },
        h("span", { class: "state-dot", "aria-hidden": "true" }),
        h("span", { class: "session-tab-state", text: s.call ? t(`call.${s.phase}`) : t("call.lookup") }),
        h("span", { class: "session-tab-name", text: name }),
        isDirty(s) ? h("span", { class: "session-tab-draft", text: t("call.draft") }) : "",
      ),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Resident column: household pick-list, search, record, bookings

function fillResidentColumn(col, s) {
  col.replaceChildren();
  if (s.candidates.length > 1) col.append(buildHousehold(s));
  if (s.searchOpen) {
    const unknown = Boolean(s.call) && s.candidates.length === 0 && !s.record && !s.loading;
    col.append(
      buildSearchPanel(s.search, {
        heading: unknown ? t("search.heading.unknown") : t("search.heading"),
        lead: unknown ? t("search.lead.unknown") : "",
        onFound: (resident) => openResident(s, resident),
        onClose:
          s.record || s.candidates.length > 0
            ? () => {
                s.searchOpen = false;
                refreshResident(s);
                $("#search-other")?.focus();
              }
            : null,
      }),
    );
  }
  if (s.loading) {
    col.append(h("section", { class: "panel card card-loading", "aria-busy": "true" }, h("p", { class: "muted", text: t("res.loading") })));
  } else if (s.loadError) {
    col.append(h("section", { class: "panel card" }, h("p", { class: "form-error", role: "alert", text: s.loadError })));
  } else if (s.record) {
    col.append(buildCard(s), buildBookings(s.record));
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

function closePickList(s) {
  if (!s.pickOpen) return false;
  s.pickOpen = false;
  refreshResident(s);
  ($("#pick-open") || $("#resident-card"))?.focus({ preventScroll: true });
  return true;
}

function intentBadgeClass(intent) {
  return { wants: "badge-accent", declines: "badge-muted", clinic: "badge-outline" }[intent] || "badge-outline";
}

function buildCard(s) {
  const r = s.record;
  const birth = fmt.parseDate(r.birth_date);
  const years = fmt.age(birth);
  const callerNumber = s.call ? s.call.caller_number : "";
  const ticket = fmt.ticketParts(r.municipality_code, r.ticket_no);

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
    h(
      "span",
      {
        class: "ticket mono",
        "data-testid": "resident-ticket",
        "aria-label": `${t("res.ticket")} ${fmt.formatTicket(r.municipality_code, r.ticket_no)}`,
      },
      ticket.code ? h("span", { class: "ticket-code", text: ticket.code }) : "",
      ticket.groups.map((g) => h("span", { class: "ticket-group", text: g })),
    ),
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
            h("span", { class: "phone-number mono", text: p.written || p.e164 }),
            calling ? h("span", { class: "tag", text: t("res.caller_line") }) : "",
          );
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

function buildBookings(r) {
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
          h("span", { class: "booking-when", text: fmt.formatAppointment(b.starts_at) }),
          h("span", { class: "booking-venue", text: b.venue_name || t("book.venue", { id: b.venue_id ?? "" }) }),
          h("span", { class: `badge badge-${status === "cancelled" || status === "no_show" ? "muted" : "outline"}`, text: t(`book.status.${status}`) }),
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

// ---------------------------------------------------------------------------------------------
// History: calls and inquiries in one timeline, newest first

function outcomeLabel(outcome) {
  return t(`outcome.${outcome == null ? "null" : outcome}`);
}

function categoryLabel(category) {
  const key = `cat.${category}`;
  const text = t(key);
  return text === key ? category : text;
}

function buildHistory(s) {
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
    panel.append(h("p", { class: "empty", text: s.candidates.length > 1 ? t("pick.choose") : t("hist.empty") }));
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
  if (c.caller_number) bits.push(c.caller_number);
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

// ---------------------------------------------------------------------------------------------
// Inquiry form

function updateFormHeading(s, root = document) {
  const el = $("#inquiry-heading", root);
  if (!el) return;
  el.textContent = s.record ? t("form.heading.for", { name: s.record.name }) : t("form.heading");
}

function buildInquiryForm(s) {
  const panel = $("#tpl-inquiry").content.firstElementChild.cloneNode(true);
  const form = $("#inquiry-form", panel);
  const category = $("#inquiry-category", panel);
  category.append(h("option", { value: "", "data-i18n": "form.category.choose" }));
  for (const c of CATEGORIES) category.append(h("option", { value: c, "data-i18n": `cat.${c}` }));
  const options = $("#relationship-options", panel);
  for (const [ja, en] of RELATIONSHIPS) options.append(h("option", { value: ja, label: lang() === "en" ? en : null }));

  const note = $("#inquiry-note", panel);
  const relationship = $("#inquiry-relationship", panel);
  const followUp = $("#inquiry-follow-up", panel);
  const self = $("#inquiry-who-self", panel);
  const proxy = $("#inquiry-who-proxy", panel);

  // Restore the draft.
  category.value = s.draft.category;
  note.value = s.draft.note;
  relationship.value = s.draft.relationship;
  followUp.checked = s.draft.follow_up;
  (s.draft.caller_kind === "proxy" ? proxy : self).checked = true;
  $("#inquiry-relationship-field", panel).hidden = s.draft.caller_kind !== "proxy";

  const read = (event) => {
    const before = isDirty(s);
    s.draft = {
      category: category.value,
      note: note.value,
      caller_kind: proxy.checked ? "proxy" : "self",
      relationship: relationship.value,
      follow_up: followUp.checked,
    };
    $("#inquiry-relationship-field", panel).hidden = s.draft.caller_kind !== "proxy";
    const field = event && event.target && event.target.name;
    if (s.formError && (s.formError.field === field || s.formError.field === "_")) {
      s.formError = null;
      showFormError(panel, null);
    }
    if (isDirty(s) !== before) renderSessions();
  };
  form.addEventListener("input", read);
  form.addEventListener("change", (event) => {
    read(event);
    if (event.target === proxy && proxy.checked) relationship.focus();
  });

  // Enter saves, Shift+Enter starts a new line; never while the IME is still converting.
  note.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    form.requestSubmit();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitInquiry(s, panel);
  });

  showFormError(panel, s.formError);
  setSaving(panel, s.saving);
  return panel;
}

function showFormError(panel, error) {
  for (const el of $$("[data-field-error]", panel)) {
    const mine = error && (error.field === el.dataset.fieldError || (el.dataset.fieldError === "_" && !fieldElement(panel, error.field)));
    el.textContent = mine ? error.message : "";
    el.hidden = !mine;
  }
  for (const name of ["category", "note", "relationship"]) {
    const input = fieldElement(panel, name);
    input.setAttribute("aria-invalid", String(Boolean(error && error.field === name)));
  }
}

function fieldElement(panel, field) {
  const sel = {
    category: "#inquiry-category",
    note: "#inquiry-note",
    relationship: "#inquiry-relationship",
    caller_kind: "#inquiry-who-self",
    follow_up: "#inquiry-follow-up",
  }[field];
  return sel ? $(sel, panel) : null;
}

function setSaving(panel, saving) {
  const button = $("#inquiry-submit", panel);
  button.disabled = saving;
  button.textContent = saving ? t("form.saving") : t("form.submit");
  $("#inquiry-form", panel).setAttribute("aria-busy", String(saving));
}

function failForm(s, panel, field, message) {
  s.formError = { field, message };
  if (!panel.isConnected) return;
  if (field === "relationship") $("#inquiry-relationship-field", panel).hidden = false;
  showFormError(panel, s.formError);
  const input = fieldElement(panel, field);
  (input || $("#inquiry-submit", panel)).focus();
}

async function submitInquiry(s, panel) {
  if (s.saving) return;
  const d = s.draft;
  if (!s.record) return failForm(s, panel, "_", s.candidates.length > 1 ? t("pick.choose") : t("form.err.resident"));
  if (!d.category) return failForm(s, panel, "category", t("form.err.category"));
  if (d.caller_kind === "proxy" && !d.relationship.trim()) return failForm(s, panel, "relationship", t("form.err.relationship"));

  const body = {
    resident_id: s.record.id,
    category: d.category,
    note: d.note.trim(),
    follow_up: Boolean(d.follow_up),
    caller_kind: d.caller_kind,
    relationship: d.caller_kind === "proxy" ? d.relationship.trim() : "",
  };
  if (s.call) body.call_id = s.call.id;
  const record = s.record;

  s.saving = true;
  s.formError = null;
  showFormError(panel, null);
  setSaving(panel, true);
  $("#inquiry-status", panel).textContent = "";
  try {
    const r = await api("POST", "/api/inquiries", body);
    if (r.ok) {
      const saved = {
        resident_id: record.id,
        call_id: body.call_id ?? null,
        user_id: state.user && state.user.id,
        username: state.user && state.user.username,
        created_at: new Date().toISOString(),
        ...body,
        ...(r.data && typeof r.data === "object" ? r.data : {}),
      };
      record.inquiries = [saved, ...(record.inquiries || [])];
      if (saved.id != null) s.savedIds.add(saved.id);
      s.draft = newDraft();
      s.confirmDismiss = false;
      if (panel.isConnected) {
        const form = $("#inquiry-form", panel);
        form.reset();
        $("#inquiry-who-self", panel).checked = true;
        $("#inquiry-relationship-field", panel).hidden = true;
        $("#inquiry-status", panel).textContent = t("form.saved");
        setTimeout(() => {
          const status = $("#inquiry-status", panel);
          if (status && status.textContent === t("form.saved")) status.textContent = "";
        }, 4000);
        if (s.histFilter === "call") s.histFilter = "all";
        $("#col-history").replaceChildren(buildHistory(s));
        renderBanner(s);
        $("#inquiry-category", panel).focus();
      }
      renderSessions();
    } else if (r.status === 422 || r.status === 400 || r.status === 409) {
      failForm(s, panel, (r.data && r.data.field) || "_", errorText(r));
    } else {
      failForm(s, panel, "_", t("form.err.generic", { msg: errorText(r) }));
    }
  } catch (e) {
    if (!(e instanceof Unauthorized)) failForm(s, panel, "_", t("form.err.generic", { msg: t("err.network") }));
    else s.formError = { field: "_", message: t("err.session") };
  } finally {
    s.saving = false;
    if (panel.isConnected) setSaving(panel, false);
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

function bindChrome() {
  $("#login-form").addEventListener("submit", submitLogin);
  $("#logout").addEventListener("click", logout);
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "ja" ? "en" : "ja");
    const toggle = $("#lang-toggle");
    toggle.lang = lang() === "ja" ? "en" : "ja";
    applyI18n();
    if (state.user) {
      renderChrome();
      renderWorkspace();
    } else {
      document.title = `${t("login.heading")} | 窓口 madoguchi`;
    }
  });
  $("#lang-toggle").lang = lang() === "ja" ? "en" : "ja";

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return;
    const s = activeSession();
    if (!s) return;
    if (s.pickOpen && s.record) {
      event.preventDefault();
      closePickList(s);
    } else if (s.pickOpen && s.candidates.length > 1) {
      event.preventDefault();
      closePickList(s);
    } else if (s.searchOpen && (s.record || s.candidates.length > 0)) {
      event.preventDefault();
      s.searchOpen = false;
      refreshResident(s);
      $("#search-other")?.focus();
    } else if (s.confirmDismiss) {
      s.confirmDismiss = false;
      renderBanner(s);
    }
  });

  window.addEventListener("beforeunload", (event) => {
    if (state.sessions.some(isDirty) && !navigator.webdriver) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  setInterval(tick, 1000);
}

boot();
