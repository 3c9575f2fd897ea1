"""`scalegate compute estimate` end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.compute import CHIPS

SCALEGATE = Path(sys.executable).with_name("scalegate")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(SCALEGATE), "compute", "estimate", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def run_json(*args: str) -> dict:
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def methods(doc: dict) -> dict[str, float]:
    return {m["method"]: m["flop"] for m in doc["methods"]}


def test_eu_worked_example_by_hardware() -> None:
    doc = run_json("--chips", "1", "--chip", "H100-SXM", "--hours", "370,000", "--mfu", "50%")
    assert methods(doc) == {"hardware": pytest.approx(6.5868e23, rel=1e-4)}
    assert doc["reconciled"]["report"] == "6.6e23 FLOP (hardware)"
    assert all(not t["crossed"] for t in doc["thresholds"])


def test_gpt3_every_method_with_units_as_people_write_them() -> None:
    doc = run_json(
        "--params", "175B", "--tokens", "300B", "--layers", "96", "--d-model", "12288",
        "--heads", "96", "--seq-len", "2048", "--vocab", "50257", "--tied-embeddings",
        "--chips", "1024", "--chip", "A100", "--hours", "800",
    )
    got = methods(doc)
    assert set(got) == {"6ND", "per-layer", "kaplan", "palm", "megatron",
                        "megatron-recompute", "hardware"}
    assert got["6ND"] == pytest.approx(3.15e23)
    assert doc["reconciled"]["method"] == "per-layer"
    assert not doc["reconciled"]["flagged"]
    recompute = next(m for m in doc["methods"] if m["method"] == "megatron-recompute")
    assert recompute["reconciled"] is False
    assert "megatron-recompute" not in doc["reconciled"]["deviations"]


def test_default_policies_are_the_bundled_laws() -> None:
    from scalegate.policy import bundled_policies, load_policy

    laws = {n for n in bundled_policies() if load_policy(n).kind == "law"}
    doc = run_json("--params", "405B", "--tokens", "15.6T")
    assert {t["policy"] for t in doc["thresholds"]} == {load_policy(n).id for n in laws}
    eu = [t for t in doc["thresholds"] if t["policy"] == "eu-ai-act"]
    assert eu and all(t["crossed"] for t in eu)
    assert doc["reconciled"]["report"] == "3.8e25 FLOP (6ND)"
    sb53 = [t for t in doc["thresholds"] if t["policy"] == "ca-sb53"]
    assert sb53 and not any(t["crossed"] for t in sb53)


def test_thresholds_are_dated_from_the_run_start() -> None:
    doc = run_json(
        "--params", "405B", "--tokens", "15.6T", "--chips", "16384", "--chip", "H100-SXM",
        "--hours", "1200", "--mfu", "0.45", "--policy", "eu-ai-act",
        "--start", "2025-01-01T00:00Z",
    )
    reached = next(t for t in doc["thresholds"] if t["basis"] == "reached")
    # 1e25 of 3.8e25 reconciled, spread over 1200 h: reached ~316 h in; due 14 days later.
    assert reached["at_seconds"] == pytest.approx(1e25 / 3.7908e25 * 1200 * 3600, rel=1e-3)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    due = start + timedelta(seconds=reached["at_seconds"], days=14)
    assert datetime.fromisoformat(reached["due"]) == due
    planned = next(t for t in doc["thresholds"] if t["basis"] == "planned")
    assert planned["due"] is not None


def test_letter_window_is_reported() -> None:
    doc = run_json("--params", "1T", "--tokens", "20T", "--policy", "fli-pause-2023")
    (t,) = doc["thresholds"]
    assert t["action"] == "pause" and not t["crossed"] and t["in_window"] is False


def test_disagreement_is_flagged() -> None:
    doc = run_json("--params", "70B", "--tokens", "1.4T", "--chips", "100", "--chip",
                   "H100-SXM", "--hours", "100")
    assert doc["reconciled"]["flagged"]
    assert "hardware" in doc["reconciled"]["disagreements"]
    assert any("30 %" in n for n in doc["notes"])


def test_human_output_lists_methods_and_obligations() -> None:
    proc = run("--params", "405B", "--tokens", "15.6T", "--policy", "eu-ai-act")
    assert proc.returncode == 0, proc.stderr
    assert "3.8e25" in proc.stdout and "reconciled:" in proc.stdout
    assert "notify European Commission" in proc.stdout and "2w" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "-5", "--tokens", "1T"], "--params: expected a positive"),
        (["--params", "0", "--tokens", "1T"], "--params: expected a positive"),
        (["--params", "seventy", "--tokens", "1T"], "--params: expected a number"),
        (["--params", "70B"], "without --tokens"),
        (["--tokens", "1T"], "--tokens given without a model size"),
        (["--chips", "8", "--chip", "V100", "--hours", "10"], "unknown chip 'V100'"),
        (["--chips", "8", "--chip", "H100-SXM"], "--hours missing"),
        (["--chips", "0", "--chip", "H100-SXM", "--hours", "1"], "--chips: expected a positive"),
        (["--chips", "8", "--chip", "H100", "--hours", "1"], "H100-SXM or H100-PCIe"),
        (["--layers", "2", "--d-model", "64", "--tokens", "1T"],
         "--heads, --seq-len, --vocab missing"),
        (["--layers", "2", "--d-model", "64", "--heads", "5", "--seq-len", "8", "--vocab", "9",
          "--tokens", "1T"], "heads (5) must divide d_model (64)"),
        (["--layers", "2.5", "--d-model", "64", "--heads", "4", "--seq-len", "8", "--vocab", "9",
          "--tokens", "1T"], "--layers must be a whole number"),
        (["--chips", "8", "--chip", "H100-SXM", "--hours", "1", "--mfu", "1.5"], "--mfu"),
        ([], "nothing to estimate"),
        (["--params", "13B", "--active-params", "47B", "--tokens", "1T"],
         "--active-params 4.70e10 is more than --params 1.30e10"),
        (["--layers", "2", "--d-model", "64", "--heads", "4", "--seq-len", "8", "--vocab", "9",
          "--experts", "8", "--tokens", "1T"], "--experts 8 given without --top-k"),
        (["--params", "7B", "--tokens", "1T", "--policy", "no-such-policy"], "no-such-policy"),
        # Out of any real range: a message, not an OverflowError or a pydantic traceback.
        (["--params", "1e308", "--tokens", "15T"], "the 6ND method gives no finite figure"),
        (["--params", "70B", "--tokens", "1e308"], "the 6ND method gives no finite figure"),
        (["--layers", "1e308", "--d-model", "64", "--heads", "4", "--seq-len", "8", "--vocab",
          "9", "--tokens", "1T"], "--layers 1e308 is too large"),
        (["--layers", "2", "--d-model", "1e308", "--heads", "4", "--seq-len", "8", "--vocab",
          "9", "--tokens", "1T"], "--d-model 1e308 is too large"),
        (["--chips", "8", "--chip", "H100-SXM", "--hours", "1e308"], "hours 1e+308 is too large"),
        (["--chips", "1e308", "--chip", "H100-SXM", "--hours", "1"], "--chips 1e308 is too large"),
        (["--chips", "8", "--peak-flops", "1e308", "--hours", "100"],
         "the hardware method gives no finite figure"),
        (["--chips", "8", "--chip", "H100-SXM", "--hours", "1e10", "--start",
          "9999-12-01T00:00Z"], "lies past the year 9999"),
        (["--params", "70B", "--tokens", "15T", "--dtype", "x"], "--dtype 'x' is no number format"),
        (["--params", "70B", "--tokens", "15T", "--dtype", "fp8"],
         "--dtype fp8 given without the hardware method"),
    ],
)
def test_bad_input_is_a_message_and_a_non_zero_exit(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-process through the same entry point as the console script (one real subprocess
    # below covers the installed script), to keep these cases fast.
    from scalegate.cli import main

    monkeypatch.setattr(sys, "argv", ["scalegate", "compute", "estimate", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err


def test_a_size_without_its_unit_is_pointed_out() -> None:
    data = run_json("--params", "70", "--tokens", "15T")
    assert any("--params 70 is 70 parameters" in n for n in data["notes"]), data["notes"]


def test_unknown_chip_message_lists_every_known_chip() -> None:
    proc = run("--chips", "8", "--chip", "Z9", "--hours", "10")
    assert proc.returncode == 1
    for name in CHIPS:
        assert name in proc.stderr.replace("\n", "")


def test_chip_table_command() -> None:
    proc = subprocess.run(
        [str(SCALEGATE), "compute", "chips", "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert set(table) == set(CHIPS)
    assert table["H100-SXM"]["peak"]["bf16"] == 989e12
    assert "datasheet" in table["H100-SXM"]["sources"]["bf16"]
