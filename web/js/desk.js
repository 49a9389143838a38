// The agent's own state (受付可 / 休憩 / 後処理), kept by the server (POST /api/agent/state) so
// supervisors see it. After-call work starts by itself when a call answered here ends and
// returns to ready when its timer runs out; on a break or in after-call work a pop waits as a
// tab instead of taking the workspace (calls.js asks deskAway()).

import { api, errorText, Unauthorized } from "./api.js";
import { $, toast } from "./dom.js";
import { t } from "./i18n.js";
import { state } from "./state.js";

let timer = null;

/** On a break or in after-call work: a pop must not take the workspace. */
export function deskAway() {
  return Boolean(state.extension) && state.desk.state !== "ready";
}

/** The state as the server sent it: a `hello`'s `agent_state`, or an `agent_state` message. */
export function applyDesk(view) {
  apply(view);
}

function apply(view) {
  if (!view || !view.state) return;
  state.desk = { state: view.state, reason: view.reason || "", since: view.since || null, until: view.until || null };
  clearTimeout(timer);
  timer = null;
  if (state.desk.state === "acw" && state.desk.until) {
    // Ready again when the server's timer runs out; ask the server rather than assume.
    const wait = Math.max(0, Date.parse(state.desk.until) - Date.now()) + 250;
    timer = setTimeout(loadDesk, wait);
  }
  renderDesk();
}

/** Logged out: forget the state and its timer. */
export function resetDesk() {
  clearTimeout(timer);
  timer = null;
  state.desk = { state: "ready", reason: "", since: null, until: null };
}

/** Reads this agent's state from the server (at start, and when a call answered here ends). */
export async function loadDesk() {
  if (!state.user || !state.extension) return;
  try {
    const r = await api("GET", "/api/agent/state");
    if (r.ok) apply(r.data);
  } catch (e) {
    if (!(e instanceof Unauthorized)) toast(t("desk.failed", { msg: t("err.network") }));
  }
}

export async function setDesk(wanted, reason = "") {
  try {
    const r = await api("POST", "/api/agent/state", { state: wanted, reason: reason || null });
    if (r.ok) apply(r.data);
    else {
      toast(t("desk.failed", { msg: errorText(r) }));
      renderDesk();
    }
  } catch (e) {
    if (!(e instanceof Unauthorized)) toast(t("desk.failed", { msg: t("err.network") }));
    renderDesk();
  }
}

/** A call this agent talked on ended: the server has put them in after-call work. */
export function callEndedHere() {
  loadDesk();
}

function remaining() {
  if (state.desk.state !== "acw" || !state.desk.until) return "";
  const s = Math.max(0, Math.ceil((Date.parse(state.desk.until) - Date.now()) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Redraws the top bar's state control. */
export function renderDesk() {
  const box = $("#desk");
  if (!box) return;
  box.hidden = !state.user || !state.extension;
  box.dataset.state = state.desk.state;
  const select = $("#agent-state");
  for (const o of select.options) o.textContent = t(`desk.${o.value}`);
  select.setAttribute("aria-label", t("desk.label"));
  if (document.activeElement !== select) select.value = state.desk.state;
  const reason = $("#agent-break-reason");
  reason.hidden = state.desk.state !== "break";
  reason.placeholder = t("desk.reason");
  reason.setAttribute("aria-label", t("desk.reason"));
  if (document.activeElement !== reason) reason.value = state.desk.reason || "";
  $("#agent-state-timer").textContent = remaining();
}

export function bindDesk() {
  $("#agent-state").addEventListener("change", (e) => {
    const wanted = e.target.value;
    if (wanted === "break") {
      // The reason is asked beside the control; the break starts at once.
      setDesk("break", $("#agent-break-reason").value.trim()).then(() => $("#agent-break-reason")?.focus());
    } else {
      setDesk(wanted);
    }
  });
  const reason = $("#agent-break-reason");
  const sendReason = () => {
    if (state.desk.state === "break" && reason.value.trim() !== (state.desk.reason || "")) setDesk("break", reason.value.trim());
  };
  reason.addEventListener("change", sendReason);
  reason.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing) {
      e.preventDefault();
      sendReason();
      reason.blur();
    }
  });
  setInterval(() => {
    if (state.desk.state === "acw") $("#agent-state-timer").textContent = remaining();
  }, 1000);
}
