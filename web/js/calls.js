// Calls on this agent's extension: pops, the record that follows a pop, call updates, and the
// resume after a reconnect.
//
// Server messages handled here (each also carries `seq`):
//   hello             {"type":"hello","epoch","gap","user","extension","live_calls":[{call, candidates, lookup?}]}
//   screen_pop        {"type":"screen_pop","call":{…,"state":"ringing"|"talking"},"candidates":[…],"lookup"?}
//   candidates_update {"type":"candidates_update","call":{…},"candidates":[…],"lookup":"ok"|"failed"}
//   call_update       {"type":"call_update","call":{…},"event":"answered_here"|"answered_elsewhere"|"ended",…}
// A pop whose ledger lookup did not finish in time goes out with "lookup":"pending" and no
// candidates; a candidates_update then brings them ("ok"), or says they will not come ("failed").

import { callerNumberText, renderBanner } from "./banner.js";
import { $, isTyping } from "./dom.js";
import { t } from "./i18n.js";
import { normaliseRecord } from "./resident.js";
import { isDirty, newSession, phaseOf, sessionForCall, state, trustedTime } from "./state.js";
import { refreshResident, renderChrome, renderSessions, renderWorkspace, updateTitle } from "./workspace.js";

const LOOKUPS = ["ok", "pending", "failed"];

function lookupOf(msg) {
  return LOOKUPS.includes(msg.lookup) ? msg.lookup : "ok";
}

function candidatesOf(msg) {
  return Array.isArray(msg.candidates) ? msg.candidates.filter(Boolean).map(normaliseRecord) : [];
}

/**
 * The first message of every connection. It lists the calls ringing or talking on this extension
 * right now: a page opened while its phone rings shows that call, and so does a page that missed
 * the pop while it was away. After a gap (the server could not replay what this page missed, or
 * it restarted) the list is the truth: a call shown as ringing or talking that is not on it has
 * ended meanwhile.
 */
export function onHello(msg, { resync }) {
  if (msg.user) state.user = { ...state.user, ...msg.user };
  if (msg.extension) state.extension = String(msg.extension);
  renderChrome();
  if (!Array.isArray(msg.live_calls)) return; // a server that does not list them: nothing to reconcile
  const live = msg.live_calls.filter((c) => c && c.call && c.call.id != null);
  if (resync) {
    const liveIds = new Set(live.map((c) => String(c.call.id)));
    for (const s of state.sessions) {
      if (s.call && (s.phase === "ringing" || s.phase === "talking") && !liveIds.has(String(s.call.id))) {
        endedUnseen(s);
      }
    }
  }
  for (const entry of live) onScreenPop(entry, { reopen: true });
}

/** The call ended while this page could not hear it: say so, without inventing an outcome. */
function endedUnseen(s) {
  s.phase = "ended";
  s.endedAt = Date.now();
  s.endedUnseen = true;
  s.outcome = null;
  showPhase(s);
}

/**
 * A pop (live or replayed), or a live call listed in a hello. `reopen`: show the call even if
 * its screen was closed earlier, since the server says it is ringing or talking here now.
 */
export function onScreenPop(msg, { reopen = false } = {}) {
  const call = msg.call;
  if (!call || call.id == null) return;
  const lookup = lookupOf(msg);
  const candidates = candidatesOf(msg);
  const existing = sessionForCall(call.id);
  if (existing) {
    // A replay or a hello after reconnecting: refresh, keep what the agent chose and typed.
    existing.call = { ...existing.call, ...call };
    const answered = advancePhase(existing, call);
    const found = applyLookup(existing, candidates, lookup);
    if (answered) showPhase(existing);
    if (found) showLookup(existing);
    return;
  }
  if (!reopen && state.seenCalls.has(String(call.id))) return;
  state.seenCalls.add(String(call.id));
  // Screens nobody needs any more make way for the new call.
  state.sessions = state.sessions.filter(
    (s) => isDirty(s) || s.phase === "ringing" || s.phase === "talking",
  );
  const s = newSession({ call, candidates, lookup });
  choosePopDefault(s);
  state.sessions.push(s);
  state.activeKey = s.key;
  const typing = isTyping();
  renderWorkspace();
  if (!typing) focusForPop(s);
  announce(s);
}

