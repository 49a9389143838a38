// 予診票の再発行: a printable A4 page (questionnaire.html?resident=ID&venue=ID) prefilled with
// the resident's name, kana, address, birth date in 和暦 and 西暦, age, ticket and the next dose,
// and the questions of VACCINATION.md §4 left blank to fill in by hand. Opening it counts a
// reissue (POST /api/venue/questionnaires, audited). When filled, <body data-ready="true">.

import { api, errorText } from "./api.js";

const QUESTIONS = [
  "新型コロナワクチンの接種を初めて受けますか。（受けたことのある方：　回、前回の接種日　　年　月　日、種類　　　　）",
  "現在住んでいる地域の住民票のある市町村と、接種券に記載されている市町村は同じですか。",
  "「新型コロナワクチンの説明書」を読んで、効果や副反応などについて理解しましたか。",
  "現在、何らかの病気にかかって、治療（投薬など）を受けていますか。（心臓病・腎臓病・肝臓病・血液疾患・血が止まりにくい病気・免疫不全・その他　病名：　　　　）",
  "その病気を診てもらっている医師に、今日の予防接種を受けてもよいと言われましたか。",
  "最近1か月以内に熱が出たり、病気にかかったりしましたか。",
  "今日、体に具合が悪いところがありますか。",
  "けいれん（ひきつけ）を起こしたことがありますか。",
  "薬や食品などで、重いアレルギー症状（アナフィラキシーなど）を起こしたことがありますか。",
  "これまでに予防接種を受けて具合が悪くなったことはありますか。",
  "現在、妊娠している可能性（生理が予定より遅れているなど）はありますか。または、授乳中ですか。",
  "2週間以内に予防接種を受けましたか。",
  "今日の予防接種について質問がありますか。",
];

const $ = (sel) => document.querySelector(sel);

function set(id, text) {
  $(id).textContent = text;
}

async function load() {
  $("#print").addEventListener("click", () => window.print());
  const params = new URLSearchParams(location.search);
  const resident = Number(params.get("resident"));
  const venue = params.get("venue") ? Number(params.get("venue")) : null;
  if (!resident) {
    set("#q-status", "resident が指定されていません");
    return;
  }
  const r = await api("POST", "/api/venue/questionnaires", { resident_id: resident, venue_id: venue });
  if (!r.ok) {
    set("#q-status", r.status === 401 ? "ログインしてください" : errorText(r));
    return;
  }
  const q = r.data;
  const p = q.resident;
  set("#q-address", `〒${p.postal_code} ${p.address}`);
  set("#q-kana", p.name_kana);
  set("#q-name", p.name);
  set("#q-sex", p.sex === "F" ? "女" : "男");
  set("#q-birth", `${q.birth_wareki}（${q.birth_western}）`);
  set("#q-age", String(q.age));
  set("#q-phone", (p.phones[0] && p.phones[0].written) || "");
  set("#q-ticket", `${p.municipality_code}-${p.ticket_no}`);
  set("#q-dose", String(q.proposed_dose));
  set("#q-reissue", String(q.reissue));
  set("#q-printed", q.printed_on);
  $("#q-list").replaceChildren(
    ...QUESTIONS.map((text, i) => {
      const tr = document.createElement("tr");
      const ask = document.createElement("td");
      ask.textContent = `${i + 1}. ${text}`;
      const answer = document.createElement("td");
      answer.className = "q-answer";
      answer.textContent = "□はい　□いいえ";
      const doctor = document.createElement("td");
      tr.append(ask, answer, doctor);
      return tr;
    }),
  );
  document.title = `予診票 ${p.name} | 窓口 madoguchi`;
  $("#sheet").hidden = false;
  set("#q-status", `再発行 ${q.reissue} 回目`);
  document.body.dataset.ready = "true";
}

load();
