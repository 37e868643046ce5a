// DOM building and number/time formatting. Everything from the API goes into the page as
// text (textContent), never as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

const numberFormat = new Intl.NumberFormat("en-US");
export const num = (n) => (n === null || n === undefined ? "–" : numberFormat.format(n));

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const sign = n < 0 ? "-" : "";
  return `${sign}${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

// Times stay in UTC as the API gives them (operators compare them with server logs);
// the local time is in the tooltip.
export function time(iso) {
  if (!iso) return el("span", { class: "muted", text: "–" });
  const local = new Date(iso);
  return el("time", {
    datetime: iso,
    title: isNaN(local) ? iso : local.toString(),
    text: iso.replace("T", " "),
  });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  let s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export const ACTIVE_STATES = new Set(["EXAMINING", "PROCESSING", "EXECUTING"]);
export const isActive = (job) => ACTIVE_STATES.has(job.jobState);

export function stateBadge(state) {
  return el("span", { class: `state state-${state.toLowerCase()}`, text: state });
}

// A progress bar: determinate when the total is known, indeterminate otherwise.
export function progressBar({ done, total, failed = 0, state, label }) {
  const known = total !== null && total !== undefined && total > 0;
  const finished = state === "COMPLETE";
  let pct = null;
  if (known) pct = Math.min(100, (100 * done) / total);
  else if (finished) pct = 100;
  else if (total === 0) pct = ACTIVE_STATES.has(state) ? 0 : 100;
  const text = known ? `${num(done)} / ${num(total)}` : `${num(done)} processed`;
  const attrs = {
    class: `bar${pct === null ? " indeterminate" : ""}${failed ? " has-failed" : ""} bar-${(state || "").toLowerCase()}`,
    role: "progressbar",
    "aria-label": label || "Progress",
    "aria-valuemin": "0",
    "aria-valuemax": known ? String(total) : null,
    "aria-valuenow": known ? String(done) : null,
    "aria-valuetext": known
      ? `${num(done)} of ${num(total)} objects${failed ? `, ${num(failed)} failed` : ""}`
      : `${num(done)} objects processed${failed ? `, ${num(failed)} failed` : ""}, total not known yet`,
  };
  const fill = el("span", { class: "fill" });
  if (pct !== null) fill.style.width = `${pct.toFixed(1)}%`;
  const wrap = el("div", { class: "progress" }, el("div", attrs, fill));
  wrap.append(el("span", { class: "bar-text" }, text,
    known ? el("span", { class: "muted", text: ` (${Math.floor(pct)}%)` }) : null,
    failed ? el("span", { class: "failed-count", text: ` ${num(failed)} failed` }) : null));
  return wrap;
}

export function table(headers, rows, { numeric = [] } = {}) {
  return el("table", { class: "grid compact" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell, i) =>
      el(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, class: numeric.includes(i) ? "num" : null },
        cell))))));
}
