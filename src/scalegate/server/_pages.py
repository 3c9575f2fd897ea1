"""What a person (rather than a client) reads at a log's address: the index page and the
verifier key."""

from __future__ import annotations

import html

from scalegate.ledger import Ledger

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{origin} — scalegate transparency log</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
code,pre{{font:14px ui-monospace,monospace;background:#f4f4f4}}
pre{{padding:.6rem;overflow:auto}}</style>
</head><body>
<h1>{origin}</h1>
<p>A <a href="https://c2sp.org/tlog-tiles">C2SP tlog-tiles</a> transparency log of
<a href="https://github.com/secure-systems-lab/dsse">DSSE</a>-signed
<a href="https://in-toto.io/Statement/v1">in-toto statements</a> written by
scalegate: the compute of training runs, evaluations at the milestones a responsible
scaling policy sets, decisions, pauses, approvals and resumptions. {size} entries when
this page was made.</p>
<ul>
<li><a href="checkpoint"><code>checkpoint</code></a> — the latest signed checkpoint
(<a href="https://c2sp.org/tlog-checkpoint">C2SP checkpoint</a>, with witness
cosignatures)</li>
<li><code>tile/&lt;L&gt;/&lt;N&gt;[.p/&lt;W&gt;]</code> — Merkle tree tiles (RFC 6962,
SHA-256)</li>
<li><code>tile/entries/&lt;N&gt;[.p/&lt;W&gt;]</code> — entry bundles: each entry is the
canonical JSON of its DSSE envelope, prefixed by its length (uint16, big-endian)</li>
<li><a href="log.vkey"><code>log.vkey</code></a> — the log's verifier key (a
<a href="https://c2sp.org/signed-note">signed-note</a> Ed25519 key)</li>
<li><a href="org-roots"><code>org-roots</code></a> — the organisation root keys whose
<code>key</code> statements admit the log's signers (one verifier key per line)</li>
</ul>
<h2>Verify it</h2>
<p>Check the checkpoint's signature with the log's key, recompute the tree from the
tiles, and check each entry against the level-0 tile. With scalegate, all three at once:</p>
<pre>scalegate ledger read-tiles {{this address}} --log-key log.vkey</pre>
<p>To keep a verified copy and audit it offline (each sync checks the new checkpoint
against everything copied before):</p>
<pre>scalegate ledger sync {{this address}} mirror.db --log-key log.vkey</pre>
<p>The key below must match the one the lab publishes elsewhere; an auditor trusts it
(and the witnesses' keys) through a trust file, never because this page shows it.</p>
<pre>{vkey}</pre>
</body></html>
"""


def vkey_text(ledger: Ledger) -> str:
    """The log's verifier key as a line of text."""
    return ledger.log_vkey.text() + "\n"


def org_roots_text(ledger: Ledger) -> str:
    """The organisation root verifier keys the log admits signers under, one per line."""
    return "".join(r.text() + "\n" for r in ledger.org_roots)


def index_page(ledger: Ledger, size: int) -> str:
    """The log's index page."""
    return INDEX.format(origin=html.escape(ledger.origin), size=f"{size:,}",
                        vkey=html.escape(ledger.log_vkey.text()))
