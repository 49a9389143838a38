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
};

export function newSearch() {
  return { ticket: "", kana: "", birth: "", phone: "", results: null, busy: false, error: null };
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
    confirmDismiss: false,
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

/** The agent has started an inquiry here: keep this screen even if the call goes elsewhere. */
export function isDirty(s) {
  const d = s.draft;
  return Boolean(
    d.note.trim() || d.category || d.relationship.trim() || d.follow_up || d.caller_kind !== "self",
  );
}
