// The health page: polls /console/api/health each second and draws the block rate and the
// finality p99 over time (since the page opened; at most 600 points).
import { fillTable, lineChart, pageData, setText } from "./common.js";

const history = [];
let last = pageData();

function render(health) {
  setText("status", health.status, health.status === "ok" ? "ok" : "bad");
  setText("height", health.height);
  setText("certified", health.certified);
  setText("lag", health.lag);
  setText("degraded", health.degraded);
  if (health.role === "exchange") setText("finality", `${health.finality_p50_ms} / ${health.finality_p99_ms}`);
  const members = Object.entries(health.members).map(([name, m]) =>
    [name, m.connected, m.authenticated, m.last_vote_height, m.last_vote_age_ms, m.clock_offset_ms, m.auth_error ?? ""]);
  if (members.length) fillTable("members", members);
}

async function poll() {
  try {
    const response = await fetch("/console/api/health", { cache: "no-store" });
    const health = await response.json();
    const seconds = (health.time_ms - last.time_ms) / 1000;
    if (seconds > 0) {
      history.push({ t: health.time_ms / 1000, rate: (health.height - last.height) / seconds, p99: health.finality_p99_ms });
      if (history.length > 600) history.shift();
    }
    last = health;
    render(health);
    const t0 = history.length ? history[0].t : 0;
    lineChart(document.getElementById("rate"), history.map((h) => [h.t - t0, Math.round(h.rate * 10) / 10]), "blocks/s");
    lineChart(document.getElementById("finality-chart"), history.filter((h) => h.p99 !== null && h.p99 !== undefined).map((h) => [h.t - t0, h.p99]), "finality p99 ms");
  } catch (error) {
    setText("status", `unreachable (${error})`, "bad");
  }
}

render(last);
setInterval(poll, 1000);
