import { dismissSession, switchTo } from "./calls.js";
import { $, h, icon } from "./dom.js";
import * as fmt from "./format.js";
import { outcomeLabel } from "./history.js";
import { has, t } from "./i18n.js";
import { activeSession, waitingSessions } from "./state.js";
import { refreshResident } from "./workspace.js";

// The call banner at the top of a screen: the call's state, the caller's number, how long it
// has waited or talked, and the actions on the screen itself (search another person, close).

export function renderBanner(s) {
  const old = $("#call-banner");
  if (old) old.replaceWith(buildBanner(s));
}

function bannerTiming(s) {
  const now = Date.now();
  // Ended while the page was away: when, it cannot tell, so it shows no running time.
  if (!s.call || s.endedUnseen) return null;
  if (s.answeredAt && s.phase !== "ringing") {
    const end = s.endedAt || now;
    return { label: t("call.talk"), seconds: (end - s.answeredAt) / 1000, live: !s.endedAt };
  }
  const end = s.endedAt || now;
  return { label: t("call.waited"), seconds: (end - s.startedAt) / 1000, live: !s.endedAt && s.phase === "ringing" };
}

/** The caller gave no number (非通知): nothing to look up, and nothing to call back. */
export function isWithheld(call) {
  const n = ((call && call.caller_number) || "").trim();
  return !n || /^(anonymous|unknown|withheld|private|restricted)$/i.test(n);
}

export function callerNumberText(call) {
  if (isWithheld(call)) return t("call.withheld");
  return fmt.formatPhone(call.caller_number);
}

/** A PBX queue's name as the agent reads it (ワクチン接種 for `vaccine`), else as configured. */
export function queueLabel(queue) {
  return has(`queue.${queue}`) ? t(`queue.${queue}`) : queue;
}

export function buildBanner(s) {
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
    if (s.call.queue) facts.append(h("div", null, h("dt", { text: t("call.queue") }), h("dd", { text: queueLabel(s.call.queue) })));
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
      facts.append(h("div", null, h("dt", { text: t("call.result") }), h("dd", { text: outcomeLabel(s.outcome) })));
    }
    if (s.phase === "ended" && s.endedUnseen) {
      facts.append(h("div", { class: "banner-note" }, h("dd", { "data-testid": "call-ended-unseen", text: t("call.ended.unseen") })));
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
  const waiting = waitingSessions();
  if (waiting.length > 0) {
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-waiting",
          id: "calls-waiting",
          "data-testid": "calls-waiting",
          "data-count": waiting.length,
          "aria-keyshortcuts": "F2 Alt+N",
          onclick: () => switchTo(),
        },
        h("span", { class: "state-dot", "aria-hidden": "true" }),
        t("queue.waiting", { n: waiting.length }),
        h("kbd", { text: "F2" }),
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

export function tick() {
  const s = activeSession();
  const el = $("#call-timer");
  if (!s || !el) return;
  const timing = bannerTiming(s);
  if (timing && timing.live) el.textContent = fmt.formatDuration(timing.seconds);
}
