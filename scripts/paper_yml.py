"""Write hyperparams/cemah_paper.yml: every entry of hyperparams/cemah.yml with CEM-AH's paper preset on top.

python scripts/paper_yml.py            # rewrite the file
python scripts/paper_yml.py --check    # exit 1 if the file differs from what would be written
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from sb3_cemah.cemah.cemah import PAPER_PRESET

HYPERPARAMS = Path(__file__).resolve().parents[1] / "hyperparams"
HEADER = """# The paper's CEM-AH (Algorithm 2 as written: sb3_cemah.cemah.PAPER_PRESET) on every env of cemah.yml, whose
# entries it copies with the preset on top: MSE imitation of the actions the elites took on their own states,
# a buffer of the last 100 admitted iterations, Adam at a constant 1e-4, 300 pre-training and 10 adversarial
# steps per iteration, and a test-time ensemble of K = 10 (softmax of the summed probabilities for discrete
# actions, the mean for Box actions). Use it with
#   python -m rl_zoo3.train --algo cemah --env ENV -conf $(python -m sb3_cemah.zoo cemah_paper)
# Generated from cemah.yml by scripts/paper_yml.py: edit that file and re-run it.

"""


def paper_entries(entries: dict) -> dict:
    """:return: Each env's entry with :data:`PAPER_PRESET` on top (its policy_kwargs merged into the entry's string)."""
    out = {}
    for env_id, entry in entries.items():
        if env_id == "default":
            continue
        paper = dict(entry)
        for key, value in PAPER_PRESET.items():
            if key == "policy_kwargs":
                kwargs = paper.get("policy_kwargs", "dict()").strip()
                extra = ", ".join(f"{name}={setting!r}" for name, setting in value.items())
                paper["policy_kwargs"] = kwargs[:-1] + (", " if kwargs != "dict()" else "") + extra + ")"
            else:
                paper[key] = value
        out[env_id] = paper
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    args = parser.parse_args()
    entries = yaml.safe_load((HYPERPARAMS / "cemah.yml").read_text())
    text = HEADER + yaml.safe_dump(paper_entries(entries), sort_keys=False, width=120)
    target = HYPERPARAMS / "cemah_paper.yml"
    if args.check:
        return 0 if target.read_text() == text else 1
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
