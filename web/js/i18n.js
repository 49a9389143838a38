// 表示言語: Japanese first, English switchable. The choice is remembered in localStorage.
//
// Static text in index.html carries data-i18n (text), data-i18n-placeholder,
// data-i18n-aria (aria-label) or data-i18n-title; applyI18n() fills them. Dynamic text calls t().

const STORAGE_KEY = "madoguchi.lang";

const ja = {
  "app.title": "窓口",
  "app.subtitle": "ワクチン接種コールセンター",
  "lang.toggle": "English",
  "lang.toggle.aria": "Switch to English",
  "logout": "ログアウト",
  "sound.on": "着信音 オン",
  "sound.off": "着信音 オフ",
  "ext": "内線 {ext}",
  "conn.online": "接続中",
  "conn.reconnecting": "再接続中",
  "conn.offline": "未接続",
  "conn.connecting": "接続しています",

  "login.heading": "ログイン",
  "login.lead": "職員アカウントでログインしてください。",
  "login.username": "ユーザー名",
  "login.password": "パスワード",
  "login.submit": "ログイン",
  "login.busy": "確認しています…",
  "login.failed": "ユーザー名またはパスワードが違います。",
  "login.required": "ユーザー名とパスワードを入力してください。",
  "login.locked": "ログインの失敗が続いたため、しばらくお待ちください（10分）。",

  "idle.heading": "着信を待っています",
  "idle.lead": "電話が鳴ると、発信者の台帳がここに表示されます。",
  "idle.lead2": "窓口・郵便の問い合わせは、下の検索から接種者を開いてください。",

  "search.heading": "接種者を検索",
  "search.heading.unknown": "台帳に登録のない番号です",
  "search.lead.unknown": "券番号、またはお名前（カナ）と生年月日をお尋ねください。",
  "lookup.pending": "台帳を照会中",
  "lookup.pending.lead": "記録が届きしだい、ここに表示します。お待ちいただけない場合は検索してください。",
  "lookup.pending.searching": "台帳を照会中です。記録が届けば、ここに表示します。",
  "lookup.search": "手動で検索",
  "lookup.failed": "台帳を照会できませんでした",
  "lookup.failed.lead": "記録は自動では表示されません。券番号、またはお名前（カナ）と生年月日をお尋ねください。",
  "search.ticket": "券番号（10桁）",
  "search.ticket.hint": "バーコードリーダーで読み取れます",
  "search.or": "または",
  "search.kana": "お名前（カナ）",
  "search.kana.placeholder": "マイヅル ハナコ",
  "search.birth": "生年月日",
  "search.era": "元号",
  "search.birth.placeholder": "S25.6.6・25.6.6",
  "birth.err.form": "日付として読めません（例: 昭和25年6月6日、S25.6.6、S250606、1950-06-06）",
  "birth.err.date": "そのような日付はありません",
  "birth.err.era": "元号を選ぶか、S25.6.6 のように元号から入力してください",
  "birth.err.era_range": "その元号にはない日付です（例: 昭和64年1月8日は平成元年1月8日）",
  "era.none": "西暦",
  "search.birth.readback": "{date} ・ {wareki}（{age}歳）",
  "birth.err.future": "未来の日付です",
  "birth.err.old": "125年以上前の日付です",
  "search.phone": "電話番号",
  "search.phone.placeholder": "0773-62-1234",
  "search.submit": "検索",
  "search.clear": "クリア",
  "search.busy": "検索しています…",
  "search.none": "該当する接種者はいません。",
  "search.count": "{n}件見つかりました",
  "search.err.ticket": "券番号は10桁の数字です。",
  "search.err.birth": "お名前と一緒に生年月日を入力してください。",
  "search.err.kana": "お名前（カナ）も入力してください。",
  "search.err.empty": "券番号、お名前と生年月日、または電話番号を入力してください。",
  "search.back": "検索結果に戻る",
  "search.other": "別の方を検索",

  "call.ringing": "着信中",
  "call.talking": "通話中",
  "call.ended": "終了",
  "call.elsewhere": "他の席で応答",
  "call.elsewhere.by": "内線 {ext} が応答",
  "call.ended.unseen": "画面の接続が切れている間に終了しました",
  "call.lookup": "窓口・郵便",
  "call.withheld": "番号非通知",
  "call.queue": "窓口",
  "call.result": "結果",
  "queue.vaccine": "ワクチン接種",
  "queue.new": "別の着信があります（{n}件待ち）",
  "queue.waiting": "着信待ち {n}件",
  "queue.switch": "で切替",
  "search.heading.withheld": "番号非通知の着信です",
  "call.waited": "待ち時間",
  "call.talk": "通話時間",
  "call.dismiss": "閉じる",
  "call.dismiss.aria": "この画面を閉じる",
  "call.draft": "下書きあり",
  "call.sessions": "対応中の画面",
  "call.no_resident": "接種者未選択",

  "pick.heading": "この番号の世帯に {n} 名います",
  "pick.lead": "どなたのご用件かお尋ねください（↑↓で移動、Enterで選択、Escで閉じる）。",
  "pick.change": "別の方に切替",
  "pick.summary": "世帯 {n} 名",
  "pick.choose": "ご用件の方を選んでください",
  "pick.open": "世帯の一覧を開く",
  "pick.list": "一覧",
  "pick.close": "一覧を閉じる",
  "pick.current": "表示中",
  "pick.link_failed": "通話と接種者の紐付けを保存できませんでした（{msg}）",

  "res.kana": "フリガナ",
  "res.age": "{n}歳",
  "res.age.unit": "歳",
  "res.birth": "生年月日",
  "res.sex": "性別",
  "res.sex.M": "男",
  "res.sex.F": "女",
  "res.ticket": "接種券",
  "res.address_no": "宛名番号",
  "res.address": "住所",
  "res.town": "町名・地区",
  "res.phones": "電話",
  "res.intent": "接種意向",
  "res.transport": "送迎",
  "res.transport.yes": "送迎要",
  "res.transport.no": "送迎なし",
  "res.household": "世帯番号",
  "res.notes": "備考",
  "res.caller_line": "着信番号",
  "res.loading": "台帳を読み込んでいます…",
  "res.load_failed": "台帳を読み込めませんでした（{msg}）",

  "intent.wants": "希望",
  "intent.declines": "希望しない",
  "intent.undecided": "未定",
  "intent.none": "未回答",
  "intent.clinic": "個別接種",

  "phone.home": "自宅",
  "phone.mobile": "携帯",
  "phone.family": "家族",
  "phone.other": "その他",

  "book.heading": "予約",
  "book.dose": "{n}回目",
  "book.empty": "予約はまだありません",
  "book.venue": "会場 {id}",
  "book.status.booked": "予約済",
  "book.status.checked_in": "受付済",
  "book.status.vaccinated": "接種済",
  "book.status.cancelled": "取消",
  "book.status.no_show": "未来場",
  "vacc.heading": "接種記録",
  "vacc.dose": "{n}回目 接種済",

  "hist.heading": "対応履歴",
  "hist.all": "すべて",
  "hist.inquiries": "問い合わせ",
  "hist.calls": "通話",
  "hist.empty": "これまでの対応はありません",
  "hist.pending": "記録が届くと、これまでの対応も表示します",
  "hist.call": "通話",
  "hist.inquiry": "問い合わせ",
  "hist.by": "担当 {who}",
  "hist.ext": "内線 {ext}",
  "hist.follow_up": "要対応",
  "hist.follow_up.none": "なし",
  "hist.more": "さらに表示（{n}件）",
  "hist.less": "最近の分だけ表示",
  "hist.duration": "通話 {d}",
  "hist.hold": "保留 {d}",
  "hist.new": "今回",

  "outcome.answered": "対応済み",
  "outcome.abandoned": "つながる前に切れた",
  "outcome.no_answer": "応答なし",
  "outcome.busy": "話し中",
  "outcome.timeout": "待ち時間切れ",
  "outcome.failed": "接続できず",
  "outcome.unknown": "不明",
  "outcome.null": "通話中",

  "cat.appointment_change": "日時・会場の変更",
  "cat.appointment_cancel": "キャンセル",
  "cat.transport": "送迎バス",
  "cat.ticket": "接種券",
  "cat.side_effects": "副反応",
  "cat.eligibility": "接種対象・医療相談",
  "cat.general": "その他",
  "cat.complaint": "苦情",

  "form.heading": "問い合わせを記録",
  "form.heading.for": "{name} さんの問い合わせ",
  "form.category": "用件",
  "form.category.choose": "選択してください",
  "form.note": "内容",
  "form.note.placeholder": "お問い合わせの内容と回答",
  "form.note.hint": "Ctrl+Enter で保存（Enter は改行）",
  "form.who": "電話の方",
  "form.self": "本人",
  "form.proxy": "代理",
  "form.relationship": "続柄",
  "form.relationship.placeholder": "長男、ケアマネジャー など",
  "form.follow_up": "要対応（折り返し・確認が必要）",
  "form.submit": "保存",
  "form.saving": "保存しています…",
  "form.saved": "保存しました",
  "form.err.category": "用件を選んでください。",
  "form.err.relationship": "代理の方の続柄を入力してください。",
  "form.err.resident": "先に接種者を検索して選んでください。",
  "form.err.generic": "保存できませんでした（{msg}）",
  "form.proxy_label": "代理（{rel}）",

  "err.network": "サーバーに接続できません",
  "leave.confirm": "保存していない問い合わせメモがあります。破棄してよろしいですか？",
  "err.session": "セッションが切れました。もう一度ログインしてください。",

  "era.meiji": "明治",
  "era.taisho": "大正",
  "era.showa": "昭和",
  "era.heisei": "平成",
  "era.reiwa": "令和",
};

