// The agent screen's state: the open screens (one per call, plus records opened by search) and
// their drafts. Render functions rebuild the page from it; typed text is written here on every
// keystroke, so a rebuild never loses a draft.

export const state = {
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
  /** Screens came back from sessionStorage: the first hello reconciles them like a resync. */
  restored: false,
  /** The agent's own state as the server keeps it: ready, break (with a reason) or acw. */
  desk: { state: "ready", reason: "", since: null, until: null },
};

export function newSearch() {
  // 昭和 by default: most who phone about their birth date were born in it.
  return { ticket: "", kana: "", birth: "", era: "showa", phone: "", results: null, busy: false, error: null };
}

export function newDraft() {
  return { category: "", note: "", caller_kind: "self", relationship: "", follow_up: false };
}

/**
 * One screen. `lookup` is how far the server got finding the caller in the ledger: "ok" (the
 * candidates are here), "pending" (they follow in a candidates_update) or "failed" (they will
 * not come: the agent searches by hand).
 */
export function newSession({ call = null, candidates = [], lookup = "ok" } = {}) {
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
    /** Ended while this screen was disconnected: the outcome is not known here. */
    endedUnseen: false,
    candidates,
    lookup,
    pickOpen: candidates.length > 1,
    chosenId: null,
    record: null,
    loading: false,
    loadError: "",
    searchOpen: Boolean(call) && candidates.length === 0 && lookup !== "pending",
    search: newSearch(),
    draft: newDraft(),
    formError: null,
    saving: false,
    savedIds: new Set(),
    histFilter: "all",
    histOpen: false,
    confirmDismiss: false,
    /** Arrived while the agent worked on another screen and not looked at yet. */
    unseen: false,
    /** Where the caret was when the agent switched away: {id, start, end}. */
    focus: null,
    /** The kind chosen for keeping the calling number (home, mobile, family), and whether that
     * request is on its way. */
    keepKind: null,
    keeping: false,
  };
}

export function phaseOf(callState) {
  if (callState === "talking" || callState === "answered" || callState === "up") return "talking";
  if (callState === "ended") return "ended";
  return "ringing";
}

/** A server timestamp in ms, unless the agent PC's clock disagrees too much to use it. */
export function trustedTime(iso, fallback) {
  const ms = Date.parse(iso || "");
  if (Number.isNaN(ms) || ms > fallback + 5000 || fallback - ms > 6 * 3600 * 1000) return fallback;
  return ms;
}

export function activeSession() {
  return state.sessions.find((s) => s.key === state.activeKey) || null;
}

export function sessionForCall(callId) {
  return state.sessions.find((s) => s.call && String(s.call.id) === String(callId)) || null;
}

/** Calls waiting for the agent beside the screen shown: ringing, or popped and not seen yet. */
export function waitingSessions() {
  return state.sessions.filter(
    (s) => s.key !== state.activeKey && s.call && (s.phase === "ringing" || (s.phase === "talking" && s.unseen)),
  );
}

/** The agent has started an inquiry here: keep this screen even if the call goes elsewhere. */
export function isDirty(s) {
  const d = s.draft;
  return Boolean(
    d.note.trim() || d.category || d.relationship.trim() || d.follow_up || d.caller_kind !== "self",
  );
}

// ---------------------------------------------------------------------------------------------
// Surviving a reload: the open screens, their drafts and which one is shown are kept in this
// browser tab's sessionStorage (another tab of the same agent keeps its own). A reload restores
// them before the connection's hello says which calls are still live.

const STORE_KEY = "madoguchi.desk";
let saveTimer = null;

/** Screens as plain data: Sets become arrays, transient flags (saving, loading) are dropped. */
function snapshot() {
  return {
    v: 1,
    user: state.user && state.user.id,
    activeKey: state.activeKey,
    lookupCounter: state.lookupCounter,
    seenCalls: [...state.seenCalls].slice(-200),
    idleSearch: { ...state.idleSearch, busy: false },
    sessions: state.sessions.map((s) => ({
      ...s,
      saving: false,
      loading: false,
      keeping: false,
      confirmDismiss: false,
      search: { ...s.search, busy: false },
      savedIds: [...s.savedIds],
    })),
  };
}

/** Writes the screens now (on pagehide) or soon (after a keystroke). */
export function persist({ now = false } = {}) {
  clearTimeout(saveTimer);
  const write = () => {
    try {
      if (state.user) sessionStorage.setItem(STORE_KEY, JSON.stringify(snapshot()));
    } catch {
      // storage full or refused: the screens live on in memory
    }
  };
  if (now) write();
  else saveTimer = setTimeout(write, 250);
}

export function forgetPersisted() {
  clearTimeout(saveTimer);
  try {
    sessionStorage.removeItem(STORE_KEY);
  } catch {
    // nothing kept
  }
}

/** The screens this tab had before a reload, for the same user; false when there are none. */
export function restorePersisted(user) {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
  } catch {
    saved = null;
  }
  if (!saved || saved.v !== 1 || saved.user !== user.id || !Array.isArray(saved.sessions)) return false;
  state.sessions = saved.sessions.map((s) => ({
    ...newSession({ call: s.call, candidates: s.candidates || [], lookup: s.lookup }),
    ...s,
    draft: { ...newDraft(), ...s.draft },
    search: { ...newSearch(), ...s.search },
    savedIds: new Set(s.savedIds || []),
  }));
  state.activeKey = state.sessions.some((s) => s.key === saved.activeKey) ? saved.activeKey : null;
  state.lookupCounter = Math.max(Number(saved.lookupCounter) || 0, state.lookupCounter);
  state.seenCalls = new Set(saved.seenCalls || []);
  state.idleSearch = { ...newSearch(), ...saved.idleSearch };
  state.restored = state.sessions.length > 0;
  return state.restored;
}