/** The caller's record, after a pop that went out without it. */
export function onCandidatesUpdate(msg) {
  const call = msg.call;
  if (!call || call.id == null) return;
  const s = sessionForCall(call.id);
  if (!s) {
    // The pop never reached this page: show the call now (a screen closed earlier stays closed).
    onScreenPop(msg);
    return;
  }
  s.call = { ...s.call, ...call };
  if (applyLookup(s, candidatesOf(msg), lookupOf(msg))) showLookup(s);
}

/** Ringing → talking when a later, better-informed message says so; never backwards. */
function advancePhase(s, call) {
  if (s.phase !== "ringing" || phaseOf(call.state) !== "talking") return false;
  s.phase = "talking";
  s.answeredAt = trustedTime(call.answered_at, Date.now());
  return true;
}

/**
 * Takes the outcome of the ledger lookup into a screen; false when it tells nothing new. What
 * the agent already did wins: a record opened by hand stays open, a search being typed stays.
 */
function applyLookup(s, candidates, lookup) {
  if (lookup === "pending" || s.lookup === lookup) {
    // Nothing new, except a replayed pop that carries candidates this screen still lacks.
    if (lookup !== "ok" || s.candidates.length > 0 || candidates.length === 0) return false;
  }
  if (s.lookup === "ok" && s.candidates.length > 0) return false; // known already; only forward
  s.lookup = lookup;
  if (lookup === "failed") {
    if (!s.record && !s.loading) s.searchOpen = true;
    return true;
  }
  s.candidates = candidates;
  if (s.record || s.loading) {
    s.pickOpen = false;
    return true;
  }
  s.searchOpen = candidates.length === 0 || searchStarted(s.search);
  choosePopDefault(s);
  return true;
}

function searchStarted(search) {
  return Boolean(search.ticket || search.kana || search.birth || search.phone || search.results);
}

/** Redraws the record side of a screen after its lookup changed, keeping the agent's caret. */
function showLookup(s) {
  if (s.key !== state.activeKey) {
    renderSessions();
    return;
  }
  const typing = isTyping();
  const focused = document.activeElement && document.activeElement.id;
  refreshResident(s);
  if (typing && focused && !document.activeElement?.id) document.getElementById(focused)?.focus();
  else if (!typing) focusForPop(s);
  announce(s);
}

/** Tell screen-reader users what the banner now says (the banner itself is rebuilt). */
function announce(s) {
  const el = $("#announcer");
  if (!el || !s || !s.call) return;
  let who = "";
  if (s.record) who = s.record.name;
  else if (s.candidates.length > 1) who = t("pick.summary", { n: s.candidates.length });
  else if (s.lookup === "pending") who = t("lookup.pending");
  else if (s.lookup === "failed") who = t("lookup.failed");
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
  else if (s.searchOpen && !s.record) $("#search-ticket")?.focus();
  else if (s.record) $("#resident-card")?.focus({ preventScroll: true });
  else $("#lookup-pending")?.focus({ preventScroll: true });
}

export function onCallUpdate(msg) {
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
  showPhase(s);
}

/** Redraws what shows a screen's phase: its banner, its tab, the page title. */
function showPhase(s) {
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

export function dismissSession(s) {
  if (s.saving) return; // the save in flight decides whether anything is left unsaved
  if (isDirty(s) && !s.confirmDismiss) {
    s.confirmDismiss = true;
    renderBanner(s);
    $("#call-dismiss-confirm")?.focus();
    return;
  }
  removeSession(s);
}
