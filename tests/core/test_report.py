"""Reports: metrics.json in the registry layout, the comparison table, and real PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bellm.baselines import MINILM_REFERENCE, minilm_reference_result
from bellm.config import GateConfig
from bellm.evaluation import PairScores
from bellm.gates import check_gates
from bellm.report import comparison_rows, markdown_table, metrics_document, report_markdown, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def result(avg: float, **tasks: float) -> dict:
    return {"suite": "full", "model": f"fp{avg:.0f}", "max_pairs": None,
            "tasks": {k: {"spearman": v, "pearson": v, "n": 10, "subsets": {}} for k, v in tasks.items()},
            "avg": avg, "data_sha256": {"data/sts/stsb/test.tsv": "ab" * 32}}


TRAINED = result(75.0, stsb=80.0, sickr=70.0)
ZERO = result(40.0, stsb=45.0, sickr=35.0)
CHAMP = result(74.0, stsb=78.5, sickr=69.5)


def test_comparison_rows() -> None:
    rows = comparison_rows(TRAINED, ZERO, {"trained": CHAMP}, minilm_reference_result())
    assert [r["task"] for r in rows] == ["STS-B", "SICK-R", "avg"]
    stsb = rows[0]
    assert stsb == {"task": "STS-B", "this run": 80.0, "champion": 78.5, "all-MiniLM-L6-v2": MINILM_REFERENCE["stsb"],
                    "zero-shot": 45.0, "vs champion": 1.5}
    assert rows[2]["this run"] == 75.0 and rows[2]["vs champion"] == 1.0
    assert rows[2]["all-MiniLM-L6-v2"] == 78.87


def test_the_unseen_domain_average_is_reported_beside_the_in_domain_tasks() -> None:
    """STS12-16 (domains the recipe never trains on) get their own average row next to the 7-task avg, in the
    table the flow's report, its Prefect artifact and `bellm eval` print (issue 26)."""
    full = dict(sts12=60.0, sts13=70.0, sts14=65.0, sts15=75.0, sts16=80.0, stsb=85.0, sickr=79.0)
    trained = result(73.43, **full)
    champ = result(70.0, **{t: v - 1.0 for t, v in full.items()})
    rows = comparison_rows(trained, None, champ, minilm_reference_result())
    assert [r["task"] for r in rows][-3:] == ["SICK-R", "avg", "STS12-16 avg (unseen domains)"]
    unseen = rows[-1]
    assert unseen["this run"] == 70.0 and unseen["champion"] == 69.0 and unseen["vs champion"] == 1.0
    assert unseen["all-MiniLM-L6-v2"] == 78.59  # the reference's STS12-16 mean (issue 26's table)
    md = report_markdown(trained, champion=champ)
    assert "| **STS12-16 avg (unseen domains)** | 70.00 | 69.00 | +1.00 |" in md and "unseen-domain proxy" in md
    assert [r["task"] for r in comparison_rows(TRAINED)] == ["STS-B", "SICK-R", "avg"]  # no STS12-16: no row


def test_the_report_shows_the_dev_numbers_that_decided(tmp_path: Path) -> None:
    gate = {"suite": "dev", "avg": 80.0, "max_pairs": None,
            "tasks": {"stsb_dev": {"spearman": 85.0}, "sickr_dev": {"spearman": 75.0}},
            "data_sha256": {"data/sts/stsb/dev.tsv": "ab" * 32, "data/sts/sickr/dev.tsv": "cd" * 32}}
    champ = dict(CHAMP, tasks={**CHAMP["tasks"], "stsb_dev": {"spearman": 84.0}})  # an old champion: no sickr_dev
    write_report(tmp_path, TRAINED, champion=champ, extra={"gate": gate})
    md = (tmp_path / "report.md").read_text()
    assert "## Decided on (dev splits)" in md
    assert "| STS-B dev | 85.00 | 84.00 |" in md and "| SICK-R dev | 75.00 | – |" in md
    assert "| **dev avg** | 80.00 | – |" in md and "`data/sts/sickr/dev.tsv`" in md
    assert json.loads((tmp_path / "metrics.json").read_text())["gate"] == gate


def test_markdown_table_drops_empty_columns() -> None:
    table = markdown_table(comparison_rows(TRAINED))
    header = table.splitlines()[0]
    assert header == "| task | this run |"
    assert "| **avg** | 75.00 |" in table
    full = markdown_table(comparison_rows(TRAINED, ZERO, CHAMP))
    assert "| STS-B | 80.00 | 78.50 | 45.00 | +1.50 |" in full


def test_report_markdown_mentions_smoke_runs_and_gates() -> None:
    smoke = dict(TRAINED, max_pairs=16)
    verdict = check_gates(TRAINED, GateConfig(min_avg=76.0))
    md = report_markdown(smoke, verdict=verdict)
    assert "smoke run" in md and "16 pairs" in md
    assert "min_avg: 75.00 >= 76.00 FAILED" in md
    assert "ab" * 32 in md


def test_metrics_document_is_the_registry_layout() -> None:
    doc = metrics_document(TRAINED, ZERO, extra={"onnx": {"fp32": TRAINED}})
    assert list(doc) == ["trained", "zero_shot", "onnx"]
    assert doc["trained"]["model"] == "fp75"
    with pytest.raises(ValueError, match="overwrite"):
        metrics_document(TRAINED, ZERO, extra={"zero_shot": {}})


def test_write_report_writes_all_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    scores = {"stsb": PairScores(gold / 5 + rng.normal(0, 0.1, 300), gold)}
    verdict = check_gates(TRAINED, GateConfig(min_avg=70.0))
    paths = write_report(tmp_path / "out", TRAINED, ZERO, CHAMP, minilm_reference_result(),
                         extra={"onnx": {"int8": TRAINED}}, scores=scores, verdict=verdict)
    assert set(paths) == {"metrics", "report", "scatter", "bars"}
    for key in ("scatter", "bars"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, key
    metrics = json.loads(paths["metrics"].read_text())
    assert set(metrics) == {"trained", "zero_shot", "champion", "baseline", "onnx", "gates"}
    assert metrics["gates"]["passed"] is True
    md = paths["report"].read_text()
    assert "(stsb_scatter.png)" in md and "(tasks.png)" in md
    assert "| STS-B | 80.00 | 78.50 | 82.03 | 45.00 | +1.50 |" in md
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temp files


def test_write_report_without_stsb_scores_has_no_scatter(tmp_path: Path) -> None:
    paths = write_report(tmp_path, TRAINED)
    assert "scatter" not in paths and paths["bars"].is_file()
    assert json.loads(paths["metrics"].read_text()) == {"trained": TRAINED}


def test_report_plots_the_training_curve_when_the_log_is_there(tmp_path: Path) -> None:
    recs = [{"step": i, "loss": 5.0 / i} for i in range(1, 41)]
    for r in recs[9::10]:
        r["dev_spearman"] = 70.0 + r["step"] / 10
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 41, "lo')
    paths = write_report(tmp_path, TRAINED)
    data = paths["training"].read_bytes()
    assert data.startswith(PNG) and len(data) > 5000
    assert "(training.png)" in paths["report"].read_text()
