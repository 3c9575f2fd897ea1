"""Training transcripts: commit to weights, data and learning rates as a run trains, and
re-execute segments a verifier chooses afterwards.

- :class:`Transcript` — how a run records it (the supervisor's ``transcript=``);
  :class:`TranscriptRecorder` does the recording;
- :func:`state_digest`, :func:`batch_digest` — the canonical digests committed to;
  :class:`DataManifest` — the examples a run may train on (its root is committed to);
- :func:`challenge`, :func:`check_chain`, :func:`verify_segment` — the verifier's side,
  with the lab's training step as a :class:`Replay` and its batches as it kept them
  (:class:`SavedBatches`) or as its data pipeline makes them.
"""

from scalegate.transcript.data import DataManifest, data_root
from scalegate.transcript.digest import (
    batch_digest,
    batches_root,
    example_digests,
    state_digest,
)
from scalegate.transcript.recorder import (
    Transcript,
    TranscriptRecorder,
    TranscriptStep,
    batches_path,
    commit_seed,
    snapshot_path,
)
from scalegate.transcript.verify import (
    Batches,
    Replay,
    SavedBatches,
    SegmentCheck,
    catch_probability,
    challenge,
    challenge_seed,
    check_chain,
    verify_segment,
)

__all__ = ["Batches", "DataManifest", "Replay", "SavedBatches", "SegmentCheck", "Transcript",
           "TranscriptRecorder", "TranscriptStep", "batch_digest", "batches_path",
           "batches_root", "catch_probability", "challenge", "challenge_seed", "check_chain",
           "commit_seed", "data_root", "example_digests", "snapshot_path", "state_digest",
           "verify_segment"]
