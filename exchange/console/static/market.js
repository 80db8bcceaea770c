// The market page: the book rebuilt from the console's market WebSocket with each checksum
// verified, the tape, phase and indicative, and the day's price chart.
import { bookChecksum, fillTable, lineChart, pageData, setText } from "./common.js";

const data = pageData();
const symbol = data.symbol;
const book = { bids: new Map(), asks: new Map(), seq: 0 };
let trades = data.trades.slice();
let checked = 0;

function levels(side, descending) {
  const sorted = [...side.entries()].sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]));
  return sorted.slice(0, 50);
}

function applySnapshot(message) {
  book.bids = new Map(message.bids.map(([p, q]) => [p, q]));
  book.asks = new Map(message.asks.map(([p, q]) => [p, q]));
  book.seq = message.seq;
}

function applyUpdate(message) {
  if (message.prev_seq !== book.seq) return false; // a gap: resubscribe for a snapshot
  for (const [side, changes] of [[book.bids, message.bids], [book.asks, message.asks]]) {
    for (const [price, quantity] of changes) {
      if (quantity === 0) side.delete(price);
      else side.set(price, quantity);
    }
  }
  book.seq = message.seq;
  return true;
}

function verify(expected) {
  const bids = levels(book.bids, true);
  const asks = levels(book.asks, false);
  const actual = bookChecksum(bids, asks);
  checked += 1;
  const ok = actual === expected;
  setText("checksum", ok ? `ok ${actual} (seq ${book.seq}, ${checked} checked)`
    : `MISMATCH: page ${actual}, exchange ${expected}`, ok ? "ok" : "bad");
  document.body.dataset.bookSeq = String(book.seq);
  return ok;
}

function renderBook() {
  const bids = levels(book.bids, true).slice(0, 10);
  const asks = levels(book.asks, false).slice(0, 10);
  const rows = [];
  for (let i = 0; i < Math.max(bids.length, asks.length); i++) {
    rows.push([bids[i]?.[1], bids[i]?.[0], asks[i]?.[0], asks[i]?.[1]]);
  }
  fillTable("book", rows);
}

function renderTrades() {
  const tape = trades.slice(-50).reverse().map((t) => [t.trade_id, t.price, t.quantity, t.aggressor ?? ""]);
  fillTable("tape", tape);
  lineChart(document.getElementById("chart"), trades.map((t) => [t.trade_id, t.price]), `${symbol} trade price`);
}

function renderPhase(message) {
  setText("phase", message.phase);
  const price = message.indicative_price;
  setText("indicative", `${price === null ? "" : price} for ${message.indicative_volume}`);
}

const decoder = new TextDecoder();
let socket = null;
let retry = 0;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/console/market/ws?symbol=${encodeURIComponent(symbol)}`);
  socket.binaryType = "arraybuffer"; // binary frames of UTF-8 JSON
  socket.onopen = () => { retry = 0; setText("feed", "live", "ok"); };
  socket.onclose = () => {
    setText("feed", "reconnecting", "pending");
    retry = Math.min(retry + 1, 5);
    setTimeout(connect, 200 * 2 ** retry);
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(decoder.decode(event.data));
    if (message.type === "book_snapshot") {
      applySnapshot(message);
      verify(message.checksum);
      renderBook();
    } else if (message.type === "book") {
      if (!applyUpdate(message) || !verify(message.checksum)) {
        socket.close(); // a missed update or a wrong book: start again from a snapshot
        return;
      }
      renderBook();
    } else if (message.type === "trades") {
      const known = new Set(trades.map((t) => t.trade_id));
      trades = trades.concat(message.trades.filter((t) => !known.has(t.trade_id))).slice(-2000);
      renderTrades();
    } else if (message.type === "phase") {
      renderPhase(message);
    }
  };
}

applySnapshot(data.book);
verify(data.book.checksum);
renderBook();
renderTrades();
connect();
