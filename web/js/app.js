// madoguchi 窓口: the call-center agent screen (the entry module, loaded by index.html).
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
//   search:    #search-form #search-ticket #search-kana #search-era #search-birth
//              [data-testid=birth-readback] (data-birth-iso) #search-phone #search-submit
//              #search-clear #search-results [data-testid=search-result] (one per match,
//              data-resident-id) #search-error
//   a call:    #pop (present while a call's screen is shown; data-call-id, data-phase=
//              ringing|talking|ended|elsewhere); #lookup instead for a record opened without a call
//              #call-banner [data-testid=call-state] [data-testid=caller-number] #call-dismiss
//              #call-banner [data-testid=call-ended-unseen] (ended while the page was disconnected)
//              #sessions [data-testid=session-tab] (when several screens are open; data-phase,
//              data-call-id, data-unseen="true" on a call that popped beside the work)
//              [data-testid=calls-waiting] (banner: data-count calls waiting; F2 / Alt+N)
//              [data-testid=sessions-waiting] #sound-toggle
//   state:     #desk (data-state=ready|break|acw) #agent-state (select) #agent-break-reason
//              [data-testid=agent-state-timer] (after-call work left, m:ss)
//   household: #pick-list [data-testid=pick-item] (one per household member, data-resident-id,
//              aria-current="true" on the one shown) [data-testid=pick-chip] #pick-open #pick-close
//   keep:      #keep-number (button: add the calling number to the record) #keep-number-kind
//   record:    #resident-card [data-testid=resident-name] [data-testid=resident-kana]
//              [data-testid=resident-age] [data-testid=resident-birth] [data-testid=resident-wareki]
//              [data-testid=resident-ticket] [data-testid=resident-transport] (only when 送迎要)
//              [data-testid=resident-intent] #search-other
//   bookings:  #bookings [data-testid=booking-item] [data-testid=bookings-empty]
//              [data-testid=booking-change] (opens the rebooking panel, rebook.js: #rebook …)
//   history:   #history [data-testid=history-item] (one per row, newest first, data-kind=
//              inquiry|call; an inquiry row contains its note text) [data-testid=history-filter]
//              [data-testid=history-more] [data-testid=follow-ups] (data-count)
//              [data-testid=follow-up-item]
//   inquiry:   #inquiry-form #inquiry-category #inquiry-note #inquiry-who-self #inquiry-who-proxy
//              #inquiry-relationship #inquiry-follow-up #inquiry-submit #inquiry-status
//              #inquiry-error; field errors: [data-field-error=category|note|relationship|…]
//   other:     #toast (quiet errors)
//
//   lookup:    [data-testid=lookup-pending] while the caller's record is still being looked up,
//              [data-testid=lookup-failed] when that lookup failed
//   other:     #toast (quiet errors)
//
// Server calls: GET /api/me, POST /api/session, DELETE /api/session,
// GET /ws[?since=SEQ&epoch=EPOCH], GET /api/residents?ticket=|kana=&birth_date=|phone=,
// GET /api/residents/{id}, POST /api/calls/{call id}/resident, POST /api/inquiries,
// POST /api/residents/{id}/phones, GET|POST /api/agent/state.
//
// Modules: app.js (this: login, wiring), live.js (the /ws connection), api.js (fetch),
// state.js (screens and drafts), calls.js (pops, call updates, resume), workspace.js (page
// layout, tabs), banner.js (the call banner), resident.js (record, household, bookings),
// search.js, history.js, inquiry.js, desk.js (the agent's state), dom.js, i18n.js, format.js. Every screen to come (supervisor,
// venue, planner) reuses live.js, api.js, dom.js, i18n.js and format.js.

import { api, errorText, onUnauthorized } from "./api.js";
import { renderBanner, tick } from "./banner.js";
import { caretLeaving, chime, onCallUpdate, onCandidatesUpdate, onHello, onScreenPop, switchTo } from "./calls.js";
import { applyDesk, bindDesk, loadDesk, renderDesk, resetDesk } from "./desk.js";
import { bindCallbacks, loadCallbacks, renderCallbacks } from "./callbacks.js";
import { onDialResult, onPauseResult } from "./dialer.js";
import { $ } from "./dom.js";
import { applyI18n, lang, setLang, t } from "./i18n.js";
import { LiveConnection } from "./live.js";
import { closeRebook } from "./rebook.js";
import { closePickList, openResident } from "./resident.js";
import { activeSession, forgetPersisted, isDirty, newSearch, persist, restorePersisted, state } from "./state.js";
import { refreshResident, renderChrome, renderWorkspace, setConn } from "./workspace.js";

// ---------------------------------------------------------------------------------------------
// Login

async function boot() {
  onUnauthorized(sessionExpired);
  bindChrome();
  applyI18n();
  try {
    const r = await api("GET", "/api/me");
    if (r.ok && r.data && r.data.user) startApp(r.data.user);
    else showLogin();
  } catch {
    showLogin("err.network");
  } finally {
    $("#boot").remove();
  }
}

/** The login form's error as a message key, so switching the language translates it too. */
let loginError = null;

function setLoginError(key, raw = "") {
  loginError = key ? { key, raw } : null;
  const err = $("#login-error");
  err.textContent = key ? (key === "raw" ? raw : t(key)) : "";
  err.hidden = !key;
}

