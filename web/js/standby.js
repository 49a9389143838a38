// 待機リスト from the agent screen: a resident who would come earlier than their booking goes on
// standby at the booking's venue (POST /api/standby), so venue staff can call them when open
// vials would otherwise go to waste. The button sits on each booked dose of the record.
//
// Hooks for tests: [data-testid=booking-standby] (data-booking-id, data-state=done|refused|error).

import { api, errorText } from "./api.js";
import { h, toast } from "./dom.js";
import { lang } from "./i18n.js";

const TEXT = {
  ja: { ask: "早い日を希望", done: "待機リスト登録済", title: "空きが出たら会場から電話します（待機リストに登録）" },
  en: { ask: "Wants earlier", done: "On standby", title: "The venue calls if a dose is left over (put on the standby list)" },
};

function tr(key) {
  return (TEXT[lang()] || TEXT.ja)[key];
}

/** The standby button for a live booking `b` of resident `residentId`. */
export function standbyButton(residentId, b) {
  const button = h("button", {
    type: "button",
    class: "btn btn-quiet btn-small booking-standby",
    "data-testid": "booking-standby",
    "data-booking-id": b.id,
    title: tr("title"),
    text: tr("ask"),
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    const r = await api("POST", "/api/standby", { resident_id: residentId, venue_id: b.venue_id });
    if (r.ok) {
      button.dataset.state = "done";
      button.textContent = tr("done");
      toast(tr("done"));
    } else {
      button.dataset.state = r.status === 409 ? "refused" : "error";
      button.disabled = r.status === 409;
      if (r.status === 409) button.textContent = tr("done");
      toast(errorText(r));
    }
  });
  return button;
}
