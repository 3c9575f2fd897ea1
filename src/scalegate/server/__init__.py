"""The log over HTTP: a scalegate ledger served as a C2SP ``tlog-tiles`` transparency log.

:func:`create_app` builds the ASGI application ``scalegate serve`` runs (FastAPI, served
by uvicorn): the latest checkpoint, hash tiles and entry bundles, the log's verifier key
and an index page saying how to verify it. :func:`publish_tiles` writes the same
resources as static files, for any static host or CDN.
"""

from scalegate.server._publisher import WitnessPolicy
from scalegate.server.app import create_app
from scalegate.server.static import publish_tiles
from scalegate.server.witness_app import create_witness_app
from scalegate.server.witness_client import HttpWitness

__all__ = [
    "HttpWitness",
    "WitnessPolicy",
    "create_app",
    "create_witness_app",
    "publish_tiles",
]
