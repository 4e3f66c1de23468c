// Live relay dashboard: polls /api/stats?history=1 every 1.5 s and plots the server's
// history (forwarded bitrate, fps, participants, CPU) with Chart.js (window.Chart, UMD).

const POLL_MS = 1500;
const token = new URLSearchParams(location.search).get("token");

/** @type {Record<string, any>} */
const charts = {};

/**
 * @param {string} id
 * @param {string} label
 * @param {string} color
 * @param {boolean} [integer] - a count: whole-number ticks, stepped line
 */
function makeChart(id, label, color, integer = false) {
  const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById(id));
  // @ts-ignore - Chart comes from the UMD bundle
  charts[id] = new window.Chart(canvas, {
    type: "line",
    data: {
      labels: [],
      datasets: [
        {
          label,
          data: [],
          borderColor: color,
          backgroundColor: color,
          pointRadius: 0,
          tension: integer ? 0 : 0.2,
          stepped: integer,
        },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: integer ? { precision: 0 } : {} } },
    },
  });
}

/**
 * @param {string} tag
 * @param {string} text
 */
function cell(tag, text) {
  const el = document.createElement(tag);
  el.textContent = text;
  return el;
}

/** @param {any} data */
function render(data) {
  const server = data.server || {};
  const summary = document.getElementById("summary");
  summary.replaceChildren(
    ...[
      ["mode", server.forwarding],
      ["uptime", `${Math.round(server.uptime || 0)} s`],
      ["rooms", server.rooms],
      ["participants", server.participants],
      ["forwarded streams", server.forwardedStreams],
      ["bitrate out", `${((server.bitrateOut || 0) / 1e6).toFixed(2)} Mbps`],
      ["CPU", `${(server.cpuPercent || 0).toFixed(1)} %`],
      ["RSS", `${Math.round((server.rssBytes || 0) / 1048576)} MiB`],
      ["loop lag", `${((server.eventLoopLag || 0) * 1000).toFixed(1)} ms`],
      ["NACKs to publishers / from subscribers", `${server.nacksSent ?? 0} / ${server.nacksReceived ?? 0}`],
      ["frames lost", server.framesLost],
    ].map(([k, v]) => cell("div", `${k}: ${v ?? "-"}`)),
  );
  const history = data.history || [];
  const labels = history.map((/** @type {any} */ h) => new Date(h.t * 1000).toLocaleTimeString());
  /** @type {[string, (h: any) => number][]} */
  const series = [
    ["chart-bitrate", (h) => h.bitrateOut / 1e6],
    ["chart-fps", (h) => h.fpsOut],
    ["chart-participants", (h) => h.participants],
    ["chart-cpu", (h) => h.cpuPercent],
  ];
  for (const [id, pick] of series) {
    const chart = charts[id];
    chart.data.labels = labels;
    chart.data.datasets[0].data = history.map(pick);
    chart.update("none");
  }
  const body = document.querySelector("#participants tbody");
  const rows = [];
  for (const room of data.rooms || []) {
    for (const p of room.participants) {
      const tr = document.createElement("tr");
      tr.dataset.participantId = p.id;
      const pubs = p.published
        .map((/** @type {any} */ t) => {
          // a publisher cap: the server's REMB asks this publisher to send at most that
          const cap = t.bitrateCap != null ? ` (capped at ${kbps(t.bitrateCap)})` : "";
          return `${t.kind}: ${(t.bitrateIn / 1000).toFixed(0)} / ${t.fps}${cap}`;
        })
        .join(", ");
      const out = p.subscriptions.reduce((/** @type {number} */ s, /** @type {any} */ t) => s + t.bitrateOut, 0);
      tr.append(
        cell("td", room.name), cell("td", `${p.name} (${p.id})`), cell("td", p.connectionState),
        cell("td", pubs || "-"), cell("td", String(p.subscriptions.length)),
        cell("td", (out / 1000).toFixed(0)), cell("td", downlinkText(p.downlink)),
      );
      rows.push(tr);
    }
  }
  body.replaceChildren(...rows);
  document.querySelector("#subscriptions tbody").replaceChildren(...subscriptionRows(data.rooms || []));
}

/** @param {number | null | undefined} bps */
function kbps(bps) {
  return bps == null ? "unlimited" : (bps / 1000).toFixed(0);
}

