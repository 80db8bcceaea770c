// Verify a receipt in the browser, as `jinlian verify-receipt` does (ledger/receipt.py), with
// the pinned noble libraries shipped in vendor/ (Ed25519 and SHA-256/512, MIT): the genesis
// hash, the header's hash, the certificate's vote signatures against the genesis keys (a
// quorum of distinct voters), the tree size, the leaf's index and command hash, and the
// RFC 6962 inclusion proof from the leaf to the header's receipts root.
import * as ed from "./vendor/noble-ed25519-2.3.0/index.js";
import { sha256, sha512 } from "./vendor/noble-hashes-1.8.0/esm/sha2.js";
import { pageData, setText } from "./common.js";

ed.etc.sha512Sync = (...messages) => sha512(ed.etc.concatBytes(...messages));

const VOTE_DOMAIN = new TextEncoder().encode("jinlian/v1/vote\n");
const utf8 = (text) => new TextEncoder().encode(text);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function unhex(text) {
  if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) throw new Error(`not hex: ${String(text).slice(0, 80)}`);
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

// JSON with every integer kept exact (times in ns pass 2^53): BigInt from its source text.
function parseExact(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && Number.isInteger(value) && context && /^-?\d+$/.test(context.source)
      ? BigInt(context.source) : value);
}

// The canonical bytes of ledger/canonical.py: sorted keys, no whitespace, integers only.
function canonical(value) {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") throw new Error(`not an integer: ${value}`);
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
}

function leafHash(bytes) {
  return sha256(ed.etc.concatBytes(Uint8Array.of(0), bytes));
}

function nodeHash(left, right) {
  return sha256(ed.etc.concatBytes(Uint8Array.of(1), left, right));
}

// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
function rootFromProof(hash, index, size, proof) {
  if (index >= size) throw new Error(`leaf index ${index} is not in a tree of size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = hash;
  for (const sibling of proof) {
    if (sn === 0) throw new Error("the proof is longer than the tree is deep");
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(sibling, r);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = nodeHash(r, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
  return r;
}

function check(list, label, ok, detail) {
  const item = document.createElement("li");
  item.dataset.state = ok ? "ok" : "bad";
  item.textContent = `${ok ? "ok" : "FAILED"}: ${label}${detail ? ` (${detail})` : ""}`;
  list.append(item);
  if (!ok) throw new Error(`${label}${detail ? `: ${detail}` : ""}`);
}

function verify(data, list) {
  const receipt = parseExact(data.receipt_text);
  check(list, "genesis hash is this node's genesis", receipt.genesis_hash === data.genesis_hash, receipt.genesis_hash);
  const header = receipt.header;
  const certificate = receipt.certificate;
  const headerHash = hex(sha256(utf8(canonical(header))));
  check(list, "the certificate is for this header", certificate.header_hash === headerHash && certificate.height === header.height, headerHash);
  const signers = new Set();
  for (const vote of certificate.votes) {
    const key = data.voters[String(vote.member)];
    const good = key !== undefined && vote.header_hash === headerHash && !signers.has(vote.member)
      && ed.verify(unhex(vote.signature), ed.etc.concatBytes(VOTE_DOMAIN, unhex(headerHash)), unhex(key));
    check(list, `vote of member ${vote.member} verifies with its genesis key`, good);
    signers.add(vote.member);
  }
  check(list, `a quorum of voters signed (${signers.size} of at least ${data.quorum})`, signers.size >= data.quorum);
  const size = Number(receipt.tree_size);
  const index = Number(receipt.leaf_index);
  check(list, "tree size is the header's command count", receipt.tree_size === header.command_count, String(size));
  check(list, "the leaf's index is the receipt's", receipt.leaf.index === receipt.leaf_index, String(index));
  const commandHash = hex(sha256(utf8(receipt.command)));
  check(list, "the command hashes to the leaf's command_hash", commandHash === receipt.leaf.command_hash, commandHash);
  const root = hex(rootFromProof(leafHash(utf8(canonical(receipt.leaf))), index, size, receipt.proof.map(unhex)));
  check(list, "the inclusion proof leads to the header's receipts root", root === header.receipts_root, root);
}

const data = pageData();
const list = document.getElementById("checks");
try {
  verify(data, list);
  setText("verified", "verified: this command and its events are final under this genesis", "ok");
} catch (error) {
  setText("verified", `NOT verified: ${error.message}`, "bad");
}
