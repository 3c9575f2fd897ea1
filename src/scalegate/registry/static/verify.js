// Verify one statement of a lab's log in the browser, trusting only the keys given:
// the log's checkpoint signature (C2SP signed note, Ed25519), the witnesses' cosignatures
// (C2SP tlog-cosignature), the entry's inclusion under the signed root (RFC 6962 hashes,
// recomputed from C2SP tlog-tiles), and the entry's DSSE signature by its signer.
// Everything is fetched from the log itself; nothing here is taken from the registry.
"use strict";

const enc = new TextEncoder();
const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (a) => Array.from(a, (x) => x.toString(16).padStart(2, "0")).join("");
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
};
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const sha256 = async (data) => new Uint8Array(await crypto.subtle.digest("SHA-256", data));
const leafHash = (entry) => sha256(cat(Uint8Array.of(0), entry));
const nodeHash = (l, r) => sha256(cat(Uint8Array.of(1), l, r));

// A verifier key "name+hexid+base64(type || public key)" (C2SP signed-note).
async function parseKey(text, type) {
  const [name, id, ...rest] = text.trim().split("+"); // base64 may itself hold "+"
  const key = rest.join("+");
  const raw = b64(key);
  if (raw[0] !== type || raw.length !== 33) throw new Error(`${name}: not a key of type ${type}`);
  const keyId = (await sha256(cat(enc.encode(name + "\n"), raw))).slice(0, 4);
  if (hex(keyId) !== id) throw new Error(`${name}: its key id is not ${id}`);
  const key_ = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false,
                                             ["verify"]);
  return { name, keyId, key: key_ };
}

const ed25519 = (k, sig, msg) => crypto.subtle.verify({ name: "Ed25519" }, k.key, sig, msg);

// The checkpoint note: its body, the log's signature checked, witness cosignatures counted.
async function openCheckpoint(note, logKey, witnessKeys) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  const [origin, size, root] = body.split("\n");
  let logSigned = false;
  const cosigned = [];
  for (const line of note.slice(split + 2).split("\n").filter(Boolean)) {
    const [dash, name, sig] = line.split(" ");
    if (dash !== "\u2014") throw new Error("a signature line does not start with an em dash");
    const raw = b64(sig);
    if (name === logKey.name && same(raw.slice(0, 4), logKey.keyId)) {
      logSigned = await ed25519(logKey, raw.slice(4), enc.encode(body));
      if (!logSigned) throw new Error("the log's signature on the checkpoint does not verify");
    }
    for (const w of witnessKeys) {
      if (name !== w.name || !same(raw.slice(0, 4), w.keyId)) continue;
      const ts = new DataView(raw.buffer, raw.byteOffset + 4, 8).getBigUint64(0);
      const msg = enc.encode(`cosignature/v1\ntime ${ts}\n${body}`);
      if (!(await ed25519(w, raw.slice(12), msg))) throw new Error(`${w.name}'s cosignature does not verify`);
      cosigned.push({ name: w.name, time: new Date(Number(ts) * 1000).toISOString() });
    }
  }
  if (!logSigned) throw new Error("the checkpoint is not signed by the log's key");
  return { origin, size: Number(size), root: b64(root), cosigned };
}

// Tile paths (C2SP tlog-tiles): N in 3-digit elements, "x" before all but the last.
function tilePath(level, index, width) {
  const digits = String(index).padStart(Math.ceil(String(index).length / 3) * 3, "0");
  const parts = digits.match(/.{3}/g);
  const n = parts.map((p, i) => (i < parts.length - 1 ? "x" + p : p)).join("/");
  return `tile/${level}/${n}` + (width < 256 ? `.p/${width}` : "");
}

// RFC 6962 root of [0, size) with the leaf at `index` hashed from `entry`; every other
// perfect subtree read from (or hashed up within) the tiles that hold it.
async function rootWith(fetchBytes, size, index, entryLeaf) {
  const tiles = new Map();
  const tile = async (level, t) => {
    const width = Math.min(256, Math.floor(size / 256 ** level) - t * 256);
    const key = `${level}/${t}/${width}`;
    if (!tiles.has(key)) tiles.set(key, fetchBytes(tilePath(level, t, width)));
    const data = await tiles.get(key);
    if (data.length !== width * 32) throw new Error(`${tilePath(level, t, width)} is not ${width} hashes`);
    return data;
  };
  const subtree = async (lo, height) => { // the perfect subtree of 2^height leaves at lo
    const level = Math.floor(height / 8), within = height % 8;
    const first = lo / 2 ** (8 * level);
    const t = Math.floor(first / 256), data = await tile(level, t);
    let row = [];
    for (let i = 0; i < 2 ** within; i++) {
      const at = (first % 256) + i;
      row.push(data.slice(at * 32, at * 32 + 32));
    }
    while (row.length > 1) {
      const up = [];
      for (let i = 0; i < row.length; i += 2) up.push(await nodeHash(row[i], row[i + 1]));
      row = up;
    }
    return row[0];
  };
  const mth = async (lo, hi) => {
    const n = hi - lo;
    if (n === 1 && lo === index) return entryLeaf;
    if ((n & (n - 1)) === 0 && !(lo <= index && index < hi)) return subtree(lo, Math.log2(n));
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(await mth(lo, lo + k), await mth(lo + k, hi));
  };
  return mth(0, size);
}

