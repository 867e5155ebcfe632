"""Small helpers of benchmarks/gpu_check.sh, one subcommand each (plain Python, no EdgeSeg import unless said):

    probe                 the built extension as JSON: importable, has_cuda, devices, architectures (imports _C)
    junit FILE [FILE...]  pass only when every JUnit file ran tests with no failure, error or skip; prints the counts
                          and each skip's reason (on a GPU machine a skip means something did not run)
    train-summary DIR...  one JSON summary of `edgeseg train` run folders (metrics.json): best and last val mIoU,
                          epochs, images/s, minutes
"""

from __future__ import annotations

import json
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def probe() -> int:
    try:
        from edgeseg import _C
    except ImportError as exc:
        print(json.dumps({"importable": False, "error": str(exc)}))
        return 0
    info = dict(_C.build_info)
    archs = str(info.get("cuda_architectures", "")).replace(";", ",")
    print(json.dumps({"importable": True, "has_cuda": bool(_C.has_cuda()), "devices": int(_C.cuda_device_count()),
                      "architectures": [a.strip() for a in archs.split(",") if a.strip()],
                      "build_info": {k: str(v) for k, v in info.items()}}))
    return 0


def junit(paths: list[str]) -> int:
    ok = True
    for path in paths:
        if not Path(path).is_file():
            print(f"{path}: no JUnit file (pytest did not run)")
            ok = False
            continue
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
        print(f"{path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for case in root.iter("testcase"):
            for tag in ("skipped", "failure", "error"):
                for element in case.findall(tag):
                    print(f"  {tag.upper()} {case.get('classname')}::{case.get('name')}: "
                          f"{(element.get('message') or '')[:300]}")
        if counts["tests"] == 0 or counts["failures"] or counts["errors"] or counts["skipped"]:
            ok = False
    return 0 if ok else 1


def train_summary(folders: list[str]) -> int:
    summary = {}
    for folder in folders:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            summary[Path(folder).name] = {"error": f"{path} missing (the run failed: see the log)"}
            continue
        metrics = json.loads(path.read_text())
        history = metrics.get("history", [])
        scored = [h for h in history if h.get("miou") == h.get("miou")]  # NaN on epochs --eval-every skipped
        summary[Path(folder).name] = {
            "best_val_miou": metrics.get("best", {}).get("miou"),
            "last_val_miou": scored[-1]["miou"] if scored else None,
            "epochs": metrics.get("epochs_run"),
            "train_minutes": round(metrics.get("train_seconds", 0) / 60, 2),
            "images_per_s_median": round(statistics.median(h["images_per_s"] for h in history), 1) if history else None,
            "train_samples": metrics.get("train_samples"), "val_samples": metrics.get("val_samples"),
            "val_groups": metrics.get("val_groups"),
        }
    print(json.dumps(summary, indent=2))
    return 0 if all("error" not in v for v in summary.values()) else 1


if __name__ == "__main__":
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    handlers = {"probe": lambda: probe(), "junit": lambda: junit(rest), "train-summary": lambda: train_summary(rest)}
    if command not in handlers:
        raise SystemExit(__doc__)
    raise SystemExit(handlers[command]())
