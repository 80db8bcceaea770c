// Shared helpers of the console's pages. No dependency, no network but the page's own node.

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as Python's zlib.crc32.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text) {
  const bytes = new TextEncoder().encode(text);
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// The market data checksum: CRC-32 of "b1_price:b1_qty:a1_price:a1_qty:..." over the top 10
// levels, bids and asks interleaved, best first (exchange/gateway/market_data.py).
export function bookChecksum(bids, asks) {
  const parts = [];
  for (let i = 0; i < 10; i++) {
    for (const side of [bids, asks]) {
      if (i < side.length) parts.push(String(side[i][0]), String(side[i][1]));
    }
  }
  return crc32(parts.join(":"));
}

export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : null;
}

export function setText(id, value, state) {
  const node = document.getElementById(id);
  if (!node) return;
  node.textContent = value;
  if (state !== undefined) node.dataset.state = state;
}

export function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  if (!body) return;
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    for (const cell of row) {
      const td = document.createElement("td");
      td.textContent = cell === null || cell === undefined ? "" : String(cell);
      tr.append(td);
    }
    return tr;
  }));
}

// A line chart of [x, y] points on a canvas, with the y range labelled.
export function lineChart(canvas, points, label) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#555";
  ctx.font = "12px sans-serif";
  if (points.length === 0) {
    ctx.fillText(`${label}: no data yet`, 8, 16);
    return;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const pad = 24;
  const sx = (x) => pad + ((x - x0) / Math.max(x1 - x0, 1)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0)) * (height - 2 * pad);
  ctx.strokeStyle = "#2456c9";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
  ctx.stroke();
  ctx.fillText(`${label}  ${y0} .. ${y1}  (last ${ys[ys.length - 1]})`, 8, 14);
}