const en = {
  "app.title": "Madoguchi",
  "app.subtitle": "Vaccination call center",
  "lang.toggle": "日本語",
  "lang.toggle.aria": "日本語に切り替え",
  "logout": "Log out",
  "sound.on": "Chime on",
  "sound.off": "Chime off",
  "ext": "Ext. {ext}",
  "conn.online": "Connected",
  "conn.reconnecting": "Reconnecting",
  "conn.offline": "Offline",
  "conn.connecting": "Connecting",

  "login.heading": "Sign in",
  "login.lead": "Sign in with your staff account.",
  "login.username": "Username",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.busy": "Checking…",
  "login.failed": "Wrong username or password.",
  "login.required": "Enter your username and password.",
  "login.locked": "Too many failed sign-ins: please wait a while (10 minutes).",

  "idle.heading": "Waiting for a call",
  "idle.lead": "When your phone rings, the caller's record appears here.",
  "idle.lead2": "For walk-ins and letters, open a resident with the search below.",

  "search.heading": "Find a resident",
  "search.heading.unknown": "This number is not in the ledger",
  "search.lead.unknown": "Ask for the ticket number, or the name (kana) and date of birth.",
  "lookup.pending": "Record not available yet",
  "lookup.pending.lead": "It shows here as soon as it arrives. Search by hand if the caller cannot wait.",
  "lookup.pending.searching": "The record is still being looked up; it shows here when it arrives.",
  "lookup.search": "Search by hand",
  "lookup.failed": "The record lookup failed",
  "lookup.failed.lead": "The record will not show by itself. Ask for the ticket number, or the name (kana) and date of birth.",
  "search.ticket": "Ticket number (10 digits)",
  "search.ticket.hint": "A barcode scanner can type it",
  "search.or": "or",
  "search.kana": "Name (kana)",
  "search.kana.placeholder": "マイヅル ハナコ",
  "search.birth": "Date of birth",
  "search.era": "Era",
  "search.birth.placeholder": "S25.6.6・25.6.6",
  "birth.err.form": "Not a date (e.g. 昭和25年6月6日, S25.6.6, S250606, 1950-06-06)",
  "birth.err.date": "No such date",
  "birth.err.era": "Choose an era, or start with it: S25.6.6",
  "birth.err.era_range": "That era had no such day (e.g. Shōwa 64-1-8 is Heisei 1-1-8)",
  "era.none": "Western",
  "search.birth.readback": "{date} · {wareki} (age {age})",
  "birth.err.future": "That date is in the future",
  "birth.err.old": "That date is more than 125 years ago",
  "search.phone": "Phone number",
  "search.phone.placeholder": "0773-62-1234",
  "search.submit": "Search",
  "search.clear": "Clear",
  "search.busy": "Searching…",
  "search.none": "No matching resident.",
  "search.count": "{n} found",
  "search.err.ticket": "A ticket number has 10 digits.",
  "search.err.birth": "Enter the date of birth with the name.",
  "search.err.kana": "Enter the name (kana) too.",
  "search.err.empty": "Enter a ticket number, a name and date of birth, or a phone number.",
  "search.back": "Back to results",
  "search.other": "Find someone else",

  "call.ringing": "Ringing",
  "call.talking": "Talking",
  "call.ended": "Ended",
  "call.elsewhere": "Answered elsewhere",
  "call.elsewhere.by": "Answered by ext. {ext}",
  "call.ended.unseen": "Ended while this screen was disconnected",
  "call.lookup": "Walk-in / letter",
  "call.withheld": "Number withheld",
  "call.queue": "Line",
  "call.result": "Result",
  "queue.vaccine": "Vaccination",
  "queue.new": "Another call is waiting ({n} waiting)",
  "queue.waiting": "{n} call(s) waiting",
  "queue.switch": "to switch",
  "search.heading.withheld": "The caller withheld the number",
  "call.waited": "Waited",
  "call.talk": "Talk time",
  "call.dismiss": "Close",
  "call.dismiss.aria": "Close this screen",
  "call.draft": "unsaved note",
  "call.sessions": "Open screens",
  "call.no_resident": "No resident chosen",

  "pick.heading": "{n} people share this number",
  "pick.lead": "Ask who the call is about (↑↓ to move, Enter to choose, Esc to close).",
  "pick.change": "Switch person",
  "pick.summary": "Household of {n}",
  "pick.choose": "Choose who the call is about",
  "pick.open": "Open the household list",
  "pick.list": "List",
  "pick.close": "Close the list",
  "pick.current": "Shown",
  "pick.link_failed": "Could not link the call to the resident ({msg})",

  "res.kana": "Kana",
  "res.age": "age {n}",
  "res.age.unit": "yrs",
  "res.birth": "Date of birth",
  "res.sex": "Sex",
  "res.sex.M": "Male",
  "res.sex.F": "Female",
  "res.ticket": "Ticket",
  "res.address_no": "Address no.",
  "res.address": "Address",
  "res.town": "Town · district",
  "res.phones": "Phones",
  "res.intent": "Intent",
  "res.transport": "Transport",
  "res.transport.yes": "Needs bus pickup",
  "res.transport.no": "No pickup",
  "res.household": "Household",
  "res.notes": "Notes",
  "res.caller_line": "calling",
  "res.loading": "Loading the record…",
  "res.load_failed": "Could not load the record ({msg})",

  "intent.wants": "Wants a dose",
  "intent.declines": "Declines",
  "intent.undecided": "Undecided",
  "intent.none": "No answer",
  "intent.clinic": "Own clinic",

  "phone.home": "Home",
  "phone.mobile": "Mobile",
  "phone.family": "Family",
  "phone.other": "Other",

  "book.heading": "Appointments",
  "book.dose": "Dose {n}",
  "book.empty": "No appointments yet",
  "book.venue": "Venue {id}",
  "book.status.booked": "Booked",
  "book.status.checked_in": "Checked in",
  "book.status.vaccinated": "Vaccinated",
  "book.status.cancelled": "Cancelled",
  "book.status.no_show": "No-show",
  "vacc.heading": "Doses given",
  "vacc.dose": "Dose {n} given",

  "hist.heading": "History",
  "hist.all": "All",
  "hist.inquiries": "Inquiries",
  "hist.calls": "Calls",
  "hist.empty": "No earlier calls or inquiries",
  "hist.pending": "Earlier calls and inquiries show when the record arrives",
  "hist.call": "Call",
  "hist.inquiry": "Inquiry",
  "hist.by": "by {who}",
  "hist.ext": "ext. {ext}",
  "hist.follow_up": "Follow up",
  "hist.follow_up.none": "none",
  "hist.more": "Show {n} more",
  "hist.less": "Show the latest only",
  "hist.duration": "talk {d}",
  "hist.hold": "hold {d}",
  "hist.new": "this call",

  "outcome.answered": "Answered",
  "outcome.abandoned": "Hung up before answer",
  "outcome.no_answer": "No answer",
  "outcome.busy": "Busy",
  "outcome.timeout": "Timed out",
  "outcome.failed": "Failed",
  "outcome.unknown": "Unknown",
  "outcome.null": "In progress",

  "cat.appointment_change": "Change appointment",
  "cat.appointment_cancel": "Cancel",
  "cat.transport": "Bus pickup",
  "cat.ticket": "Ticket",
  "cat.side_effects": "Side effects",
  "cat.eligibility": "Eligibility & medical",
  "cat.general": "Other",
  "cat.complaint": "Complaint",

  "form.heading": "Record the inquiry",
  "form.heading.for": "Inquiry for {name}",
  "form.category": "Topic",
  "form.category.choose": "Choose…",
  "form.note": "Note",
  "form.note.placeholder": "What was asked and what you answered",
  "form.note.hint": "Ctrl+Enter saves (Enter adds a line)",
  "form.who": "Caller",
  "form.self": "The resident",
  "form.proxy": "Someone else",
  "form.relationship": "Relationship",
  "form.relationship.placeholder": "eldest son, care manager…",
  "form.follow_up": "Follow up (call back or check)",
  "form.submit": "Save",
  "form.saving": "Saving…",
  "form.saved": "Saved",
  "form.err.category": "Choose a topic.",
  "form.err.relationship": "Enter the caller's relationship to the resident.",
  "form.err.resident": "Find and choose the resident first.",
  "form.err.generic": "Could not save ({msg})",
  "form.proxy_label": "Proxy ({rel})",

  "err.network": "Cannot reach the server",
  "leave.confirm": "An inquiry note is not saved yet. Discard it?",
  "err.session": "Your session ended. Please sign in again.",

  "era.meiji": "Meiji",
  "era.taisho": "Taishō",
  "era.showa": "Shōwa",
  "era.heisei": "Heisei",
  "era.reiwa": "Reiwa",
};