/**
 * A participant's downlink estimate: the estimate, and why (REMB, loss) when known.
 * @param {any} d
 */
function downlinkText(d) {
  if (!d) return "-";
  const why = [];
  if (d.remb != null) why.push(`REMB ${kbps(d.remb)}`);
  if (d.loss != null) why.push(`loss ${(d.loss * 100).toFixed(1)} %`);
  return why.length ? `${kbps(d.bitrate)} (${why.join(", ")})` : kbps(d.bitrate);
}

/**
 * One row per subscription: forwarded rate and layer, link state, the estimate, NACKs
 * and the upper-layer frames the subscriber's link queue shed.
 * @param {any[]} rooms
 */
function subscriptionRows(rooms) {
  const rows = [];
  for (const room of rooms) {
    /** @type {Record<string, string>} */
    const names = {};
    for (const p of room.participants) names[p.id] = p.name;
    for (const p of room.participants) {
      for (const s of p.subscriptions) {
        const tr = document.createElement("tr");
        tr.dataset.participantId = p.id;
        tr.dataset.publisherId = s.publisherId;
        const video = s.kind === "video";
        const layer = !video ? "-" : s.maxTid == null ? "all" : `T0-T${s.maxTid}`;
        const state = s.linkPaused ? "paused: poor link" : "forwarding";
        const loss = s.lossFraction == null ? "-" : `${(s.lossFraction * 100).toFixed(1)} %`;
        const stateCell = cell("td", state);
        if (s.linkPaused) stateCell.className = "warn";
        tr.append(
          cell("td", room.name), cell("td", `${p.name} (${p.id})`),
          cell("td", `${names[s.publisherId] ?? s.publisherId} ${s.source || s.kind}`),
          cell("td", ((s.bitrateOut || 0) / 1000).toFixed(0)), cell("td", video ? String(s.fps) : "-"),
          cell("td", layer), stateCell, cell("td", kbps(s.downlinkEstimate)), cell("td", loss),
          cell("td", `${s.nacks ?? 0} / ${s.retransmits ?? 0}`),
          cell("td", video ? String(s.shed ?? 0) : "-"),
        );
        rows.push(tr);
      }
    }
  }
  return rows;
}

// Cluster mode (--redis-url): the node snapshot says `cluster: true`, and
// /api/stats?scope=cluster lists every live node; on a single node the table stays hidden.
async function pollCluster() {
  const url = "/api/stats?scope=cluster" + (token ? `&token=${encodeURIComponent(token)}` : "");
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(`HTTP ${res.status} (cluster)`);
  const data = await res.json();
  /** @type {Record<string, string[]>} */
  const roomsOf = {};
  for (const room of data.rooms || []) (roomsOf[room.node] ||= []).push(room.name);
  const rows = (data.nodes || []).map((/** @type {any} */ n) => {
    const tr = document.createElement("tr");
    tr.dataset.nodeId = n.id;
    tr.append(
      cell("td", n.id), cell("td", n.url), cell("td", n.state), cell("td", String(n.rooms)),
      cell("td", String(n.participants)), cell("td", String(n.forwardedStreams)),
      cell("td", Number(n.cpu).toFixed(1)), cell("td", (roomsOf[n.id] || []).join(", ") || "-"),
    );
    return tr;
  });
  document.querySelector("#nodes tbody").replaceChildren(...rows);
  document.getElementById("cluster").hidden = false;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const url = "/api/stats?history=1" + (token ? `&token=${encodeURIComponent(token)}` : "");
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const data = await res.json();
    render(data);
    if (data.cluster) await pollCluster();
    status.textContent = "";
    document.body.dataset.updated = String(Date.now());
  } catch (err) {
    status.textContent = `stats unavailable: ${err instanceof Error ? err.message : err}`;
  }
}

makeChart("chart-bitrate", "forwarded Mbps", "#1f77b4");
makeChart("chart-fps", "forwarded video frames/s (all streams)", "#2ca02c");
makeChart("chart-participants", "participants", "#9467bd", true);
makeChart("chart-cpu", "server CPU %", "#d62728");
// @ts-ignore - exposed for the browser test
window.sfuStats = charts;
poll();
setInterval(poll, POLL_MS);
