// A small SVG bar chart of calls per 15 minutes (our own code, no library): one stacked bar per
// slice — answered, abandoned, the rest (waiting, short abandons, timeouts) — and hour marks.
//
//   drawSlices(container, slices)   // slices: [{at, offered, answered, abandoned}, …]

const NS = "http://www.w3.org/2000/svg";
const W = 960;
const H = 180;
const PAD_L = 28;
const PAD_B = 18;

function el(name, attrs) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function hourOf(iso) {
  // Slices start at JST midnight; label in Japan time.
  const d = new Date(Date.parse(iso) + 9 * 3600 * 1000);
  return { h: d.getUTCHours(), m: d.getUTCMinutes() };
}

export function drawSlices(container, slices) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "calls per 15 minutes" });
  const n = 96; // a whole day, so bars keep their place as the day goes on
  const max = Math.max(1, ...slices.map((s) => s.offered || 0));
  const plotW = W - PAD_L;
  const plotH = H - PAD_B - 6;
  const bw = plotW / n;
  svg.append(el("line", { class: "axis", x1: PAD_L, y1: H - PAD_B, x2: W, y2: H - PAD_B }));
  svg.append(el("line", { class: "axis", x1: PAD_L, y1: 4, x2: PAD_L, y2: H - PAD_B }));
  const top = el("text", { x: 2, y: 12 });
  top.textContent = String(max);
  svg.append(top);
  slices.slice(0, n).forEach((s, i) => {
    const x = PAD_L + i * bw + 0.5;
    const scale = (v) => (v / max) * plotH;
    const answered = s.answered || 0;
    const abandoned = s.abandoned || 0;
    const other = Math.max(0, (s.offered || 0) - answered - abandoned);
    let y = H - PAD_B;
    for (const [v, cls] of [[answered, "bar-answered"], [abandoned, "bar-abandoned"], [other, "bar-other"]]) {
      if (v <= 0) continue;
      const h = scale(v);
      y -= h;
      const r = el("rect", { class: cls, x, y, width: Math.max(1, bw - 1), height: h, "data-slice": i });
      const title = el("title", {});
      const { h: hh, m } = hourOf(s.at);
      title.textContent = `${hh}:${String(m).padStart(2, "0")} ${cls.slice(4)} ${v}`;
      r.append(title);
      svg.append(r);
    }
  });
  for (let h = 0; h <= 24; h += 3) {
    const x = PAD_L + h * 4 * bw;
    const t = el("text", { x: x + 2, y: H - 4 });
    t.textContent = `${h}時`;
    svg.append(t);
  }
  container.replaceChildren(svg);
  container.dataset.total = String(slices.reduce((a, s) => a + (s.offered || 0), 0));
}