const dictionaries = { ja, en };

// 続柄 suggestions. The stored value stays Japanese (it is what the ledger keeps); English shows
// a gloss beside it in the datalist.
export const RELATIONSHIPS = [
  ["長男", "eldest son"],
  ["長女", "eldest daughter"],
  ["妻", "wife"],
  ["夫", "husband"],
  ["子", "child"],
  ["孫", "grandchild"],
  ["ケアマネジャー", "care manager"],
  ["施設職員", "care home staff"],
];

export const CATEGORIES = [
  "appointment_change",
  "appointment_cancel",
  "transport",
  "ticket",
  "side_effects",
  "eligibility",
  "general",
  "complaint",
];

let current = initialLang();

function initialLang() {
  try {
    const fromUrl = new URLSearchParams(location.search).get("lang");
    if (fromUrl === "ja" || fromUrl === "en") {
      localStorage.setItem(STORAGE_KEY, fromUrl);
      return fromUrl;
    }
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved === "ja" || saved === "en") return saved;
  } catch {
    // localStorage may be unavailable (private mode); Japanese it is.
  }
  return "ja";
}

export function lang() {
  return current;
}

export function setLang(next) {
  current = next === "en" ? "en" : "ja";
  try {
    localStorage.setItem(STORAGE_KEY, current);
  } catch {
    // not remembered, still switched
  }
  document.documentElement.lang = current;
}

/** Translate a key, filling {name} placeholders. Falls back to Japanese, then to the key. */
export function t(key, params = {}) {
  const text = dictionaries[current][key] ?? ja[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : ""));
}

/** Whether a translation exists (for codes the server may add later). */
export function has(key) {
  return key in dictionaries[current] || key in ja;
}

export function applyI18n(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]"))
    el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria]"))
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}
