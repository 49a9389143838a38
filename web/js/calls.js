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
import { callEndedHere, deskAway } from "./desk.js";
import { $, isTyping } from "./dom.js";
import { t } from "./i18n.js";
import { normaliseRecord } from "./resident.js";
import { activeSession, isDirty, newSession, phaseOf, sessionForCall, state, trustedTime, waitingSessions } from "./state.js";
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
export function onHello(msg, { resync: gap }) {
  // Screens brought back from before a reload are reconciled like screens after a gap.
  const resync = gap || state.restored;
  state.restored = false;
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
  const s = newSession({ call, candidates, lookup });
  choosePopDefault(s);
  // On a break or in after-call work the agent is not taking calls on this screen yet.
  const busy = workspaceBusy() || deskAway();
  // Call screens nobody needs any more make way for the new call; walk-ins stay as tabs.
  const active = activeSession();
  state.sessions = state.sessions.filter(
    (x) => (busy && x === active) || !x.call || isDirty(x) || x.phase === "ringing" || x.phase === "talking",
  );
  state.sessions.push(s);
  if (busy) {
    // The agent is working: the call waits beside the work as a tab, the caret stays put.
    s.unseen = true;
    renderSessions();
    const shown = activeSession();
    if (shown) renderBanner(shown);
    updateTitle();
    cue(s);
    return;
  }
  state.activeKey = s.key;
  renderWorkspace();
  focusForPop(s);
  announce(s);
}

/**
 * Would a new screen take something from the agent? Their caret in a field, a note or a search
 * started, a call they are talking on, a walk-in they have open. A screen still ringing that
 * they have not touched, an ended call with nothing unsaved, and the idle screen make way.
 */
function workspaceBusy() {
  const el = document.activeElement;
  const text = el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)));
  if (text && el.value !== "") return true;
  const a = activeSession();
  if (!a) return false;
  if (isDirty(a) || a.phase === "talking" || a.phase === "lookup") return true;
  return a.searchOpen && searchStarted(a.search);
}

/** A call queued beside the work: say so to screen readers, and chime when the agent asked. */
function cue(s) {
  const el = $("#announcer");
  if (el) el.textContent = `${t("queue.new", { n: waitingSessions().length })} ${callerNumberText(s.call)}`;
  chime();
}

let audio = null;

/** Two short tones, only when the agent switched sound on (remembered in localStorage). */
export function chime() {
  try {
    if (localStorage.getItem("madoguchi.sound") !== "on") return;
    audio = audio || new AudioContext();
    const at = audio.currentTime;
    for (const [i, freq] of [880, 660].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, at + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.001, at + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(at + i * 0.18);
      osc.stop(at + i * 0.18 + 0.17);
    }
  } catch {
    // no sound on this PC: the tab still shows
  }
}

/**
 * Where the caret is on a screen, so coming back to it puts it there again. Kept as the agent
 * leaves a field (a click on a tab moves the focus to the tab before the switch) and at the
 * switch itself (F2 from inside a field).
 */
export function rememberCaret(s, el) {
  if (!s || !el || !el.id || !el.closest || !el.closest(`[data-session-key="${CSS.escape(s.key)}"]`)) return;
  s.focus = { id: el.id, start: el.selectionStart ?? null, end: el.selectionEnd ?? null };
}

/** The focusout listener: the screen a field belongs to is named on its section. */
export function caretLeaving(event) {
  const view = event.target && event.target.closest && event.target.closest("[data-session-key]");
  if (!view) return;
  const s = state.sessions.find((x) => x.key === view.dataset.sessionKey);
  if (s && event.target.isConnected) rememberCaret(s, event.target);
}

/**
 * Show another screen, remembering where the caret was on this one so switching back loses
 * nothing. Without a key: the call that has waited longest, else the next tab in turn.
 */
export function switchTo(key = null) {
  const current = activeSession();
  let next = key ? state.sessions.find((x) => x.key === key) : waitingSessions()[0];
  if (!next && !key && state.sessions.length > 0) {
    const i = state.sessions.indexOf(current);
    next = state.sessions[(i + 1) % state.sessions.length];
  }
  if (!next || next === current) return;
  if (current) rememberCaret(current, document.activeElement);
  next.unseen = false;
  state.activeKey = next.key;
  renderWorkspace();
  const back = next.focus && document.getElementById(next.focus.id);
  if (back) {
    back.focus();
    if (next.focus.start != null && typeof back.setSelectionRange === "function") {
      try {
        back.setSelectionRange(next.focus.start, next.focus.end);
      } catch {
        // not a text field
      }
    }
  } else if (next.call) {
    focusForPop(next);
  } else {
    $("#resident-card")?.focus({ preventScroll: true });
  }
  announce(next);
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
      // A call talked on here: the server starts after-call work.
      if (s.phase === "talking") callEndedHere();
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
