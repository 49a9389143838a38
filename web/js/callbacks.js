// 折り返し (callbacks) on the agent screen: the callers to call back (GET /api/callbacks),
// taken by this agent (take), called back with one click (dialer.js, linked to the entry and
// its resident), and marked done with an outcome. The list opens from the top bar.

import { api, errorText, Unauthorized } from "./api.js";
import { $, h, toast } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { state } from "./state.js";
import { dialButton } from "./dialer.js";

const OUTCOMES = ["reached", "no_answer", "voicemail", "wrong_number", "other"];
let entries = [];

async function call(method, path, body) {
  try {
    const r = await api(method, path, body);
    if (!r.ok) toast(t("cb.failed", { msg: errorText(r) }));
    return r;
  } catch (e) {
    if (!(e instanceof Unauthorized)) toast(t("cb.failed", { msg: t("err.network") }));
    return null;
  }
}

/** Reads the list and redraws it (and the count on the button). */
export async function loadCallbacks() {
  if (!state.user || !state.extension) return;
  const r = await call("GET", "/api/callbacks");
  if (r && r.ok) entries = r.data || [];
  renderCallbacks();
}

function entryView(c) {
  const mine = c.status === "taken" && state.user && c.taken_by === state.user.id;
  const li = h("li", { class: "cb-entry", "data-testid": "callback", "data-id": String(c.id), "data-status": c.status });
  li.append(
    h("span", { class: "cb-number mono", text: fmt.formatPhone(c.number) }),
    h("span", { class: "cb-meta", text: t("cb.meta", { missed: c.missed, day: c.day }) }),
    h("span", { class: "cb-status", text: t(`cb.status.${c.status}`) }),
  );
  if (c.status === "open") {
    const take = h("button", { type: "button", class: "btn btn-quiet", "data-testid": "callback-take", text: t("cb.take") });
    take.addEventListener("click", async () => {
      const r = await call("POST", `/api/callbacks/${c.id}/take`, {});
      if (r && r.ok) loadCallbacks();
    });
    li.append(take);
  }
  if (c.status === "open" || mine) {
    li.append(dialButton(c.number, { callbackId: c.id, residentId: c.resident_id }));
    const outcome = h(
      "select",
      { "data-testid": "callback-outcome", "aria-label": t("cb.outcome") },
      OUTCOMES.map((o) => h("option", { value: o, text: t(`cb.outcome.${o}`) })),
    );
    const note = h("input", { type: "text", maxlength: "1000", "data-testid": "callback-note", placeholder: t("cb.note"), "aria-label": t("cb.note") });
    const done = h("button", { type: "button", class: "btn", "data-testid": "callback-done", text: t("cb.done") });
    done.addEventListener("click", async () => {
      const r = await call("POST", `/api/callbacks/${c.id}/done`, { outcome: outcome.value, note: note.value });
      if (r && r.ok) loadCallbacks();
    });
    li.append(outcome, note, done);
  }
  return li;
}

export function renderCallbacks() {
  const button = $("#callbacks-toggle");
  const panel = $("#callbacks");
  if (!button || !panel) return;
  const can = Boolean(state.user && state.extension);
  button.hidden = !can;
  button.textContent = t("cb.button", { n: entries.length });
  const list = $("#callbacks-list");
  list.replaceChildren(...(entries.length ? entries.map(entryView) : [h("li", { class: "muted", text: t("cb.none") })]));
  $("#callbacks-title").textContent = t("cb.title");
}

export function bindCallbacks() {
  $("#callbacks-toggle").addEventListener("click", () => {
    const panel = $("#callbacks");
    panel.hidden = !panel.hidden;
    $("#callbacks-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) loadCallbacks();
  });
  $("#callbacks-close").addEventListener("click", () => {
    $("#callbacks").hidden = true;
    $("#callbacks-toggle").setAttribute("aria-expanded", "false");
  });
  // New missed calls arrive all day: the count stays roughly current.
  setInterval(loadCallbacks, 30_000);
}
