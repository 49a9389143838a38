// Click-to-dial and the PBX's answers to this agent: POST /api/dial rings the agent's own phone
// first, then the number (from a resident's record or a callback entry, so the call is logged
// as outbound and linked to them). The PBX's word comes back on /ws as `dial_result`; a break's
// queue pause (QueuePause, asked by POST /api/agent/state) as `pause_result`.

import { api, errorText, Unauthorized } from "./api.js";
import { h, toast } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { state } from "./state.js";

// The PBX's answers already shown, by action id: one can arrive before the request's own 202.
const answered = new Set();

/** Dials `number`; `link` names the resident and/or the callback entry it is for. */
export async function dial(number, link = {}) {
  const body = { number: fmt.phoneKey(number) };
  if (link.residentId) body.resident_id = link.residentId;
  if (link.callbackId) body.callback_id = link.callbackId;
  try {
    const r = await api("POST", "/api/dial", body);
    if (!r.ok) toast(t("dial.failed", { msg: errorText(r) }));
    // A PBX answer that came first stays on screen.
    else if (!answered.has(r.data && r.data.action_id)) toast(t("dial.asked", { number: fmt.formatPhone(number) }));
    return r.ok;
  } catch (e) {
    if (!(e instanceof Unauthorized)) toast(t("dial.failed", { msg: t("err.network") }));
    return false;
  }
}

/** A 「電話する」 button for a number, or nothing when this login has no phone. */
export function dialButton(number, link = {}) {
  if (!state.extension || !number) return "";
  const button = h("button", {
    type: "button",
    class: "btn btn-quiet btn-dial",
    "data-testid": "dial",
    text: t("dial.button"),
    title: t("dial.title", { number: fmt.formatPhone(number) }),
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    await dial(number, link);
    setTimeout(() => {
      button.disabled = false;
    }, 3000);
  });
  return button;
}

/** `dial_result`: the agent's phone answered and the number is being called, or not. */
export function onDialResult(msg) {
  if (msg.action_id) answered.add(msg.action_id);
  toast(msg.ok ? t("dial.ok") : t("dial.refused", { msg: msg.reason || "?" }));
}

/** `pause_result`: the PBX's queues took the pause (or unpause), or refused it. */
export function onPauseResult(msg) {
  if (!msg.ok) toast(t("pause.refused", { msg: msg.reason || "?" }));
}