// DSSE: the signer's signature over PAE(payloadType, payload).
async function checkEnvelope(entry, signerKey) {
  const env = JSON.parse(new TextDecoder().decode(entry));
  const payload = b64(env.payload);
  const pae = cat(enc.encode(`DSSEv1 ${env.payloadType.length} ${env.payloadType} ${payload.length} `), payload);
  const sig = env.signatures.find((s) => s.keyid === signerKey.id);
  if (!sig) throw new Error(`the entry carries no signature by ${signerKey.id}`);
  if (!(await ed25519(signerKey, b64(sig.sig), pae))) throw new Error("the entry's signature does not verify");
  return JSON.parse(new TextDecoder().decode(payload));
}

// Verify entry `index` of the log at `logUrl`; resolves to what was verified, or throws.
async function verifyStatement({ logUrl, index, leafHash: expected, logKey, witnessKeys, quorum, signerKey }) {
  const timing = { fetchMs: 0 }; // time spent waiting for the log, apart from checking
  const fetchBytes = async (path) => {
    const started = performance.now();
    const r = await fetch(logUrl + path);
    if (!r.ok) throw new Error(`${logUrl}${path}: HTTP ${r.status}`);
    const body = new Uint8Array(await r.arrayBuffer());
    timing.fetchMs += performance.now() - started;
    return body;
  };
  const log = await parseKey(logKey, 1);
  const witnesses = await Promise.all(witnessKeys.map((k) => parseKey(k, 4)));
  const note = new TextDecoder().decode(await fetchBytes("checkpoint"));
  const cp = await openCheckpoint(note, log, witnesses);
  if (cp.cosigned.length < quorum) throw new Error(`the checkpoint has ${cp.cosigned.length} trusted cosignature(s), ${quorum} required`);
  if (index >= cp.size) throw new Error(`entry ${index} is beyond the checkpoint (size ${cp.size})`);
  const t = Math.floor(index / 256), width = Math.min(256, cp.size - t * 256);
  const bundle = await fetchBytes(tilePath("entries", t, width));
  let entry = null;
  for (let at = 0, i = 0; at < bundle.length; i++) {
    const n = (bundle[at] << 8) | bundle[at + 1];
    if (i === index % 256) entry = bundle.slice(at + 2, at + 2 + n);
    at += 2 + n;
  }
  if (!entry) throw new Error(`entry ${index} is not in its bundle`);
  const leaf = await leafHash(entry);
  if (expected && hex(leaf) !== expected) throw new Error("the entry is not the one the page shows");
  const root = await rootWith(fetchBytes, cp.size, index, leaf);
  if (!same(root, cp.root)) throw new Error("the entry is not in the tree the log signed (the inclusion does not verify)");
  const signer = await parseKey(signerKey, 1);
  signer.id = signerKey.trim().split("+").slice(0, 2).join("+");
  const statement = await checkEnvelope(entry, signer);
  return { origin: cp.origin, size: cp.size, cosigned: cp.cosigned, leaf: hex(leaf),
           kind: statement.predicateType, signer: signer.id, fetchMs: timing.fetchMs };
}

// The page's "verify" buttons: data-* attributes name what to check; results go beside.
function wireButtons(root = document) {
  for (const button of root.querySelectorAll("button[data-verify]")) {
    button.addEventListener("click", async () => {
      const out = document.getElementById(button.dataset.output);
      const spec = JSON.parse(button.dataset.verify);
      out.className = "verify-pending";
      out.textContent = "verifying…";
      const started = performance.now();
      try {
        const got = await verifyStatement(spec);
        out.className = "verify-ok";
        out.textContent = `verified in your browser: entry ${spec.index} (leaf ${got.leaf.slice(0, 16)}…) ` +
          `is in ${got.origin}'s tree of ${got.size} entries, signed by the log` +
          (got.cosigned.length ? `, cosigned by ${got.cosigned.map((c) => `${c.name} at ${c.time}`).join(", ")}` : "") +
          `; the statement is signed by ${got.signer}. (${Math.round(performance.now() - started)} ms, ` +
          `of which ${Math.round(got.fetchMs)} ms fetching)`;
        out.dataset.ms = String(performance.now() - started);
        out.dataset.fetchMs = String(got.fetchMs);
      } catch (err) {
        out.className = "verify-failed";
        out.textContent = `NOT verified: ${err.message}`;
      }
    });
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => wireButtons());
  else wireButtons();
}