function showLogin(messageKey = null) {
  $("#login-view").hidden = false;
  $("#app-view").hidden = true;
  $("#agent").hidden = true;
  $("#conn-state").hidden = true;
  $("#logout").hidden = true;
  $("#sound-toggle").hidden = true;
  $("#desk").hidden = true;
  setLoginError(messageKey);
  document.title = `${t("login.heading")} | 窓口 madoguchi`;
  const user = $("#login-username");
  (user.value ? $("#login-password") : user).focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  if (!username || !password) {
    setLoginError("login.required");
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
      setLoginError(null);
      startApp(r.data.user);
    } else {
      if (r.status === 401 || r.status === 403) setLoginError("login.failed");
      else if (r.status === 429) setLoginError("login.locked");
      else setLoginError("raw", errorText(r));
      $("#login-password").select();
    }
  } catch {
    setLoginError("err.network");
  } finally {
    button.disabled = false;
    button.textContent = t("login.submit");
  }
}

function startApp(user) {
  // Venue staff work on their own screen (venue.html).
  if (user.role === "venue") {
    location.replace("/assets/venue.html");
    return;
  }
  // Same person signing back in after an expired session keeps the open screens and drafts.
  if (!state.user || state.user.id !== user.id) {
    state.sessions = [];
    state.activeKey = null;
    state.idleSearch = newSearch();
    state.seenCalls = new Set();
    live.forget();
    // A reload of this tab: the screens, drafts and the one shown come back.
    restorePersisted(user);
  }
  const reloading = state.sessions.filter((s) => s.chosenId != null && !s.record);
  state.user = user;
  state.extension = user.extension || "";
  if (document.activeElement && document.activeElement.closest("#login-view")) document.activeElement.blur();
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#agent").hidden = false;
  $("#conn-state").hidden = false;
  $("#logout").hidden = false;
  $("#sound-toggle").hidden = false;
  showSound();
  renderChrome();
  renderDesk();
  loadDesk();
  loadCallbacks();
  renderWorkspace();
  // A record that was still loading when the page went away: load it again.
  for (const s of reloading) openResident(s, { id: s.chosenId });
  live.start();
}

/** A chime for a call that waits beside the work: off unless the agent turns it on. */
function soundOn() {
  try {
    return localStorage.getItem("madoguchi.sound") === "on";
  } catch {
    return false;
  }
}

function showSound() {
  const button = $("#sound-toggle");
  button.setAttribute("aria-pressed", String(soundOn()));
  button.textContent = t(soundOn() ? "sound.on" : "sound.off");
}

function toggleSound() {
  try {
    localStorage.setItem("madoguchi.sound", soundOn() ? "off" : "on");
  } catch {
    return;
  }
  showSound();
  chime(); // heard once now: the agent knows what to listen for
}

function sessionExpired() {
  closeRebook();
  live.stop();
  showLogin("err.session");
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
  closeRebook();
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
  resetDesk();
  $("#callbacks").hidden = true;
  $("#callbacks-toggle").hidden = true;
  live.forget();
  forgetPersisted();
  $("#workspace").replaceChildren();
  showLogin();
}

// ---------------------------------------------------------------------------------------------
// Live connection: the agent's topic on /ws

const live = new LiveConnection({
  onMessage,
  onStatus: setConn,
  onExpired: sessionExpired,
});

function onMessage(msg, { resync }) {
  switch (msg.type) {
    case "hello":
      onHello(msg, { resync });
      applyDesk(msg.agent_state);
      break;
    case "agent_state":
      applyDesk(msg);
      break;
    case "screen_pop":
      onScreenPop(msg);
      break;
    case "candidates_update":
      onCandidatesUpdate(msg);
      break;
    case "call_update":
      onCallUpdate(msg);
      break;
    case "dial_result":
      onDialResult(msg);
      break;
    case "pause_result":
      onPauseResult(msg);
      break;
    default:
      break; // pong and message types this screen does not use
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

function bindChrome() {
  $("#login-form").addEventListener("submit", submitLogin);
  $("#logout").addEventListener("click", logout);
  $("#sound-toggle").addEventListener("click", toggleSound);
  bindDesk();
  bindCallbacks();
  $("#workspace").addEventListener("focusout", caretLeaving);
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "ja" ? "en" : "ja");
    const toggle = $("#lang-toggle");
    toggle.lang = lang() === "ja" ? "en" : "ja";
    applyI18n();
    if (state.user) {
      showSound();
      renderChrome();
      renderDesk();
      renderCallbacks();
      renderWorkspace();
    } else {
      document.title = `${t("login.heading")} | 窓口 madoguchi`;
      if (loginError) setLoginError(loginError.key, loginError.raw);
      if (!$("#login-submit").disabled) $("#login-submit").textContent = t("login.submit");
    }
  });
  $("#lang-toggle").lang = lang() === "ja" ? "en" : "ja";

  document.addEventListener("keydown", (event) => {
    if (!state.user || event.isComposing) return;
    // F2 or Alt+N: the call that waits beside the work (else the next open screen).
    const altN = event.altKey && !event.ctrlKey && !event.metaKey && (event.code === "KeyN" || event.key === "n" || event.key === "N");
    if (event.key === "F2" || altN) {
      event.preventDefault();
      switchTo();
      return;
    }
    if (event.key !== "Escape") return;
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

  window.addEventListener("pagehide", () => persist({ now: true }));
  window.addEventListener("beforeunload", (event) => {
    if (state.sessions.some(isDirty) && !navigator.webdriver) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  setInterval(tick, 1000);
}

boot();
